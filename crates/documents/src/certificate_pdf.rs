//! The vaccination certificate as an A4 PDF: bilingual labels, the record's values as signed,
//! the QR code, the certificate and key ids, and how to verify.
//!
//! The QR image is 70 mm wide with its quiet zone, so the code itself is at least 60 mm wide for
//! every QR version up to 40 and scans from paper. The same QR text is stored in the document
//! information dictionary under [`QR_TEXT_INFO_KEY`](crate::QR_TEXT_INFO_KEY) for exact offline
//! verification of the PDF file.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use printpdf::Base64OrRaw;
use signer::{KeyId, VaccinationRecord};

use crate::html::escape;
use crate::labels::{self, gender_name, photo_id_name};
use crate::qr_image::qr_png;
use crate::render::{base_css, html_to_pdf, label_html, row_html, DocumentError, PdfInfo};

/// Printed width of the QR image, quiet zone included, in millimetres.
pub const QR_PRINT_WIDTH_MM: f32 = 70.0;

/// Everything printed on a certificate.
#[derive(Debug, Clone)]
pub struct CertificateDocument<'a> {
    /// The signed vaccination record, printed as recorded.
    pub record: &'a VaccinationRecord,
    /// Key that signed the certificate.
    pub key_id: KeyId,
    /// Issuer name from the `iss` claim.
    pub issuer: &'a str,
    /// Issued-at time from the `iat` claim.
    pub issued_at: DateTime<Utc>,
    /// The `VXL1:` QR text of the signed certificate.
    pub qr_text: &'a str,
    /// Address of the verify page, such as `https://vaxledger.example/verify`.
    pub verify_url: &'a str,
}

/// Renders the certificate PDF.
// NOTE: only Latin and Devanagari fonts are embedded, so a value in another script (Tamil,
// Bengali, ...) prints as empty boxes. The QR code and the embedded QR text keep it exact.
pub fn render_certificate_pdf(document: &CertificateDocument<'_>) -> Result<Vec<u8>, DocumentError> {
    let png = qr_png(document.qr_text)?;
    let mut images = BTreeMap::new();
    images.insert("qr".to_owned(), Base64OrRaw::Raw(png));

    let html = certificate_html(document);
    let certificate_id = document.record.certificate_id.to_string();
    let info = PdfInfo {
        title: "Certificate for COVID-19 Vaccination",
        subject: &format!("Vaccination certificate {certificate_id}"),
        created_at: document.issued_at,
        qr_text: Some(document.qr_text),
    };
    html_to_pdf(&html, &images, &info)
}

