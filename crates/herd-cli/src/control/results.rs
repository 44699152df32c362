//! Each command's result, typed: what `"result"` holds in a successful response. The wire
//! form writes an object's members in lexicographic order, as herd always has (see
//! [`Response::to_line`](super::protocol::Response::to_line)); field order here is free.

use serde::{Deserialize, Serialize};

use crate::spec::SocketKind;
pub use crate::supervisor::status::{AutoscaleDecision, AutoscaleStatus, Status};

/// The result of `scale`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleResult {
    /// The number of workers before.
    pub previous: usize,
    /// The number of workers now asked for.
    pub workers: usize,
    /// The autoscaling bounds, when the request set them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<usize>,
    /// See `min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<usize>,
}

/// The result of `upgrade`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeResult {
    /// The generation every worker now runs.
    pub generation: u64,
    /// With `reload_config`: the keys the config file changed that herd's command line gives,
    /// whose values stay. Left out when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<String>,
}

/// The result of `stop`, sent once every worker is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopResult {
    /// Always `true`.
    pub stopped: bool,
}

/// The result of `signal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalResult {
    /// How many workers got the signal.
    pub signalled: usize,
}

/// The result of `reexec`, sent by the new program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReexecResult {
    /// herd's pid (unchanged by a re-exec).
    pub pid: u32,
    /// The new program's version.
    pub version: String,
}

/// The result of `sockets`; the fds travel with the response, in this order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketsResult {
    /// The sockets sent.
    pub sockets: Vec<SocketInfo>,
    /// On Windows, with `attach`: the value, in the attaching process, of its stop request,
    /// an event herd copied into it and sets when it asks it to stop (`herd attach` hands it
    /// to COMMAND as `HERD_STOP_EVENT`). Absent elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_event: Option<u64>,
    /// On Unix, with `attach`: the signal herd stops the attaching process with, as
    /// `HERD_STOP_SIGNAL` names it (`TERM`, `INT`, or a real-time signal's number); `herd
    /// attach` sets that variable for COMMAND. Absent elsewhere, and from older herds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// One socket sent by `sockets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketInfo {
    /// Its name in `LISTEN_FDNAMES`.
    pub name: String,
    /// `tcp`, `udp`, `unix` or `shm`; `None` for a kind this herd does not know.
    #[serde(deserialize_with = "known_kind")]
    pub kind: Option<SocketKind>,
    /// Its address family (`inet`, `inet6`, `unix`), if herd could tell.
    pub family: Option<String>,
    /// Its type (`stream`, `dgram`, `seqpacket`), if herd could tell.
    #[serde(rename = "type")]
    pub sock_type: Option<String>,
    /// Where it is bound.
    pub address: String,
}

/// A socket kind, or `None` for one this herd does not know (a newer herd's).
fn known_kind<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketKind>, D::Error> {
    let name = String::deserialize(deserializer)?;
    Ok(SocketKind::from_name(&name))
}

/// Any command's result, as the server sends it.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum CommandResult {
    /// `status`.
    Status(Box<Status>),
    /// `scale`.
    Scale(ScaleResult),
    /// `upgrade`.
    Upgrade(UpgradeResult),
    /// `stop`.
    Stop(StopResult),
    /// `signal`.
    Signal(SignalResult),
    /// `reexec`.
    Reexec(ReexecResult),
    /// `sockets`.
    Sockets(SocketsResult),
    /// `logs`.
    Logs(LogsResult),
}

macro_rules! from_result {
    ($($variant:ident($type:ty)),*) => {
        $(impl From<$type> for CommandResult {
            fn from(result: $type) -> CommandResult {
                CommandResult::$variant(result)
            }
        })*
    };
}

from_result!(
    Scale(ScaleResult),
    Upgrade(UpgradeResult),
    Stop(StopResult),
    Signal(SignalResult),
    Reexec(ReexecResult),
    Sockets(SocketsResult),
    Logs(LogsResult)
);

/// The result of `logs`: how many of the recent lines follow, each as a [`LogFrame`] on a
/// line of its own, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsResult {
    /// How many lines follow.
    pub lines: usize,
    /// The number (`seq`) of the last line herd kept as it answered, 0 if none yet: where a
    /// follower stands once it has the lines that follow. Absent from an older herd's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
    /// The pid of the herd that numbered them: a follower sends it back with `after` (`of`),
    /// so that a herd that took over, which numbers from 1, does not take another's number.
    /// Absent from an older herd's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// One line a worker wrote, as `--worker-output json` writes it and `logs` sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When herd read it (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The worker's slot.
    pub worker: usize,
    /// The worker's pid.
    pub pid: u32,
    /// The worker's generation.
    pub generation: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, without its line ending.
    pub line: String,
    /// The line was longer than herd passes on whole: the next line of this stream goes on
    /// with it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split: bool,
}

