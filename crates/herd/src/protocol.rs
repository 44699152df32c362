//! The control protocol in the small form the worker library speaks: the `sockets` request and
//! its response (see herd's `docs/control-protocol.md`). herd's own client uses serde types;
//! a test in herd-cli runs every message through both and checks they agree.
//!
//! Public for that test and the fuzzer only; not part of the library's stable API.

use crate::json::{self, ObjectWriter, Value};

/// The protocol version.
pub const VERSION: u64 = 1;

/// Why a `sockets` response's fds could not be received when the kernel dropped them for want
/// of a free fd (`MSG_CTRUNC` with the table full, `EMFILE`): the limit, and how to raise it.
#[cfg(unix)]
pub fn out_of_files_hint() -> String {
    let limit = herd_sys::process::nofile_limit()
        .map(|(soft, _)| format!(" ({soft})"))
        .unwrap_or_default();
    format!(
        "this process has no file left to open them: its open-file limit{limit} is too low for \
         them; raise it (ulimit -n, systemd's LimitNOFILE=)"
    )
}

/// The `sockets` request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketsRequest {
    /// Only these sockets, by name (empty: all).
    pub only: Vec<String>,
    /// Register the sender as an attached worker.
    pub attach: bool,
}

impl SocketsRequest {
    /// The request as one line, newline included.
    pub fn encode(&self) -> Vec<u8> {
        let mut object = ObjectWriter::new()
            .number("version", VERSION)
            .string("command", "sockets");
        if !self.only.is_empty() {
            object = object.strings("only", &self.only);
        }
        let mut line = object.boolean("attach", self.attach).finish().into_bytes();
        line.push(b'\n');
        line
    }
}

/// One socket a `sockets` response describes; its fd arrives alongside, in the same order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketDescription {
    /// Its name in `LISTEN_FDNAMES`.
    pub name: String,
    /// `tcp`, `udp`, `unix` or `shm`.
    pub kind: String,
    /// Its address family, if herd could tell.
    pub family: Option<String>,
    /// Its socket type, if herd could tell.
    pub sock_type: Option<String>,
    /// Where it is bound.
    pub address: String,
}

/// A response to `sockets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketsAnswer {
    /// The sockets, whose fds (on Windows, shared blocks) come with the response.
    Sockets(SocketsGiven),
    /// herd refused: its error code (`invalid_argument`, ...) and message.
    Refused {
        /// The stable code.
        code: String,
        /// The message, for people.
        message: String,
    },
}

/// What a response that gives sockets says, read in one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketsGiven {
    /// The sockets, in the order their fds (or blocks) come.
    pub sockets: Vec<SocketDescription>,
    /// The stop signal (`result.stop_signal`: on Unix, with `attach`), as `HERD_STOP_SIGNAL`
    /// names it (`TERM`, `INT`, or a real-time signal's number); `None` when it names none
    /// (without `attach`, and from herds before it).
    pub stop_signal: Option<String>,
    /// The stop event (`result.stop_event`: on Windows, with `attach`), the value in the
    /// reader's process of an event herd copied into it and sets to ask it to stop; `None`
    /// when it names none.
    pub stop_event: Option<u64>,
    /// The blocks (the top-level member `"shared"`: on Windows, one hex string per socket, a
    /// `WSAPROTOCOL_INFOW` made for the reader's process), decoded, in order; empty when
    /// there is no such member.
    pub shared: Vec<Vec<u8>>,
}

