//! Citizen documents: the vaccination certificate and the appointment acknowledgement slip as
//! A4 PDFs with bilingual English and Hindi labels, and reading a certificate's QR text back from
//! a PDF, a photo or a screenshot.
//!
//! - [`certificate_pdf`]: [`render_certificate_pdf`], with the QR code and the QR text in the
//!   PDF's document information dictionary.
//! - [`slip_pdf`]: [`render_slip_pdf`], with the security code.
//! - [`qr_image`]: QR encoding (alphanumeric mode, error correction level Q) and decoding from
//!   PNG or JPEG.
//! - [`read`]: [`read_qr_text`], which takes the bytes of an uploaded or given file.
//! - [`fonts`]: the embedded Noto Sans and Noto Sans Devanagari fonts.
//!
//! This crate does no I/O beyond the bytes it is given and has no HTTP code. The server and
//! `vaxledger cert verify` both use it.

pub mod certificate_pdf;
pub mod fonts;
pub mod html;
pub mod labels;
pub mod qr_image;
pub mod read;
mod render;
pub mod slip_pdf;

pub use certificate_pdf::{render_certificate_pdf, CertificateDocument};
pub use qr_image::{decode_qr_image, qr_png, QrImageError};
pub use read::{read_qr_text, InputKind, ReadError, MAX_INPUT_BYTES};
pub use render::{DocumentError, QR_TEXT_INFO_KEY};
pub use slip_pdf::{render_slip_pdf, SlipDocument};
