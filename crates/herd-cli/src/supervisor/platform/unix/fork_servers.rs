//! Fork servers on Unix (see [`fork_server`](crate::supervisor::fork_server)): starting one
//! with its end of a `SOCK_SEQPACKET` pair at fd 3, asking it for a worker (the request with
//! the worker's standard streams and sockets, `SCM_RIGHTS`, sent without waiting), and taking
//! its reply, which the loop reads when the socket becomes readable
//! ([`Inputs`](super::inputs::Inputs)).

use std::os::unix::fs::MetadataExt;
use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_sys::spawn::Stdio;
use socket2::{Domain, SockRef, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::command::{PreparedStart, StartError, WorkerCommand};
use crate::logging::LogEvent;
use crate::supervisor::fork_server::{encode_request, parse_reply, Answered, ForkServers, Reply};
use crate::supervisor::warm_up::{Lowered, Lowering};

/// herd's end of a fork server's socket, non-blocking, which the loop waits on for replies.
pub type Handle = Arc<AsyncFd<OwnedFd>>;

/// herd's fork servers: the handle of each, and the prepared start awaiting its reply.
pub type Servers = ForkServers<Handle, PreparedStart>;

/// The send buffer herd asks for on its end of a fork server's socket, so that one request
/// holds a large environment.
const REQUEST_ROOM: usize = 4 << 20;

/// The largest reply herd reads (`pid N` or a one-line `error MESSAGE`).
pub const REPLY_ROOM: usize = 512;

/// Starts `generation`'s fork server with `command`, `stdin` as its standard input, lowered as
/// `lowering` says while it loads (`--starting-nice`), and records it in `servers`, loading for
/// at most `timeout`. Its pid, and how herd lowered it.
pub fn start(
    servers: &mut Servers,
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
    // Its replies carry no fds: one sent along (a worker's code runs there) would be closed on
    // herd's loop, which can wait (see herd_sys::fd::close_in_background).
    herd_sys::fdpass::refuse_fds(ours.as_fd());
    // Neither a request nor a reply waits: a full socket fails the request, and the loop reads
    // the reply when it comes.
    ours.set_nonblocking(true)
        .map_err(|e| failed("cannot make its socket non-blocking", e))?;
    // A request is one message, as large as a worker's command line and environment: room for
    // what `execve` takes, as far as net.core.wmem_max allows (the kernel caps it there).
    let _ = ours.set_send_buffer_size(REQUEST_ROOM);
    let ours = herd_sys::fd::register_readable(ours.into())
        .map_err(|e| failed("cannot wait on its socket", e))?;
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
    servers.started(generation, pid, Arc::new(ours), Instant::now(), timeout);
    if lowered.is_some() {
        servers.lowered(pid);
    }
    Ok((pid, lowered))
}

/// Asks `generation`'s ready fork server for `slot`'s worker that `start` describes, with
/// `stdin` as its standard input (its output `start`'s, or herd's own) and `fds` (its
/// sockets), without waiting for the reply: the start awaits it in `servers`. Why not, if the
/// request could not be sent: a fork server that cannot be asked is killed and forgotten (the
/// next start starts another).
pub fn ask(
    servers: &mut Servers,
    (slot, generation): (usize, u64),
    start: PreparedStart,
    stdin: BorrowedFd<'_>,
    fds: &[BorrowedFd<'_>],
) -> Result<(), String> {
    let Some((server, socket)) = servers.ready(generation) else {
        return Err("its generation's fork server is gone".to_string());
    };
    let stdio = start.stdio(stdin);
    let (own_out, own_err) = (std::io::stdout(), std::io::stderr());
    let streams = [
        stdin,
        stdio.stdout.unwrap_or_else(|| own_out.as_fd()),
        stdio.stderr.unwrap_or_else(|| own_err.as_fd()),
    ];
    let all: Vec<BorrowedFd<'_>> = streams.into_iter().chain(fds.iter().copied()).collect();
    let request = encode_request(start.plan().args(), start.plan().env_entries());
    let sent = send(&SockRef::from(socket.get_ref()), &request, &all);
    drop((all, stdio));
    let why = match sent {
        Ok(()) => {
            servers.ask(server, slot, start, Instant::now());
            return Ok(());
        }
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
    Err(give_up(servers, server, generation, &why))
}

/// Kills fork server `server` of `generation`, which broke the protocol as `why` says, and
/// forgets it: the next start starts another. The start's failure.
fn give_up(servers: &mut Servers, server: u32, generation: u64, why: &str) -> String {
    servers.forget(server);
    let _ = herd_sys::process::signal_process(server, herd_sys::process::Signal::KILL);
    tracing::error!(
        event = LogEvent::ForkServerExited.as_str(),
        pid = server,
        generation,
        "fork server {why}; killed it: the next start starts another"
    );
    format!("its fork server (pid {server}) {why}; herd killed it")
}

/// What a fork server's reply comes to (see [`replied`]).
pub enum Outcome {
    /// The start of `slot` that awaited it ends: its worker's pid, or why not.
    Start {
        slot: usize,
        start: Box<PreparedStart>,
        pid: Result<u32, String>,
    },
    /// Worker `pid` was forked for a start of `slot` no longer wanted.
    Unwanted { slot: usize, pid: u32 },
}

/// What a reply that fork server `server` sent (`read`: what herd read on its socket) comes
/// to; nothing more to do if the socket reached end of file (herd killed the fork server, and
/// its exit fails the start) or the reply ended a start no longer wanted with no worker.
pub fn replied(
    servers: &mut Servers,
    server: u32,
    read: std::io::Result<Vec<u8>>,
) -> Option<Outcome> {
    let generation = servers.generation_of(server)?;
    let reply = match read {
        Ok(reply) if !reply.is_empty() => reply,
        // End of file, or an error on the socket: its exit (herd kills it now) says why.
        _ => {
            if servers.closed_socket(server) {
                let _ = herd_sys::process::signal_process(server, herd_sys::process::Signal::KILL);
            }
            return None;
        }
    };
    let (slot, start) = match servers.answered(server) {
        Answered::Wanted { slot, request } => (slot, Some(request)),
        Answered::Unwanted { slot } => (slot, None),
        Answered::Unasked => {
            let why = unasked(&reply);
            give_up(servers, server, generation, &why);
            return None;
        }
    };
    let result = match parse_reply(&reply) {
        Reply::Forked(pid) => match adopted(pid, server, |p| {
            p == server || servers.pids().any(|s| s == p)
        }) {
            Ok(()) => Ok(pid),
            Err(NotTaken::Exited) => Err(format!(
                "its fork server (pid {server}) answered pid {pid}, which has exited already: \
                 herd takes no exited process as a worker (one that exits at once is reaped \
                 as an orphan)"
            )),
            Err(NotTaken::Broken(why)) => Err(give_up(servers, server, generation, &why)),
        },
        Reply::Refused(why) => Err(format!(
            "its fork server (pid {server}) could not fork it: {why}"
        )),
    };
    match (start, result) {
        (Some(start), pid) => Some(Outcome::Start {
            slot,
            start: Box::new(start),
            pid,
        }),
        (None, Ok(pid)) => Some(Outcome::Unwanted { slot, pid }),
        (None, Err(why)) => {
            tracing::info!(
                pid = server,
                slot,
                "a start no longer wanted got no worker from its fork server: {why}"
            );
            None
        }
    }
}

/// Who broke a request to a fork server.
enum Broken {
    /// herd, which could not send its request (too large, no memory).
    Herd(std::io::Error),
    /// The fork server, as the rest of "its fork server ..." says.
    ForkServer(String),
}

/// Sends `request` with `fds` on `socket`, without waiting. A fork server that has not read
/// its earlier requests fills its socket: it fails the request.
fn send(socket: &Socket, request: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Broken> {
    // One reply per request, in order: a message waiting before herd asks answers nothing
    // herd asked, and every later reply would answer the request before it.
    if let Some(why) = unasked_reply(socket) {
        return Err(Broken::ForkServer(why));
    }
    let sent = retry_interrupted(|| herd_sys::fdpass::send_with_fds(socket.as_fd(), request, fds));
    match sent {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Broken::ForkServer(
            "did not read its earlier requests (its socket is full)".to_string(),
        )),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN)
            ) =>
        {
            Err(Broken::ForkServer("closed its socket".to_string()))
        }
        Err(e) => Err(Broken::Herd(e)),
    }
}

/// Why the fork server on `socket` broke the protocol, if a message is waiting there before
/// herd asked anything: a second reply to a request, or one sent unasked.
fn unasked_reply(socket: &Socket) -> Option<String> {
    let mut buf = [0u8; 80];
    match std::io::Read::read(&mut &*socket, &mut buf) {
        Ok(n) if n > 0 => Some(unasked(&buf[..n])),
        // Nothing (or end of stream, which the request's send finds too).
        _ => None,
    }
}

/// Why a fork server that sent `message` unasked broke the protocol.
fn unasked(message: &[u8]) -> String {
    let shown = &message[..message.len().min(80)];
    format!(
        "sent {:?} before herd asked anything (one reply per request, docs/fork-server.md)",
        String::from_utf8_lossy(shown)
    )
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

/// Kills the fork servers `loading` (`whose`, for the log), which herd has just closed while
/// they still loaded: one reads its socket only once loaded, so its close alone would leave it
/// loading (for good, if it hangs) until herd exits.
pub fn kill_loading(loading: Vec<u32>, whose: &str) {
    for pid in loading {
        tracing::debug!(
            pid,
            "killing {whose} fork server, closed while it still loaded"
        );
        let _ = herd_sys::process::signal_process(pid, herd_sys::process::Signal::KILL);
    }
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
