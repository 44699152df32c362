//! The worker library speaks the `sockets` command without serde (`herd::protocol`): every
//! message it sends or reads goes through both forms here, which must agree byte for byte on
//! requests and value for value on answers.

use herd::protocol::{
    parse_sockets_answer, SocketDescription, SocketsAnswer, SocketsGiven, SocketsRequest,
};

use super::protocol::encode_request;
use super::protocol::{parse_request, Command, ErrorCode, Request, Response, VERSION};
use super::results::{SocketInfo, SocketsResult};
use crate::spec::SocketKind;

/// Names that exercise the string escapes both sides write.
const NAMES: &[&str] = &[
    "http",
    "a\"quoted\"\\name",
    "tab\tnew\nline\r\u{8}\u{c}\u{1}\u{1f}",
    "é😀\u{7f}\u{2028}",
    "",
];

fn requests() -> Vec<SocketsRequest> {
    let mut all = Vec::new();
    for attach in [false, true] {
        all.push(SocketsRequest {
            only: Vec::new(),
            attach,
        });
        for name in NAMES {
            all.push(SocketsRequest {
                only: vec![name.to_string()],
                attach,
            });
        }
        all.push(SocketsRequest {
            only: NAMES.iter().map(|n| n.to_string()).collect(),
            attach,
        });
    }
    all
}

#[test]
fn every_sockets_request_is_encoded_as_serde_encodes_it() {
    for request in requests() {
        let only = (!request.only.is_empty()).then(|| request.only.clone());
        let command = Command::Sockets {
            only,
            attach: request.attach,
        };
        let line = request.encode();
        assert_eq!(
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&encode_request(command.clone())),
            "{request:?}"
        );
        let parsed = parse_request(&line[..line.len() - 1]).expect("herd reads it");
        assert_eq!(
            parsed,
            Request {
                version: VERSION,
                command
            }
        );
    }
}

fn answer(response: Response) -> Result<SocketsAnswer, String> {
    let line = response.to_line();
    assert_eq!(line.last(), Some(&b'\n'));
    parse_sockets_answer(&line[..line.len() - 1])
}

#[test]
fn every_sockets_result_reads_the_same_in_the_library() {
    let kinds = [
        SocketKind::Tcp,
        SocketKind::Udp,
        SocketKind::Unix,
        SocketKind::Shm,
    ];
    let sockets: Vec<SocketInfo> = NAMES
        .iter()
        .zip(kinds.iter().cycle())
        .enumerate()
        .map(|(i, (name, kind))| SocketInfo {
            name: name.to_string(),
            kind: Some(*kind),
            family: (i % 2 == 0).then(|| "inet6".to_string()),
            sock_type: (i % 3 != 0).then(|| "stream".to_string()),
            address: format!("[::1]:{i} {name}"),
        })
        .collect();
    for count in [0, 1, sockets.len()] {
        let sent = sockets[..count].to_vec();
        let expected: Vec<SocketDescription> = sent
            .iter()
            .map(|s| SocketDescription {
                name: s.name.clone(),
                kind: s.kind.map(SocketKind::as_str).unwrap_or("").to_string(),
                family: s.family.clone(),
                sock_type: s.sock_type.clone(),
                address: s.address.clone(),
            })
            .collect();
        let read = answer(Response::ok(SocketsResult {
            sockets: sent,
            stop_event: None,
            stop_signal: None,
        }));
        let expected = SocketsGiven {
            sockets: expected,
            ..SocketsGiven::default()
        };
        assert_eq!(read, Ok(SocketsAnswer::Sockets(expected)));
    }
}

#[test]
fn the_stop_signal_and_event_read_the_same_in_the_library() {
    let named = [None, Some("TERM"), Some("INT"), Some("34")];
    for (named, event) in named
        .into_iter()
        .zip([None, Some(0x1f4), Some(1), Some(u64::MAX)])
    {
        let response = Response::ok(SocketsResult {
            sockets: Vec::new(),
            stop_event: event,
            stop_signal: named.map(str::to_string),
        });
        let expected = SocketsGiven {
            stop_signal: named.map(str::to_string),
            stop_event: event,
            ..SocketsGiven::default()
        };
        assert_eq!(
            answer(response),
            Ok(SocketsAnswer::Sockets(expected)),
            "{named:?} {event:?}"
        );
    }
}

