//! Fork servers on Unix (see [`fork_server`](crate::supervisor::fork_server)): starting one
//! with its end of a `SOCK_SEQPACKET` pair at fd 3, and asking it for a worker: the request
//! with the worker's standard streams and sockets (`SCM_RIGHTS`), then its reply, waited for
//! at most [`REPLY_TIMEOUT`].

use std::os::unix::fs::MetadataExt;
use std::os::unix::io::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use herd_sys::spawn::{ExecPlan, Stdio};
use socket2::{Domain, Socket, Type};

use crate::command::{StartError, WorkerCommand};
use crate::logging::LogEvent;
use crate::supervisor::fork_server::{encode_request, parse_reply, ForkServers, Reply};
use crate::supervisor::warm_up::{Lowered, Lowering};

/// The send buffer herd asks for on its end of a fork server's socket, so that one request
/// holds a large environment.
const REQUEST_ROOM: usize = 4 << 20;

/// How long herd waits for a fork server's reply before it kills it: a fork takes
/// milliseconds, even of a large process.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts `generation`'s fork server with `command`, `stdin` as its standard input, lowered as
/// `lowering` says while it loads (`--starting-nice`), and records it in `servers`, loading for
/// at most `timeout`. Its pid, and how herd lowered it.
pub fn start(
    servers: &mut ForkServers<Socket>,
    command: &WorkerCommand,
    generation: u64,
    stdin: BorrowedFd<'_>,
    (timeout, lowering): (Duration, Option<Lowering>),
) -> Result<(u32, Option<Lowered>), StartError> {
    let failed = |what: &str, e: std::io::Error| StartError {
        cannot_execute: false,
        message: format!("cannot start its fork server: {what}: {e}"),
    };
    let (ours, theirs) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None)
        .map_err(|e| failed("cannot make its socket", e))?;
    ours.set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(|e| failed("cannot set its socket's timeout", e))?;
    // A request is one message, as large as a worker's command line and environment: room for
    // what `execve` takes, as far as net.core.wmem_max allows (the kernel caps it there).
    let _ = ours.set_send_buffer_size(REQUEST_ROOM);
    let plan = command.fork_server_plan(generation)?;
    let stdio = Stdio {
        stdin: Some(stdin),
        ..Stdio::default()
    };
    let pid = plan
        .spawn_with(&[theirs.as_fd()], &stdio)
        .map_err(|e| command.fork_server_failed(generation, &e))?;
    let lowered = lowering.and_then(|lowering| crate::command::lower(pid, lowering));
    tracing::info!(
        event = LogEvent::ForkServerStarted.as_str(),
        pid,
        generation,
        "fork server started; its workers start once it says READY=1"
    );
    servers.started(generation, pid, ours, Instant::now(), timeout);
    Ok((pid, lowered))
}

