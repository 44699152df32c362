//! Reaping children (`waitpid`), and looking at a child's exit without reaping it.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use super::{imp, to_pid};

/// Reaps one exited child without blocking (`waitpid(-1, WNOHANG)`): `Ok(None)` when no child
/// has exited (or there are none).
pub fn reap_any() -> io::Result<Option<(u32, ExitStatus)>> {
    none_if_no_child(waitpid(-1, libc::WNOHANG))
}

/// How the child `pid` exited, if it has, *without reaping it*
/// (`waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`): it stays a zombie, so its pid, and the
/// id of the process group it leads, cannot be reused until [`reap`] collects it. **Off Linux
/// and Android this reaps at once** (no pinning).
pub fn peek_exit(pid: u32) -> io::Result<Option<ExitStatus>> {
    imp::peek_exit(pid)
}

/// One exited child, named without a look at each (`waitid(P_ALL, WEXITED | WNOHANG |
/// WNOWAIT)`: the one that has been a child longest), left unreaped: `Ok(None)` when none has
/// exited. **Off Linux and Android always `Ok(None)`**: there is nothing to peek with.
pub fn peek_any_exit() -> io::Result<Option<(u32, ExitStatus)>> {
    imp::peek_any_exit()
}

/// Reaps the child `pid` if it has exited (`waitpid(pid, WNOHANG)`); `Ok(None)` if it runs.
pub fn reap(pid: u32) -> io::Result<Option<ExitStatus>> {
    Ok(waitpid(to_pid(pid)?, libc::WNOHANG)?.map(|(_, status)| status))
}

/// Reaps one exited child of this process's own process group (`waitpid(0, WNOHANG)`):
/// children that are not workers (workers lead groups of their own). `Ok(None)` when none has
/// exited.
pub fn reap_own_group() -> io::Result<Option<(u32, ExitStatus)>> {
    none_if_no_child(waitpid(0, libc::WNOHANG))
}

/// Waits for the child `pid` to exit (`waitpid(pid, 0)`), retrying on `EINTR`.
pub fn wait_for(pid: u32) -> io::Result<ExitStatus> {
    match waitpid(to_pid(pid)?, 0)? {
        Some((_, status)) => Ok(status),
        // Only WNOHANG returns 0.
        None => Err(io::Error::new(
            io::ErrorKind::Other,
            "waitpid returned no child",
        )),
    }
}

/// `waitpid(pid, flags)`, retried on `EINTR`: the child reaped and how it exited, or
/// `Ok(None)` when `WNOHANG` found none that exited.
fn waitpid(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<(u32, ExitStatus)>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes the status into a c_int we own.
        let rc = unsafe { libc::waitpid(pid, &mut status, flags) };
        if rc > 0 {
            return Ok(Some((rc as u32, ExitStatus::from_raw(status))));
        }
        if rc == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// `ECHILD` (no children to wait for) as `Ok(None)`.
fn none_if_no_child(
    reaped: io::Result<Option<(u32, ExitStatus)>>,
) -> io::Result<Option<(u32, ExitStatus)>> {
    match reaped {
        Err(err) if err.raw_os_error() == Some(libc::ECHILD) => Ok(None),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::stat::stat_field;
    use crate::process::{group_members, signal_group, Signal};

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by `reap`, the function under test
    fn an_exited_leader_is_held_while_its_group_has_members() {
        use std::os::unix::process::CommandExt;
        // A group leader that leaves a child behind and exits 3.
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", "sleep 30 >/dev/null & echo $! ; exit 3"])
            .stdout(std::process::Stdio::piped());
        // SAFETY: setpgid is async-signal-safe and touches no memory.
        unsafe {
            command.pre_exec(|| match libc::setpgid(0, 0) {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            })
        };
        let child = command.spawn().unwrap();
        let pid = child.id();
        /// Kills the group and reaps the leader if an assertion fails on the way.
        struct Group(u32);
        impl Drop for Group {
            fn drop(&mut self) {
                let _ = signal_group(self.0, Signal::KILL);
                let _ = reap(self.0);
            }
        }
        let group = Group(pid);
        /// Polls `done` every 5 ms for at most 10 s (waitid and /proc have nothing to block on).
        fn within<T>(what: &str, mut done: impl FnMut() -> Option<T>) -> T {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                if let Some(value) = done() {
                    return value;
                }
                assert!(std::time::Instant::now() < deadline, "{what}");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.unwrap(), &mut out).unwrap();
        let sleeper: u32 = out.trim().parse().unwrap();
        let status = within("the leader did not exit", || peek_exit(pid).unwrap());
        assert_eq!(status.code(), Some(3));
        assert_eq!(
            peek_exit(pid).unwrap().unwrap().code(),
            Some(3),
            "not reaped"
        );
        assert_eq!(stat_field(pid, 3).as_deref(), Some("Z"));
        // Some zombie is named (other tests' children may be older ones), and named again:
        // naming reaps nothing.
        assert!(peek_any_exit().unwrap().is_some());
        assert!(peek_any_exit().unwrap().is_some());
        assert_eq!(peek_exit(pid).unwrap().unwrap().code(), Some(3));
        assert_eq!(group_members(pid), [sleeper]);
        signal_group(pid, Signal::KILL).unwrap();
        within("the sleeper survived", || {
            group_members(pid).is_empty().then_some(())
        });
        std::mem::forget(group); // reaped below, by the function under test
        assert_eq!(reap(pid).unwrap().unwrap().code(), Some(3));
        assert!(reap(pid).is_err(), "reaped once");
    }
}
