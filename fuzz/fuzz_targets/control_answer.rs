//! The worker library's reader of `sockets` answers (`herd::protocol`): any bytes give an
//! answer or an error, never a panic; and whatever herd's own client reads
//! (`control::client::decode_answer`, and on Windows the shared blocks with
//! `herd::protocol::shared_blocks`), the library reads the same way. A number (an input made
//! of the characters numbers are written with), put in an answer, is read by both or neither.
#![no_main]
use herd::protocol::{parse_sockets_answer, shared_blocks, SocketsAnswer};
use herd_cli::control::client::{decode_answer, ClientError};
use herd_cli::control::results::SocketsResult;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    numbers_agree(line);
    let library = parse_sockets_answer(line);
    // The two parsers limit nesting differently; agreement is checked below that.
    let nesting = line.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if nesting > 40 {
        return;
    }
    let path = std::path::Path::new("/fuzz.sock");
    match (herds_client(line, path), library) {
        (Ok(result), Ok(SocketsAnswer::Sockets(read))) => {
            assert_eq!(read.stop_signal, result.stop_signal);
            assert_eq!(read.stop_event, result.stop_event);
            assert_eq!(read.sockets.len(), result.sockets.len());
            for (theirs, ours) in result.sockets.iter().zip(&read.sockets) {
                assert_eq!(theirs.name, ours.name);
                assert_eq!(theirs.address, ours.address);
                assert_eq!(theirs.family, ours.family);
                assert_eq!(theirs.sock_type, ours.sock_type);
                if let Some(kind) = theirs.kind {
                    assert_eq!(kind.as_str(), ours.kind);
                }
            }
        }
        (Err(ClientError::Refused { error, .. }), Ok(SocketsAnswer::Refused { code, message })) => {
            assert_eq!(error.code.as_str(), code);
            assert_eq!(error.message, message);
        }
        (Ok(_), library) => panic!("herd's client read sockets, the library {library:?}"),
        (Err(ClientError::Refused { .. }), library) => {
            panic!("herd's client read a refusal, the library {library:?}")
        }
        // What herd's client refuses, the library may still read (a code it does not know).
        (Err(_), _) => {}
    }
});

/// What herd's client reads: the answer, and on Windows its shared blocks too, apart.
fn herds_client(line: &[u8], path: &std::path::Path) -> Result<SocketsResult, ClientError> {
    let result = decode_answer::<SocketsResult>(line, path)?;
    match shared_blocks(line) {
        Ok(_) => Ok(result),
        Err(why) => Err(ClientError::NotHerd {
            path: path.to_path_buf(),
            why,
        }),
    }
}

/// Both readers accept `text` as the number in an answer, or both refuse it.
fn numbers_agree(text: &[u8]) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if text.is_empty() || !text.bytes().all(|b| b"-+.eE0123456789".contains(&b)) {
        return;
    }
    let answer = format!(r#"{{"version":1,"ok":true,"n":{text},"result":{{"sockets":[]}}}}"#);
    let path = std::path::Path::new("/fuzz.sock");
    let theirs = decode_answer::<SocketsResult>(answer.as_bytes(), path);
    let ours = parse_sockets_answer(answer.as_bytes());
    assert_eq!(theirs.is_ok(), ours.is_ok(), "{answer}: {theirs:?} {ours:?}");
}
