//! The control protocol's messages: newline-delimited JSON, one request and one response per
//! line, documented in `docs/control-protocol.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::results::CommandResult;

mod error_code;
mod sorted_json;
pub use error_code::ErrorCode;

/// The protocol version this herd speaks.
pub const VERSION: u32 = 1;

/// The longest request line, in bytes.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A request: `{"version": 1, "command": "...", ...arguments}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Must be [`VERSION`].
    pub version: u32,
    /// What to do, with its arguments.
    #[serde(flatten)]
    pub command: Command,
}

/// The commands, tagged by `"command"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// The supervisor, its workers and sockets.
    Status,
    /// Set the number of workers (`workers`) or change it (`delta`).
    Scale {
        /// The new number of workers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workers: Option<usize>,
        /// Workers to add (positive) or remove (negative).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delta: Option<i64>,
        /// Autoscale between `min` and `max` (both given).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<usize>,
        /// See `min`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<usize>,
    },
    /// Replace every worker by a new generation; the reply comes when the upgrade ends.
    Upgrade {
        /// How long the whole upgrade may take, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
        /// Read herd's config file again first, for the new generation.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reload_config: bool,
    },
    /// Stop herd; the reply comes when every worker is gone.
    Stop {
        /// How long workers may take to finish, in milliseconds (default: `--grace`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grace_ms: Option<u64>,
        /// Kill the workers at once.
        #[serde(default)]
        fast: bool,
        /// The stop ends a takeover: leave the socket files in place, the herd that took over
        /// owns them now.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        takeover: bool,
    },
    /// Fetch the listening sockets: the response carries them as `SCM_RIGHTS`. With `attach`,
    /// the peer (identified by its credentials) is listed as an attached worker and gets the
    /// stop signal when herd stops.
    Sockets {
        /// Only these sockets, by name (default: all).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        only: Option<Vec<String>>,
        /// Register the peer as an attached worker.
        #[serde(default)]
        attach: bool,
    },
    /// Replace herd's program with the binary now on disk, in the same process; the answer
    /// comes from the new program.
    Reexec,
    /// Send a signal to every worker, or to the one in `slot`.
    Signal {
        /// A signal name or number: `HUP`, `SIGUSR1`, `10`.
        signal: String,
        /// Only this slot's worker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot: Option<usize>,
    },
    /// The workers' recent output lines (with `--worker-output prefix|json`); with `follow`,
    /// the connection stays open and every new line follows as a [`LogFrame`].
    Logs {
        /// Only this slot's workers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot: Option<usize>,
        /// At most this many of the last lines (default: every line herd keeps).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<usize>,
        /// Keep sending new lines.
        #[serde(default)]
        follow: bool,
        /// Only the lines after the one of this number (`seq` in a [`LogFrame`]): the last
        /// one a follower printed before it connected again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        /// The pid of the herd `after` was numbered by: another herd (one that took over) numbers
        /// its own lines from 1, so `after` is ignored there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        of: Option<u32>,
    },
}

/// The names of the commands, for `unknown_command` errors.
pub const COMMANDS: &[&str] = &[
    "status", "scale", "upgrade", "stop", "sockets", "signal", "reexec", "logs",
];

/// The arguments each command takes (besides `version` and `command`).
fn arguments(command: &str) -> &'static [&'static str] {
    match command {
        "scale" => &["workers", "delta", "min", "max"],
        "upgrade" => &["timeout_ms", "reload_config"],
        "stop" => &["grace_ms", "fast", "takeover"],
        "signal" => &["signal", "slot"],
        "sockets" => &["only", "attach"],
        "logs" => &["slot", "lines", "follow", "after", "of"],
        _ => &[],
    }
}

/// A response: `{"version": 1, "ok": true, "result": ...}` or
/// `{"version": 1, "ok": false, "error": {"code": "...", "message": "..."}}`. The server sends
/// a [`CommandResult`]; a client reads the result type of the command it sent (or
/// [`serde_json::Value`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "R: Serialize", deserialize = "R: Deserialize<'de>"))]
pub struct Response<R = CommandResult> {
    /// The protocol version of the responder.
    pub version: u32,
    /// Whether the command succeeded.
    pub ok: bool,
    /// The command's result, when it succeeded.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "members_in_order"
    )]
    pub result: Option<R>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Writes a result with every object's members in lexicographic order, the order herd has