/// Reads the response line (without its newline) to a `sockets` request.
pub fn parse_sockets_answer(line: &[u8]) -> Result<SocketsAnswer, String> {
    let text = std::str::from_utf8(line).map_err(|_| "the answer is not UTF-8".to_string())?;
    let response = json::parse(text)?;
    match response.get("version") {
        Some(Value::Integer(VERSION)) => {}
        Some(_) => return Err(format!("the answer is not of protocol version {VERSION}")),
        None => return Err("no \"version\" in the answer".to_string()),
    }
    match response.get("ok") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            let error = response
                .get("error")
                .ok_or("a refusal without an \"error\"")?;
            return Ok(SocketsAnswer::Refused {
                code: string(error, "code")?,
                message: string(error, "message")?,
            });
        }
        _ => return Err("no \"ok\" in the answer".to_string()),
    }
    let result = response
        .get("result")
        .ok_or("no \"result\" in the answer")?;
    let sockets = result
        .get("sockets")
        .and_then(Value::as_array)
        .ok_or("no \"sockets\" in the result")?;
    Ok(SocketsAnswer::Sockets(SocketsGiven {
        sockets: sockets.iter().map(description).collect::<Result<_, _>>()?,
        stop_signal: optional_string(result, "stop_signal")?,
        stop_event: match result.get("stop_event") {
            None | Some(Value::Null) => None,
            Some(Value::Integer(value)) => Some(*value),
            Some(_) => return Err("\"stop_event\" is not a handle value".to_string()),
        },
        shared: blocks(&response)?,
    }))
}

/// The sockets of a `sockets` response on Windows ([`SocketsGiven::shared`]), for a reader
/// that reads the rest in another way.
pub fn shared_blocks(line: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "the answer is not UTF-8".to_string())?;
    blocks(&json::parse(text)?)
}

/// The decoded blocks of `response`'s member `"shared"`; none without it.
fn blocks(response: &Value) -> Result<Vec<Vec<u8>>, String> {
    let blocks = match response.get("shared") {
        None => return Ok(Vec::new()),
        Some(shared) => shared.as_array().ok_or("\"shared\" is not an array")?,
    };
    blocks
        .iter()
        .enumerate()
        .map(|(i, block)| {
            let hex = block
                .as_str()
                .ok_or_else(|| format!("shared block {i} is not a string"))?;
            from_hex(hex).ok_or_else(|| format!("shared block {i} is not hex"))
        })
        .collect()
}

/// The bytes that `hex` (pairs of hex digits) spells, if it does.
fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

fn description(socket: &Value) -> Result<SocketDescription, String> {
    Ok(SocketDescription {
        name: string(socket, "name")?,
        kind: string(socket, "kind")?,
        family: optional_string(socket, "family")?,
        sock_type: optional_string(socket, "type")?,
        address: string(socket, "address")?,
    })
}

fn string(object: &Value, key: &str) -> Result<String, String> {
    object
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("no string \"{key}\""))
}

