//! An async worker: tokio on a socket herd made non-blocking.
//!
//! ```text
//! cargo build --release -p herd --features tokio --example tokio_worker
//! herd run -w 4 -b http=127.0.0.1:8080,nonblocking -- target/release/examples/tokio_worker
//! ```

use std::io::Write;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One line to stderr in a single write, so it never interleaves with herd's own log lines
/// (stderr is shared; `eprintln!` may split a line into several writes).
fn complain(message: impl std::fmt::Display) {
    let _ = std::io::stderr().write_all(format!("tokio_worker: {message}\n").as_bytes());
}

/// Complains and exits with a failure status, so that herd sees a failed start.
fn fail(message: impl std::fmt::Display) -> ! {
    complain(message);
    std::process::exit(1);
}

fn main() {
    // Take the sockets before the runtime starts threads (from_env changes the environment).
    let mut sockets = match herd::Sockets::from_env() {
        Ok(sockets) => sockets,
        Err(e) => {
            complain(e);
            std::process::exit(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = match sockets.take_tokio_tcp_listener("http") {
            Ok(Some(listener)) => listener,
            Ok(None) => fail("no socket named http: run me under `herd run -b http=HOST:PORT,nonblocking -- ...`"),
            Err(e) => fail(e),
        };
        let _ = herd::notify::ready();
        let pid = std::process::id();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                // Read the request head (up to 8 KiB), then answer.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("tokio pid {pid}\n");
                let reply = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
}
