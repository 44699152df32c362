//! Windows prefork: binds a port, starts N copies of a worker that share it, restarts a worker
//! that exits, and stops them all on Ctrl-C or when told (a `stop` line, or end of file, on
//! its stdin). The seed of `herd run` on Windows.
//!
//! ```text
//! win_prefork.exe 127.0.0.1:8080 3      the parent prints "listening on ADDR"
//! win_prefork.exe --worker              what the parent starts: takes the socket "http"
//! ```
//!
//! Each worker answers every connection with "worker pid N" and closes it.

#[cfg(not(windows))]
fn main() {
    eprintln!("win_prefork: this example is for Windows (see examples/prefork.rs for Unix)");
}

#[cfg(windows)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = if args.iter().any(|a| a == "--worker") {
        windows::worker()
    } else {
        let addr = args.get(1).map_or("127.0.0.1:8080", String::as_str);
        let workers = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(3);
        windows::parent(addr, workers)
    };
    if let Err(e) = result {
        eprintln!("win_prefork: {e}");
        std::process::exit(1);
    }
}

#[cfg(windows)]
mod windows {
    use std::io::{BufRead, Write};
    use std::net::TcpListener;
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use herd::windows::{supervise, Event, Shared};

    type Error = Box<dyn std::error::Error>;

    pub fn parent(addr: &str, workers: usize) -> Result<(), Error> {
        let listener = TcpListener::bind(addr)?;
        println!("win_prefork: listening on {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        herd_sys_ctrl_c();
        // "When told": a `stop` line, or end of file, on stdin.
        let told = Arc::new(AtomicBool::new(false));
        let flag = told.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(l) if l.trim() == "stop" => break,
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            flag.store(true, Ordering::SeqCst);
        });
        let exe = std::env::current_exe()?;
        let command = |_slot| {
            let mut command = Command::new(&exe);
            command.arg("--worker");
            command
        };
        let stop = || told.load(Ordering::SeqCst) || herd_sys::wsa::ctrl_c_pressed();
        let report = |event: Event<'_>| match event {
            Event::Started { slot, pid } => {
                eprintln!("win_prefork: worker {slot} started as pid {pid}")
            }
            Event::Exited {
                pid,
                status,
                restart_in,
                ..
            } => {
                eprintln!(
                    "win_prefork: worker {pid} exited ({status}); restarting in {restart_in:?}"
                )
            }
            Event::SpawnFailed {
                slot,
                error,
                retry_in,
            } => {
                eprintln!(
                    "win_prefork: cannot start worker {slot}: {error}; retrying in {retry_in:?}"
                )
            }
        };
        // Windows has no SIGTERM for console programs: stop means terminate.
        supervise(
            command,
            &[Shared::Tcp("http", &listener)],
            workers,
            stop,
            report,
        );
        println!("win_prefork: stopped");
        Ok(())
    }

    fn herd_sys_ctrl_c() {
        if let Err(e) = herd_sys::wsa::catch_ctrl_c() {
            eprintln!("win_prefork: Ctrl-C will not stop the workers: {e}");
        }
    }

    pub fn worker() -> Result<(), Error> {
        let mut sockets = herd::Sockets::from_env()?;
        let listener = sockets
            .take_tcp_listener("http")?
            .ok_or("the socket http was already taken")?;
        let pid = std::process::id();
        for stream in listener.incoming() {
            let mut stream = match stream {
                Ok(stream) => stream,
                Err(_) => continue,
            };
            let _ = writeln!(stream, "worker pid {pid}");
        }
        Ok(())
    }
}
