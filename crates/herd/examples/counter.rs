//! A worker that counts hits across every worker, in herd's shared memory.
//!
//! ```text
//! cargo build --release -p herd --example counter
//! herd run -w 4 -b http=127.0.0.1:8080 --shm counter=4096 -- target/release/examples/counter
//! curl http://127.0.0.1:8080/        # "hit 17 (pid 4321, worker 2)"
//! ```

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
    use std::sync::atomic::Ordering;

    pub fn main() {
        if let Err(err) = run() {
            eprintln!("counter: {err}");
            std::process::exit(1);
        }
    }

    fn run() -> Result<(), Box<dyn std::error::Error>> {
        let memory = herd::shm("counter")?;
        let hits = memory
            .atomic_u64(0)
            .ok_or("the shared memory is smaller than 8 bytes")?;
        let mut sockets = herd::Sockets::from_env()?;
        let listener = sockets
            .take_tcp_listener_at(0)?
            .ok_or("no socket: bind one before --shm")?;
        herd::notify::ready()?;
        let slot = herd::worker_slot().map_or("-".to_string(), |s| s.to_string());
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(_) => continue,
            };
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            while reader.read_line(&mut line).map_or(false, |n| n > 2) {
                line.clear();
            }
            // fetch_add on shared memory: atomic across every worker process.
            let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
            let body = format!("hit {n} (pid {}, worker {slot})\n", std::process::id());
            let _ = write!(
                &stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
        Ok(())
    }
}
