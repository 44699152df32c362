//! Argument templates of the worker command: `{fd:NAME}` becomes that socket's fd number,
//! `{worker}` the worker's slot, `{generation}` its generation, `{{` and `}}` literal braces.
//! One parser for every platform: an argument is read in the platform's own units (bytes on
//! Unix, UTF-16 units on Windows), so text that is not Unicode passes through unchanged.

use std::ffi::{OsStr, OsString};

use units::{from_units, to_units, Unit};

/// One command-line argument, compiled once, expanded for each worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgTemplate(Vec<Piece>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(Vec<Unit>),
    Fd(i32),
    Worker,
    Generation,
}

impl ArgTemplate {
    /// Compiles `arg` (argument number `position`, for messages) against the socket names,
    /// where `names[i]` is at fd `3 + i`.
    pub fn compile(arg: &OsStr, position: usize, names: &[String]) -> Result<ArgTemplate, String> {
        Self::parse(arg, position, Some(names))
    }

    /// `arg` as a worker gets it where no placeholder has a value (literal braces unescaped),
    /// or `None` if it uses a placeholder; `Err` if it is not a valid template (as for
    /// [`compile`](Self::compile)). A `{fd:NAME}` counts as a placeholder whatever `NAME` is.
    pub fn literal(arg: &OsStr, position: usize) -> Result<Option<OsString>, String> {
        let template = Self::parse(arg, position, None)?;
        let is_text = |piece: &Piece| matches!(piece, Piece::Text(_));
        Ok(template
            .0
            .iter()
            .all(is_text)
            .then(|| template.expand(0, 0)))
    }

    /// The most units `arg` (argument number `position`) can take once expanded, whichever
    /// worker, generation and socket it is for: `{worker}` and `{generation}` at 20 digits,
    /// `{fd:NAME}` at 10. `Err` if it is not a valid template (as for [`compile`](Self::compile)).
    pub fn widest(arg: &OsStr, position: usize) -> Result<usize, String> {
        let template = Self::parse(arg, position, None)?;
        Ok(template
            .0
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.len(),
                Piece::Fd(_) => 10,
                Piece::Worker | Piece::Generation => 20,
            })
            .sum())
    }

    /// Compiles `arg`; `names` are the sockets `{fd:NAME}` may name, `None` for any name.
    fn parse(
        arg: &OsStr,
        position: usize,
        names: Option<&[String]>,
    ) -> Result<ArgTemplate, String> {
        let (open, close) = (Unit::from(b'{'), Unit::from(b'}'));
        let units = to_units(arg);
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut i = 0;
        while i < units.len() {
            let (unit, next) = (units[i], units.get(i + 1).copied());
            if (unit == open || unit == close) && next == Some(unit) {
                text.push(unit);
                i += 2;
            } else if unit == open {
                let len = units[i + 1..]
                    .iter()
                    .position(|&u| u == close)
                    .ok_or_else(|| {
                        format!(
                            "argument {position} ({}) has an unclosed '{{'; \
                             write '{{{{' for a literal brace",
                            arg.to_string_lossy()
                        )
                    })?;
                let inner = from_units(units[i + 1..i + 1 + len].to_vec());
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(placeholder(&inner.to_string_lossy(), position, names)?);
                i += len + 2;
            } else if unit == close {
                return Err(format!(
                    "argument {position} ({}) has an unmatched '}}'; \
                         write '}}}}' for a literal brace",
                    arg.to_string_lossy()
                ));
            } else {
                text.push(unit);
                i += 1;
            }
        }
        if !text.is_empty() || pieces.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(ArgTemplate(pieces))
    }

    /// The first placeholder that only a worker herd starts has a value for (`{worker}`,
    /// `{generation}`), if the argument uses one.
    pub fn worker_only(&self) -> Option<&'static str> {
        self.0.iter().find_map(|piece| match piece {
            Piece::Worker => Some("{worker}"),
            Piece::Generation => Some("{generation}"),
            Piece::Text(_) | Piece::Fd(_) => None,
        })
    }

    /// The argument for the worker in `slot` of `generation`.
    pub fn expand(&self, slot: usize, generation: u64) -> OsString {
        let mut out = Vec::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.extend_from_slice(text),
                Piece::Fd(fd) => out.extend(number(*fd)),
                Piece::Worker => out.extend(number(slot)),
                Piece::Generation => out.extend(number(generation)),
            }
        }
        from_units(out)
    }
}

/// The decimal digits of `n`, as units.
fn number(n: impl ToString) -> Vec<Unit> {
    to_units(OsStr::new(&n.to_string()))
}

fn placeholder(inner: &str, position: usize, names: Option<&[String]>) -> Result<Piece, String> {
    match inner {
        "worker" => return Ok(Piece::Worker),
        "generation" => return Ok(Piece::Generation),
        _ => {}
    }
    if let Some(name) = inner.strip_prefix("fd:") {
        let Some(names) = names else {
            return Ok(Piece::Fd(herd::LISTEN_FDS_START));
        };
        return match names.iter().position(|n| n == name) {
            Some(i) => Ok(Piece::Fd(herd::LISTEN_FDS_START + i as i32)),
            None => Err(format!(
                "argument {position}: no socket is named '{name}' in '{{{inner}}}' \
                 (sockets: {})",
                names.join(", ")
            )),
        };
    }
    Err(format!(
        "argument {position}: unknown template '{{{inner}}}'; known: {{fd:NAME}}, {{worker}}, \
         {{generation}}; \
         write '{{{{' and '}}}}' for literal braces"
    ))
}

