//! A Rust server that takes its socket with the `listenfd` crate, as many Rust servers do:
//! it runs under herd unmodified (herd speaks the same socket-activation protocol).
//!
//! ```text
//! cargo build -p herd-cli --example listenfd_server
//! herd run -w 2 -b http=127.0.0.1:8080 -- target/debug/examples/listenfd_server
//! ```

use std::io::{BufRead, BufReader, Write};

fn main() {
    let mut fds = listenfd::ListenFd::from_env();
    let listener = match fds.take_tcp_listener(0) {
        Ok(Some(listener)) => listener,
        other => {
            eprintln!("listenfd_server: no socket inherited ({other:?})");
            std::process::exit(1);
        }
    };
    for stream in listener.incoming().flatten() {
        let mut line = String::new();
        let mut reader = BufReader::new(&stream);
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let body = format!("listenfd pid {}\n", std::process::id());
        let _ = write!(
            &stream,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}