/// always sent them in: byte for byte what older clients and herds saw. (herd's replies are
/// [`Response::to_line`]'s, which writes the same bytes without the whole `Value` tree.)
fn members_in_order<R: Serialize, S: serde::Serializer>(
    result: &Option<R>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let value = serde_json::to_value(result).map_err(serde::ser::Error::custom)?;
    value.serialize(serializer)
}

/// A failure: a stable code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One of [`ErrorCode`], in snake case.
    pub code: ErrorCode,
    /// What went wrong and how to fix it.
    pub message: String,
}

impl<R> Response<R> {
    /// A failure.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response<R> {
        Response {
            version: VERSION,
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }
}

impl Response {
    /// A success.
    pub fn ok(result: impl Into<CommandResult>) -> Response {
        Response {
            version: VERSION,
            ok: true,
            result: Some(result.into()),
            error: None,
        }
    }

    /// The response as one line of JSON, newline included: the bytes of its `Serialize`
    /// (`serde_json::to_vec`), with the result written member by member instead of through one
    /// `serde_json::Value` tree (a status grows with the workers).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = Vec::with_capacity(256);
        if self.write_line(&mut line).is_err() {
            line = br#"{"version":1,"ok":false,"error":{"code":"internal","message":"unserializable response"}}"#.to_vec();
        }
        line.push(b'\n');
        line
    }

    /// The members in the order `Response` declares them, `None`s left out, as its derived
    /// `Serialize` writes them.
    fn write_line(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(
            format!("{{\"version\":{},\"ok\":{}", self.version, self.ok).as_bytes(),
        );
        if let Some(result) = &self.result {
            out.extend_from_slice(b",\"result\":");
            sorted_json::write(result, out)?;
        }
        if let Some(error) = &self.error {
            out.extend_from_slice(b",\"error\":");
            serde_json::to_writer(&mut *out, error)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// The line that carries a further batch of a `sockets` response's fds:
/// `{"version":1,"batch":N}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdBatch {
    /// [`VERSION`].
    pub version: u32,
    /// The batch's number: 1 for the second batch, and so on.
    pub batch: usize,
}

impl FdBatch {
    /// The line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// Parses one request line, classifying what is wrong with it.
pub fn parse_request(line: &[u8]) -> Result<Request, Response> {
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
        Response::error(
            ErrorCode::BadRequest,
            format!("the request is not valid JSON: {e}"),
        )
    })?;
    // JSON objects keep the last of two equal keys: a request that names its command twice
    // would run what a reader of its first half would not expect.
    // (Read as a `Value` already: neither too deep nor anything but JSON.)
    if let Ok(Some(key)) = super::named_twice::named_twice(line) {
        return Err(Response::error(
            ErrorCode::BadRequest,
            format!("the request names {key:?} twice"),
        ));
    }
    let object = value.as_object().ok_or_else(|| {
        Response::error(ErrorCode::BadRequest, "the request must be a JSON object")
    })?;
    // Version 1 is the integer 1: any other number (`2`, `1.0`, `1e0`) is another version.
    match object.get("version") {
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(v @ serde_json::Value::Number(_)) => return Err(unsupported_version(v, line)),
        _ => {
            return Err(Response::error(
                ErrorCode::BadRequest,
                format!("the request needs \"version\": {VERSION}"),
            ))
        }
    }
    let command = object
        .get("command")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| Response::error(ErrorCode::BadRequest, "the request needs a \"command\""))?;
    if !COMMANDS.contains(&command) {
        return Err(Response::error(
            ErrorCode::UnknownCommand,
            format!(
                "unknown command {command:?}; known: {}",
                COMMANDS.join(", ")
            ),
        ));
    }
    let known = arguments(command);
    if let Some(extra) = object
        .keys()
        .find(|k| !["version", "command"].contains(&k.as_str()) && !known.contains(&k.as_str()))
    {
        let takes = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        return Err(Response::error(
            ErrorCode::InvalidArgument,
            format!("{command} takes no argument {extra:?} (its arguments: {takes})"),
        ));
    }
    let arguments = integers_as_written(command, line, value.clone())?;
    let request: Request = serde_json::from_value(arguments)
        .map_err(|e| Response::error(ErrorCode::InvalidArgument, format!("{command}: {e}")))?;
    check_durations(&request)?;
    Ok(request)
}