#[test]
fn every_error_code_reads_the_same_in_the_library() {
    for code in ErrorCode::ALL {
        for message in NAMES {
            let read = answer(Response::error(code, *message));
            let expected = SocketsAnswer::Refused {
                code: code.as_str().to_string(),
                message: message.to_string(),
            };
            assert_eq!(read, Ok(expected), "{code}");
        }
    }
}

/// What older clients wrote (the library put `attach` before `only`; the takeover wrote its
/// stop by hand): herd still reads each as the same request.
#[test]
fn the_requests_of_older_clients_still_parse() {
    let old = |line: &str| parse_request(line.as_bytes()).unwrap().command;
    assert_eq!(
        old(r#"{"version":1,"command":"sockets","attach":true,"only":["http"]}"#),
        Command::Sockets {
            only: Some(vec!["http".into()]),
            attach: true
        }
    );
    assert_eq!(
        old(r#"{"version":1,"command":"stop","takeover":true}"#),
        Command::Stop {
            grace_ms: None,
            fast: false,
            takeover: true
        }
    );
    assert_eq!(
        old(r#"{"version":1,"command":"stop"}"#),
        Command::Stop {
            grace_ms: None,
            fast: false,
            takeover: false
        }
    );
}

/// How an answer reads: the sockets' names, a refusal's code, or not herd's answer.
#[derive(Debug, PartialEq, Eq)]
enum Reading {
    Sockets(Vec<String>),
    Refused(String),
    NotHerd,
}

fn read_by_serde(line: &str) -> Reading {
    let path = std::path::Path::new("/h.sock");
    match super::answer::decode_answer::<SocketsResult>(line.as_bytes(), path) {
        Ok(result) => Reading::Sockets(result.sockets.into_iter().map(|s| s.name).collect()),
        Err(super::answer::ClientError::Refused { error, .. }) => {
            Reading::Refused(error.code.as_str().to_string())
        }
        Err(_) => Reading::NotHerd,
    }
}

fn read_by_library(line: &str) -> Reading {
    match parse_sockets_answer(line.as_bytes()) {
        Ok(SocketsAnswer::Sockets(given)) => {
            Reading::Sockets(given.sockets.into_iter().map(|s| s.name).collect())
        }
        Ok(SocketsAnswer::Refused { code, .. }) => Reading::Refused(code),
        Err(_) => Reading::NotHerd,
    }
}

/// A member neither reader knows, holding a number out of f64's range (found by the fuzzer):
/// both skip it, and both still refuse a name given twice after it.
#[test]
fn a_number_out_of_range_in_an_unknown_member_reads_alike_in_both_readers() {
    let cases = [
        (
            r#"{"version":1,"ok":true,"n":4e5333,"result":{"sockets":[]}}"#,
            Reading::Sockets(Vec::new()),
        ),
        (
            r#"{"version":1,"ok":true,"n":-4e5333,"result":{"sockets":[],"sockets":[]}}"#,
            Reading::NotHerd,
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(read_by_serde(line), expected, "serde: {line}");
        assert_eq!(read_by_library(line), expected, "library: {line}");
    }
}

/// Each answer read by the client's reader and by the worker library's, as expected.
fn read_alike(cases: impl IntoIterator<Item = (String, Reading)>) {
    for (line, expected) in cases {
        assert_eq!(read_by_serde(&line), expected, "serde: {line}");
        assert_eq!(read_by_library(&line), expected, "library: {line}");
    }
}

/// The oddities of versions and names given twice: both readers take an answer, or neither.
#[test]
fn odd_answers_read_alike_in_both_readers() {
    let socket = r#"{"name":"a","kind":"tcp","family":null,"type":null,"address":"x"}"#;
    let sockets = |version: &str| {
        format!(r#"{{"version":{version},"ok":true,"result":{{"sockets":[{socket}]}}}}"#)
    };
    let a = || Reading::Sockets(vec!["a".to_string()]);
    let cases = [
        (sockets("1"), a()),
        (sockets("1.0"), Reading::NotHerd),
        (sockets("1e0"), Reading::NotHerd),
        (sockets("2"), Reading::NotHerd),
        (sockets("\"1\""), Reading::NotHerd),
        (sockets("1,\"version\":1"), Reading::NotHerd),
        (
            r#"{"ok":true,"result":{"sockets":[]}}"#.to_string(),
            Reading::NotHerd,
        ),
        (
            r#"{"version":1,"ok":false,"ok":true,"result":{"sockets":[]}}"#.to_string(),
            Reading::NotHerd,
        ),
        (
            format!(r#"{{"version":1,"ok":true,"result":{{"sockets":[],"sockets":[{socket}]}}}}"#),
            Reading::NotHerd,
        ),
        (
            r#"{"version":1,"ok":true,"result":{"sockets":[{"name":"a","name":"b","kind":"tcp","address":"x"}]}}"#.to_string(),
            Reading::NotHerd,
        ),
        (
            r#"{"version":1,"ok":false,"error":{"code":"busy","code":"busy","message":""}}"#.to_string(),
            Reading::NotHerd,
        ),
        (
            r#"{"version":1,"ok":false,"error":{"code":"busy","message":""}}"#.to_string(),
            Reading::Refused("busy".to_string()),
        ),
        // The same name in two sockets is two objects' business, not a name given twice.
        (
            format!(r#"{{"version":1,"ok":true,"result":{{"sockets":[{socket},{socket}]}}}}"#),
            Reading::Sockets(vec!["a".to_string(), "a".to_string()]),
        ),
    ];
    read_alike(cases);
    // Not UTF-8 is nobody's answer.
    let latin1 = b"{\"version\":1,\"ok\":true,\"result\":{\"sockets\":[{\"name\":\"\xe9\",\"kind\":\"tcp\",\"address\":\"x\"}]}}";
    let path = std::path::Path::new("/h.sock");
    assert!(super::answer::decode_answer::<SocketsResult>(latin1, path).is_err());
    assert!(parse_sockets_answer(latin1).is_err());
}

/// An array where the protocol has an object (serde_json reads a struct from one, in field
/// order): the envelope, the result, a socket, a refusal's error; both readers refuse it.
#[test]
fn arrays_where_objects_belong_read_alike_in_both_readers() {
    let cases = [
        (r#"[1,true,{"sockets":[]}]"#.to_string(), Reading::NotHerd),
        (
            r#"{"version":1,"ok":true,"result":[[]]}"#.to_string(),
            Reading::NotHerd,
        ),
        (
            r#"{"version":1,"ok":true,"result":{"sockets":[["a","tcp",null,null,"x"]]}}"#
                .to_string(),
            Reading::NotHerd,
        ),
        (
            r#"{"version":1,"ok":false,"error":["busy",""]}"#.to_string(),
            Reading::NotHerd,
        ),
    ];
    read_alike(cases);
}

/// The stop event's number, as odd as the version's: a whole number that fits, or null.
#[test]
fn stop_event_numbers_read_alike_in_both_readers() {
    let read = ["0", "7", "18446744073709551615", "null"];
    let refused = [
        "-0",
        "-1",
        "1.0",
        "1e0",
        "\"7\"",
        "18446744073709551616",
        "[7]",
    ];
    let event = |(value, expected): (&str, Reading)| {
        let result = format!(r#"{{"sockets":[],"stop_event":{value}}}"#);
        (
            format!(r#"{{"version":1,"ok":true,"result":{result}}}"#),
            expected,
        )
    };
    let events = (read.iter().map(|v| (*v, Reading::Sockets(Vec::new()))))
        .chain(refused.iter().map(|v| (*v, Reading::NotHerd)))
        .map(event);
    read_alike(events);
}

/// What herd answers to a request's version, as the library would send it (`1`) or as an
/// odd client might (`1.0`, `2`, a string, twice).
#[test]
fn a_requests_version_is_judged_as_documented() {
    let code = |line: &str| {
        parse_request(line.as_bytes())
            .unwrap_err()
            .error
            .unwrap()
            .code
    };
    let library = SocketsRequest::default().encode();
    assert!(parse_request(&library[..library.len() - 1]).is_ok());
    let cases = [
        (
            r#"{"version":1.0,"command":"status"}"#,
            ErrorCode::UnsupportedVersion,
        ),
        (
            r#"{"version":2,"command":"status"}"#,
            ErrorCode::UnsupportedVersion,
        ),
        (
            r#"{"version":"1","command":"status"}"#,
            ErrorCode::BadRequest,
        ),
        (r#"{"command":"status"}"#, ErrorCode::BadRequest),
        (
            r#"{"version":1,"version":1,"command":"status"}"#,
            ErrorCode::BadRequest,
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(code(line), expected, "{line}");
    }
}
