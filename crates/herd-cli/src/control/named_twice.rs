//! Finding a member named twice in a JSON text: readers disagree on which of the two counts
//! (serde_json keeps the last, others the first), so neither herd nor its clients take one.

use std::borrow::Cow;
use std::collections::HashSet;

/// The first member name that a JSON object names twice, at any depth (`None` for valid JSON
/// without one); an error for text that is not JSON or is nested deeper than [`MAX_DEPTH`],
/// which a parse that skips the deep part (an unknown member's value) may have taken. Numbers
/// are not read, only skipped, as such a parse skips them: one out of `f64`'s range is no
/// reason to refuse a text.
pub(crate) fn named_twice(text: &[u8]) -> serde_json::Result<Option<String>> {
    // Not JSON, or too deep: the error a read as any JSON gives, with where it stopped.
    let as_json = |e: serde_json::Error| {
        serde_json::from_slice::<serde_json::Value>(text)
            .err()
            .unwrap_or(e)
    };
    let mut scan = Scan { text, at: 0 };
    let twice = scan.value(0).map_err(as_json)?;
    if twice.is_none() {
        scan.space();
        if scan.at != text.len() {
            return Err(as_json(scan.error("trailing characters")));
        }
    }
    Ok(twice)
}

/// How deep [`named_twice`] looks: serde_json's own limit.
const MAX_DEPTH: usize = 128;

/// One pass over a JSON text, in document order, depth first: with 4096 workers a status is
/// about 1.4 MB, and a parse of each value's raw text again at each depth (three reads of
/// most of it) took a quarter of the client's time. Only member names are read (unescaped
/// where they hold escapes); strings and numbers are skipped.
struct Scan<'de> {
    text: &'de [u8],
    at: usize,
}

