//! A FastCGI client for one request, enough to ask php-fpm for a script's output (the
//! FastCGI 1.0 specification: records of a version, type, request id and content).

use std::io::{Error, ErrorKind, Read, Write};
use std::net::TcpStream;

use super::*;

const BEGIN_REQUEST: u8 = 1;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
/// The role of a responder, in `BEGIN_REQUEST`'s body.
const RESPONDER: u16 = 1;

/// Runs the script `script` (an absolute path) through the FastCGI server at `addr` over a
/// new connection; returns the body of the script's answer (after its CGI headers).
pub fn fastcgi_get(addr: &str, script: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut params = Vec::new();
    for (name, value) in [
        ("SCRIPT_FILENAME", script),
        ("REQUEST_METHOD", "GET"),
        ("SERVER_PROTOCOL", "HTTP/1.0"),
    ] {
        name_value(&mut params, name, value);
    }
    let mut begin = RESPONDER.to_be_bytes().to_vec();
    begin.extend_from_slice(&[0; 6]); // flags (close the connection after), reserved
    let mut out = Vec::new();
    for (kind, content) in [
        (BEGIN_REQUEST, &begin[..]),
        (PARAMS, &params[..]),
        (PARAMS, &[][..]),
        (STDIN, &[][..]),
    ] {
        record(&mut out, kind, content);
    }
    // One write: a server may answer as soon as it has the whole request.
    stream.write_all(&out)?;
    let mut answer = Vec::new();
    loop {
        let mut header = [0u8; 8];
        stream.read_exact(&mut header)?;
        let length = u16::from_be_bytes([header[4], header[5]]) as usize;
        let mut content = vec![0u8; length + header[6] as usize];
        stream.read_exact(&mut content)?;
        match header[1] {
            STDOUT => answer.extend_from_slice(&content[..length]),
            END_REQUEST => break,
            _ => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    match answer.split_once("\r\n\r\n") {
        Some((_, body)) => Ok(body.to_string()),
        None => Err(Error::new(
            ErrorKind::InvalidData,
            format!("not a CGI answer: {answer:?}"),
        )),
    }
}

/// Appends a record of type `kind` for request 1 holding `content` (at most 64 KiB).
fn record(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    let length = u16::try_from(content.len()).expect("a record holds at most 64 KiB");
    out.extend_from_slice(&[1, kind, 0, 1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // no padding, reserved
    out.extend_from_slice(content);
}

/// Appends a name-value pair: lengths below 128 in one byte, others in four with the top bit set.
fn name_value(out: &mut Vec<u8>, name: &str, value: &str) {
    for length in [name.len(), value.len()] {
        if length < 128 {
            out.push(length as u8);
        } else {
            out.extend_from_slice(&(length as u32 | 0x8000_0000).to_be_bytes());
        }
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(value.as_bytes());
}