/// What follows a `logs` answer: one line, how many were missed because the client read too
/// slowly, or with `follow` the end, as herd stops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFrame {
    /// The protocol version.
    pub version: u32,
    /// The line's number, from 1, kept across a re-exec: a client that connects again asks
    /// for the lines `after` the last one it saw. Absent from an older herd's frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// A new line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<LogLine>,
    /// This many lines were not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
    /// herd stops, and every line it read was sent: the last frame of a follower. An older
    /// herd closes the connection without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

impl From<Status> for CommandResult {
    fn from(status: Status) -> CommandResult {
        CommandResult::Status(Box::new(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{ErrorCode, Response};

    fn line(response: Response) -> String {
        String::from_utf8(response.to_line()).unwrap()
    }

    /// The lines herd sent when results were built with `json!` (members sorted): old
    /// clients and herds read exactly these.
    #[test]
    fn results_keep_their_wire_form() {
        let scaled = ScaleResult {
            previous: 2,
            workers: 4,
            min: None,
            max: None,
        };
        assert_eq!(
            line(Response::ok(scaled)),
            "{\"version\":1,\"ok\":true,\"result\":{\"previous\":2,\"workers\":4}}\n"
        );
        let bounds = ScaleResult {
            previous: 2,
            workers: 2,
            min: Some(1),
            max: Some(8),
        };
        assert_eq!(
            line(Response::ok(bounds)),
            "{\"version\":1,\"ok\":true,\"result\":{\"max\":8,\"min\":1,\"previous\":2,\"workers\":2}}\n"
        );
        let socket = SocketInfo {
            name: "http".into(),
            kind: Some(SocketKind::Tcp),
            family: Some("inet".into()),
            sock_type: Some("stream".into()),
            address: "127.0.0.1:80".into(),
        };
        assert_eq!(
            line(Response::ok(SocketsResult {
                sockets: vec![socket],
                stop_event: None,
                stop_signal: None,
            })),
            "{\"version\":1,\"ok\":true,\"result\":{\"sockets\":[{\"address\":\"127.0.0.1:80\",\
             \"family\":\"inet\",\"kind\":\"tcp\",\"name\":\"http\",\"type\":\"stream\"}]}}\n"
        );
        assert_eq!(
            line(Response::ok(SocketsResult {
                sockets: vec![],
                stop_event: Some(0x1f4),
                stop_signal: None,
            })),
            "{\"version\":1,\"ok\":true,\"result\":{\"sockets\":[],\"stop_event\":500}}\n"
        );
        assert_eq!(
            line(Response::ok(SocketsResult {
                sockets: vec![],
                stop_event: None,
                stop_signal: Some("INT".into()),
            })),
            "{\"version\":1,\"ok\":true,\"result\":{\"sockets\":[],\"stop_signal\":\"INT\"}}\n"
        );
        let reexec = ReexecResult {
            pid: 7,
            version: "0.1.0".into(),
        };
        assert_eq!(
            line(Response::ok(reexec)),
            "{\"version\":1,\"ok\":true,\"result\":{\"pid\":7,\"version\":\"0.1.0\"}}\n"
        );
        for (result, text) in [
            (
                CommandResult::from(UpgradeResult {
                    generation: 3,
                    overridden: Vec::new(),
                }),
                "{\"generation\":3}",
            ),
            (StopResult { stopped: true }.into(), "{\"stopped\":true}"),
            (SignalResult { signalled: 4 }.into(), "{\"signalled\":4}"),
        ] {
            let expected = format!("{{\"version\":1,\"ok\":true,\"result\":{text}}}\n");
            assert_eq!(line(Response::ok(result)), expected);
        }
        assert_eq!(
            line(Response::error(ErrorCode::Busy, "later")),
            "{\"version\":1,\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"later\"}}\n"
        );
    }

    #[test]
    fn further_fd_batches_have_their_line() {
        let batch = crate::control::protocol::FdBatch {
            version: 1,
            batch: 2,
        };
        assert_eq!(batch.to_line(), b"{\"version\":1,\"batch\":2}\n");
    }

    #[test]
    fn every_error_code_is_written_as_serde_writes_it() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn an_unknown_socket_kind_reads_as_none() {
        let text = r#"{"name":"x","kind":"quic","family":null,"type":null,"address":"a"}"#;
        let socket: SocketInfo = serde_json::from_str(text).unwrap();
        assert_eq!(socket.kind, None);
    }
}
