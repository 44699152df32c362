//! A small JSON reader and writer for the control protocol, so that the worker library needs
//! no serialization crate. It parses any JSON text into [`Value`], and writes the flat objects
//! of requests with [`ObjectWriter`], byte for byte as serde_json writes them.

/// A parsed JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number written as a non-negative integer (`1`, not `1.0` or `1e0`) that fits a `u64`.
    Integer(u64),
    /// Any other number.
    Number(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object, in document order.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Parses one JSON text (surrounding white space allowed).
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let value = p.value()?;
    p.space();
    if p.pos != p.bytes.len() {
        return Err(format!("trailing characters at byte {}", p.pos));
    }
    Ok(value)
}

/// `text` as a JSON string literal, quotes included, escaped as serde_json escapes it.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes one JSON object, member by member, in the order given.
#[derive(Debug)]
pub struct ObjectWriter {
    out: String,
}

impl ObjectWriter {
    /// An empty object.
    pub fn new() -> ObjectWriter {
        ObjectWriter {
            out: String::from("{"),
        }
    }

    fn key(mut self, key: &str) -> ObjectWriter {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        self.out.push_str(&quote(key));
        self.out.push(':');
        self
    }

    /// A string member.
    pub fn string(self, key: &str, value: &str) -> ObjectWriter {
        let mut writer = self.key(key);
        writer.out.push_str(&quote(value));
        writer
    }

    /// A number member.
    pub fn number(self, key: &str, value: u64) -> ObjectWriter {
        let mut writer = self.key(key);
        writer.out.push_str(&value.to_string());
        writer
    }

    /// A boolean member.
    pub fn boolean(self, key: &str, value: bool) -> ObjectWriter {
        let mut writer = self.key(key);
        writer.out.push_str(if value { "true" } else { "false" });
        writer
    }

    /// An array of strings.
    pub fn strings(self, key: &str, values: &[String]) -> ObjectWriter {
        let mut writer = self.key(key);
        let quoted: Vec<String> = values.iter().map(|v| quote(v)).collect();
        writer.out.push('[');
        writer.out.push_str(&quoted.join(","));
        writer.out.push(']');
        writer
    }

    /// The object's text.
    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

impl Default for ObjectWriter {
    fn default() -> ObjectWriter {
        ObjectWriter::new()
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn eat(&mut self, literal: &str) -> Result<(), String> {
        if self.bytes[self.pos..].starts_with(literal.as_bytes()) {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(self.error(&format!("expected {literal}")))
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.space();
        self.depth += 1;
        if self.depth > 64 {
            return Err(self.error("nested too deeply"));
        }
        let value = match self.bytes.get(self.pos) {
            Some(b'n') => self.eat("null").map(|()| Value::Null),
            Some(b't') => self.eat("true").map(|()| Value::Bool(true)),
            Some(b'f') => self.eat("false").map(|()| Value::Bool(false)),
            Some(b'"') => self.string().map(Value::String),
            Some(b'[') => self.array(),
            Some(b'{') => self.object(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a value")),
        };
        self.depth -= 1;
        value
    }

    /// A number, by RFC 8259's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    /// A non-negative integer that fits is an [`Value::Integer`].
    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        let negative = self.skip(b"-");
        match self.bytes.get(self.pos) {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
                    return Err(self.error("a number with a leading zero"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("a number without digits")),
        }
        let fraction = self.skip(b".");
        if fraction && self.digits() == 0 {
            return Err(self.error("a number without digits after its '.'"));
        }
        let exponent = self.skip(b"eE");
        if exponent {
            self.skip(b"+-");
            if self.digits() == 0 {
                return Err(self.error("a number without digits in its exponent"));
            }
        }
        // Only ASCII digits and signs were read.
        let text = String::from_utf8_lossy(&self.bytes[start..self.pos]);
        if !negative && !fraction && !exponent {
            if let Ok(n) = text.parse() {
                return Ok(Value::Integer(n));
            }
        }
        // Beyond an f64's range it is infinite: serde_json skips such a number where it
        // ignores a member, as here.
        text.parse()
            .map(Value::Number)
            .map_err(|_| self.error("bad number"))
    }

    /// Steps over one byte if it is one of `any`; whether it did.
    fn skip(&mut self, any: &[u8]) -> bool {
        let found = matches!(self.bytes.get(self.pos), Some(b) if any.contains(b));
        self.pos += usize::from(found);
        found
    }

    /// Steps over a run of ASCII digits; how many.
    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            match self.bytes.get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out).map_err(|_| self.error("invalid UTF-8"));
                }
                Some(b'\\') => {
                    let escape = *self
                        .bytes
                        .get(self.pos + 1)
                        .ok_or_else(|| self.error("bad escape"))?;
                    self.pos += 2;
                    let c = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.error("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                Some(&b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("bad \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.error("bad \\u escape"))?;
        let n = u32::from_str_radix(text, 16).map_err(|_| self.error("bad \\u escape"))?;
        self.pos += 4;
        Ok(n)
    }

    fn unicode_escape(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            self.eat("\\u")?;
            let second = self.hex4()?;
            0x10000 + ((first - 0xD800) << 10) + (second.wrapping_sub(0xDC00) & 0x3FF)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("bad \\u escape"))
    }

