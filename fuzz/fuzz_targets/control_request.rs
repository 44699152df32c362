//! The control protocol's request parser: any line gives a request or an error response.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    match herd_cli::control::protocol::parse_request(line) {
        Ok(request) => {
            // A parsed request serializes back, and parses again to the same request.
            let text = serde_json::to_vec(&request).expect("serializable");
            let again = herd_cli::control::protocol::parse_request(&text).expect("reparses");
            assert_eq!(again, request);
        }
        Err(response) => assert!(!response.ok && response.error.is_some()),
    }
});
