//! QR code images: encoding certificate text for print, and decoding a photo or screenshot.
//!
//! Encoding uses the QR alphanumeric mode, which stores 5.5 bits per character instead of 8 in
//! byte mode, and base45 text uses only that mode's 45 characters. Error correction level Q restores
//! up to about 25% of damaged codewords, which covers creases and smudges on printed paper.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{GrayImage, ImageFormat, ImageReader, Limits, Luma};
use qrcode::bits::Bits;
use qrcode::{Color, EcLevel, QrCode, Version};

/// The 45 characters of the QR alphanumeric mode.
pub const ALPHANUMERIC_CHARSET: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

/// Pixels per QR module in generated PNGs. The PDF scales the image, so this only needs to keep
/// module edges sharp when a viewer interpolates.
const PIXELS_PER_MODULE: u32 = 10;

/// Light modules around the code, as the standard requires for reliable scanning.
pub const QUIET_ZONE_MODULES: u32 = 4;

/// Largest width or height of an image accepted for decoding. A 12-megapixel phone photo is
/// 4032 x 3024.
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// Largest memory the image decoder may allocate, in bytes.
const MAX_DECODE_ALLOC: u64 = 256 * 1024 * 1024;

/// Maximum length of the longer side of an image during QR detection. Larger photos are reduced
/// to it, which bounds detection time. A certificate QR of 85 modules still has over 20 pixels per module at this size when
/// it fills the frame.
const DETECTION_MAX_SIDE: u32 = 2000;

/// Maximum length of the longer side of an image enlarged for another detection attempt.
const ENLARGED_MAX_SIDE: u32 = 4000;

/// Enlargements tried, in order, after the image at its own size yields no code, and whether
/// each is also reduced to black and white. rqrr 0.11 misses some codes of four pixels per module
/// or fewer, depending on how module edges fall on the pixel grid. A certificate page scanned at
/// 100 dpi has under three. On generated codes at 2 to 4 pixels per module, one of these
/// attempts found every code.
const ENLARGEMENTS: [(u32, bool); 4] = [(2, false), (2, true), (3, false), (4, false)];

/// Failures of QR encoding and decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrImageError {
    /// The text has a character outside the alphanumeric mode.
    #[error("QR text contains {character:?}, which the QR alphanumeric mode cannot encode")]
    NotAlphanumeric {
        /// First character that cannot be encoded.
        character: char,
    },
    /// The text does not fit the largest QR version at level Q.
    #[error("QR text of {length} characters does not fit a version 40 QR code at level Q")]
    TooLong {
        /// Length of the text.
        length: usize,
    },
    /// Encoding the PNG failed.
    #[error("encoding the QR image failed: {0}")]
    Encode(String),
    /// The bytes are not a PNG or JPEG image that can be decoded.
    #[error("the image could not be read: {0}")]
    ImageUnreadable(String),
    /// The image is larger than [`MAX_IMAGE_SIDE`] or the decoder memory limit.
    #[error("the image is too large: {0}")]
    ImageTooLarge(String),
    /// No QR code was found in the image.
    #[error("no QR code was found in the image")]
    NoQrCode,
    /// A QR code was found but could not be decoded.
    #[error("a QR code was found but could not be read: {0}")]
    QrUnreadable(String),
}

/// Encodes text as a QR code in alphanumeric mode at error correction level Q, choosing the
/// smallest version that fits.
pub fn qr_code(text: &str) -> Result<QrCode, QrImageError> {
    if let Some(character) = text.chars().find(|c| !ALPHANUMERIC_CHARSET.contains(*c)) {
        return Err(QrImageError::NotAlphanumeric { character });
    }

    for version in 1..=40 {
        let mut bits = Bits::new(Version::Normal(version));
        if bits.push_alphanumeric_data(text.as_bytes()).is_err() {
            continue;
        }
        if bits.push_terminator(EcLevel::Q).is_err() {
            continue;
        }
        return QrCode::with_bits(bits, EcLevel::Q).map_err(|err| QrImageError::Encode(err.to_string()));
    }
    Err(QrImageError::TooLong { length: text.len() })
}

/// Returns the QR code's side in modules, including the quiet zone on both sides.
pub fn side_in_modules(code: &QrCode) -> u32 {
    u32::try_from(code.width()).unwrap_or(u32::MAX).saturating_add(2 * QUIET_ZONE_MODULES)
}

