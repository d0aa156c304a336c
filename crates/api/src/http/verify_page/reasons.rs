//! Plain-language reasons, in English and Hindi, for every way a check on the verify page can
//! fail: the file could not be read, or the certificate is invalid.

use documents::labels::Label;
use documents::ReadError;
use signer::verify::{InvalidReason, Malformed};

const fn text(en: &'static str, hi: &'static str) -> Label {
    Label { en, hi }
}

/// Returns the explanation of an invalid certificate.
pub fn invalid_reason_text(reason: &InvalidReason) -> Label {
    match reason {
        InvalidReason::Malformed { detail } => malformed_text(detail),
        InvalidReason::UnknownKey { .. } => text(
            "The certificate was signed with a key that is not in this service's trust list.",
            "प्रमाणपत्र पर ऐसी कुंजी से हस्ताक्षर हैं जो इस सेवा की ट्रस्ट सूची में नहीं है।",
        ),
        InvalidReason::BadSignature => text(
            "The signature does not match: the certificate was altered or forged.",
            "हस्ताक्षर मेल नहीं खाते: प्रमाणपत्र बदला गया है या जाली है।",
        ),
        InvalidReason::RevokedCertificate { .. } => text(
            "The issuer revoked this certificate.",
            "जारीकर्ता ने यह प्रमाणपत्र रद्द कर दिया है।",
        ),
        InvalidReason::RevokedKey { .. } => text(
            "The key that signed this certificate was revoked, so the certificate is withdrawn.",
            "इस प्रमाणपत्र पर हस्ताक्षर करने वाली कुंजी रद्द कर दी गई है, इसलिए प्रमाणपत्र वापस ले लिया गया है।",
        ),
        InvalidReason::NotYetValid { .. } => text(
            "The certificate is not valid yet: its issue time is in the future or before its signing key became valid.",
            "प्रमाणपत्र अभी मान्य नहीं है: इसके जारी होने का समय भविष्य में है या हस्ताक्षर कुंजी के मान्य होने से पहले का है।",
        ),
        InvalidReason::KeyExpired { .. } => text(
            "The certificate was signed after its signing key had stopped being valid.",
            "प्रमाणपत्र पर उसकी हस्ताक्षर कुंजी की वैधता समाप्त होने के बाद हस्ताक्षर किए गए।",
        ),
    }
}

/// Returns the explanation of a malformed certificate, by the layer that failed.
fn malformed_text(detail: &Malformed) -> Label {
    match detail {
        Malformed::WrongPrefix { .. } => text(
            "This QR code is not a vaxledger certificate: its text does not start with VXL1:.",
            "यह क्यूआर कोड vaxledger प्रमाणपत्र नहीं है: इसका पाठ VXL1: से शुरू नहीं होता।",
        ),
        Malformed::TooLong { .. } => text(
            "The text is longer than any QR code can hold.",
            "यह पाठ किसी भी क्यूआर कोड की क्षमता से लंबा है।",
        ),
        Malformed::BadBase45 { .. } => text(
            "The QR text is damaged or incomplete.",
            "क्यूआर पाठ क्षतिग्रस्त या अधूरा है।",
        ),
        Malformed::BadZlib { .. } => text(
            "The QR data is damaged: its compressed contents cannot be unpacked.",
            "क्यूआर डेटा क्षतिग्रस्त है: इसकी संपीड़ित सामग्री खोली नहीं जा सकती।",
        ),
        Malformed::TooLarge { .. } => text(
            "The QR data unpacks to more than any certificate holds.",
            "क्यूआर डेटा खुलने पर किसी भी प्रमाणपत्र से बड़ा हो जाता है।",
        ),
        Malformed::NotCoseSign1 { .. } => text(
            "The QR data is not a signed certificate.",
            "क्यूआर डेटा हस्ताक्षरित प्रमाणपत्र नहीं है।",
        ),
        Malformed::UnsupportedAlgorithm { .. } => text(
            "The certificate uses a signature algorithm that this service does not accept.",
            "प्रमाणपत्र में ऐसा हस्ताक्षर एल्गोरिद्म है जिसे यह सेवा स्वीकार नहीं करती।",
        ),
        Malformed::BadKeyId { .. } => text(
            "The certificate does not identify its signing key correctly.",
            "प्रमाणपत्र अपनी हस्ताक्षर कुंजी की सही पहचान नहीं देता।",
        ),
        Malformed::BadClaims { .. } => text(
            "The signed contents of the certificate are incomplete or invalid.",
            "प्रमाणपत्र की हस्ताक्षरित सामग्री अधूरी या अमान्य है।",
        ),
    }
}

