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
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use herd::backoff::{Backoff, BackoffPolicy};
    use herd::windows::{spawn, Shared};

    type Error = Box<dyn std::error::Error>;

    struct Slot {
        child: Option<Child>,
        started: Instant,
        restart_at: Option<Instant>,
        backoff: Backoff,
    }

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
        let policy = BackoffPolicy::default();
        let mut slots: Vec<Slot> = (0..workers)
            .map(|_| Slot {
                child: None,
                started: Instant::now(),
                restart_at: Some(Instant::now()),
                backoff: Backoff::default(),
            })
            .collect();
        while !told.load(Ordering::SeqCst) && !herd_sys::wsa::ctrl_c_pressed() {
            for (i, slot) in slots.iter_mut().enumerate() {
                if let Some(child) = &mut slot.child {
                    if let Ok(Some(status)) = child.try_wait() {
                        let delay = slot
                            .backoff
                            .next_delay(&policy, Some(slot.started.elapsed()));
                        eprintln!(
                            "win_prefork: worker {} exited ({status}); restarting in {delay:?}",
                            child.id()
                        );
                        slot.child = None;
                        slot.restart_at = Some(Instant::now() + delay);
                    }
                }
                if slot.child.is_none() && slot.restart_at.map_or(false, |t| t <= Instant::now()) {
                    let mut command = Command::new(&exe);
                    command.arg("--worker").env("HERD_WORKER", i.to_string());
                    match spawn(&mut command, &[Shared::Tcp("http", &listener)]) {
                        Ok(child) => {
                            eprintln!("win_prefork: worker {i} started as pid {}", child.id());
                            slot.child = Some(child);
                            slot.started = Instant::now();
                            slot.restart_at = None;
                        }
                        Err(e) => {
                            let delay = slot.backoff.next_delay(&policy, None);
                            eprintln!(
                                "win_prefork: cannot start worker {i}: {e}; retrying in {delay:?}"
                            );
                            slot.restart_at = Some(Instant::now() + delay);
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Windows has no SIGTERM for console programs: stop means terminate.
        for slot in &mut slots {
            if let Some(child) = &mut slot.child {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
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
