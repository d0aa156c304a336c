//! The verify page's HTML: one self-contained document with inline CSS and no script, font or
//! image from anywhere, so it works on a closed network. Every echoed value is escaped.

use documents::html::escape;
use documents::labels::{gender_name, photo_id_name, Label};
use documents::ReadError;
use signer::verify::Verification;

use super::reasons::{invalid_reason_text, read_error_text};

/// Result shown above the page's forms.
pub enum Outcome<'a> {
    /// Nothing was submitted yet.
    Blank,
    /// The certificate was checked.
    Checked(&'a Verification),
    /// No QR text could be read from the upload or the form.
    Unreadable(&'a ReadError),
    /// The server failed; the cause was logged.
    Failed,
}

const STYLE: &str = r#"
body { font-family: "Noto Sans", "Noto Sans Devanagari", Arial, sans-serif; margin: 0; background: #f4f6f8; color: #1a1a1a; }
main { max-width: 46rem; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.5rem; color: #0b3d6e; margin: 0 0 0.25rem 0; }
h2 { font-size: 1.1rem; margin: 0 0 0.5rem 0; }
p.lead { margin: 0 0 1.25rem 0; color: #444; }
section { background: #fff; border: 1px solid #d5dde5; border-radius: 8px; padding: 1rem 1.25rem; margin: 0 0 1rem 0; }
section.valid { border: 3px solid #1b7f3b; }
section.invalid { border: 3px solid #b3261e; }
.verdict { font-size: 1.6rem; font-weight: bold; margin: 0 0 0.5rem 0; }
.valid .verdict { color: #1b7f3b; }
.invalid .verdict { color: #b3261e; }
dl { display: grid; grid-template-columns: 15rem 1fr; gap: 0.35rem 1rem; margin: 0.5rem 0 0 0; }
dt { color: #444; }
dd { margin: 0; font-weight: bold; overflow-wrap: anywhere; }
textarea { width: 100%; box-sizing: border-box; min-height: 6rem; font-family: monospace; }
button { margin-top: 0.5rem; padding: 0.5rem 1.25rem; font-size: 1rem; background: #0b3d6e; color: #fff; border: 0; border-radius: 4px; }
.detail { font-family: monospace; font-size: 0.85rem; color: #555; overflow-wrap: anywhere; }
.hi { display: block; }
"#;

/// Renders the whole page.
pub fn render(outcome: &Outcome<'_>, echoed_text: &str) -> String {
    let result = match outcome {
        Outcome::Blank => String::new(),
        Outcome::Checked(Verification::Valid { record, key_id, issuer, issued_at }) => {
            let rows = [
                row("Beneficiary Name", "लाभार्थी का नाम", &record.beneficiary_name),
                row("Year of Birth", "जन्म का वर्ष", &record.year_of_birth.to_string()),
                row("Gender", "लिंग", gender_name(record.gender)),
                row("ID Verified", "सत्यापित पहचान पत्र", &format!("{} {}", photo_id_name(record.photo_id_type), record.photo_id_masked)),
                row("Vaccine", "टीका", &format!("{} ({})", record.vaccine, record.manufacturer)),
                row("Dose", "खुराक", &format!("{} of {}", record.dose_number, record.total_doses)),
                row("Date of Dose", "खुराक की तारीख", &record.vaccination_date.format("%d %b %Y").to_string()),
                row("Vaccinated at", "टीकाकरण केंद्र", &format!("{}, {}, {}", record.centre_name, record.district, record.state)),
                row("Certificate ID", "प्रमाणपत्र आईडी", &record.certificate_id.to_string()),
                row("Signing Key ID", "हस्ताक्षर कुंजी आईडी", &key_id.to_hex()),
                row("Issued", "जारी", &format!("{} by {issuer}", issued_at.format("%Y-%m-%d %H:%M:%S UTC"))),
            ]
            .concat();
            format!(
                r#"<section id="result" class="valid" data-status="valid">
<p class="verdict">VALID / <span lang="hi">मान्य</span></p>
<p>The certificate is genuine and in force. Check the name and year of birth against the holder's photo ID.
<span class="hi" lang="hi">प्रमाणपत्र असली और मान्य है। धारक के फ़ोटो पहचान पत्र से नाम और जन्म का वर्ष मिलाएँ।</span></p>
<dl>
{rows}</dl>
</section>"#
            )
        }
        Outcome::Checked(Verification::Invalid { reason }) => invalid_section(reason.code(), invalid_reason_text(reason), &reason.to_string()),
        Outcome::Unreadable(error) => invalid_section(error.code(), read_error_text(error), &error.to_string()),
        Outcome::Failed => invalid_section(
            "server_error",
            Label {
                en: "The server failed while checking. Try again in a minute.",
                hi: "जाँच के दौरान सर्वर विफल हुआ। एक मिनट बाद फिर कोशिश करें।",
            },
            "",
        ),
    };

    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Verify a vaccination certificate / टीकाकरण प्रमाणपत्र सत्यापित करें</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<h1>Verify a vaccination certificate <span class="hi" lang="hi">टीकाकरण प्रमाणपत्र सत्यापित करें</span></h1>
<p class="lead">Paste the text of the certificate's QR code, or upload a photo or screenshot of the QR code, or the certificate PDF.
<span class="hi" lang="hi">प्रमाणपत्र के क्यूआर कोड का पाठ चिपकाएँ, या क्यूआर कोड की फ़ोटो या स्क्रीनशॉट, या प्रमाणपत्र की पीडीएफ़ अपलोड करें।</span></p>
{result}
<section>
<h2>QR text / <span lang="hi">क्यूआर पाठ</span></h2>
<form method="post" action="/verify" enctype="multipart/form-data">
<textarea id="qr_text" name="qr_text" placeholder="VXL1:..." spellcheck="false">{echoed}</textarea>
<button type="submit" id="verify_text">Verify / <span lang="hi">सत्यापित करें</span></button>
</form>
</section>
<section>
<h2>Photo, screenshot or PDF / <span lang="hi">फ़ोटो, स्क्रीनशॉट या पीडीएफ़</span></h2>
<form method="post" action="/verify" enctype="multipart/form-data">
<input type="file" id="file" name="file" accept=".pdf,.png,.jpg,.jpeg,application/pdf,image/png,image/jpeg">
<p class="detail">PDF, PNG or JPEG, at most 5 MiB / <span lang="hi">PDF, PNG या JPEG, अधिकतम 5 MiB</span></p>
<button type="submit" id="verify_file">Verify / <span lang="hi">सत्यापित करें</span></button>
</form>
</section>
</main>
</body>
</html>
"#,
        echoed = escape(echoed_text),
    )
}

/// Renders the result section of a failed check.
fn invalid_section(code: &str, text: Label, detail: &str) -> String {
    format!(
        r#"<section id="result" class="invalid" data-status="invalid" data-reason="{code}">
<p class="verdict">INVALID / <span lang="hi">अमान्य</span></p>
<p>{en}<span class="hi" lang="hi">{hi}</span></p>
<p class="detail">{code}: {detail}</p>
</section>"#,
        code = escape(code),
        en = escape(text.en),
        hi = escape(text.hi),
        detail = escape(detail),
    )
}

/// Renders one term of the details list with a bilingual label and an escaped value.
fn row(en: &str, hi: &str, value: &str) -> String {
    format!("<dt>{en} / <span lang=\"hi\">{hi}</span></dt><dd>{}</dd>\n", escape(value))
}

/// Returns the reason code shown for an outcome, for logs.
pub fn outcome_code(outcome: &Outcome<'_>) -> &'static str {
    match outcome {
        Outcome::Blank => "blank",
        Outcome::Checked(Verification::Valid { .. }) => "valid",
        Outcome::Checked(Verification::Invalid { reason }) => reason.code(),
        Outcome::Unreadable(error) => error.code(),
        Outcome::Failed => "server_error",
    }
}

