//! Reading a certificate's QR text from the bytes of a file: a certificate PDF made by this
//! crate, a PNG or JPEG photo or screenshot of the QR code, or a text file with the QR text.
//!
//! The verify page and `vaxledger cert verify` both call [`read_qr_text`]; every failure is a
//! [`ReadError`] that names what was wrong with the file, and no input makes it panic.

use std::panic::{catch_unwind, AssertUnwindSafe};

use lopdf::Object;

use crate::qr_image::{decode_qr_image, QrImageError};
use crate::render::QR_TEXT_INFO_KEY;

/// Largest file accepted, in bytes. A certificate PDF is under 200 KiB, and a phone photo of a
/// QR code saved as JPEG is a few MiB.
pub const MAX_INPUT_BYTES: usize = 5 * 1024 * 1024;

/// Kind of a file, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Starts with `%PDF-`.
    Pdf,
    /// Starts with the PNG signature.
    Png,
    /// Starts with the JPEG start-of-image marker.
    Jpeg,
    /// Anything else that is UTF-8 text.
    Text,
}

impl InputKind {
    /// Returns the kind of `bytes`, or `None` for binary data of another format.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"%PDF-") {
            Some(InputKind::Pdf)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(InputKind::Png)
        } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(InputKind::Jpeg)
        } else if std::str::from_utf8(bytes).is_ok() {
            Some(InputKind::Text)
        } else {
            None
        }
    }

    /// Returns the name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            InputKind::Pdf => "PDF",
            InputKind::Png => "PNG",
            InputKind::Jpeg => "JPEG",
            InputKind::Text => "text",
        }
    }
}

/// A file from which no QR text could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The file is empty, or text with only whitespace.
    #[error("the file is empty")]
    Empty,
    /// The file exceeds [`MAX_INPUT_BYTES`].
    #[error("the file is {size} bytes, more than the maximum of {max} bytes")]
    TooLarge {
        /// Size of the file, or the bytes read before giving up.
        size: usize,
        /// Maximum accepted size.
        max: usize,
    },
    /// The file is neither PDF, PNG, JPEG nor UTF-8 text.
    #[error("the file is not a PDF, PNG or JPEG file, nor text")]
    UnsupportedType,
    /// The image could not be read or contains no readable QR code.
    #[error(transparent)]
    Image(#[from] QrImageError),
    /// The PDF could not be parsed.
    #[error("the PDF could not be read: {detail}")]
    PdfUnreadable {
        /// Parser error.
        detail: String,
    },
    /// The PDF parsed but has no certificate QR text in its document information.
    #[error("the PDF is not a vaxledger certificate: it has no {QR_TEXT_INFO_KEY} entry")]
    PdfWithoutCertificate,
}

impl ReadError {
    /// Returns the short machine-readable name, such as `no_qr_code`.
    pub fn code(&self) -> &'static str {
        match self {
            ReadError::Empty => "empty",
            ReadError::TooLarge { .. } => "too_large",
            ReadError::UnsupportedType => "unsupported_type",
            ReadError::Image(QrImageError::NoQrCode) => "no_qr_code",
            ReadError::Image(QrImageError::QrUnreadable(_)) => "qr_unreadable",
            ReadError::Image(QrImageError::ImageTooLarge(_)) => "image_too_large",
            ReadError::Image(_) => "image_unreadable",
            ReadError::PdfUnreadable { .. } => "pdf_unreadable",
            ReadError::PdfWithoutCertificate => "pdf_not_a_certificate",
        }
    }
}

