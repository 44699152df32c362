//! Text herd did not write (a worker's `STATUS=`, another process's answer), made safe to show
//! on a terminal or in a text log line.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character escaped: C0 (ESC, BEL, CR, LF, TAB, ...), DEL, C1 and
/// the Unicode bidirectional overrides. `\t`, `\n` and `\r` are written as such, the others
/// as `\x1b` or `\u{202e}`. Anything else, backslashes included, is left as it is.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `c` can move the cursor, change the terminal's state or reorder what is shown.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape("ok\x1b[2J\x1b]0;pwned\x07\r\n\tend\x7f\u{9b}"),
            "ok\\x1b[2J\\x1b]0;pwned\\x07\\r\\n\\tend\\x7f\\u{9b}"
        );
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
    }

    #[test]
    fn ordinary_text_is_borrowed_as_it_is() {
        let text = "serving 12 req/s, queue ünï \\ 日本";
        assert!(matches!(escape(text), Cow::Borrowed(t) if t == text));
    }
}
