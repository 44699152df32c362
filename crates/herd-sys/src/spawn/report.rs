//! How a spawn failed: the [`Stage`], and the child's fixed-size failure report, written to a
//! close-on-exec pipe and validated by the parent.

use std::fmt;
use std::io;
use std::os::unix::io::{AsRawFd, OwnedFd};

/// The step of [`ExecPlan::spawn`](super::ExecPlan::spawn) that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Forking, in the parent.
    Fork,
    /// Creating or reading the pipe on which the child reports how far it got, in the
    /// parent (`EMFILE` there means the parent is out of fds, not that it cannot fork).
    Pipe,
    /// `setpgid` in the child.
    ProcessGroup,
    /// Resetting the signal mask in the child.
    Signals,
    /// Placing the inherited fds in the child.
    Fds,
    /// `execve` itself: the program could not be executed.
    Exec,
    /// Switching to the worker's user and groups.
    Credentials,
    /// Changing to the worker's directory.
    Chdir,
    /// Setting the worker's resource limits.
    Limits,
    /// The child was stopped by a signal before its `execve` (by another process of the
    /// worker's user: see [`ExecPlan::spawn`](super::ExecPlan::spawn)), and was killed.
    Stopped,
    /// The child of [`ExecPlan::probe`](super::ExecPlan::probe) was killed by a signal before
    /// it finished its checks (an operator's kill, the OOM killer): what they would have found
    /// is unknown.
    Killed,
    /// Understanding the child's report, in the parent: it was not one the child writes (a
    /// short read, a wrong magic number or an unknown step), so what failed is unknown.
    Report,
}

/// A step of the child that can fail, as written in its report: explicit discriminants, which
/// the parent checks when it reads them back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum ChildStep {
    ProcessGroup = 1,
    Signals = 2,
    Fds = 3,
    Exec = 4,
    Credentials = 5,
    Chdir = 6,
    Limits = 7,
    /// Not a failure: a probe's child passed its checks (see
    /// [`ExecPlan::probe`](super::ExecPlan::probe)).
    Checked = 8,
}

impl ChildStep {
    const ALL: [ChildStep; 8] = [
        ChildStep::ProcessGroup,
        ChildStep::Signals,
        ChildStep::Fds,
        ChildStep::Exec,
        ChildStep::Credentials,
        ChildStep::Chdir,
        ChildStep::Limits,
        ChildStep::Checked,
    ];

    fn from_wire(code: u32) -> Option<ChildStep> {
        ChildStep::ALL.iter().copied().find(|s| *s as u32 == code)
    }

    pub(super) fn stage(self) -> Stage {
        match self {
            ChildStep::ProcessGroup => Stage::ProcessGroup,
            ChildStep::Signals => Stage::Signals,
            ChildStep::Fds => Stage::Fds,
            ChildStep::Exec => Stage::Exec,
            ChildStep::Credentials => Stage::Credentials,
            ChildStep::Chdir => Stage::Chdir,
            ChildStep::Limits => Stage::Limits,
            // Only a probe's child says so, and only a probe expects it.
            ChildStep::Checked => Stage::Report,
        }
    }
}

/// The child's failure report: `REPORT_MAGIC`, the [`ChildStep`], the limit's index (for
/// [`ChildStep::Limits`], else 0) and errno, each 4 bytes in native byte order. One `write` of
/// 16 bytes to a pipe is atomic (below `PIPE_BUF`).
pub(super) const REPORT_LEN: usize = 16;
/// "herd" in ASCII: the first word of every report.
const REPORT_MAGIC: u32 = u32::from_be_bytes(*b"herd");

/// What the child reported: the failed step, the limit's index (for [`ChildStep::Limits`])
/// and errno.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Report {
    pub(super) step: ChildStep,
    pub(super) limit: u32,
    pub(super) errno: i32,
}

impl Report {
    /// The report's bytes. Async-signal-safe: no allocation.
    pub(super) fn encode(&self) -> [u8; REPORT_LEN] {
        let mut buf = [0u8; REPORT_LEN];
        buf[0..4].copy_from_slice(&REPORT_MAGIC.to_ne_bytes());
        buf[4..8].copy_from_slice(&(self.step as u32).to_ne_bytes());
        buf[8..12].copy_from_slice(&self.limit.to_ne_bytes());
        buf[12..16].copy_from_slice(&self.errno.to_ne_bytes());
        buf
    }

    /// Validates what the parent read from the pipe: `None` for anything the child would not
    /// have written.
    fn decode(bytes: &[u8]) -> Option<Report> {
        if bytes.len() != REPORT_LEN {
            return None;
        }
        let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        if u32::from_ne_bytes(word(0)) != REPORT_MAGIC {
            return None;
        }
        let step = ChildStep::from_wire(u32::from_ne_bytes(word(4)))?;
        let limit = u32::from_ne_bytes(word(8));
        if step != ChildStep::Limits && limit != 0 {
            return None;
        }
        Some(Report {
            step,
            limit,
            errno: i32::from_ne_bytes(word(12)),
        })
    }
}

