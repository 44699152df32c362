//! Cuts a worker's output stream into whole lines of bounded length.

/// One line of a worker's output, without its line ending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The line's bytes (not necessarily UTF-8).
    pub text: Vec<u8>,
    /// The line was longer than the limit: the next line goes on with it.
    pub split: bool,
}

/// Bytes in, lines out: holds an unfinished line until its newline comes, and cuts a line
/// longer than `max` bytes into parts (at a UTF-8 character's boundary where it can).
#[derive(Debug)]
pub struct Lines {
    pending: Vec<u8>,
    max: usize,
}

impl Lines {
    /// Lines of at most `max` bytes (at least 4, so that a character always fits).
    pub fn new(max: usize) -> Lines {
        Lines {
            pending: Vec::new(),
            max: max.max(4),
        }
    }

    /// Takes `bytes` and hands every line they finish to `emit`.
    pub fn push(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(Line)) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&bytes[..end]);
            bytes = &bytes[end + 1..];
            self.cut_long(emit);
            let mut text = std::mem::take(&mut self.pending);
            if text.last() == Some(&b'\r') {
                text.pop();
            }
            emit(Line { text, split: false });
        }
        self.pending.extend_from_slice(bytes);
        self.cut_long(emit);
    }

    /// Whether an unfinished line is held.
    pub fn holding(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Hands what is left (a last line without a newline) to `emit`: the stream ended.
    pub fn finish(&mut self, emit: &mut impl FnMut(Line)) {
        if !self.pending.is_empty() {
            let text = std::mem::take(&mut self.pending);
            emit(Line { text, split: false });
        }
    }

    /// Hands what is held of an unfinished line to `emit`, marked as split: the rest will
    /// come from another reader of the same stream (after a re-exec). Returns the start of a
    /// UTF-8 character the line ends in, held back for that reader to [`push`](Self::push)
    /// first: cut in two, the character would show as two U+FFFD.
    pub fn cut(&mut self, emit: &mut impl FnMut(Line)) -> Vec<u8> {
        let held = self.pending.split_off(unfinished_char(&self.pending));
        if !self.pending.is_empty() {
            let text = std::mem::take(&mut self.pending);
            emit(Line { text, split: true });
        }
        held
    }

    /// Emits the parts of the pending line beyond `max` bytes, each marked as split.
    fn cut_long(&mut self, emit: &mut impl FnMut(Line)) {
        while self.pending.len() > self.max {
            let at = char_boundary(&self.pending, self.max);
            let rest = self.pending.split_off(at);
            let text = std::mem::replace(&mut self.pending, rest);
            emit(Line { text, split: true });
        }
    }
}

/// Where a UTF-8 character that `bytes` end before its last byte starts (a lead byte in the
/// last three, with fewer continuation bytes after it than it announces); `bytes.len()` if
/// they end with none.
fn unfinished_char(bytes: &[u8]) -> usize {
    let is_continuation = |b: u8| b & 0b1100_0000 == 0b1000_0000;
    let Some(lead) = (bytes.len().saturating_sub(3)..bytes.len())
        .rev()
        .find(|&i| !is_continuation(bytes[i]))
    else {
        return bytes.len();
    };
    let wants = match bytes[lead] {
        b if b & 0b1110_0000 == 0b1100_0000 => 2,
        b if b & 0b1111_0000 == 0b1110_0000 => 3,
        b if b & 0b1111_1000 == 0b1111_0000 => 4,
        _ => return bytes.len(),
    };
    match bytes.len() - lead < wants {
        true => lead,
        false => bytes.len(),
    }
}