/// Asks `generation`'s ready fork server for the worker `plan` describes, with `stdio` (herd's
/// own streams where `None`) and `fds` (its sockets): the worker's pid, or why not. A fork
/// server that cannot be asked or does not answer is killed and forgotten: the next start
/// starts another.
pub fn fork(
    servers: &mut ForkServers<Socket>,
    generation: u64,
    plan: &ExecPlan,
    stdio: &Stdio<'_>,
    fds: &[BorrowedFd<'_>],
) -> Result<u32, String> {
    let Some((server, socket)) = servers.ready(generation) else {
        return Err("its generation's fork server is gone".to_string());
    };
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let streams = [
        stdio.stdin.unwrap_or_else(|| stdin.as_fd()),
        stdio.stdout.unwrap_or_else(|| stdout.as_fd()),
        stdio.stderr.unwrap_or_else(|| stderr.as_fd()),
    ];
    let all: Vec<BorrowedFd<'_>> = streams.into_iter().chain(fds.iter().copied()).collect();
    let request = encode_request(plan.args(), plan.env_entries());
    let mut reply = [0u8; 512];
    let why = match exchange(socket, &request, &all, &mut reply) {
        Ok(n) => match parse_reply(&reply[..n]) {
            Reply::Forked(pid) => match adopted(pid, server, |p| servers.pids().any(|s| s == p)) {
                Ok(()) => return Ok(pid),
                Err(NotTaken::Exited) => {
                    return Err(format!(
                        "its fork server (pid {server}) answered pid {pid}, which has exited \
                         already: herd takes no exited process as a worker (one that exits at \
                         once is reaped as an orphan)"
                    ))
                }
                Err(NotTaken::Broken(why)) => why,
            },
            Reply::Refused(why) => {
                return Err(format!(
                    "its fork server (pid {server}) could not fork it: {why}"
                ))
            }
        },
        // Too large a request, or no memory for it: herd's trouble, not the fork server's.
        Err(Broken::Herd(e)) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
            return Err(format!(
                "its command line and environment ({} bytes) do not fit in one message to its \
                 fork server (pid {server}): the kernel caps it at net.core.wmem_max; make the \
                 environment smaller or raise that sysctl",
                request.len()
            ));
        }
        Err(Broken::Herd(e)) => {
            return Err(format!(
                "cannot ask its fork server (pid {server}) for it: {e}"
            ))
        }
        Err(Broken::ForkServer(why)) => why,
    };
    servers.forget(server);
    let _ = herd_sys::process::signal_process(server, herd_sys::process::Signal::KILL);
    tracing::error!(
        event = LogEvent::ForkServerExited.as_str(),
        pid = server,
        generation,
        "fork server {why}; killed it: the next start starts another"
    );
    Err(format!(
        "its fork server (pid {server}) {why}; herd killed it"
    ))
}

/// Who broke an [`exchange`] with a fork server.
enum Broken {
    /// herd, which could not send its request (too large, no memory).
    Herd(std::io::Error),
    /// The fork server, as the rest of "its fork server ..." says.
    ForkServer(String),
}

/// Sends `request` with `fds` on `socket` and reads the reply into `reply`, both within
/// [`REPLY_TIMEOUT`]: the reply's length. herd's own signals (a child's exit) interrupt
/// either, which goes on within the same time.
fn exchange(
    socket: &Socket,
    request: &[u8],
    fds: &[BorrowedFd<'_>],
    reply: &mut [u8],
) -> Result<usize, Broken> {
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        left.max(Duration::from_millis(1))
    };
    let late = |what: &str| {
        let within = humantime::format_duration(REPLY_TIMEOUT);
        Broken::ForkServer(format!("did not {what} within {within}"))
    };
    let closed = || Broken::ForkServer("closed its socket".to_string());
    // One reply per request, in order: a message waiting before herd asks answers nothing
    // herd asked, and every later reply would answer the request before it.
    if let Some(why) = unasked_reply(socket) {
        return Err(Broken::ForkServer(why));
    }
    // A fork server that does not read its requests fills its socket: without a timeout
    // herd would wait for room for ever.
    let sent = retry_interrupted(|| {
        socket.set_write_timeout(Some(left()))?;
        herd_sys::fdpass::send_with_fds(socket.as_fd(), request, fds)
    });
    match sent {
        Ok(_) => {}
        Err(e) if timed_out(&e) => return Err(late("read its request")),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN)
            ) =>
        {
            return Err(closed())
        }
        Err(e) => return Err(Broken::Herd(e)),
    }
    let read = retry_interrupted(|| {
        socket.set_read_timeout(Some(left()))?;
        std::io::Read::read(&mut &*socket, reply)
    });
    match read {
        Ok(0) => Err(closed()),
        Ok(n) => Ok(n),
        Err(e) if timed_out(&e) => Err(late("answer")),
        Err(e) => Err(Broken::ForkServer(format!("could not be asked: {e}"))),
    }
}