fn optional_string(object: &Value, key: &str) -> Result<Option<String>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("\"{key}\" is not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_only_what_they_ask_for() {
        assert_eq!(
            SocketsRequest::default().encode(),
            b"{\"version\":1,\"command\":\"sockets\",\"attach\":false}\n"
        );
        let request = SocketsRequest {
            only: vec!["http".into()],
            attach: true,
        };
        assert_eq!(
            request.encode(),
            b"{\"version\":1,\"command\":\"sockets\",\"only\":[\"http\"],\"attach\":true}\n"
        );
    }

    #[test]
    fn answers_are_read_whatever_the_member_order() {
        let line = br#"{"ok":true,"version":1,"result":{"sockets":[{"type":null,"name":"a","address":"x","kind":"unix","family":"unix"}]}}"#;
        let expected = SocketDescription {
            name: "a".into(),
            kind: "unix".into(),
            family: Some("unix".into()),
            sock_type: None,
            address: "x".into(),
        };
        assert_eq!(
            parse_sockets_answer(line),
            Ok(SocketsAnswer::Sockets(SocketsGiven {
                sockets: vec![expected],
                ..SocketsGiven::default()
            }))
        );
        for bad in [
            &b"{\"version\":1,\"ok\":true}"[..],
            b"{\"version\":1,\"ok\":false}",
            b"{\"version\":1,\"ok\":1}",
            b"{\"version\":1,\"ok\":true,\"result\":{\"sockets\":[{\"name\":1}]}}",
            // Only protocol 1, spelled as herd writes it.
            b"{\"ok\":true,\"result\":{\"sockets\":[]}}",
            b"{\"version\":1.0,\"ok\":true,\"result\":{\"sockets\":[]}}",
            b"{\"version\":2,\"ok\":true,\"result\":{\"sockets\":[]}}",
            b"{\"version\":\"1\",\"ok\":true,\"result\":{\"sockets\":[]}}",
            // Readers disagree on which of two equal names counts.
            b"{\"version\":1,\"version\":1,\"ok\":true,\"result\":{\"sockets\":[]}}",
            b"{\"version\":1,\"ok\":false,\"ok\":true,\"result\":{\"sockets\":[]}}",
            b"\xff",
            b"",
        ] {
            assert!(parse_sockets_answer(bad).is_err(), "{bad:?}");
        }
    }

    /// What an answer that gives sockets says besides them, or `Err`.
    fn given(line: &[u8]) -> Result<SocketsGiven, String> {
        match parse_sockets_answer(line)? {
            SocketsAnswer::Sockets(given) => Ok(given),
            refused => panic!("{refused:?}"),
        }
    }

    #[test]
    fn the_stop_signal_is_read_when_named_and_anything_but_a_string_is_refused() {
        let named = br#"{"version":1,"ok":true,"result":{"sockets":[],"stop_signal":"INT"}}"#;
        assert_eq!(given(named).unwrap().stop_signal, Some("INT".to_string()));
        let unnamed = br#"{"version":1,"ok":true,"result":{"sockets":[]}}"#;
        assert_eq!(given(unnamed).unwrap().stop_signal, None);
        for bad in [
            &br#"{"version":1,"ok":true,"result":{"sockets":[],"stop_signal":2}}"#[..],
            br#"{"version":1,"ok":true,"result":{"sockets":[],"stop_signal":["INT"]}}"#,
        ] {
            assert!(given(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_stop_event_is_read_when_named_and_anything_but_a_whole_number_is_refused() {
        let named = br#"{"version":1,"ok":true,"result":{"sockets":[],"stop_event":500}}"#;
        assert_eq!(given(named).unwrap().stop_event, Some(500));
        let unnamed = br#"{"version":1,"ok":true,"result":{"sockets":[],"stop_event":null}}"#;
        assert_eq!(given(unnamed).unwrap().stop_event, None);
        for bad in ["\"500\"", "-1", "1.5", "[500]"] {
            let line = format!(
                r#"{{"version":1,"ok":true,"result":{{"sockets":[],"stop_event":{bad}}}}}"#
            );
            assert!(given(line.as_bytes()).is_err(), "{line}");
        }
    }

    #[test]
    fn shared_blocks_are_hex_in_order_and_anything_else_is_refused() {
        let line = br#"{"version":1,"ok":true,"result":{"sockets":[]},"shared":["00ab","FF",""]}"#;
        assert_eq!(
            shared_blocks(line),
            Ok(vec![vec![0, 0xab], vec![0xff], vec![]])
        );
        assert_eq!(given(line).unwrap().shared, shared_blocks(line).unwrap());
        let none = br#"{"version":1,"ok":true,"result":{"sockets":[]}}"#;
        assert_eq!(shared_blocks(none), Ok(vec![]));
        assert_eq!(given(none).unwrap().shared, Vec::<Vec<u8>>::new());
        let bad = br#"{"version":1,"ok":true,"result":{"sockets":[]},"shared":["0"]}"#;
        assert!(given(bad).is_err());
        for bad in [
            &br#"{"shared":"00"}"#[..],
            br#"{"shared":[1]}"#,
            br#"{"shared":["0"]}"#,
            br#"{"shared":["zz"]}"#,
            br#"{"shared":["+1"]}"#,
            "{\"shared\":[\"\u{e9}\u{e9}\"]}".as_bytes(),
            b"{",
        ] {
            assert!(
                shared_blocks(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