/// The last index at or before `at` (and after 0) that does not fall inside a UTF-8
/// character; `at` itself when there is none within three bytes (the text is not UTF-8).
fn char_boundary(bytes: &[u8], at: usize) -> usize {
    let is_continuation = |b: u8| b & 0b1100_0000 == 0b1000_0000;
    (at.saturating_sub(3).max(1)..=at)
        .rev()
        .find(|&i| !is_continuation(bytes[i]))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut lines = Lines::new(max);
        let mut emit = |l: Line| out.push((String::from_utf8_lossy(&l.text).into_owned(), l.split));
        for chunk in chunks {
            lines.push(chunk, &mut emit);
        }
        lines.finish(&mut emit);
        out
    }

    fn whole(text: &str) -> (String, bool) {
        (text.to_string(), false)
    }

    /// A re-exec's cut in the middle of a character held it back for the next reader: cut
    /// in two, "é" showed as two U+FFFD.
    #[test]
    fn a_cut_holds_back_the_start_of_a_character() {
        let cut = |bytes: &[u8]| {
            let mut out = Vec::new();
            let mut lines = Lines::new(100);
            lines.push(bytes, &mut |l: Line| out.push(l.text));
            let held = lines.cut(&mut |l: Line| out.push(l.text));
            (out, held)
        };
        let e_acute = "é".as_bytes();
        let (out, held) = cut(&[b"caf", &e_acute[..1]].concat());
        assert_eq!((out, held), (vec![b"caf".to_vec()], e_acute[..1].to_vec()));
        let euro = "€".as_bytes();
        let (out, held) = cut(&euro[..2]);
        assert_eq!((out, held), (Vec::<Vec<u8>>::new(), euro[..2].to_vec()));
        // Whole characters, and bytes that are no UTF-8, are cut as they are.
        assert_eq!(
            cut("café".as_bytes()),
            (vec!["café".as_bytes().to_vec()], vec![])
        );
        assert_eq!(cut(b"a\xff"), (vec![b"a\xff".to_vec()], vec![]));
        assert_eq!(
            cut(b"a\x80\x80\x80"),
            (vec![b"a\x80\x80\x80".to_vec()], vec![])
        );
        // The next reader goes on with what was held: the character whole.
        let mut lines = Lines::new(100);
        let mut out = Vec::new();
        lines.push(&e_acute[..1], &mut |l: Line| out.push(l.text));
        lines.push(&[&e_acute[1..], b"!\n"].concat(), &mut |l: Line| {
            out.push(l.text)
        });
        assert_eq!(out, ["é!".as_bytes().to_vec()]);
    }

    #[test]
    fn a_line_is_emitted_when_its_newline_comes() {
        assert_eq!(
            lines(100, &[b"ab", b"c\nde", b"f\n"]),
            [whole("abc"), whole("def")]
        );
    }

    #[test]
    fn crlf_and_empty_lines_are_kept_as_lines() {
        assert_eq!(
            lines(100, &[b"a\r\n\n\r\n"]),
            [whole("a"), whole(""), whole("")]
        );
    }

    #[test]
    fn a_last_line_without_a_newline_is_not_lost() {
        assert_eq!(
            lines(100, &[b"done\npartial"]),
            [whole("done"), whole("partial")]
        );
    }

    #[test]
    fn a_long_line_is_cut_into_marked_parts() {
        assert_eq!(
            lines(4, &[b"abcdefghij\nk\n"]),
            [
                ("abcd".to_string(), true),
                ("efgh".to_string(), true),
                whole("ij"),
                whole("k")
            ]
        );
    }

    #[test]
    fn a_long_line_is_cut_before_it_is_finished() {
        let mut out = Vec::new();
        let mut lines = Lines::new(4);
        lines.push(b"abcdefghij", &mut |l| out.push(l));
        assert_eq!(out.len(), 2, "held bytes stay bounded: {out:?}");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // "é" is two bytes: a cut at 5 would fall inside the third one.
        let parts = lines(5, &["ééé".as_bytes(), b"\n"]);
        assert_eq!(parts, [("éé".to_string(), true), whole("é")]);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_cut_at_the_limit() {
        let parts = lines(4, &[&[0x80; 6], b"\n"]);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].1);
    }
}