/// Renders the QR code of `text` as a black-on-white greyscale PNG with its quiet zone.
pub fn qr_png(text: &str) -> Result<Vec<u8>, QrImageError> {
    let code = qr_code(text)?;
    let width = code.width();
    let colors = code.to_colors();
    let side = side_in_modules(&code) * PIXELS_PER_MODULE;

    let image = GrayImage::from_fn(side, side, |x, y| {
        let column = (x / PIXELS_PER_MODULE).checked_sub(QUIET_ZONE_MODULES);
        let row = (y / PIXELS_PER_MODULE).checked_sub(QUIET_ZONE_MODULES);
        let dark = match (column, row) {
            (Some(column), Some(row)) if (column as usize) < width && (row as usize) < width => {
                colors[row as usize * width + column as usize] == Color::Dark
            }
            _ => false,
        };
        Luma([if dark { 0 } else { 255 }])
    });

    let mut png = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|err| QrImageError::Encode(err.to_string()))?;
    Ok(png)
}

/// Decodes the first QR code found in a PNG or JPEG image and returns its text.
///
/// When the image contains several codes, one whose text starts with `VXL1:` is preferred. When no
/// code is found, the image is tried again enlarged (see [`ENLARGEMENTS`]). Input is untrusted: the decoder's memory is capped, and a panic inside the QR detector is caught
/// and reported as [`QrImageError::QrUnreadable`].
pub fn decode_qr_image(bytes: &[u8]) -> Result<String, QrImageError> {
    let luma = shrink_for_detection(decode_luma(bytes)?);
    let longer = luma.width().max(luma.height());

    let mut outcome = guarded_detect(luma.clone());
    for (factor, black_and_white) in ENLARGEMENTS {
        if outcome != Err(QrImageError::NoQrCode) || longer.saturating_mul(factor) > ENLARGED_MAX_SIDE {
            break;
        }
        let mut enlarged = image::imageops::resize(
            &luma,
            luma.width() * factor,
            luma.height() * factor,
            image::imageops::FilterType::CatmullRom,
        );
        if black_and_white {
            for pixel in enlarged.pixels_mut() {
                pixel.0[0] = if pixel.0[0] < 128 { 0 } else { 255 };
            }
        }
        outcome = guarded_detect(enlarged);
    }
    outcome
}

/// Runs [`detect_and_decode`], turning a panic inside the third-party detector into an error.
fn guarded_detect(luma: GrayImage) -> Result<String, QrImageError> {
    match catch_unwind(AssertUnwindSafe(|| detect_and_decode(luma))) {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("QR detector panicked on an uploaded image");
            Err(QrImageError::QrUnreadable("the QR detector failed on this image".to_owned()))
        }
    }
}

/// Decodes PNG or JPEG bytes to greyscale under the size limits.
fn decode_luma(bytes: &[u8]) -> Result<GrayImage, QrImageError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|err| QrImageError::ImageUnreadable(err.to_string()))?;
    if !matches!(reader.format(), Some(ImageFormat::Png | ImageFormat::Jpeg)) {
        return Err(QrImageError::ImageUnreadable("only PNG and JPEG images are supported".to_owned()));
    }

    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);

    let image = reader.decode().map_err(|err| match err {
        image::ImageError::Limits(limit) => QrImageError::ImageTooLarge(format!(
            "{limit}; the maximum is {MAX_IMAGE_SIDE} x {MAX_IMAGE_SIDE} pixels"
        )),
        other => QrImageError::ImageUnreadable(other.to_string()),
    })?;
    Ok(image.to_luma8())
}

/// Reduces an image whose longer side exceeds [`DETECTION_MAX_SIDE`].
fn shrink_for_detection(luma: GrayImage) -> GrayImage {
    let longer = luma.width().max(luma.height());
    if longer <= DETECTION_MAX_SIDE {
        return luma;
    }
    let scale = f64::from(DETECTION_MAX_SIDE) / f64::from(longer);
    let width = ((f64::from(luma.width()) * scale) as u32).max(1);
    let height = ((f64::from(luma.height()) * scale) as u32).max(1);
    image::imageops::resize(&luma, width, height, image::imageops::FilterType::Triangle)
}

