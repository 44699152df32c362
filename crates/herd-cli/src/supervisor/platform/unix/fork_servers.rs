//! Fork servers on Unix (see [`fork_server`](crate::supervisor::fork_server)): starting one
//! with its end of a `SOCK_SEQPACKET` pair at fd 3, and asking it for a worker: the request
//! with the worker's standard streams and sockets (`SCM_RIGHTS`), then its reply, waited for
//! at most [`REPLY_TIMEOUT`].

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
    let asked =
        retry_interrupted(|| herd_sys::fdpass::send_with_fds(socket.as_fd(), &request, &all));
    if let Err(e) = &asked {
        // Too large a request, or no memory for it: herd's trouble, not the fork server's.
        if e.raw_os_error() == Some(libc::EMSGSIZE) {
            return Err(format!(
                "its command line and environment ({} bytes) do not fit in one message to its \
                 fork server (pid {server}): the kernel caps it at net.core.wmem_max; make the \
                 environment smaller or raise that sysctl",
                request.len()
            ));
        }
        if !matches!(
            e.raw_os_error(),
            Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN)
        ) {
            return Err(format!(
                "cannot ask its fork server (pid {server}) for it: {e}"
            ));
        }
    }
    let mut reply = [0u8; 512];
    // herd's own signals (a child's exit) interrupt the wait: it goes on, within the same time.
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let answer = asked.and_then(|_| {
        retry_interrupted(|| {
            let left = deadline.saturating_duration_since(Instant::now());
            socket.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            std::io::Read::read(&mut &*socket, &mut reply)
        })
    });
    let why = match answer {
        Ok(n) if n > 0 => match parse_reply(&reply[..n]) {
            Reply::Forked(pid) => match adopted(pid, |p| servers.pids().any(|s| s == p)) {
                Ok(()) => return Ok(pid),
                Err(why) => why,
            },
            Reply::Refused(why) => {
                return Err(format!(
                    "its fork server (pid {server}) could not fork it: {why}"
                ))
            }
        },
        Ok(_) => "closed its socket".to_string(),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            format!(
                "did not answer within {}",
                humantime::format_duration(REPLY_TIMEOUT)
            )
        }
        Err(e) => format!("could not be asked: {e}"),
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

/// `op`, again while a signal interrupts it.
fn retry_interrupted<T>(mut op: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Whether `pid`, which a fork server answered, is a worker herd may supervise: herd's own
/// child (re-parented to herd, the subreaper) that leads its own process group. A fork server
/// may answer any pid, and herd signals its workers' groups: it must never take a process it
/// did not adopt. One that is herd's child but leads no group of its own is killed (nothing
/// else would stop it). Why not, as the rest of "its fork server ...".
fn adopted(pid: u32, fork_server: impl Fn(u32) -> bool) -> Result<(), String> {
    if fork_server(pid) {
        return Err(format!("answered pid {pid}, which is a fork server"));
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields = herd_sys::process::parse_stat_fields(&stat, &[4, 5]).unwrap_or_default();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u32>().ok());
    if number(0) != Some(std::process::id()) {
        return Err(format!(
            "answered pid {pid}, which is not herd's child: a worker must be re-parented to \
             herd before the reply (docs/fork-server.md)"
        ));
    }
    if number(1) != Some(pid) {
        let _ = herd_sys::process::signal_process(pid, herd_sys::process::Signal::KILL);
        return Err(format!(
            "answered pid {pid}, which leads no process group of its own (a worker calls \
             setpgid(0, 0)); herd killed that process"
        ));
    }
    Ok(())
}