/// Whether `e` is a socket timeout's.
fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Why the fork server on `socket` broke the protocol, if a message is waiting there before
/// herd asked anything: a second reply to a request, or one sent unasked.
fn unasked_reply(socket: &Socket) -> Option<String> {
    let mut buf = [0u8; 80];
    let waiting = socket
        .set_nonblocking(true)
        .and_then(|()| std::io::Read::read(&mut &*socket, &mut buf));
    let _ = socket.set_nonblocking(false);
    match waiting {
        Ok(n) if n > 0 => Some(format!(
            "sent {:?} before herd asked anything (one reply per request, docs/fork-server.md)",
            String::from_utf8_lossy(&buf[..n])
        )),
        // Nothing (or end of stream, which the request's send finds too).
        _ => None,
    }
}

/// `op`, again while a signal interrupts it.
fn retry_interrupted<T>(mut op: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Why herd does not take a pid a fork server answered (see [`adopted`]).
enum NotTaken {
    /// It has exited already: a worker may exit before herd reads its pid (the fork server
    /// is not at fault), or the fork server answered an exited worker's that herd holds.
    Exited,
    /// The fork server broke the protocol, as the rest of "its fork server ..." says.
    Broken(String),
}

/// Whether `pid`, which a fork server answered, is a worker herd may supervise: herd's own
/// child (re-parented to herd, the subreaper) that leads its own process group, has not
/// exited and is no fork server. A fork server may answer any pid, and herd signals its
/// workers' groups: it must never take a process it did not adopt, nor the exited worker whose
/// zombie herd holds so that its group's id names no stranger
/// ([`leftovers`](crate::supervisor::leftovers)). One that is herd's child but leads no group
/// of its own is killed (nothing else would stop it) if it runs as fork server `server` does:
/// a fork server of `--user` must not make root herd kill one of herd's own (a re-exec check).
fn adopted(pid: u32, server: u32, fork_server: impl Fn(u32) -> bool) -> Result<(), NotTaken> {
    if fork_server(pid) {
        return Err(NotTaken::Broken(format!(
            "answered pid {pid}, which is a fork server"
        )));
    }
    // `/proc/TID` answers for a thread too, with its process's parent and group, and a
    // signal to a thread's id reaches its whole process: a thread of a serving worker would
    // otherwise read as a process that leads no group, and be killed with that worker.
    if let Some(process) = thread_group(pid).filter(|&p| p != pid) {
        return Err(NotTaken::Broken(format!(
            "answered pid {pid}, which is a thread of process {process}, not a process"
        )));
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields = herd_sys::process::parse_stat_fields(&stat, &[3, 4, 5]).unwrap_or_default();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u32>().ok());
    if number(1) != Some(std::process::id()) {
        return Err(NotTaken::Broken(format!(
            "answered pid {pid}, which is not herd's child: a worker must be re-parented to \
             herd before the reply (docs/fork-server.md)"
        )));
    }
    if fields.first() == Some(&"Z") {
        return Err(NotTaken::Exited);
    }
    if number(2) != Some(pid) {
        let owner = |pid: u32| {
            std::fs::metadata(format!("/proc/{pid}"))
                .map(|m| m.uid())
                .ok()
        };
        let killed = match owner(pid).is_some() && owner(pid) == owner(server) {
            true => herd_sys::process::signal_process(pid, herd_sys::process::Signal::KILL).is_ok(),
            false => false,
        };
        return Err(NotTaken::Broken(format!(
            "answered pid {pid}, which leads no process group of its own (a worker calls \
             setpgid(0, 0)){}",
            if killed {
                "; herd killed that process"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// The process (thread group) that thread `tid` belongs to, from `/proc/TID/status`'s `Tgid`;
/// `None` if there is no such thread.
fn thread_group(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Tgid:"))
        .and_then(|tgid| tgid.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threads_id_names_its_process() {
        let own = std::process::id();
        assert_eq!(thread_group(own), Some(own));
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // `/proc/thread-self` links to PID/task/TID.
            let link = std::fs::read_link("/proc/thread-self").unwrap();
            let tid = link.file_name().unwrap().to_str().unwrap().parse::<u32>();
            tx.send(tid.unwrap()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        assert_ne!(tid, own);
        assert_eq!(thread_group(tid), Some(own));
        drop(done_tx);
        thread.join().unwrap();
    }
}