/// Builds the certificate's HTML template.
fn certificate_html(document: &CertificateDocument<'_>) -> String {
    let record = document.record;
    let photo_id = format!("{} {}", photo_id_name(record.photo_id_type), record.photo_id_masked);
    let vaccine = format!("{} ({})", record.vaccine, record.manufacturer);
    let dose = format!("{} of {}", record.dose_number, record.total_doses);
    // The session date is a calendar date as recorded; it is printed without any time zone step.
    let date = record.vaccination_date.format("%d %b %Y").to_string();
    let centre = format!("{}, {}, {}", record.centre_name, record.district, record.state);
    let issued_at = document.issued_at.format("%Y-%m-%d %H:%M:%S UTC").to_string();

    let beneficiary_rows = [
        row_html(labels::BENEFICIARY_NAME, &record.beneficiary_name),
        row_html(labels::YEAR_OF_BIRTH, &record.year_of_birth.to_string()),
        row_html(labels::GENDER, gender_name(record.gender)),
        row_html(labels::PHOTO_ID, &photo_id),
        row_html(labels::REFERENCE_ID, &record.beneficiary_id.to_string()),
    ]
    .concat();
    let vaccination_rows = [
        row_html(labels::VACCINE, &vaccine),
        row_html(labels::DOSE, &dose),
        row_html(labels::DOSE_DATE, &date),
        row_html(labels::VACCINATED_AT, &centre),
        row_html(labels::BATCH, &record.batch),
        row_html(labels::VACCINATOR, &record.vaccinator_id),
    ]
    .concat();
    let identity_rows = [
        row_html(labels::CERTIFICATE_ID, &record.certificate_id.to_string()),
        row_html(labels::KEY_ID, &document.key_id.to_hex()),
        row_html(labels::ISSUED_AT, &issued_at),
    ]
    .concat();

    format!(
        r#"<html><head><style>{css}
.qr {{ width: {qr_width}mm; height: {qr_width}mm; }}
.bottom {{ display: flex; flex-direction: row; margin: 5mm 0 0 0; }}
.qrcell {{ width: {qr_width}mm; }}
.idcell {{ width: 106mm; padding: 0 0 0 4mm; }}
.idcell .label {{ width: 40mm; }}
.idcell .value {{ width: 64mm; font-size: 8pt; }}
</style></head><body>
<h1>{title}</h1>
<p class="sub">{issued_by}: {issuer}</p>
<h2>{beneficiary_heading}</h2>
{beneficiary_rows}
<h2>{vaccination_heading}</h2>
{vaccination_rows}
<div class="bottom">
<div class="qrcell"><img class="qr" src="qr" /></div>
<div class="idcell">
<h2>{identity_heading}</h2>
{identity_rows}
<h2>{verify_heading}</h2>
<p class="note">{verify_online_en} {verify_url}</p>
<p class="note"><span class="hi">{verify_online_hi}</span> {verify_url}</p>
<p class="note">{verify_offline_en} / <span class="hi">{verify_offline_hi}</span></p>
<p class="mono">vaxledger cert verify certificate.pdf --trust-list trust-list.json</p>
</div>
</div>
</body></html>"#,
        css = base_css(),
        qr_width = QR_PRINT_WIDTH_MM,
        title = label_html(labels::CERTIFICATE_TITLE),
        issued_by = label_html(labels::ISSUED_BY),
        issuer = escape(document.issuer),
        beneficiary_heading = label_html(labels::BENEFICIARY_DETAILS),
        vaccination_heading = label_html(labels::VACCINATION_DETAILS),
        identity_heading = label_html(labels::CERTIFICATE_ID),
        verify_heading = label_html(labels::HOW_TO_VERIFY),
        verify_online_en = labels::VERIFY_ONLINE.en,
        verify_online_hi = labels::VERIFY_ONLINE.hi,
        verify_offline_en = labels::VERIFY_OFFLINE.en,
        verify_offline_hi = labels::VERIFY_OFFLINE.hi,
        verify_url = escape(document.verify_url),
    )
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};
    use domain::events::{Gender, PhotoIdType};
    use domain::ids::{BeneficiaryId, CertificateId};
    use lopdf::content::Content;
    use lopdf::Object;
    use uuid::Uuid;

    use super::*;
    use crate::read::read_qr_text;

    /// Returns a record with values that exercise escaping and long text.
    fn sample_record() -> VaccinationRecord {
        VaccinationRecord {
            beneficiary_name: "Asha <Devi> & Sons".to_owned(),
            year_of_birth: 1980,
            gender: Gender::Female,
            photo_id_type: PhotoIdType::Aadhaar,
            photo_id_masked: "XXXXXXXX1234".to_owned(),
            beneficiary_id: BeneficiaryId::new(Uuid::from_u128(1)),
            vaccine: "COVISHIELD".to_owned(),
            manufacturer: "Serum Institute of India".to_owned(),
            dose_number: 1,
            total_doses: 2,
            vaccination_date: NaiveDate::from_ymd_opt(2021, 5, 10).unwrap(),
            centre_name: "PHC Aundh".to_owned(),
            district: "Pune".to_owned(),
            state: "Maharashtra".to_owned(),
            vaccinator_id: "tok_1234".to_owned(),
            batch: "4121Z025".to_owned(),
            certificate_id: CertificateId::new(Uuid::from_u128(2)),
            code_verified_position: 7,
            dose_position: 9,
        }
    }

    /// Returns a QR text of real length, as long as a signed certificate's.
    fn sample_qr_text() -> String {
        format!("VXL1:{}", "6BF-OX.N*TS0BI$ZD.P9UPBWK9%1 ".repeat(24))
    }

    fn render_sample() -> Vec<u8> {
        let record = sample_record();
        let qr_text = sample_qr_text();
        let document = CertificateDocument {
            record: &record,
            key_id: KeyId::from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
            issuer: "vaxledger",
            issued_at: Utc.with_ymd_and_hms(2021, 5, 10, 18, 40, 0).unwrap(),
            qr_text: &qr_text,
            verify_url: "http://127.0.0.1:8080/verify",
        };
        render_certificate_pdf(&document).unwrap()
    }

    #[test]
    fn certificate_pdf_embeds_qr_text() {
        let pdf = render_sample();
        assert!(pdf.starts_with(b"%PDF-"));
        assert_eq!(read_qr_text(&pdf).unwrap(), sample_qr_text().trim());
    }

    #[test]
    fn certificate_pdf_embeds_devanagari_font() {
        let pdf = lopdf::Document::load_mem(&render_sample()).unwrap();
        let mut embedded = Vec::new();
        for object in pdf.objects.values() {
            let Ok(dictionary) = object.as_dict() else { continue };
            if dictionary.get(b"Type").and_then(Object::as_name).ok() != Some(b"FontDescriptor".as_slice()) {
                continue;
            }
            let name = dictionary.get(b"FontName").and_then(Object::as_name).unwrap_or_default();
            if dictionary.has(b"FontFile2") {
                embedded.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        assert!(
            embedded.iter().any(|name| name.contains("NotoSansDevanagari")),
            "embedded fonts: {embedded:?}"
        );
        assert!(embedded.iter().any(|name| name.contains("NotoSans-")), "embedded fonts: {embedded:?}");
    }

    #[test]
    fn certificate_pdf_prints_qr_at_least_50_mm() {
        let pdf = lopdf::Document::load_mem(&render_sample()).unwrap();
        let (_, page_id) = pdf.get_pages().into_iter().next().unwrap();
        let content = Content::decode(&pdf.get_page_content(page_id)).unwrap();

        // The image is drawn by `cm` (scale to its printed size in points) followed by `Do`.
        let mut widths = Vec::new();
        let mut last_scale = None;
        for operation in &content.operations {
            match operation.operator.as_str() {
                "cm" => last_scale = operation.operands.first().and_then(|value| value.as_float().ok()),
                "Do" => widths.extend(last_scale),
                _ => {}
            }
        }
        assert_eq!(widths.len(), 1, "image draws: {widths:?}");
        let width_mm = widths[0] / 72.0 * 25.4;
        assert!((QR_PRINT_WIDTH_MM - 1.0..=QR_PRINT_WIDTH_MM + 1.0).contains(&width_mm), "{width_mm} mm");
    }

    #[test]
    fn certificate_pdf_is_one_page() {
        let pdf = lopdf::Document::load_mem(&render_sample()).unwrap();
        assert_eq!(pdf.get_pages().len(), 1);
    }
}
