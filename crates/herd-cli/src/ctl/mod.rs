//! The client commands: `herd status`, `scale`, `upgrade`, `stop` and `signal` send one
//! request to a running herd's control socket and print the answer.

mod answer;
mod table;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;

use crate::cli::{self, ScaleTarget};
use crate::command::{resolve_program, ArgTemplate};
use crate::control::protocol::{Command, ErrorCode, Request, Response, VERSION};
use crate::exit::Failure;
use crate::logging::LogEvent;
use crate::supervisor::status::Status;
use crate::text::escape;

/// How long a quick command (status, scale, signal) waits for its answer.
const QUICK: Duration = Duration::from_secs(30);

/// Runs one client command against the herd at `control`; `private_dir` says that `control`
/// is the default path, whose directory must be the caller's own (as `herd run` requires);
/// `owner` is the uid the server may run as besides root and the caller ([`herd::trust`]).
pub fn run(
    command: cli::Command,
    control: &Path,
    private_dir: bool,
    owner: Option<u32>,
) -> Result<(), Failure> {
    if private_dir {
        check_dir(control)?;
    }
    match command {
        cli::Command::Run(_) => unreachable!("herd run is not a client command"),
        cli::Command::Status(args) => {
            let result = request(control, Command::Status, Some(QUICK), owner)?;
            if args.json {
                let json = serde_json::to_string_pretty(&result).unwrap_or_default();
                print(&format!("{json}\n"))?;
            } else {
                let status: Status = serde_json::from_value(result)
                    .map_err(|e| anyhow!("unexpected status from {}: {e}", control.display()))?;
                print(&table::render(&status))?;
            }
        }
        cli::Command::Scale(args) => {
            let (workers, delta, min, max) = match args.target {
                ScaleTarget::Set(n) => (Some(n), None, None, None),
                ScaleTarget::Delta(d) => (None, Some(d), None, None),
                ScaleTarget::Bounds(min, max) => (None, None, Some(min), Some(max)),
            };
            let command = Command::Scale {
                workers,
                delta,
                min,
                max,
            };
            let result = request(control, command, Some(QUICK), owner)?;
            if min.is_some() {
                print(&format!(
                    "autoscaling between {} and {} workers (now {})\n",
                    result["min"], result["max"], result["workers"]
                ))?;
            } else {
                print(&format!(
                    "scaled from {} to {} workers\n",
                    result["previous"], result["workers"]
                ))?;
            }
        }
        cli::Command::Upgrade(args) => {
            let timeout_ms = Some(args.timeout.as_millis() as u64);
            let result = request(control, Command::Upgrade { timeout_ms }, None, owner)?;
            print(&format!(
                "upgraded: every worker now runs generation {}\n",
                result["generation"]
            ))?;
        }
        cli::Command::Stop(args) => {
            let grace_ms = args.grace.map(|g| g.as_millis() as u64);
            request(
                control,
                Command::Stop {
                    grace_ms,
                    fast: args.fast,
                    takeover: false,
                },
                None,
                owner,
            )?;
            print("stopped\n")?;
        }
        cli::Command::Attach(args) => return attach(args, control, owner),
        cli::Command::Reexec => {
            let result = request(control, Command::Reexec, Some(QUICK), owner)?;
            print(&format!(
                "re-executed: herd {} runs as pid {}\n",
                escape(result["version"].as_str().unwrap_or("?")),
                result["pid"]
            ))?;
        }
        cli::Command::Signal(args) => {
            let signal = args.signal.number().to_string();
            let command = Command::Signal {
                signal,
                slot: args.worker,
            };
            let result = request(control, command, Some(QUICK), owner)?;
            print(&format!(
                "sent {} to {} worker(s)\n",
                args.signal, result["signalled"]
            ))?;
        }
    }
    Ok(())
}

/// Writes `text` to stdout. A reader that went away (`herd status | head -1`) ends the
/// command quietly, as if everything had been read; any other failure (`> /dev/full`) is an
/// error.
fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Runtime(anyhow!("cannot write to stdout: {e}"))),
    }
}

/// Refuses a default control directory that another user prepared (a symlink, a directory of
/// theirs, or one open to others): what answers there could be anyone's. A missing directory
/// is left to `connect`, which says that no herd runs there.
fn check_dir(control: &Path) -> Result<(), Failure> {
    let Some(dir) = control.parent() else {
        return Ok(());
    };
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    let uid = herd_sys::process::effective_uid();
    crate::control::path::check_private_dir(dir, uid)
        .map(drop)
        .map_err(Failure::Runtime)
}

