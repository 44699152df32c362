//! Reading a control connection's requests, the same on every transport (the Unix socket, the
//! Windows named pipe): one line at a time, at most [`MAX_REQUEST`] bytes, closed after
//! [`IDLE_TIMEOUT`] of silence, each line decoded by [`parse_request`].

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::protocol::{parse_request, ErrorCode, Request, Response, MAX_REQUEST};

/// How long a connection may stay silent between requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What to do next on a connection.
#[derive(Debug)]
pub enum Turn {
    /// Carry out this request and answer it.
    Request(Request),
    /// Answer this (a request that could not be decoded) and read on.
    Answer(Response),
    /// Send this last word, if any, and close the connection.
    Close(Option<Response>),
}

/// Reads the connection's next request, skipping blank lines.
pub async fn next_turn(reader: &mut (impl AsyncBufRead + Unpin)) -> Turn {
    loop {
        let line = match tokio::time::timeout(IDLE_TIMEOUT, read_line(reader)).await {
            Err(_) => {
                let idle = Response::error(ErrorCode::IdleTimeout, "idle for too long; closing");
                return Turn::Close(Some(idle));
            }
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) | Ok(Err(Line::Io)) => return Turn::Close(None),
            Ok(Err(Line::TooLarge)) => {
                let big = Response::error(
                    ErrorCode::RequestTooLarge,
                    format!("requests are limited to {MAX_REQUEST} bytes; closing"),
                );
                return Turn::Close(Some(big));
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return match parse_request(&line) {
            Ok(request) => Turn::Request(request),
            Err(response) => Turn::Answer(response),
        };
    }
}

enum Line {
    TooLarge,
    Io,
}

/// Reads one line of at most [`MAX_REQUEST`] bytes (without the newline); `None` at EOF.
async fn read_line(reader: &mut (impl AsyncBufRead + Unpin)) -> Result<Option<Vec<u8>>, Line> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await.map_err(|_| Line::Io)?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > MAX_REQUEST {
            return Err(Line::TooLarge);
        }
        line.extend_from_slice(chunk);
        let used = found.unwrap_or(chunk.len());
        reader.consume(used);
        if found.is_some() {
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_turns(input: &[u8]) -> Vec<Turn> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut reader = input;
            let mut turns = Vec::new();
            loop {
                let turn = next_turn(&mut reader).await;
                let last = matches!(turn, Turn::Close(_));
                turns.push(turn);
                if last {
                    return turns;
                }
            }
        })
    }

    fn code(response: &Response) -> Option<ErrorCode> {
        response.error.as_ref().map(|e| e.code)
    }

    #[test]
    fn requests_are_read_line_by_line_and_blank_lines_skipped() {
        let input = b"\n  \n{\"version\":1,\"command\":\"status\"}\nnot json\n";
        let turns = read_turns(input);
        assert!(matches!(turns[0], Turn::Request(_)), "{turns:?}");
        assert!(
            matches!(&turns[1], Turn::Answer(r) if code(r) == Some(ErrorCode::BadRequest)),
            "{turns:?}"
        );
        assert!(matches!(turns[2], Turn::Close(None)), "{turns:?}");
        assert_eq!(turns.len(), 3);
    }

    #[test]
    fn a_line_beyond_the_bound_closes_with_request_too_large() {
        let mut input = vec![b'x'; MAX_REQUEST + 1];
        input.push(b'\n');
        let turns = read_turns(&input);
        assert!(
            matches!(&turns[..], [Turn::Close(Some(r))] if code(r) == Some(ErrorCode::RequestTooLarge)),
            "{turns:?}"
        );
        // Exactly the bound is a line (here not JSON).
        let mut input = vec![b'x'; MAX_REQUEST];
        input.push(b'\n');
        assert!(matches!(read_turns(&input)[0], Turn::Answer(_)));
    }
}