/// The answer to a `version` `v` that is a number other than 1, which it says as the request
/// `line` wrote it when it is an integer, as [`integers_as_written`] reads the arguments: `-0`
/// is version 0 (not `-0.0`), and one beyond 64 bits is out of range (not a float).
fn unsupported_version(v: &serde_json::Value, line: &[u8]) -> Response {
    let written = integers(line).into_iter().find(|(key, _)| key == "version");
    let version = match written {
        Some((_, raw)) if raw == "-0" => "0 is not supported".to_string(),
        Some((_, raw)) if !fits_64_bits(&raw) => format!("{raw} is out of range (beyond 64 bits)"),
        _ => format!("{v} is not supported"),
    };
    Response::error(
        ErrorCode::UnsupportedVersion,
        format!(
            "protocol version {version}; this herd speaks version {VERSION} (send \"version\": \
             {VERSION})"
        ),
    )
}

/// Whether the integer `raw` (as [`integers`] finds them) fits in 64 bits, signed or not.
fn fits_64_bits(raw: &str) -> bool {
    raw.parse::<i64>().is_ok() || raw.parse::<u64>().is_ok()
}

/// `arguments` with the integers of the request `line` read as written, not as serde_json
/// reads them: `-0` is 0; one beyond 64 bits is out of range (see [`integers`]).
fn integers_as_written(
    command: &str,
    line: &[u8],
    mut arguments: serde_json::Value,
) -> Result<serde_json::Value, Response> {
    // `version` is 1 here (see [`unsupported_version`]).
    for (key, raw) in integers(line)
        .into_iter()
        .filter(|(key, _)| key != "version")
    {
        if raw == "-0" {
            arguments[key] = serde_json::Value::from(0);
        } else if !fits_64_bits(&raw) {
            return Err(Response::error(
                ErrorCode::InvalidArgument,
                format!(
                    "{command}: {key} {raw} is out of range: no argument takes an integer \
                     beyond 64 bits"
                ),
            ));
        }
    }
    Ok(arguments)
}

/// The request's members written as integers (`version` and the arguments), with their text:
/// `-0` is zero in JSON, which serde_json reads as the float `-0.0` (and an integer argument
/// refused: `delta`, `workers`, `slot`, `lines`, a duration in ms; a version said as `-0.0`),
/// and one beyond 64 bits it reads as a float too (refused as "floating point
/// `1.8446744073709552e19`", of an integer). `-0.0` and `-0e0` are floats, refused as `0.0` is.
fn integers(line: &[u8]) -> Vec<(String, String)> {
    let members: BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(line).unwrap_or_default();
    (members.into_iter())
        .map(|(key, raw)| (key, raw.get().trim().to_string()))
        .filter(|(_, raw)| {
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        })
        .collect()
}

/// Durations past [`MAX_DURATION`](crate::cli::MAX_DURATION) are refused, as on the command
/// line: a deadline that far away would overflow the clock.
fn check_durations(request: &Request) -> Result<(), Response> {
    let (name, ms) = match request.command {
        Command::Upgrade {
            timeout_ms: Some(ms),
            ..
        } => ("timeout_ms", ms),
        Command::Stop {
            grace_ms: Some(ms), ..
        } => ("grace_ms", ms),
        _ => return Ok(()),
    };
    let max = crate::cli::MAX_DURATION.as_millis();
    if u128::from(ms) > max {
        return Err(Response::error(
            ErrorCode::InvalidArgument,
            format!("{name} {ms} is too long: at most {max} (365 days)"),
        ));
    }
    Ok(())
}

/// A request as one line, newline included.
pub fn encode_request(command: Command) -> Vec<u8> {
    let request = Request {
        version: VERSION,
        command,
    };
    // A request is strings, numbers and booleans: it always serializes.
    let mut line = serde_json::to_vec(&request).unwrap_or_default();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests;