/// Returns the explanation of a file from which no QR text could be read.
pub fn read_error_text(error: &ReadError) -> Label {
    match error.code() {
        "empty" => text(
            "Nothing to check: paste the QR text or choose a file.",
            "जाँचने के लिए कुछ नहीं मिला: क्यूआर पाठ चिपकाएँ या फ़ाइल चुनें।",
        ),
        "too_large" => text(
            "The file is larger than 5 MiB. Upload the certificate PDF or a smaller photo.",
            "फ़ाइल 5 MiB से बड़ी है। प्रमाणपत्र की पीडीएफ़ या छोटी फ़ोटो अपलोड करें।",
        ),
        "unsupported_type" => text(
            "The file is not a PDF, PNG or JPEG file.",
            "फ़ाइल PDF, PNG या JPEG नहीं है।",
        ),
        "no_qr_code" => text(
            "No QR code was found in the image. Take a sharp photo with the whole QR code in view.",
            "छवि में कोई क्यूआर कोड नहीं मिला। पूरे क्यूआर कोड की साफ़ फ़ोटो लें।",
        ),
        "qr_unreadable" => text(
            "A QR code was found but could not be read. Take a sharper photo.",
            "क्यूआर कोड मिला, पर पढ़ा नहीं जा सका। और साफ़ फ़ोटो लें।",
        ),
        "image_too_large" => text(
            "The image has too many pixels. Upload a smaller photo.",
            "छवि में बहुत अधिक पिक्सेल हैं। छोटी फ़ोटो अपलोड करें।",
        ),
        "image_unreadable" => text(
            "The image could not be opened. Upload a PNG or JPEG file.",
            "छवि खोली नहीं जा सकी। PNG या JPEG फ़ाइल अपलोड करें।",
        ),
        "pdf_unreadable" => text(
            "The PDF could not be read.",
            "पीडीएफ़ पढ़ी नहीं जा सकी।",
        ),
        _ => text(
            "This PDF is not a vaxledger certificate. Upload the PDF downloaded from this service.",
            "यह पीडीएफ़ vaxledger प्रमाणपत्र नहीं है। इसी सेवा से डाउनलोड की गई पीडीएफ़ अपलोड करें।",
        ),
    }
}

#[cfg(test)]
mod tests {
    use domain::ids::CertificateId;
    use signer::KeyId;
    use uuid::Uuid;

    use super::*;

    fn all_invalid_reasons() -> Vec<InvalidReason> {
        let key_id = KeyId::from_slice(&[0; 8]).unwrap();
        let malformed = [
            Malformed::WrongPrefix { found: "HC1:".into() },
            Malformed::TooLong { length: 1, max: 0 },
            Malformed::BadBase45 { detail: String::new() },
            Malformed::BadZlib { detail: String::new() },
            Malformed::TooLarge { max: 0 },
            Malformed::NotCoseSign1 { detail: String::new() },
            Malformed::UnsupportedAlgorithm { found: String::new() },
            Malformed::BadKeyId { detail: String::new() },
            Malformed::BadClaims { detail: String::new() },
        ];
        let mut reasons: Vec<InvalidReason> = malformed.into_iter().map(InvalidReason::from).collect();
        reasons.extend([
            InvalidReason::UnknownKey { key_id },
            InvalidReason::BadSignature,
            InvalidReason::RevokedCertificate { certificate_id: CertificateId::new(Uuid::nil()) },
            InvalidReason::RevokedKey { key_id },
            InvalidReason::NotYetValid { detail: String::new() },
            InvalidReason::KeyExpired { detail: String::new() },
        ]);
        reasons
    }

    fn is_devanagari(text: &str) -> bool {
        text.chars().any(|c| ('\u{0900}'..='\u{097f}').contains(&c))
    }

    #[test]
    fn invalid_reasons_are_bilingual_and_distinct() {
        let texts: Vec<Label> = all_invalid_reasons().iter().map(invalid_reason_text).collect();
        for label in &texts {
            assert!(!label.en.is_empty());
            assert!(is_devanagari(label.hi), "{}", label.hi);
        }
        let mut english: Vec<&str> = texts.iter().map(|label| label.en).collect();
        english.sort_unstable();
        english.dedup();
        assert_eq!(english.len(), texts.len(), "each reason has its own text");
    }

    #[test]
    fn read_errors_are_bilingual_and_distinct() {
        use documents::QrImageError;
        let errors = [
            ReadError::Empty,
            ReadError::TooLarge { size: 2, max: 1 },
            ReadError::UnsupportedType,
            ReadError::Image(QrImageError::NoQrCode),
            ReadError::Image(QrImageError::QrUnreadable(String::new())),
            ReadError::Image(QrImageError::ImageTooLarge(String::new())),
            ReadError::Image(QrImageError::ImageUnreadable(String::new())),
            ReadError::PdfUnreadable { detail: String::new() },
            ReadError::PdfWithoutCertificate,
        ];
        let texts: Vec<Label> = errors.iter().map(read_error_text).collect();
        for label in &texts {
            assert!(is_devanagari(label.hi), "{}", label.hi);
        }
        let mut english: Vec<&str> = texts.iter().map(|label| label.en).collect();
        english.sort_unstable();
        english.dedup();
        assert_eq!(english.len(), errors.len(), "each read error has its own text");
    }
}