    fn array(&mut self) -> Result<Value, String> {
        self.pos += 1;
        let mut items = Vec::new();
        self.space();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.space();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self) -> Result<Value, String> {
        self.pos += 1;
        let mut members = Vec::new();
        // Readers disagree on which of two equal names counts (serde_json keeps the last):
        // herd never writes one, and no reader here takes either.
        let mut names = std::collections::HashSet::new();
        self.space();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.space();
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.error("expected a member name"));
            }
            let key = self.string()?;
            if !names.insert(key.clone()) {
                return Err(self.error(&format!("the member {} is named twice", quote(&key))));
            }
            self.space();
            self.eat(":")?;
            members.push((key, self.value()?));
            self.space();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_control_protocol() {
        let v = parse(r#" {"version":1,"ok":true,"result":{"sockets":[{"name":"http","family":null}]},"n":-1.5e2} "#).unwrap();
        assert_eq!(v.get("ok"), Some(&Value::Bool(true)));
        let sockets = v
            .get("result")
            .unwrap()
            .get("sockets")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(sockets[0].get("name").unwrap().as_str(), Some("http"));
        assert_eq!(v.get("n"), Some(&Value::Number(-150.0)));
        assert_eq!(v.get("version"), Some(&Value::Integer(1)));
    }

    #[test]
    fn integers_are_told_from_other_numbers() {
        for (text, value) in [
            ("0", Value::Integer(0)),
            ("18446744073709551615", Value::Integer(u64::MAX)),
            (
                "18446744073709551616",
                Value::Number(18446744073709551616.0),
            ),
            ("1.0", Value::Number(1.0)),
            ("1e0", Value::Number(1.0)),
            ("-1", Value::Number(-1.0)),
        ] {
            assert_eq!(parse(text), Ok(value), "{text}");
        }
    }

    #[test]
    fn numbers_follow_the_json_grammar() {
        for (text, value) in [
            ("-0", -0.0),
            ("0.5", 0.5),
            ("-0.0", 0.0),
            ("1E+2", 100.0),
            ("1e-2", 0.01),
            ("10.25e1", 102.5),
            ("1e-400", 0.0),
            ("2e555", f64::INFINITY),
            ("-1e400", f64::NEG_INFINITY),
        ] {
            assert_eq!(parse(text), Ok(Value::Number(value)), "{text}");
        }
        // What serde_json refuses too.
        for bad in [
            "01.5", "-01", "1.", "-.5", "1.e5", "00.0", "+1", ".5", "-", "1e", "1e+", "1E-",
            "0x10", "1.5.2", "1e5e5", "--1", "Infinity", "NaN",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
            assert!(parse(&format!("[{bad}]")).is_err(), "[{bad}]");
        }
    }

    #[test]
    fn a_member_named_twice_is_refused_at_any_depth() {
        for twice in [
            r#"{"ok":true,"ok":false}"#,
            r#"{"result":{"sockets":[],"sockets":[]}}"#,
            r#"[{"a":1},{"b":{"c":1,"c":1}}]"#,
        ] {
            let e = parse(twice).unwrap_err();
            assert!(e.contains("named twice"), "{twice}: {e}");
        }
        assert!(parse(r#"[{"a":1},{"a":1}]"#).is_ok(), "in two objects");
    }

    #[test]
    fn strings_and_escapes_round_trip() {
        let text = "a \"q\" \\ \n \u{1} é 😀";
        assert_eq!(
            parse(&quote(text)).unwrap(),
            Value::String(text.to_string())
        );
        assert_eq!(
            parse(r#""\ud83d\ude00""#).unwrap(),
            Value::String("😀".to_string())
        );
    }

    #[test]
    fn objects_are_written_in_order() {
        let text = ObjectWriter::new()
            .number("version", 1)
            .string("command", "sockets")
            .strings("only", &["a\"b".to_string(), "c".to_string()])
            .boolean("attach", false)
            .finish();
        assert_eq!(
            text,
            r#"{"version":1,"command":"sockets","only":["a\"b","c"],"attach":false}"#
        );
        assert_eq!(ObjectWriter::new().finish(), "{}");
        assert_eq!(quote("\t\u{7f}\u{1f}"), "\"\\t\u{7f}\\u001f\"");
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\"}",
            "\"open",
            "tru",
            "[1] x",
            "{\"a\":1,}",
            "01",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse(&deep).is_err());
    }
}
