//! Windows prefork: binds a port, starts N copies of a worker that share it, restarts a worker
//! that exits, and stops them all on Ctrl-C or when told (a `stop` line, or end of file, on
//! its stdin). The seed of `herd run` on Windows: a small loop that drives herd-core's
//! [`Pool`](herd_core::Pool), the state machine every herd supervisor shares, and carries out
//! its actions with `herd::windows::spawn` and `Child::kill`.
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
    use std::collections::HashMap;
    use std::io::{BufRead, Write};
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use herd::windows::{spawn, Shared};
    use herd_core::{Action, BackoffPolicy, Pool, PoolConfig, Readiness, WorkerExit};

    type Error = Box<dyn std::error::Error>;

    pub fn parent(addr: &str, workers: usize) -> Result<(), Error> {
        let listener = TcpListener::bind(addr)?;
        println!("win_prefork: listening on {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        herd_sys_ctrl_c();
        let told = told_to_stop();
        let sockets = [Shared::Tcp("http", &listener)];
        // Every worker is ready once started; Windows has no SIGTERM for console programs, so
        // a stop terminates at once.
        let mut herd = Workers {
            pool: Pool::new(PoolConfig {
                workers,
                grace: Duration::ZERO,
                backoff: BackoffPolicy::default(),
                readiness: Readiness::Delay(Duration::ZERO),
                watchdog: None,
                max_surge: herd_core::MaxSurge::Workers(1),
                max_starting: 1,
                min_ready: Duration::ZERO,
                drain: None,
            }),
            children: HashMap::new(),
            exe: std::env::current_exe()?,
            sockets: &sockets,
        };
        let mut stopping = false;
        loop {
            let now = Instant::now();
            let mut actions = herd.reap(now);
            if herd.pool.is_stopped() {
                break;
            }
            if !stopping && (told.load(Ordering::SeqCst) || herd_sys::wsa::ctrl_c_pressed()) {
                stopping = true;
                actions.extend(herd.pool.stop(false, None, now));
            }
            actions.extend(herd.pool.due(now));
            herd.execute(actions, now);
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("win_prefork: stopped");
        Ok(())
    }

    /// "When told": a `stop` line, or end of file, on stdin.
    fn told_to_stop() -> Arc<AtomicBool> {
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
        told
    }

    /// herd-core's pool, and the processes that carry out its actions.
    struct Workers<'a> {
        pool: Pool,
        children: HashMap<u32, Child>,
        exe: PathBuf,
        sockets: &'a [Shared<'a>],
    }

    impl Workers<'_> {
        /// Tells the pool about the workers that exited; returns what it asks for.
        fn reap(&mut self, now: Instant) -> Vec<Action> {
            let exited: Vec<(u32, std::process::ExitStatus)> = self
                .children
                .iter_mut()
                .filter_map(|(&pid, child)| Some((pid, child.try_wait().ok()??)))
                .collect();
            let mut actions = Vec::new();
            for (pid, status) in exited {
                self.children.remove(&pid);
                let exit = WorkerExit {
                    success: status.success(),
                    killed: false,
                    description: status.to_string(),
                    raw: status.code().unwrap_or(-1),
                };
                if let Some((meaning, more)) = self.pool.exited(pid, exit, now) {
                    let restart_in = meaning.restart_in.unwrap_or_default();
                    eprintln!(
                        "win_prefork: worker {pid} exited ({status}); restarting in {restart_in:?}"
                    );
                    actions.extend(more);
                }
            }
            actions
        }

        /// Starts and terminates workers as the pool asks.
        fn execute(&mut self, actions: Vec<Action>, now: Instant) {
            for action in actions {
                match action {
                    Action::Spawn { slot, generation } => {
                        let mut command = Command::new(&self.exe);
                        command.arg("--worker").env("HERD_WORKER", slot.to_string());
                        match spawn(&mut command, self.sockets) {
                            Ok(child) => {
                                let pid = child.id();
                                eprintln!("win_prefork: worker {slot} started as pid {pid}");
                                self.pool.spawned(slot, generation, pid, Instant::now());
                                self.children.insert(pid, child);
                            }
                            Err(e) => {
                                let (retry, _) = self.pool.spawn_failed(slot, &e.to_string(), now);
                                match retry {
                                    Some(delay) => eprintln!(
                                        "win_prefork: cannot start worker {slot}: {e}; retrying in {delay:?}"
                                    ),
                                    None => eprintln!(
                                        "win_prefork: cannot start worker {slot}: {e}; its slot's worker serves on"
                                    ),
                                }
                            }
                        }
                    }
                    Action::Stop { pid, .. } => {
                        if let Some(child) = self.children.get_mut(&pid) {
                            let _ = child.kill();
                        }
                    }
                    Action::Ready { .. }
                    | Action::UpgradeEnded(_)
                    | Action::DrainTimedOut { .. } => {}
                }
            }
        }
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
