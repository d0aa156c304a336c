//! The appointment acknowledgement slip as an A4 PDF: appointment, centre, date, beneficiary,
//! dose number and the 4-digit security code.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::html::escape;
use crate::labels;
use crate::render::{base_css, html_to_pdf, label_html, row_html, DocumentError, PdfInfo};

/// Everything printed on a slip.
#[derive(Debug, Clone)]
pub struct SlipDocument {
    /// Appointment id, which the verifier looks up.
    pub appointment_id: String,
    /// Beneficiary name as registered.
    pub beneficiary_name: String,
    /// Beneficiary reference id.
    pub beneficiary_id: String,
    /// Year of birth, which the verifier compares with the photo ID.
    pub year_of_birth: u16,
    /// Photo-ID type and masked number, such as `Aadhaar XXXXXXXX1234`, to bring along.
    pub photo_id: String,
    /// Centre name.
    pub centre_name: String,
    /// Centre address: district, state and postal code.
    pub centre_address: String,
    /// Session date, a calendar date in India.
    pub date: NaiveDate,
    /// Vaccine of the session.
    pub vaccine: String,
    /// Dose number, from 1.
    pub dose_number: u8,
    /// The 4-digit security code, leading zeros kept.
    pub security_code: String,
    /// Appointment status when the slip was produced, such as `booked`.
    pub status: String,
    /// Time the slip was produced, printed and used as the PDF creation date.
    pub generated_at: DateTime<Utc>,
}

/// Renders the slip PDF.
pub fn render_slip_pdf(slip: &SlipDocument) -> Result<Vec<u8>, DocumentError> {
    let rows = [
        row_html(labels::APPOINTMENT_ID, &slip.appointment_id),
        row_html(labels::APPOINTMENT_DATE, &slip.date.format("%d %b %Y").to_string()),
        row_html(labels::CENTRE, &slip.centre_name),
        row_html(labels::ADDRESS, &slip.centre_address),
        row_html(labels::VACCINE, &slip.vaccine),
        row_html(labels::DOSE, &slip.dose_number.to_string()),
        row_html(labels::BENEFICIARY_NAME, &slip.beneficiary_name),
        row_html(labels::YEAR_OF_BIRTH, &slip.year_of_birth.to_string()),
        row_html(labels::PHOTO_ID, &slip.photo_id),
        row_html(labels::REFERENCE_ID, &slip.beneficiary_id),
    ]
    .concat();

    let html = format!(
        r#"<html><head><style>{css}
.code {{ font-family: VxlSansBold; font-size: 30pt; letter-spacing: 3mm; margin: 2mm 0 2mm 0; }}
.codebox {{ border: 0.6mm solid #0b3d6e; padding: 3mm 5mm; width: 170mm; margin: 6mm 0 0 0; }}
</style></head><body>
<h1>{title}</h1>
<p class="sub">{status} · {generated}</p>
{rows}
<div class="codebox">
<p class="b">{code_label}</p>
<p class="code">{code}</p>
<p class="note">{note_en}</p>
<p class="note"><span class="hi">{note_hi}</span></p>
</div>
<p class="note">{bring_en} / <span class="hi">{bring_hi}</span></p>
<p class="note">{dispute_en}</p>
<p class="note"><span class="hi">{dispute_hi}</span></p>
</body></html>"#,
        css = base_css(),
        title = label_html(labels::SLIP_TITLE),
        status = escape(&slip.status),
        generated = slip.generated_at.format("%Y-%m-%d %H:%M UTC"),
        code_label = label_html(labels::SECURITY_CODE),
        code = escape(&slip.security_code),
        note_en = labels::CODE_NOTE.en,
        note_hi = labels::CODE_NOTE.hi,
        bring_en = labels::BRING_ID.en,
        bring_hi = labels::BRING_ID.hi,
        dispute_en = labels::SLIP_DISPUTE.en,
        dispute_hi = labels::SLIP_DISPUTE.hi,
    );

    let info = PdfInfo {
        title: "Appointment Acknowledgement Slip",
        subject: &format!("Appointment {}", slip.appointment_id),
        created_at: slip.generated_at,
        qr_text: None,
    };
    html_to_pdf(&html, &BTreeMap::new(), &info)
}
