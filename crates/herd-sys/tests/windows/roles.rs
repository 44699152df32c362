//! The children the tests start: this test binary again, running only [`play`], which acts
//! the role named in its environment.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const ROLE: &str = "HERD_SYS_TEST_ROLE";
const ARG: &str = "HERD_SYS_TEST_ARG";

/// How long a test waits for any one thing a child does.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// This test binary as a child playing `role`, with `arg`; its stdout piped.
pub fn child(role: &str, arg: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "roles::play",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(ROLE, role)
        .env(ARG, arg)
        .stdout(Stdio::piped());
    command
}

/// The lines a child writes, read on a thread, so every wait has a deadline.
pub struct Lines {
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    /// Follows `output` (a child's stdout).
    pub fn new(output: impl Read + Send + 'static) -> Lines {
        let (send, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let sent = line.map(|line| send.send(line));
                if !matches!(sent, Ok(Ok(()))) {
                    return;
                }
            }
        });
        Lines {
            lines,
            seen: Vec::new(),
        }
    }

    /// What follows `prefix` on the next line that starts with it; panics, showing every line
    /// seen, when none comes within [`PATIENCE`] or the output ends.
    pub fn after(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
                Err(e) => panic!("no line {prefix:?} ({e}); saw {:#?}", self.seen),
            }
        }
    }
}

/// Whether this runs under Wine, which sets `WINECONFIGDIR` in every process it starts.
pub fn under_wine() -> bool {
    std::env::var_os("WINECONFIGDIR").is_some()
}

/// Waits for ever (a role that only has to be alive).
pub fn live_for_ever() -> ! {
    loop {
        thread::park();
    }
}

/// Acts the role named in the environment, then exits; does nothing in a normal test run.
#[test]
fn play() {
    let role = match std::env::var(ROLE) {
        Ok(role) => role,
        Err(_) => return,
    };
    let arg = std::env::var(ARG).unwrap_or_default();
    match role.as_str() {
        "job_holder" => crate::job::holder(),
        "job_worker" => crate::job::worker(),
        "sleeper" => live_for_ever(),
        "spinner" => crate::process::spinner(),
        "exit" => std::process::exit(arg.parse().expect("an exit code")),
        "shm_reader" => crate::shm::reader(),
        #[cfg(feature = "tokio")]
        "pipe_client" => crate::pipe::client(&arg),
        "ctrl_sender" => crate::console::sender(),
        "ctrl_receiver" => crate::console::receiver(),
        other => panic!("no role {other}"),
    }
    std::process::exit(0);
}
