//! QR text: `VXL1:` followed by base45 (RFC 9285) of the zlib-compressed COSE bytes.
//!
//! Base45 uses only characters of the QR alphanumeric mode, so the text fits a smaller QR code
//! than base64 would.

use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;

use crate::verify::Malformed;

/// Prefix of the QR text; the digit is the format version.
pub const QR_PREFIX: &str = "VXL1:";

/// Maximum length in bytes of a QR text accepted for decoding. A version 40 QR code stores at
/// most 4,296 alphanumeric characters (ISO/IEC 18004), so a longer text cannot come from a scan.
pub const MAX_QR_TEXT_LEN: usize = 16 * 1024;

/// Maximum size of the decompressed COSE bytes; a larger output (a zlib bomb) is rejected
/// without being inflated further. A real certificate is under 1 KiB.
pub const MAX_COSE_LEN: usize = 64 * 1024;

/// Encodes COSE bytes as QR text.
pub fn encode_qr(cose: &[u8]) -> String {
    let mut encoder = ZlibEncoder::new(Vec::with_capacity(cose.len()), Compression::best());
    // Writes to a Vec cannot fail, so the empty default is unreachable.
    let compressed = encoder
        .write_all(cose)
        .and_then(|()| encoder.finish())
        .unwrap_or_default();
    format!("{QR_PREFIX}{}", base45::encode(compressed))
}

/// Decodes QR text to COSE bytes. Surrounding whitespace is ignored.
pub fn decode_qr(text: &str) -> Result<Vec<u8>, Malformed> {
    let text = text.trim();
    if text.len() > MAX_QR_TEXT_LEN {
        return Err(Malformed::TooLong {
            length: text.len(),
            max: MAX_QR_TEXT_LEN,
        });
    }

    let Some(body) = text.strip_prefix(QR_PREFIX) else {
        let found_prefix: String = text.chars().take(8).collect();
        return Err(Malformed::WrongPrefix {
            found: found_prefix,
        });
    };

    let compressed = base45::decode(body).map_err(|err| Malformed::BadBase45 {
        detail: err.to_string(),
    })?;

    inflate_capped(&compressed)
}

/// Inflates zlib data, reading at most one byte past [`MAX_COSE_LEN`] so that the size check
/// costs no more than that.
fn inflate_capped(compressed: &[u8]) -> Result<Vec<u8>, Malformed> {
    let mut output = Vec::new();
    let limit = u64::try_from(MAX_COSE_LEN)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    ZlibDecoder::new(compressed)
        .take(limit)
        .read_to_end(&mut output)
        .map_err(|err| Malformed::BadZlib {
            detail: err.to_string(),
        })?;

    if output.len() > MAX_COSE_LEN {
        return Err(Malformed::TooLarge { max: MAX_COSE_LEN });
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_round_trip_bytes() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = encode_qr(&bytes);
        assert!(text.starts_with(QR_PREFIX));
        assert_eq!(decode_qr(&text).unwrap(), bytes);
    }

    #[test]
    fn qr_text_uses_alphanumeric_mode_only() {
        let text = encode_qr(b"some certificate bytes");
        let alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
        assert!(text.chars().all(|c| alphabet.contains(c)), "{text}");
    }

    #[test]
    fn qr_decode_rejects_wrong_prefix() {
        let text = encode_qr(b"x").replacen("VXL1", "HC1", 1);
        assert!(matches!(
            decode_qr(&text),
            Err(Malformed::WrongPrefix { .. })
        ));
    }

    #[test]
    fn qr_decode_rejects_bad_base45() {
        assert!(matches!(
            decode_qr("VXL1:abc"),
            Err(Malformed::BadBase45 { .. })
        ));
        assert!(matches!(
            decode_qr("VXL1:GGW"),
            Err(Malformed::BadBase45 { .. })
        ));
    }

    #[test]
    fn qr_decode_rejects_non_zlib() {
        let text = format!("{QR_PREFIX}{}", base45::encode(b"not zlib at all"));
        assert!(matches!(decode_qr(&text), Err(Malformed::BadZlib { .. })));
    }

    #[test]
    fn qr_decode_rejects_zlib_bomb() {
        let zeros = vec![0u8; 10 * 1024 * 1024];
        let text = encode_qr(&zeros);
        assert!(
            text.len() < MAX_QR_TEXT_LEN,
            "bomb text is {} bytes",
            text.len()
        );
        assert!(matches!(decode_qr(&text), Err(Malformed::TooLarge { .. })));
    }

    #[test]
    fn qr_decode_accepts_exact_limit() {
        let bytes = vec![1u8; MAX_COSE_LEN];
        assert_eq!(decode_qr(&encode_qr(&bytes)).unwrap().len(), MAX_COSE_LEN);
    }

    #[test]
    fn qr_decode_rejects_overlong_text() {
        let text = format!("{QR_PREFIX}{}", "0".repeat(MAX_QR_TEXT_LEN));
        assert!(matches!(decode_qr(&text), Err(Malformed::TooLong { .. })));
    }
}