/// Sends one request and returns its result, or a failure that says what went wrong. The
/// server must be one the caller trusts ([`herd::trust`], with `owner` named) before its
/// answer is believed.
pub fn request(
    control: &Path,
    command: Command,
    timeout: Option<Duration>,
    owner: Option<u32>,
) -> Result<serde_json::Value, Failure> {
    let shown = control.display();
    let len = control.as_os_str().len();
    if len > crate::spec::MAX_UNIX_PATH {
        return Err(Failure::Usage(format!(
            "the control socket path {shown} is {len} bytes; Unix socket paths hold at most {}: \
             pass the herd's real --control path",
            crate::spec::MAX_UNIX_PATH
        )));
    }
    let mut stream = UnixStream::connect(control).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ECONNREFUSED) => format!(
                "no herd is running at {shown}: start one with 'herd run', or select it with \
                 --name or --control"
            ),
            Some(libc::EACCES) => format!("permission denied opening {shown}"),
            _ => format!("cannot connect to {shown}: {e}"),
        };
        Failure::Runtime(anyhow!(why))
    })?;
    herd::trust::check_server(&stream, control, owner).map_err(|e| Failure::Runtime(e.into()))?;
    answer::check_running(&stream, control).map_err(|e| Failure::Runtime(anyhow!(e)))?;
    stream
        .set_write_timeout(Some(QUICK))
        .map_err(|e| Failure::Runtime(e.into()))?;
    let mut line = serde_json::to_vec(&Request {
        version: VERSION,
        command,
    })
    .map_err(|e| Failure::Runtime(e.into()))?;
    line.push(b'\n');
    // herd may answer before reading (a refusal) and close: then the write fails, but the
    // answer is waiting to be read, and it says more than "broken pipe".
    let sent = stream.write_all(&line);
    answer::wait(&stream, control, timeout).map_err(|e| Failure::Runtime(anyhow!(e)))?;
    let mut answer = String::new();
    let read = BufReader::new(&stream).read_line(&mut answer);
    if answer.is_empty() {
        let why = match (sent, read) {
            (Err(e), _) => format!("cannot send to {shown}: {e}"),
            (_, Err(e)) => format!("no answer from {shown}: {e}"),
            _ => format!("{shown} closed the connection without an answer"),
        };
        return Err(Failure::Runtime(anyhow!(why)));
    }
    let response: Response = serde_json::from_str(&answer)
        .map_err(|e| Failure::Runtime(anyhow!("unexpected answer from {shown}: {e}")))?;
    match (response.ok, response.result, response.error) {
        (true, result, _) => Ok(result.unwrap_or_default()),
        (false, _, Some(error)) => {
            let code = serde_json::to_value(error.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            // The message is herd's, but may quote a worker: no control characters reach
            // the terminal.
            let message = escape(&error.message);
            let line = match error.code {
                ErrorCode::UpgradeFailed => {
                    format!("upgrade failed, the old workers keep serving ({code}): {message}")
                }
                ErrorCode::Stopping if message.starts_with("herd is stopping") => {
                    format!("{message} ({code})")
                }
                ErrorCode::Stopping => format!("herd is stopping ({code}): {message}"),
                // The message says which binary, why, and that herd keeps running.
                ErrorCode::ReexecCheckFailed => format!("{message} ({code})"),
                _ => format!("herd refused ({code}): {message}"),
            };
            Err(Failure::Runtime(anyhow!(line)))
        }
        (false, _, None) => Err(Failure::Runtime(anyhow!("herd refused without saying why"))),
    }
}

