//! Argument templates: `{fd:NAME}` becomes that socket's fd number, `{worker}` the worker's
//! slot, `{generation}` its generation, `{{` and `}}` literal braces.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// One command-line argument, compiled once, expanded for each worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgTemplate(Vec<Piece>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Fd(i32),
    Worker,
    Generation,
}

impl ArgTemplate {
    /// Compiles `arg` (argument number `position`, for messages) against the socket names,
    /// where `names[i]` is at fd `3 + i`.
    pub fn compile(arg: &OsStr, position: usize, names: &[String]) -> Result<ArgTemplate, String> {
        let bytes = arg.as_bytes();
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match (bytes[i], bytes.get(i + 1)) {
                (b'{', Some(b'{')) | (b'}', Some(b'}')) => {
                    text.push(bytes[i]);
                    i += 2;
                }
                (b'{', _) => {
                    let len = bytes[i + 1..]
                        .iter()
                        .position(|&b| b == b'}')
                        .ok_or_else(|| {
                            format!(
                                "argument {position} ({}) has an unclosed '{{'; \
                             write '{{{{' for a literal brace",
                                arg.to_string_lossy()
                            )
                        })?;
                    let inner = String::from_utf8_lossy(&bytes[i + 1..i + 1 + len]);
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(placeholder(&inner, position, names)?);
                    i += len + 2;
                }
                (b'}', _) => {
                    return Err(format!(
                        "argument {position} ({}) has an unmatched '}}'; \
                         write '}}}}' for a literal brace",
                        arg.to_string_lossy()
                    ))
                }
                (b, _) => {
                    text.push(b);
                    i += 1;
                }
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
                Piece::Fd(fd) => out.extend_from_slice(fd.to_string().as_bytes()),
                Piece::Worker => out.extend_from_slice(slot.to_string().as_bytes()),
                Piece::Generation => out.extend_from_slice(generation.to_string().as_bytes()),
            }
        }
        OsString::from_vec(out)
    }
}

fn placeholder(inner: &str, position: usize, names: &[String]) -> Result<Piece, String> {
    match inner {
        "worker" => return Ok(Piece::Worker),
        "generation" => return Ok(Piece::Generation),
        _ => {}
    }
    if let Some(name) = inner.strip_prefix("fd:") {
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
    fn non_utf8_text_passes_through() {
        let raw = OsStr::from_bytes(b"\xff-{worker}");
        let t = ArgTemplate::compile(raw, 1, &names()).unwrap();
        assert_eq!(t.expand(2, 1).as_bytes(), b"\xff-2");
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
