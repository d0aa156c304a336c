//! HTML escaping, for the PDF templates (which printpdf parses as XML) and for the verify page.

/// Escapes `&`, `<`, `>`, `"` and `'` so that text can go into element content or a quoted
/// attribute value. Control characters other than tab and newline are dropped, because XML 1.0
/// forbids them and a browser would show them as boxes.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            '\t' | '\n' => escaped.push(character),
            c if c.is_control() => {}
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_markup_characters() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn escape_keeps_devanagari() {
        assert_eq!(escape("लाभार्थी का नाम"), "लाभार्थी का नाम");
    }

    #[test]
    fn escape_drops_control_characters() {
        assert_eq!(escape("a\u{0}b\u{1b}c\td"), "abc\td");
    }
}