/// `herd attach`: fetch the sockets, register with herd, and become COMMAND with the sockets at
/// fds 3, 4, ... (the same process, so `LISTEN_PID` is simply its pid).
fn attach(args: cli::AttachArgs, control: &Path, owner: Option<u32>) -> Result<(), Failure> {
    // Look first, check the command against the sockets, then fetch for real and register:
    // a command that cannot run is never listed as an attached worker.
    let look = herd::fetch::FetchOptions {
        only: args.only.clone(),
        attach: false,
        owner,
    };
    let fetched = herd::fetch::fetch(control, &look).map_err(|e| {
        if e.to_string().contains("No such file") || e.to_string().contains("refused (os error") {
            Failure::Runtime(anyhow!(
                "no herd is running at {}: start one with 'herd run', or select it with --name or \
                 --control",
                control.display()
            ))
        } else {
            Failure::Runtime(anyhow!("{e}"))
        }
    })?;
    let names: Vec<String> = fetched.iter().map(|f| f.name.clone()).collect();
    let mut argv = Vec::with_capacity(args.command.len());
    for (i, arg) in args.command.iter().enumerate() {
        let template = ArgTemplate::compile(arg, i, &names).map_err(Failure::Usage)?;
        if let Some(placeholder) = template.worker_only() {
            return Err(Failure::Usage(format!(
                "argument {i}: {placeholder} has no value for an attached process (it has no \
                 slot or generation): remove it from the command"
            )));
        }
        argv.push(template.expand(0, 0));
    }
    let program = resolve_program(&argv[0], std::env::var_os("PATH").as_deref(), None)
        .map_err(Failure::Usage)?;
    drop(fetched);
    // Lead a process group before registering, so that herd, which stops an attached
    // process's group as it stops a worker's, reaches what COMMAND forks too (a shell's
    // foreground job leads its group already; run from a script, this leaves the script's
    // group: see docs on attach and job control). A group this process already leads with
    // others in it (a pipeline's, a script's under setsid) is not taken as COMMAND's: herd
    // checks that itself, and signals only COMMAND then.
    match herd_sys::process::lead_own_group() {
        Err(e) => tracing::warn!(
            event = LogEvent::SetupNote.as_str(),
            "cannot lead a process group ({e}): herd will stop only this process, not what it \
             forks"
        ),
        Ok(()) => {
            let others = herd_sys::process::group_members(herd_sys::process::current_pid());
            if !others.is_empty() {
                tracing::warn!(
                    event = LogEvent::SetupNote.as_str(),
                    "this process leads a process group that other processes share (a \
                     pipeline's or a script's, {} of them): herd will stop only COMMAND, not \
                     what it forks",
                    others.len()
                );
            }
        }
    }
    let register = herd::fetch::FetchOptions {
        only: names.clone(),
        attach: true,
        owner,
    };
    let fetched =
        herd::fetch::fetch(control, &register).map_err(|e| Failure::Runtime(anyhow!("{e}")))?;
    let count = fetched.len();
    // The sockets go to 3, 4, ...; fds this process inherited and does not pass on (a shell's
    // fd 10, say) are set aside, and put back only if the exec fails. execve, as `herd run`
    // starts its workers: no shell fallback for a file the system cannot execute (std's exec
    // is execvp, which would run it through /bin/sh).
    // The log queue dies with this program.
    crate::logging::flush();
    let mut executed = false;
    let fds = fetched.into_iter().map(|f| f.fd).collect();
    // This process's only other thread, if any, is the log writer, which writes to stderr
    // alone: nothing else opens or uses an fd while the sockets are placed.
    let sole = herd_sys::fd::NoOtherThreadUsesFds::promise();
    let error = herd_sys::fd::exec_with_listen_fds(fds, sole, || {
        executed = true;
        exec_attached(&program, &argv, count, &names, control, owner)
    });
    if executed {
        return Err(Failure::Runtime(anyhow!(
            "{}",
            crate::command::explain_exec_error(&program, &error, "")
        )));
    }
    let hint = match error.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::EINVAL) => format!(
            " ({count} sockets need about {} fds: raise the open-file limit, ulimit -n)",
            2 * count + 16
        ),
        _ => String::new(),
    };
    Err(Failure::Runtime(anyhow!(
        "cannot place the sockets at fds 3 to {}: {error}{hint}",
        count + 2
    )))
}

/// Replaces this process with `program`, the sockets' variables set in its environment (with
/// `HERD_CONTROL_OWNER` when an owner was named, so that it trusts the same herd);
/// returns only on failure.
fn exec_attached(
    program: &Path,
    argv: &[std::ffi::OsString],
    count: usize,
    names: &[String],
    control: &Path,
    owner: Option<u32>,
) -> std::io::Error {
    use std::ffi::OsStr;
    const DROPPED: &[&str] = &[
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "LISTEN_PID",
        "LISTEN_PIDFDID",
        "NOTIFY_SOCKET",
        "HERD_WORKER",
        "HERD_GENERATION",
        "HERD_CONTROL",
        herd::trust::OWNER_VAR,
    ];
    let set: [(&str, std::ffi::OsString); 4] = [
        ("LISTEN_FDS", count.to_string().into()),
        ("LISTEN_FDNAMES", names.join(":").into()),
        ("LISTEN_PID", std::process::id().to_string().into()),
        ("HERD_CONTROL", control.as_os_str().to_owned()),
    ];
    let plan = || -> std::io::Result<herd_sys::spawn::ExecPlan> {
        let mut plan = herd_sys::spawn::ExecPlan::new(program.as_os_str())?;
        for arg in argv {
            plan.arg(arg)?;
        }
        for (key, value) in std::env::vars_os() {
            if !DROPPED.iter().any(|d| OsStr::new(d) == key) {
                plan.env(&key, &value)?;
            }
        }
        for (key, value) in &set {
            plan.env(OsStr::new(key), value)?;
        }
        if let Some(owner) = owner {
            plan.env(
                OsStr::new(herd::trust::OWNER_VAR),
                OsStr::new(&owner.to_string()),
            )?;
        }
        Ok(plan)
    };
    let pipe = herd_sys::process::Signal::from_number(libc::SIGPIPE);
    match (plan(), pipe.map(herd_sys::process::default_disposition)) {
        (Ok(plan), None | Some(Ok(()))) => plan.exec_in_place(),
        (Err(e), _) | (_, Some(Err(e))) => e,
    }
}