/// An argument as the platform's units: bytes on Unix.
#[cfg(unix)]
mod units {
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    pub type Unit = u8;

    pub fn to_units(arg: &OsStr) -> Vec<Unit> {
        arg.as_bytes().to_vec()
    }

    pub fn from_units(units: Vec<Unit>) -> OsString {
        OsString::from_vec(units)
    }
}

/// An argument as the platform's units: UTF-16 units (possibly unpaired) on Windows.
#[cfg(windows)]
mod units {
    use std::ffi::{OsStr, OsString};
    use std::os::windows::ffi::{OsStrExt, OsStringExt};

    pub type Unit = u16;

    pub fn to_units(arg: &OsStr) -> Vec<Unit> {
        arg.encode_wide().collect()
    }

    pub fn from_units(units: Vec<Unit>) -> OsString {
        OsString::from_wide(&units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["http".into(), "admin".into()]
    }

    fn expand(arg: &str, slot: usize) -> String {
        ArgTemplate::compile(OsStr::new(arg), 1, &names())
            .unwrap()
            .expand(slot, 3)
            .into_string()
            .unwrap()
    }

    fn error(arg: &str) -> String {
        ArgTemplate::compile(OsStr::new(arg), 1, &names()).unwrap_err()
    }

    #[test]
    fn expands_placeholders() {
        assert_eq!(expand("--fd={fd:http}", 0), "--fd=3");
        assert_eq!(expand("{fd:admin}", 0), "4");
        assert_eq!(expand("log-{worker}.txt", 7), "log-7.txt");
        assert_eq!(expand("app-{worker}-{generation}.pid", 1), "app-1-3.pid");
        assert_eq!(expand("{{\"a\": 1}}", 0), "{\"a\": 1}");
        assert_eq!(expand("", 0), "");
        assert_eq!(expand("plain", 0), "plain");
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(error("{fd:nope}").contains("no socket is named 'nope'"));
        assert!(error("{slot}").contains("unknown template '{slot}'"));
        assert!(error("{slot}").contains("{generation}"));
        assert!(error("{worker").contains("unclosed"));
        assert!(error("a}b").contains("unmatched"));
    }

    #[test]
    fn the_widest_expansion_counts_each_placeholder_at_its_widest() {
        let widest = |arg: &str| ArgTemplate::widest(OsStr::new(arg), 1);
        assert_eq!(widest("plain"), Ok(5));
        assert_eq!(widest("{{}}"), Ok(2));
        assert_eq!(widest("w{worker}g{generation}"), Ok(42));
        assert_eq!(widest("--fd={fd:any}"), Ok(15));
        assert!(widest("{slot}").unwrap_err().contains("unknown template"));
    }

    /// A unit that is not Unicode text on its own.
    #[cfg(unix)]
    const NOT_UNICODE: Unit = 0xff;
    #[cfg(windows)]
    const NOT_UNICODE: Unit = 0xd800;

    #[test]
    fn text_that_is_not_unicode_passes_through() {
        let mut raw = from_units(vec![NOT_UNICODE]);
        assert_eq!(raw.to_str(), None);
        raw.push("-{worker}");
        let t = ArgTemplate::compile(&raw, 1, &names()).unwrap();
        let mut expected = vec![NOT_UNICODE];
        expected.extend(to_units(OsStr::new("-2")));
        assert_eq!(to_units(&t.expand(2, 1)), expected);
    }

    #[test]
    fn a_literal_is_its_text_with_braces_unescaped() {
        let literal = |arg: &str| ArgTemplate::literal(OsStr::new(arg), 2);
        assert_eq!(
            literal("print({{1:2}})").unwrap(),
            Some("print({1:2})".into())
        );
        assert_eq!(literal("{{worker}}").unwrap(), Some("{worker}".into()));
        assert_eq!(literal("plain").unwrap(), Some("plain".into()));
        assert_eq!(literal("{worker}").unwrap(), None);
        assert_eq!(literal("--fd={fd:any}").unwrap(), None);
        assert!(literal("{\"a\": 1}")
            .unwrap_err()
            .contains("unknown template"));
        assert!(literal("a}b").unwrap_err().contains("argument 2"));
    }

    #[test]
    fn names_the_placeholders_only_workers_have() {
        let only = |arg: &str| {
            ArgTemplate::compile(OsStr::new(arg), 1, &names())
                .unwrap()
                .worker_only()
        };
        assert_eq!(only("--fd={fd:http}"), None);
        assert_eq!(only("{worker}"), Some("{worker}"));
        assert_eq!(only("x{generation}y{worker}"), Some("{generation}"));
    }
}