/// Runs the rqrr detector and decodes the grids it finds.
fn detect_and_decode(luma: GrayImage) -> Result<String, QrImageError> {
    let mut prepared = rqrr::PreparedImage::prepare(luma);
    let grids = prepared.detect_grids();
    if grids.is_empty() {
        return Err(QrImageError::NoQrCode);
    }

    let mut first_text = None;
    let mut last_error = None;
    for grid in grids {
        match grid.decode() {
            Ok((_, text)) if text.trim_start().starts_with(signer::QR_PREFIX) => return Ok(text),
            Ok((_, text)) => {
                first_text.get_or_insert(text);
            }
            Err(err) => last_error = Some(err.to_string()),
        }
    }
    match (first_text, last_error) {
        (Some(text), _) => Ok(text),
        (None, Some(err)) => Err(QrImageError::QrUnreadable(err)),
        (None, None) => Err(QrImageError::NoQrCode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "VXL1:6BFOXN*TS0BI$ZD.P9UPBWK9%1";

    #[test]
    fn qr_code_uses_alphanumeric_mode_at_level_q() {
        // Version 2 at level Q stores 29 alphanumeric characters but only 20 bytes in byte mode,
        // and version 1-Q stores 16 alphanumeric characters.
        let fits_version_2 = "VXL1:6BFOXN*TS0BI$ZD.P9UPBWK9";
        assert_eq!(fits_version_2.len(), 29);
        let code = qr_code(fits_version_2).unwrap();
        assert_eq!(code.error_correction_level(), EcLevel::Q);
        assert_eq!(code.version(), Version::Normal(2));

        let needs_version_3 = format!("{fits_version_2}0");
        assert_eq!(qr_code(&needs_version_3).unwrap().version(), Version::Normal(3));
    }

    #[test]
    fn qr_code_rejects_lowercase() {
        assert_eq!(
            qr_code("VXL1:abc").err(),
            Some(QrImageError::NotAlphanumeric { character: 'a' })
        );
    }

    #[test]
    fn qr_code_rejects_overlong_text() {
        let text = "A".repeat(5000);
        assert_eq!(qr_code(&text).err(), Some(QrImageError::TooLong { length: 5000 }));
    }

    #[test]
    fn qr_png_round_trip() {
        let png = qr_png(SAMPLE).unwrap();
        assert_eq!(decode_qr_image(&png).unwrap(), SAMPLE);
    }

    #[test]
    fn decode_small_modules_after_enlarging() {
        // 2.7, 3.0 and 3.5 pixels per module: rqrr finds none of them at their own size.
        let text = format!("VXL1:{}", "6BF-OX.N*TS0BI$ZD.P9UPBWK9%1 ".repeat(24));
        let full = image::load_from_memory(&qr_png(&text).unwrap()).unwrap().to_luma8();
        for percent in [27, 30, 35] {
            let side = full.width() * percent / 100;
            let small = image::imageops::resize(&full, side, side, image::imageops::FilterType::Triangle);
            let mut bytes = Vec::new();
            small.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();

            assert_eq!(decode_qr_image(&bytes).ok(), Some(text.clone()), "{percent}% of 10 pixels per module");
        }
    }

    #[test]
    fn decode_blank_image_finds_no_code() {
        let blank = GrayImage::from_pixel(200, 200, Luma([255]));
        let mut png = Vec::new();
        blank.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        assert_eq!(decode_qr_image(&png).unwrap_err(), QrImageError::NoQrCode);
    }

    #[test]
    fn decode_truncated_png_is_unreadable() {
        let png = qr_png(SAMPLE).unwrap();
        let error = decode_qr_image(&png[..png.len() / 2]).unwrap_err();
        assert!(matches!(error, QrImageError::ImageUnreadable(_)), "{error:?}");
    }

    #[test]
    fn decode_rejects_oversized_dimensions() {
        // A valid PNG header that declares 60000 x 60000 pixels: rejected before allocation.
        let mut png = Vec::new();
        GrayImage::from_pixel(1, 1, Luma([0])).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        png[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&60_000u32.to_be_bytes());
        let error = decode_qr_image(&png).unwrap_err();
        assert!(
            matches!(error, QrImageError::ImageTooLarge(_) | QrImageError::ImageUnreadable(_)),
            "{error:?}"
        );
    }

    #[test]
    fn decode_rejects_other_formats() {
        let error = decode_qr_image(b"GIF89a not really").unwrap_err();
        assert!(matches!(error, QrImageError::ImageUnreadable(_)), "{error:?}");
    }
}
