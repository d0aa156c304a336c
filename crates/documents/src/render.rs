//! HTML to PDF with printpdf, shared by the certificate and the slip.
//!
//! printpdf 0.12.8 shapes text (Devanagari conjuncts and pre-base vowel signs) only on its
//! `PdfDocument::from_html` path; its low-level `Op::ShowText` writes characters unshaped. So the
//! documents are HTML templates with the embedded fonts, laid out by printpdf's HTML engine.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lopdf::Object;
use printpdf::{Base64OrRaw, GeneratePdfOptions, PdfDocument, PdfParseErrorSeverity, PdfSaveOptions};

use crate::fonts;

/// Key in the PDF document information dictionary that stores the certificate's QR text, so that
/// verification reads it exactly without decoding the QR image.
pub const QR_TEXT_INFO_KEY: &str = "VaxledgerQRText";

/// Page margin on every side, in millimetres.
const MARGIN_MM: f32 = 15.0;

/// A document could not be rendered. Only a bug or an unencodable value causes this, never
/// the reader's input.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The QR code could not be built.
    #[error(transparent)]
    Qr(#[from] crate::qr_image::QrImageError),
    /// The layout engine rejected the template.
    #[error("PDF layout failed: {0}")]
    Layout(String),
    /// Writing the PDF failed.
    #[error("writing the PDF failed: {0}")]
    Write(String),
}

/// Document information entries.
pub(crate) struct PdfInfo<'a> {
    /// Title shown by PDF viewers.
    pub title: &'a str,
    /// Subject entry.
    pub subject: &'a str,
    /// Creation time, from the record rather than the clock, so a document re-rendered later
    /// states the same time.
    pub created_at: DateTime<Utc>,
    /// QR text stored under [`QR_TEXT_INFO_KEY`], for certificates.
    pub qr_text: Option<&'a str>,
}

/// Lays out an A4 HTML template with the embedded fonts and `images` (keyed by `src`), and
/// returns the PDF bytes with the document information entries set.
pub(crate) fn html_to_pdf(
    html: &str,
    images: &BTreeMap<String, Base64OrRaw>,
    info: &PdfInfo<'_>,
) -> Result<Vec<u8>, DocumentError> {
    let options = GeneratePdfOptions {
        page_width: Some(210.0),
        page_height: Some(297.0),
        margin_top: Some(MARGIN_MM),
        margin_right: Some(MARGIN_MM),
        margin_bottom: Some(MARGIN_MM),
        margin_left: Some(MARGIN_MM),
        ..Default::default()
    };

    let mut warnings = Vec::new();
    let mut document = PdfDocument::from_html_with_cache(
        html,
        images,
        fonts::font_map(),
        &options,
        &mut warnings,
        Some(fonts::font_pool()),
    )
    .map_err(DocumentError::Layout)?;

    let errors: Vec<&str> = warnings
        .iter()
        .filter(|warning| warning.severity == PdfParseErrorSeverity::Error)
        .map(|warning| warning.msg.as_str())
        .collect();
    if document.pages.is_empty() || !errors.is_empty() {
        return Err(DocumentError::Layout(format!("{} pages; errors: {}", document.pages.len(), errors.join("; "))));
    }

    document.metadata.info.document_title = info.title.to_owned();
    document.metadata.info.subject = info.subject.to_owned();
    document.metadata.info.creator = "vaxledger".to_owned();
    document.metadata.info.producer = "vaxledger with printpdf 0.12.8".to_owned();

    // The QR image stays lossless: printpdf's default image optimisation may re-encode it.
    let save_options = PdfSaveOptions { image_optimization: None, ..Default::default() };
    let mut pdf = document.to_lopdf_document(&save_options, &mut warnings);
    set_info_entries(&mut pdf, info)?;
    pdf.compress();

    let mut bytes = Vec::new();
    pdf.save_to(&mut bytes).map_err(|err| DocumentError::Write(err.to_string()))?;
    Ok(bytes)
}

/// Sets the dates and the QR text in the document information dictionary. printpdf writes the
/// dates of its own metadata as the Unix epoch unless the `time` crate types are filled in.
fn set_info_entries(pdf: &mut lopdf::Document, info: &PdfInfo<'_>) -> Result<(), DocumentError> {
    let info_id = pdf
        .trailer
        .get(b"Info")
        .and_then(Object::as_reference)
        .map_err(|err| DocumentError::Write(format!("document information dictionary missing: {err}")))?;
    let dictionary = pdf
        .get_object_mut(info_id)
        .and_then(Object::as_dict_mut)
        .map_err(|err| DocumentError::Write(format!("document information dictionary invalid: {err}")))?;

    let date = info.created_at.format("D:%Y%m%d%H%M%SZ").to_string();
    dictionary.set("CreationDate", Object::string_literal(date.clone()));
    dictionary.set("ModDate", Object::string_literal(date));
    if let Some(qr_text) = info.qr_text {
        dictionary.set(QR_TEXT_INFO_KEY, Object::string_literal(qr_text));
    }
    Ok(())
}

/// Returns the CSS shared by the templates. Hindi text goes in `<span class="hi">` because the
/// Latin font has no Devanagari glyphs and the Devanagari font has no Latin letters.
pub(crate) fn base_css() -> &'static str {
    r#"
body { font-family: VxlSans; font-size: 9.5pt; line-height: 1.25; color: #1a1a1a; }
.hi { font-family: VxlDeva; }
.b { font-family: VxlSansBold; }
.b .hi, .hi.b { font-family: VxlDevaBold; }
h1 { font-family: VxlSansBold; font-size: 15pt; margin: 0 0 2mm 0; color: #0b3d6e; }
h1 .hi { font-family: VxlDevaBold; }
h2 { font-family: VxlSansBold; font-size: 11pt; margin: 4mm 0 1mm 0; color: #0b3d6e; }
h2 .hi { font-family: VxlDevaBold; }
.sub { font-size: 9pt; color: #444444; margin: 0 0 3mm 0; }
.row { display: flex; flex-direction: row; border-bottom: 0.3mm solid #c8d3de; padding: 0.7mm 0; }
.label { width: 80mm; color: #333333; padding: 0 2mm 0 1mm; }
.value { width: 98mm; font-family: VxlSansBold; }
.note { font-size: 8.5pt; margin: 1mm 0 0 0; }
.mono { font-size: 8.5pt; margin: 1mm 0 0 0; }
"#
}

/// Returns a label as `English / Hindi` HTML.
pub(crate) fn label_html(label: crate::labels::Label) -> String {
    format!("{} / <span class=\"hi\">{}</span>", label.en, label.hi)
}

/// Returns one row with a bilingual label and an escaped value.
pub(crate) fn row_html(label: crate::labels::Label, value: &str) -> String {
    format!(
        "<div class=\"row\"><div class=\"label\">{}</div><div class=\"value\">{}</div></div>\n",
        label_html(label),
        crate::html::escape(value)
    )
}
