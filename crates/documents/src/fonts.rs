//! Fonts embedded in the binary, so that a fresh machine renders the PDFs with nothing
//! installed.
//!
//! Noto Sans covers the Latin labels and values; Noto Sans Devanagari covers Hindi but has no
//! Latin letters, so the templates put Hindi text in spans of its own family. All four files
//! come from Debian's `fonts-noto-core` package and are licensed under the SIL Open Font
//! License 1.1 (`assets/fonts/OFL.txt`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use printpdf::html::rust_fontconfig::{FcFontCache, FcParseFontBytes};
use printpdf::html::SharedFontPool;
use printpdf::Base64OrRaw;

/// Noto Sans Regular (Latin, digits, punctuation).
pub const NOTO_SANS_REGULAR: &[u8] = include_bytes!("../../../assets/fonts/NotoSans-Regular.ttf");
/// Noto Sans Bold.
pub const NOTO_SANS_BOLD: &[u8] = include_bytes!("../../../assets/fonts/NotoSans-Bold.ttf");
/// Noto Sans Devanagari Regular (Hindi).
pub const NOTO_DEVANAGARI_REGULAR: &[u8] =
    include_bytes!("../../../assets/fonts/NotoSansDevanagari-Regular.ttf");
/// Noto Sans Devanagari Bold.
pub const NOTO_DEVANAGARI_BOLD: &[u8] =
    include_bytes!("../../../assets/fonts/NotoSansDevanagari-Bold.ttf");

/// CSS family names the templates use, each mapped to its font file.
pub const FAMILIES: [(&str, &[u8]); 4] = [
    ("VxlSans", NOTO_SANS_REGULAR),
    ("VxlSansBold", NOTO_SANS_BOLD),
    ("VxlDeva", NOTO_DEVANAGARI_REGULAR),
    ("VxlDevaBold", NOTO_DEVANAGARI_BOLD),
];

/// Returns the font map that `PdfDocument::from_html` takes, built once.
pub(crate) fn font_map() -> &'static BTreeMap<String, Base64OrRaw> {
    static MAP: OnceLock<BTreeMap<String, Base64OrRaw>> = OnceLock::new();
    MAP.get_or_init(|| {
        FAMILIES
            .iter()
            .map(|(name, bytes)| ((*name).to_owned(), Base64OrRaw::Raw(bytes.to_vec())))
            .collect()
    })
}

/// Returns a font pool holding only the embedded fonts, built once and shared by every render.
///
/// Without a pool, printpdf 0.12.8 scans every system font directory on each render, which is
/// slow and would let an installed font stand in for a missing embedded one.
pub(crate) fn font_pool() -> SharedFontPool {
    static POOL: OnceLock<SharedFontPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let cache = FcFontCache::default();
        for (name, bytes) in FAMILIES {
            if let Some(parsed) = FcParseFontBytes(bytes, name) {
                cache.with_memory_fonts(parsed);
            } else {
                tracing::error!(font = name, "embedded font could not be parsed");
            }
        }
        SharedFontPool {
            fc_cache: Arc::new(cache),
            parsed_fonts: Arc::new(Mutex::new(HashMap::new())),
        }
    })
    .clone()
}