/// Returns the QR text held by a file's bytes, trimmed of surrounding whitespace.
///
/// The text is not checked here: verification reports a wrong prefix or bad encoding with its
/// own reason.
pub fn read_qr_text(bytes: &[u8]) -> Result<String, ReadError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ReadError::TooLarge { size: bytes.len(), max: MAX_INPUT_BYTES });
    }
    if bytes.is_empty() {
        return Err(ReadError::Empty);
    }

    let kind = InputKind::sniff(bytes).ok_or(ReadError::UnsupportedType)?;
    let text = match kind {
        InputKind::Pdf => read_pdf(bytes)?,
        InputKind::Png | InputKind::Jpeg => decode_qr_image(bytes)?,
        InputKind::Text => String::from_utf8_lossy(bytes).into_owned(),
    };

    let text = text.trim();
    if text.is_empty() {
        return Err(ReadError::Empty);
    }
    Ok(text.to_owned())
}

/// Reads the QR text entry from a PDF's document information dictionary.
///
/// The PDF parser (lopdf) runs inside `catch_unwind`, because it is third-party code fed with
/// untrusted bytes.
fn read_pdf(bytes: &[u8]) -> Result<String, ReadError> {
    // NOTE: only the size is capped; parse time on a crafted 5 MiB PDF was not measured.
    let parsed = catch_unwind(AssertUnwindSafe(|| lopdf::Document::load_mem(bytes)));
    let document = match parsed {
        Ok(Ok(document)) => document,
        Ok(Err(err)) => return Err(ReadError::PdfUnreadable { detail: err.to_string() }),
        Err(_) => {
            tracing::warn!("PDF parser panicked on an uploaded file");
            return Err(ReadError::PdfUnreadable { detail: "the PDF parser failed on this file".to_owned() });
        }
    };

    let Ok(info) = document.trailer.get(b"Info") else {
        return Err(ReadError::PdfWithoutCertificate);
    };
    let info = match info {
        Object::Reference(id) => document.get_dictionary(*id).ok(),
        Object::Dictionary(dictionary) => Some(dictionary),
        _ => None,
    };
    let value = info
        .and_then(|dictionary| dictionary.get(QR_TEXT_INFO_KEY.as_bytes()).ok())
        .and_then(|value| value.as_str().ok())
        .ok_or(ReadError::PdfWithoutCertificate)?;

    String::from_utf8(value.to_vec()).map_err(|_| ReadError::PdfWithoutCertificate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_recognises_formats() {
        assert_eq!(InputKind::sniff(b"%PDF-1.7\n"), Some(InputKind::Pdf));
        assert_eq!(InputKind::sniff(b"\x89PNG\r\n\x1a\nrest"), Some(InputKind::Png));
        assert_eq!(InputKind::sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some(InputKind::Jpeg));
        assert_eq!(InputKind::sniff(b"VXL1:ABC"), Some(InputKind::Text));
        assert_eq!(InputKind::sniff(&[0xfe, 0xff, 0x00, 0x80]), None);
    }

    #[test]
    fn read_text_trims_whitespace() {
        assert_eq!(read_qr_text(b"  VXL1:ABC\n").unwrap(), "VXL1:ABC");
    }

    #[test]
    fn read_rejects_empty_and_blank() {
        assert_eq!(read_qr_text(b"").unwrap_err(), ReadError::Empty);
        assert_eq!(read_qr_text(b" \n\t").unwrap_err(), ReadError::Empty);
    }

    #[test]
    fn read_rejects_oversized_input() {
        let bytes = vec![b'A'; MAX_INPUT_BYTES + 1];
        assert_eq!(read_qr_text(&bytes).unwrap_err().code(), "too_large");
    }

    #[test]
    fn read_rejects_binary_data() {
        assert_eq!(read_qr_text(&[0x00, 0xff, 0xfe, 0x80]).unwrap_err(), ReadError::UnsupportedType);
    }

    #[test]
    fn read_rejects_garbage_pdf() {
        let error = read_qr_text(b"%PDF-1.7\nthis is not a PDF body").unwrap_err();
        assert_eq!(error.code(), "pdf_unreadable", "{error}");
    }

    #[test]
    fn read_png_with_qr_code() {
        let png = crate::qr_png("VXL1:ABC").unwrap();
        assert_eq!(read_qr_text(&png).unwrap(), "VXL1:ABC");
    }
}
