//! A fake control server: `tests/workers/fake_herd.py` in one of its modes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::worker;

/// A fake control server (`tests/workers/fake_herd.py MODE PATH`), killed on drop.
pub struct FakeHerd {
    child: Child,
    /// What it printed after "ready" (the TCP address it serves, in `--silent-stop`).
    pub serves: String,
}

impl FakeHerd {
    /// Starts it in `mode` (`--silent-stop`, `--endless`, `--huge`) at `path`, once it listens.
    pub fn start(mode: &str, path: &Path) -> FakeHerd {
        let mut command = Command::new("python3");
        command.arg(worker("fake_herd.py")).arg(mode).arg(path);
        FakeHerd::spawn(command)
    }

    /// Starts it in `--silent-stop` at `path`, appending `line` to `file` as it is asked for
    /// its sockets.
    pub fn start_editing(path: &Path, file: &Path, line: &str) -> FakeHerd {
        let mut command = Command::new("python3");
        command
            .arg(worker("fake_herd.py"))
            .arg("--silent-stop")
            .args([path, file])
            .arg(line);
        FakeHerd::spawn(command)
    }

    /// Starts it in `--no-lines` at `path`, appending the name of each command it is sent
    /// to `file`.
    pub fn start_recording(path: &Path, file: &Path) -> FakeHerd {
        let mut command = Command::new("python3");
        command
            .arg(worker("fake_herd.py"))
            .arg("--no-lines")
            .args([path, file]);
        FakeHerd::spawn(command)
    }

    /// Starts it as user `uid` (a plain server) at each of `paths`, once it listens.
    pub fn start_as(uid: u32, paths: &[&Path]) -> FakeHerd {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new("python3");
        command
            .arg(worker("fake_herd.py"))
            .args(paths)
            .uid(uid)
            .gid(uid);
        FakeHerd::spawn(command)
    }

    fn spawn(mut command: Command) -> FakeHerd {
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let serves = match line.trim_end().strip_prefix("ready") {
            Some(rest) => rest.trim().to_string(),
            None => panic!("the fake herd did not start: {line:?}"),
        };
        FakeHerd { child, serves }
    }
}

impl Drop for FakeHerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
