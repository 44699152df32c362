//! An async worker that balances well on a shared socket: tokio with
//! [`herd::balanced::BalancedListener`] on a *blocking* socket.
//!
//! ```text
//! cargo build --release -p herd --features tokio --example tokio_balanced
//! herd run -w 4 -b http=127.0.0.1:8080 -- target/release/examples/tokio_balanced [WORK_US]
//! ```
//!
//! Each request costs WORK_US microseconds of CPU (default 0) and is answered with the
//! worker's pid. On SIGTERM it stops accepting, serves the connections it already holds
//! (including any that `close` hands back), and exits: none is lost.

// The `tokio` feature needs tokio's own minimum Rust, newer than the crate's 1.63.
#![allow(clippy::incompatible_msrv)]

use std::io::Write;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

/// One line to stderr in a single write, so it never interleaves with herd's log lines.
fn complain(message: impl std::fmt::Display) {
    let _ = std::io::stderr().write_all(format!("tokio_balanced: {message}\n").as_bytes());
}

async fn serve(mut stream: tokio::net::TcpStream, work: Duration) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let start = Instant::now();
    while start.elapsed() < work {
        std::hint::spin_loop();
    }
    let body = format!("tokio balanced pid {}\n", std::process::id());
    let reply = format!(
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
}

fn main() {
    let work = match std::env::args().nth(1).map(|a| a.parse::<u64>()) {
        None => Duration::ZERO,
        Some(Ok(us)) => Duration::from_micros(us),
        Some(Err(_)) => {
            complain("WORK_US must be a whole number of microseconds");
            std::process::exit(2);
        }
    };
    // Take the socket before the runtime starts threads (from_env changes the environment).
    let listener = herd::Sockets::from_env()
        .and_then(|mut sockets| sockets.take_balanced_tcp_listener("http"));
    let mut listener = match listener {
        Ok(Some(listener)) => listener,
        Ok(None) => {
            complain("no socket named http: run me under `herd run -b http=HOST:PORT -- ...`");
            std::process::exit(1);
        }
        Err(e) => {
            complain(e);
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            complain(format!("cannot start tokio: {e}"));
            std::process::exit(1);
        }
    };
    runtime.block_on(async move {
        let mut term = match signal(SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                complain(format!("cannot watch SIGTERM: {e}"));
                std::process::exit(1);
            }
        };
        let _ = herd::notify::ready();
        let mut tasks = Vec::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => tasks.push(tokio::spawn(serve(stream, work))),
                    Err(e) => complain(format!("accept: {e}")),
                },
                _ = term.recv() => break,
            }
            tasks.retain(|t| !t.is_finished());
        }
        // Stop accepting; serve what this worker already holds, then exit.
        for (stream, _) in listener.close() {
            let stream = stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(stream));
            if let Ok(stream) = stream {
                tasks.push(tokio::spawn(serve(stream, work)));
            }
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}