/// Why a worker could not be started.
#[derive(Debug)]
pub struct SpawnError {
    pub(super) stage: Stage,
    pub(super) error: io::Error,
    /// For [`Stage::Limits`]: which limit, in the order they were added.
    pub(super) limit: Option<usize>,
}

impl SpawnError {
    /// A probe's child that ended before it reported ([`Stage::Killed`]): killed by `signal`,
    /// if its status was seen (another reaper may have taken it).
    pub(super) fn killed(signal: Option<i32>) -> SpawnError {
        let how = match signal {
            Some(signal) => format!("was killed by signal {signal}"),
            None => "ended before it reported (killed, most likely)".to_string(),
        };
        SpawnError {
            stage: Stage::Killed,
            error: io::Error::new(io::ErrorKind::Other, format!("the check {how}; try again")),
            limit: None,
        }
    }

    /// The step that failed.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The operating system's error.
    pub fn io_error(&self) -> &io::Error {
        &self.error
    }

    /// For [`Stage::Limits`]: the index of the limit that could not be set, in the order
    /// [`ExecPlan::limit`](super::ExecPlan::limit) added them.
    pub fn limit_index(&self) -> Option<usize> {
        self.limit
    }
}

impl Stage {
    /// What could not be done, as "cannot ..." ends.
    fn failed(self) -> &'static str {
        match self {
            Stage::Fork => "fork",
            Stage::Pipe => "create the pipe to start the worker",
            Stage::ProcessGroup => "create a process group",
            Stage::Signals => "reset the signal mask",
            Stage::Fds => "place the worker's inherited sockets",
            Stage::Exec => "execute",
            Stage::Credentials => "switch to the worker's user",
            Stage::Chdir => "change to the worker's directory",
            Stage::Limits => "set the worker's resource limits",
            Stage::Stopped => "start the worker",
            Stage::Killed => "finish checking how the worker starts",
            Stage::Report => "tell how starting the worker failed",
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (step, error) = (self.stage.failed(), &self.error);
        // The child places its fds before it takes the worker's limits: its table is a copy of
        // herd's, so running out there is herd running out too.
        let fds = matches!(self.stage, Stage::Pipe | Stage::Fds);
        match error.raw_os_error() {
            Some(libc::ENFILE) if fds => write!(
                f,
                "the system is out of file descriptors: cannot {step} (see /proc/sys/fs/file-nr \
                 against fs.file-max): {error}"
            ),
            // Formatted by the parent, which spawned the child: its pid is herd's.
            Some(libc::EMFILE) if fds => write!(
                f,
                "herd is out of file descriptors: cannot {step} (look for what holds herd's \
                 fds: ls -l /proc/{}/fd): {error}",
                std::process::id()
            ),
            _ => write!(f, "cannot {step}: {error}"),
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// How often, in milliseconds, the parent looks whether a child that has neither reported
/// nor exec'd yet was stopped.
const STOP_CHECK_MS: libc::c_int = 20;

/// Reads the report of child `pid`: `None` on EOF (exec succeeded), else the validated
/// [`Report`]. Anything else on the pipe is a [`Stage::Report`] error.
///
/// A child that switched to the worker's user (`--user`) can be stopped by any process of
/// that user (another worker, say) between its `setuid` and its `execve`, and would then keep
/// this thread, herd's supervisor, waiting for ever: while it waits, the parent looks every
/// [`STOP_CHECK_MS`] whether the child is stopped by a signal, and kills it if so
/// ([`Stage::Stopped`]).
pub(super) fn read_report(pipe: &OwnedFd, pid: u32) -> Result<Option<Report>, SpawnError> {
    // One byte more than a report, to notice a longer write.
    let mut buf = [0u8; REPORT_LEN + 1];
    let mut got = 0;
    let mut killed = false;
    while got < buf.len() {
        if !killed && !readable_unless_stopped(pipe, pid)? {
            // SAFETY: kill with a signal number on our own child, which is not reaped yet, so
            // its pid is still its own.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            killed = true;
        }
        // SAFETY: reading into the unfilled tail of a buffer we own.
        let n = unsafe {
            libc::read(
                pipe.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        if n == 0 {
            break;
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(SpawnError {
                stage: Stage::Pipe,
                error: err,
                limit: None,
            });
        }
        got += n as usize;
    }
    if killed {
        return Err(SpawnError {
            stage: Stage::Stopped,
            error: io::Error::new(
                io::ErrorKind::Other,
                "it was stopped by a signal before it could execute the program (SIGSTOP, \
                 most likely from another process of the worker's user), and was killed",
            ),
            limit: None,
        });
    }
    if got == 0 {
        return Ok(None);
    }
    Report::decode(&buf[..got])
        .map(Some)
        .ok_or_else(|| SpawnError {
            stage: Stage::Report,
            error: io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the child wrote {}{got} bytes that are not a failure report",
                    if got > REPORT_LEN { "at least " } else { "" }
                ),
            ),
            limit: None,
        })
}

/// Waits until `pipe` is readable (`true`), or child `pid` is stopped by a signal (`false`).
fn readable_unless_stopped(pipe: &OwnedFd, pid: u32) -> Result<bool, SpawnError> {
    let mut poll = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: poll on one pollfd we own, with a timeout.
        let n = unsafe { libc::poll(&mut poll, 1, STOP_CHECK_MS) };
        if n > 0 {
            return Ok(true);
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(SpawnError {
                stage: Stage::Pipe,
                error: err,
                limit: None,
            });
        }
        if crate::process::is_stopped_by_signal(pid) {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Out of fds making the pipe (the parent) or placing the sockets (the child, with a copy
    /// of herd's table): either way herd is, and the message says where to look; out of the
    /// system's, it says so.
    #[test]
    fn out_of_fds_names_herds_own_fd_directory() {
        for (stage, errno) in [(Stage::Pipe, libc::EMFILE), (Stage::Fds, libc::EMFILE)] {
            let err = SpawnError {
                stage,
                error: io::Error::from_raw_os_error(errno),
                limit: None,
            };
            let text = err.to_string();
            let dir = format!("ls -l /proc/{}/fd)", std::process::id());
            assert!(
                text.starts_with("herd is out of file descriptors"),
                "{text}"
            );
            assert!(text.contains(&dir), "{text}");
        }
        // The system's table, not herd's: its own place to look.
        let system = SpawnError {
            stage: Stage::Fds,
            error: io::Error::from_raw_os_error(libc::ENFILE),
            limit: None,
        };
        let text = system.to_string();
        assert!(
            text.starts_with("the system is out of file descriptors"),
            "{text}"
        );
        assert!(text.contains("fs.file-max"), "{text}");
        let other = SpawnError {
            stage: Stage::Fds,
            error: io::Error::from_raw_os_error(libc::EBADF),
            limit: None,
        };
        assert!(other
            .to_string()
            .starts_with("cannot place the worker's inherited sockets"));
    }

    /// A report is read back as written; anything else on the pipe is refused.
    #[test]
    fn a_corrupted_report_is_refused() {
        let report = Report {
            step: ChildStep::Limits,
            limit: 3,
            errno: libc::EPERM,
        };
        let bytes = report.encode();
        assert_eq!(Report::decode(&bytes), Some(report));
        for step in ChildStep::ALL {
            let report = Report {
                step,
                limit: 0,
                errno: 0,
            };
            assert_eq!(Report::decode(&report.encode()).map(|r| r.step), Some(step));
        }
        let mut wrong_magic = bytes;
        wrong_magic[0] ^= 1;
        assert_eq!(Report::decode(&wrong_magic), None);
        let mut unknown_step = bytes;
        unknown_step[4..8].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(Report::decode(&unknown_step), None);
        let mut limit_elsewhere = Report {
            step: ChildStep::Exec,
            limit: 0,
            errno: libc::ENOENT,
        }
        .encode();
        limit_elsewhere[8] = 1;
        assert_eq!(Report::decode(&limit_elsewhere), None);
        assert_eq!(Report::decode(&bytes[..REPORT_LEN - 1]), None);
        assert_eq!(Report::decode(&[bytes.as_slice(), &[0]].concat()), None);

        // Through a pipe, as the parent reads it.
        let through_pipe = |bytes: &[u8]| {
            let (read, write) = super::super::cloexec_pipe().unwrap();
            // SAFETY: writes a few bytes we own to a pipe we own.
            let n = unsafe { libc::write(write.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
            assert_eq!(n, bytes.len() as isize);
            drop(write);
            read_report(&read, std::process::id())
        };
        assert!(through_pipe(&[]).unwrap().is_none());
        assert_eq!(through_pipe(&bytes).unwrap(), Report::decode(&bytes));
        for garbage in [
            &b"\x01\0\0\0\x02\0\0\0"[..],
            &wrong_magic,
            &[bytes.as_slice(), b"x"].concat(),
        ] {
            let err = through_pipe(garbage).unwrap_err();
            assert_eq!(err.stage(), Stage::Report, "{err}");
            assert!(err.to_string().contains("not a failure report"), "{err}");
        }
    }
}
