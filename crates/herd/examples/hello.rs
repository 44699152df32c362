//! A single-threaded HTTP worker built on the herd library, the same program on Unix and
//! Windows.
//!
//! ```text
//! cargo build --release -p herd --example hello
//! herd run -w 4 -b http=127.0.0.1:8080 -- target/release/examples/hello
//! curl http://127.0.0.1:8080/
//! ```
//!
//! (On Windows: `herd.exe run -w 4 -b http=127.0.0.1:8080 -- hello.exe`.) It takes the socket
//! named `http` (or else the first one), tells herd it is ready, and answers every request
//! with its pid and worker slot. Asked to stop (SIGTERM on Unix, herd's stop event on
//! Windows: `herd::stop_requested`), it finishes the request it is answering, then exits, so
//! an upgrade or a stop cuts no request off.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

fn main() {
    if let Err(err) = run() {
        eprintln!("hello: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut sockets = herd::Sockets::from_env()?;
    let listener: TcpListener = match sockets.take_tcp_listener("http") {
        Ok(Some(listener)) => listener,
        _ => sockets
            .take_tcp_listener_at(0)?
            .ok_or("no socket inherited: run me under `herd run -b http=HOST:PORT -- ...`")?,
    };
    // Asked to stop, it stops between two requests, never holding a connection it took.
    let stop = herd::stop_requested()?;
    // A readiness message that cannot be sent is no reason to stop serving: herd counts the
    // worker ready after --ready delay=, or replaces it after --ready-timeout with notify.
    if let Err(e) = herd::notify::ready() {
        eprintln!("hello: cannot tell herd it is ready: {e}");
    }
    let slot = herd::worker_slot().map_or("-".to_string(), |s| s.to_string());
    let pid = std::process::id();
    loop {
        let accepted = match &stop {
            Some(stop) => stop.accept(&listener),
            None => listener.accept().map(|(stream, _)| Some(stream)),
        };
        let stream = match accepted {
            Ok(Some(stream)) => stream,
            Ok(None) => return Ok(()),
            Err(err) => {
                eprintln!("hello: accept: {err}");
                continue;
            }
        };
        // Read the request head, then answer; errors on one connection never stop the worker.
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        while reader.read_line(&mut line).map_or(false, |n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let body = format!("hello from pid {pid}, worker {slot}\n");
        let _ = write!(
            &stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}
