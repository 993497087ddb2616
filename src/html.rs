//! The one HTML escaper, for the daemon's status and login pages and the HTML run and incident
//! reports (their inline SVG too).

/// `text` escaped for HTML (and SVG) element content and quoted attribute values: `&`, `<`,
/// `>`, `"` and `'`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue14_escapes_markup_in_content_and_both_attribute_quotes() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn issue14_leaves_other_text_alone_and_escapes_ampersands_once() {
        assert_eq!(escape("zone a · 50 % ✓"), "zone a · 50 % ✓");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }
}