impl<'de> Scan<'de> {
    fn error(&self, why: &str) -> serde_json::Error {
        serde::de::Error::custom(format!("{why} at byte {}", self.at))
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    /// Skips `byte` after any white space, or fails.
    fn expect(&mut self, byte: u8) -> serde_json::Result<()> {
        self.space();
        match self.text.get(self.at) {
            Some(&b) if b == byte => {
                self.at += 1;
                Ok(())
            }
            _ => Err(self.error("unexpected character")),
        }
    }

    /// The first name named twice in the value here, `depth` containers down.
    fn value(&mut self, depth: usize) -> serde_json::Result<Option<String>> {
        self.space();
        match self.text.get(self.at) {
            Some(b'{' | b'[') if depth == MAX_DEPTH => {
                Err(serde::de::Error::custom("recursion limit exceeded"))
            }
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(|_| None),
            Some(_) => self.scalar().map(|_| None),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    fn object(&mut self, depth: usize) -> serde_json::Result<Option<String>> {
        self.at += 1;
        self.space();
        if self.text.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Ok(None);
        }
        let mut seen = Names::Few(Vec::new());
        loop {
            self.space();
            if self.text.get(self.at) != Some(&b'"') {
                return Err(self.error("expected a member name"));
            }
            let name = self.string()?;
            if let Some(twice) = seen.add(name) {
                return Ok(Some(twice));
            }
            self.expect(b':')?;
            if let Some(twice) = self.value(depth + 1)? {
                return Ok(Some(twice));
            }
            self.space();
            match self.text.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(None);
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> serde_json::Result<Option<String>> {
        self.at += 1;
        self.space();
        if self.text.get(self.at) == Some(&b']') {
            self.at += 1;
            return Ok(None);
        }
        loop {
            if let Some(twice) = self.value(depth + 1)? {
                return Ok(Some(twice));
            }
            self.space();
            match self.text.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(None);
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    /// The string here (at its `"`), as it reads: borrowed unless it holds escapes.
    fn string(&mut self) -> serde_json::Result<Cow<'de, str>> {
        let start = self.at;
        let mut escaped = false;
        self.at += 1;
        loop {
            match self.text.get(self.at) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.at += 2;
                }
                Some(_) => self.at += 1,
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
        self.at += 1;
        let raw = &self.text[start..self.at];
        match escaped {
            true => serde_json::from_slice::<String>(raw).map(Cow::Owned),
            false => std::str::from_utf8(&raw[1..raw.len() - 1])
                .map(Cow::Borrowed)
                .map_err(|_| self.error("invalid UTF-8")),
        }
    }

    /// Skips a number, `true`, `false` or `null` (not read: one out of `f64`'s range is
    /// skipped as a parse that skips it does).
    fn scalar(&mut self) -> serde_json::Result<()> {
        let start = self.at;
        while let Some(&b) = self.text.get(self.at) {
            match b {
                b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' | b'a'..=b'z' => self.at += 1,
                _ => break,
            }
        }
        let token = &self.text[start..self.at];
        let number = || {
            matches!(token.first(), Some(b'-' | b'0'..=b'9'))
                && token
                    .iter()
                    .all(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        };
        match token {
            b"true" | b"false" | b"null" => Ok(()),
            _ if number() => Ok(()),
            _ => Err(self.error("expected a value")),
        }
    }
}

/// The member names of one object so far: a list while it is short (most are), a set beyond.
enum Names<'de> {
    Few(Vec<Cow<'de, str>>),
    Many(HashSet<Cow<'de, str>>),
}

/// How many names a list holds before they move to a set.
const FEW: usize = 16;

impl<'de> Names<'de> {
    /// Adds `name`: the name if it was there already.
    fn add(&mut self, name: Cow<'de, str>) -> Option<String> {
        match self {
            Names::Few(few) if few.contains(&name) => Some(name.into_owned()),
            Names::Few(few) if few.len() < FEW => {
                few.push(name);
                None
            }
            Names::Few(few) => {
                let mut many: HashSet<_> = few.drain(..).collect();
                many.insert(name);
                *self = Names::Many(many);
                None
            }
            Names::Many(many) if many.contains(&name) => Some(name.into_owned()),
            Names::Many(many) => {
                many.insert(name);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_twice_looks_at_every_depth() {
        let twice = |text: &str| named_twice(text.as_bytes()).unwrap_or_default();
        assert_eq!(twice(r#"{"a":1,"b":2,"a":3}"#), Some("a".into()));
        assert_eq!(twice(r#"{"a":[{"b":{"c":1,"c":2}}]}"#), Some("c".into()));
        assert_eq!(twice(r#"[{"a":1},{"a":1}]"#), None);
        assert_eq!(twice(r#"{"a":null,"b":-1.5,"c":"x","d":true}"#), None);
        assert!(named_twice(b"not json").is_err());
        let deep = format!("{}1{}", "[".repeat(129), "]".repeat(129));
        assert!(named_twice(deep.as_bytes()).is_err(), "too deep to read");
        // A number out of f64's range is skipped, not read, as a parse that skips it does.
        assert_eq!(
            named_twice(br#"{"n":4e5333,"a":1,"a":2}"#).unwrap(),
            Some("a".into())
        );
        assert_eq!(named_twice(br#"[-1e999,{"n":1}]"#).unwrap(), None);
        // Escaped names are compared as they read.
        assert_eq!(twice(r#"{"a":1,"\u0061":2}"#), Some("a".into()));
        assert_eq!(twice(r#"{"\n":1,"\u000a":2}"#), Some("\n".into()));
        // Past the short list, in the set.
        let many = |last: &str| {
            let members: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
            format!("{{{},\"{last}\":0}}", members.join(","))
        };
        assert_eq!(twice(&many("k3")), Some("k3".into()));
        assert_eq!(twice(&many("k39")), Some("k39".into()));
        assert_eq!(twice(&many("other")), None);
    }

    #[test]
    fn named_twice_reads_json_in_one_pass_as_a_parse_does() {
        let twice = |text: &str| named_twice(text.as_bytes()).unwrap();
        // White space anywhere, empty containers, names and strings that hold what would
        // end them or open a container.
        assert_eq!(
            twice(" { \"a\" : [ ] ,\n\"b\":{ },\t\"c\":\"}{[\\\"\", \"d\" :[1 ,{\"e\":2}] } "),
            None
        );
        assert_eq!(twice(r#"{"a\"b":1,"a\"b":2}"#), Some("a\"b".into()));
        assert_eq!(twice(r#"{"x":"\"a\":1,\"a\":2"}"#), None);
        // The first in document order, a name given twice after a duplicate deeper down.
        assert_eq!(twice(r#"{"a":{"b":1,"b":2},"a":3}"#), Some("b".into()));
        assert_eq!(
            twice(r#"{"a":1,"b":[{"c":1},{"d":{"e":1,"e":1}}],"a":2}"#),
            Some("e".into())
        );
        assert_eq!(twice("128"), None);
        assert_eq!(twice("[true,false,null,-0.5e+3]"), None);
        // Not JSON: an error, as serde_json gives it.
        for bad in [
            "{",
            "{\"a\"}",
            "[1,]",
            "{\"a\":1,}",
            "[1 2]",
            "nul",
            "{} x",
            "\"a",
            "[+1]",
        ] {
            let e = named_twice(bad.as_bytes()).unwrap_err();
            let parse = serde_json::from_str::<serde_json::Value>(bad).unwrap_err();
            assert_eq!(e.to_string(), parse.to_string(), "{bad}");
        }
        // As deep as serde_json reads, and no deeper.
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(twice(&deep(128)), None);
        assert!(named_twice(deep(129).as_bytes()).is_err());
    }
}
