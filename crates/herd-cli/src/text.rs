//! Text herd did not write (a worker's `STATUS=`, another process's answer), made safe to show
//! on a terminal or in a text log line; and the one noun herd's own lines count ([`workers`]).

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

/// Whether `c` can move the cursor, change the terminal's state, reorder what is shown or hide
/// text: the C0 and C1 controls and DEL (`is_control`), the line and paragraph separators, the
/// bidirectional marks, embeddings, overrides and isolates, the invisible format characters
/// (zero-width space, word joiner, invisible operators, the deprecated shaping controls, the
/// byte order mark) and the interlinear annotation marks. The zero-width (non-)joiners stay:
/// scripts and emoji need them, and they move nothing.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'                     // ARABIC LETTER MARK
            | '\u{180e}'                   // MONGOLIAN VOWEL SEPARATOR
            | '\u{200b}' | '\u{200e}' | '\u{200f}' // zero-width space, LRM, RLM
            | '\u{2028}'..='\u{202e}'      // line/paragraph separators, LRE..RLO
            | '\u{2060}'..='\u{2064}'      // word joiner, invisible operators
            | '\u{2066}'..='\u{206f}'      // isolates LRI..PDI, deprecated format controls
            | '\u{feff}'                   // zero-width no-break space (BOM)
            | '\u{fff9}'..='\u{fffb}' // interlinear annotation
        )
}

/// `worker` or `workers`, as `n` takes: "scaled from 2 to 1 worker".
pub fn workers(n: usize) -> &'static str {
    match n {
        1 => "worker",
        _ => "workers",
    }
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
        assert_eq!(
            escape("a\u{2028}b\u{2029}c\u{85}d"),
            "a\\u{2028}b\\u{2029}c\\u{85}d"
        );
        for c in [
            '\u{61c}', '\u{200b}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}',
            '\u{202d}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{206a}', '\u{206f}',
            '\u{feff}', '\u{fff9}', '\u{fffb}',
        ] {
            assert_eq!(
                escape(&c.to_string()),
                format!("\\u{{{:x}}}", c as u32),
                "{c:?}"
            );
        }
    }

    #[test]
    fn ordinary_text_is_borrowed_as_it_is() {
        let text = "serving 12 req/s, queue ünï \\ 日本";
        assert!(matches!(escape(text), Cow::Borrowed(t) if t == text));
    }
}
