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
//! with its pid and worker slot. On Windows, asked to stop (herd's stop event), it finishes
//! the request it is answering, then exits; on Unix SIGTERM ends it at once, so a request it
//! is answering then is cut off (a server that must drain handles SIGTERM itself).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

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
    // Asked to stop (on Windows; on Unix SIGTERM ends it), it stops between two requests,
    // never holding a connection it took: it polls accept and waits on its stop event between.
    let stop = herd::stop_requested()?;
    listener.set_nonblocking(stop.is_some())?;
    // A readiness message that cannot be sent is no reason to stop serving: herd counts the
    // worker ready after --ready delay=, or replaces it after --ready-timeout with notify.
    if let Err(e) = herd::notify::ready() {
        eprintln!("hello: cannot tell herd it is ready: {e}");
    }
    let slot = herd::worker_slot().map_or("-".to_string(), |s| s.to_string());
    let pid = std::process::id();
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => match &stop {
                Some(stop) if stop.wait_timeout(Duration::from_millis(5)) => return Ok(()),
                _ => continue,
            },
            Err(err) => {
                eprintln!("hello: accept: {err}");
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
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
