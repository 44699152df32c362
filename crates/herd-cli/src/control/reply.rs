//! What the supervisor answers a control client: a response, and the sockets handed over with
//! it (the `sockets` command's).

use super::protocol::Response;

/// A socket a reply hands over: on Unix an fd sent with the response line (`SCM_RIGHTS`).
#[cfg(unix)]
pub type Handed = std::os::unix::io::OwnedFd;

/// A socket a reply hands over: on Windows one to duplicate for the client's process.
#[cfg(windows)]
pub type Handed = std::os::windows::io::OwnedSocket;

/// A response, and the sockets that travel with it.
#[derive(Debug)]
pub struct Reply {
    /// The JSON response.
    pub response: Response,
    /// Sent with the response line (on Unix in batches of at most 252).
    pub fds: Vec<Handed>,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply {
            response,
            fds: Vec::new(),
        }
    }
}

/// The response line of a reply whose sockets travel as `WSAPROTOCOL_INFOW` blocks (Windows):
/// the response with a top-level member `"shared"`, one lowercase hex string per block, in
/// the order of the sockets the result names. Python's `socket.fromshare` takes each block's
/// bytes as they are.
pub fn line_with_blocks(response: &Response, blocks: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let mut value = match serde_json::to_value(response) {
        Ok(serde_json::Value::Object(object)) => object,
        _ => return response.to_line(),
    };
    let hex = |block: &[u8]| block.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let shared = blocks.iter().map(|b| hex(b.as_ref()).into()).collect();
    value.insert("shared".into(), serde_json::Value::Array(shared));
    let mut line = serde_json::to_vec(&value).unwrap_or_else(|_| response.to_line());
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::ErrorCode;

    #[test]
    fn blocks_ride_in_the_line_as_hex_in_order() {
        let response = Response::error(ErrorCode::Busy, "x");
        let line = line_with_blocks(&response, &[vec![0u8, 0xab], vec![0xff]]);
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["shared"], serde_json::json!(["00ab", "ff"]));
        assert_eq!(value["error"]["code"], "busy");
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(line.ends_with(b"\n"));
    }
}
