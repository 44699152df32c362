//! `herd-bench-worker`: the native worker of herd's benchmarks. A single-threaded HTTP/1.1
//! server blocking in `accept()`, with keep-alive, that burns a fixed amount of CPU per
//! request: `--short-us` for most paths, `--long-us` for paths starting with `/long`.
//!
//! Under herd it takes the first inherited TCP socket and reports `READY=1`; with `--bind
//! ADDR` it binds its own socket instead (the baseline of the overhead benchmark). Every
//! answer's body is `pid N`, so the load generator can count how connections were spread.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "herd-bench-worker", about = "herd's benchmark worker")]
struct Args {
    /// Bind this address instead of taking a socket from herd.
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// CPU time per request, in microseconds.
    #[arg(long, default_value_t = 0)]
    short_us: u64,
    /// CPU time per request to a path starting with /long, in microseconds.
    #[arg(long, default_value_t = 5000)]
    long_us: u64,
    /// Write an access-log line to stdout for each request (one write per line, as a
    /// line-buffered logger does).
    #[arg(long)]
    log_requests: bool,
    /// Also write 100-byte lines to stdout as fast as it can, from a thread of its own.
    #[arg(long)]
    flood: bool,
}

/// Writes numbered 100-byte lines to stdout until it cannot.
fn flood() {
    let mut out = std::io::stdout().lock();
    let padding = "x".repeat(67);
    for n in 0u64.. {
        if writeln!(out, "flood line {n:>20} {padding}").is_err() {
            return;
        }
    }
}

/// Spins until this thread has used `cost` more CPU time.
fn burn(cost: Duration) {
    if cost.is_zero() {
        return;
    }
    let end = herd_sys::process::thread_cpu_time() + cost;
    while herd_sys::process::thread_cpu_time() < end {
        std::hint::spin_loop();
    }
}

/// Serves requests on `stream` until the client closes it or asks to close.
fn serve(stream: TcpStream, args: &Args, body: &[u8]) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let long = line
            .split(' ')
            .nth(1)
            .is_some_and(|p| p.starts_with("/long"));
        let mut keep_alive = line.trim_end().ends_with("HTTP/1.1");
        let mut header = String::new();
        loop {
            header.clear();
            if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
                break;
            }
            let lower = header.to_ascii_lowercase();
            if lower.starts_with("connection:") {
                keep_alive = lower.contains("keep-alive");
            }
        }
        burn(Duration::from_micros(if long {
            args.long_us
        } else {
            args.short_us
        }));
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
            body.len()
        );
        writer.write_all(&[head.as_bytes(), body].concat())?;
        if args.log_requests {
            // stdout is line-buffered: one write per line.
            let _ = writeln!(
                std::io::stdout(),
                "GET {} 200 {}",
                line.trim_end(),
                body.len()
            );
        }
        if !keep_alive {
            return Ok(());
        }
    }
}

fn listener(args: &Args) -> Result<TcpListener, String> {
    if let Some(addr) = args.bind {
        return TcpListener::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"));
    }
    let mut sockets = herd::Sockets::from_env().map_err(|e| e.to_string())?;
    let listener = sockets
        .take_tcp_listener_at(0)
        .map_err(|e| e.to_string())?
        .ok_or("no TCP socket inherited: run under `herd run -b ADDR -- ...`, or pass --bind")?;
    herd::notify::ready().map_err(|e| e.to_string())?;
    Ok(listener)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let listener = match listener(&args) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("herd-bench-worker: {e}");
            return ExitCode::from(2);
        }
    };
    let body = format!("pid {}\n", std::process::id()).into_bytes();
    if args.flood {
        std::thread::spawn(flood);
    }
    loop {
        match listener.accept() {
            // A client that goes away mid-request only ends its own connection.
            Ok((stream, _)) => drop(serve(stream, &args, &body)),
            Err(e) => eprintln!("herd-bench-worker: accept: {e}"),
        }
    }
}
