//! An in-process prefork HTTP server: binds, then forks N children sharing the socket.
//!
//! ```text
//! cargo run -p herd --example prefork -- 127.0.0.1:8080 4
//! curl http://127.0.0.1:8080/            # "prefork pid 4321, worker 2"
//! kill -TTIN <parent pid>                 # one more child; -TTOU one fewer
//! kill -TERM <parent pid>                 # graceful stop: requests in flight finish
//! ```
//!
//! `GET /sleep/MS` answers after MS milliseconds (and says "busy" on stderr first), to watch a
//! graceful stop. `--spawn-thread` starts a thread before forking, to show the refusal;
//! `--grace MS` sets the grace period (default 10 s).

#[cfg(not(unix))]
fn main() {
    eprintln!("this example needs Unix");
}

#[cfg(unix)]
fn main() {
    unix::main()
}

#[cfg(unix)]
mod unix {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    pub fn main() {
        let args: Vec<String> = std::env::args().collect();
        let addr = args.get(1).map_or("127.0.0.1:8080", String::as_str);
        let workers: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(4);
        if args.iter().any(|a| a == "--spawn-thread") {
            std::thread::spawn(|| std::thread::sleep(Duration::from_secs(60)));
        }
        let grace = args
            .iter()
            .position(|a| a == "--grace")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .map_or(Duration::from_secs(10), Duration::from_millis);
        let listener = match TcpListener::bind(addr) {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("prefork: cannot bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        eprintln!("prefork: listening on {local} (pid {})", std::process::id());
        let result = herd::prefork::Prefork::new(workers)
            .grace(grace)
            .run(|worker| serve(&listener, worker));
        if let Err(e) = result {
            eprintln!("prefork: {e}");
            std::process::exit(1);
        }
        eprintln!("prefork: stopped");
    }

    /// One child's loop: accept, answer, until told to stop.
    fn serve(listener: &TcpListener, worker: &herd::prefork::Worker) -> i32 {
        let pid = std::process::id();
        loop {
            let stream = match worker.accept(listener) {
                Ok(Some(stream)) => stream,
                Ok(None) => return 0, // asked to stop
                Err(e) => {
                    eprintln!("prefork: accept: {e}");
                    return 1;
                }
            };
            let mut request = String::new();
            let mut reader = BufReader::new(&stream);
            let _ = reader.read_line(&mut request);
            let mut line = String::new();
            while reader.read_line(&mut line).map_or(false, |n| n > 2) {
                line.clear();
            }
            let path = request.split(' ').nth(1).unwrap_or("/");
            if let Some(ms) = path.strip_prefix("/sleep/").and_then(|ms| ms.parse().ok()) {
                eprintln!("prefork: worker {pid} busy");
                // A stop signal must not cut the request short: sleep the whole time.
                let until = std::time::Instant::now() + Duration::from_millis(ms);
                while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(left);
                }
            }
            let body = format!("prefork pid {pid}, worker {}\n", worker.slot());
            let _ = write!(
                &stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    }
}
