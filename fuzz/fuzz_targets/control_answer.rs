//! The worker library's reader of `sockets` answers (`herd::protocol`): any bytes give an
//! answer or an error, never a panic; and whatever herd's serde types read, the library reads
//! the same way.
#![no_main]
use herd::protocol::{parse_sockets_answer, SocketsAnswer};
use herd_cli::control::protocol::Response;
use herd_cli::control::results::SocketsResult;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let library = parse_sockets_answer(line);
    // The two parsers limit nesting differently; agreement is checked below that.
    let nesting = line.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if nesting > 40 {
        return;
    }
    let Ok(serde) = serde_json::from_slice::<Response<SocketsResult>>(line) else {
        return;
    };
    match (serde.ok, serde.result, serde.error, library) {
        (true, Some(result), _, Ok(SocketsAnswer::Sockets(read))) => {
            assert_eq!(read.len(), result.sockets.len());
            for (theirs, ours) in result.sockets.iter().zip(&read) {
                assert_eq!(theirs.name, ours.name);
                assert_eq!(theirs.address, ours.address);
                assert_eq!(theirs.family, ours.family);
                assert_eq!(theirs.sock_type, ours.sock_type);
                if let Some(kind) = theirs.kind {
                    assert_eq!(kind.as_str(), ours.kind);
                }
            }
        }
        (false, _, Some(error), Ok(SocketsAnswer::Refused { code, message })) => {
            assert_eq!(error.code.as_str(), code);
            assert_eq!(error.message, message);
        }
        (true, None, _, _) | (false, _, None, _) => {}
        (ok, _, _, library) => panic!("serde read ok={ok}, the library {library:?}"),
    }
});
