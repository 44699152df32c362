//! The size of what a worker starts with, checked before herd binds anything: `execve`
//! refuses (`E2BIG`) one argument or variable over Linux's limit for one string, and a command
//! line with its environment over the system's total, so such a command could never start,
//! however often herd tried. A config file's `[env]` holds either easily.
//!
//! Counted as the kernel counts: each argument and `NAME=value` with its NUL and a pointer to
//! it, and the program's path. What herd cannot know before it binds (its socket paths, the
//! program's path once found in `PATH`, a worker's slot, generation and pid) is counted at its
//! longest, so what passes here passes at every start, and `herd check`, `herd run` and
//! `herd upgrade --reload-config` agree. Not counted: more than one socket for `--bind
//! systemd`, whose number herd learns only as it takes them (each is a few hundred bytes of
//! `LISTEN_FDNAMES` and `--compat`'s variables).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;

use herd_sys::spawn::{exec_limits, ExecLimits};

use crate::cli::RunArgs;
use crate::spec::SocketKind;
use crate::template::ArgTemplate;
use crate::worker_env::{stop_signal, worker_env, Passed};

/// The longest path of a Unix socket (`sun_path`): herd's notify, control and einhorn
/// sockets, which workers get in `NOTIFY_SOCKET`, `HERD_CONTROL` and `EINHORN_SOCK_PATH`.
const SOCKET_PATH: usize = 108;
/// The longest address herd shows for a socket (`unix:` and a socket path; an IPv6 address
/// with its interface and port), as `SERVER_STARTER_PORT` gives it.
const ADDRESS: usize = 128;
/// The longest socket name, in `LISTEN_FDNAMES`, for a socket named after its address.
const NAME: usize = 255;
/// The longest path of a program (`PATH_MAX`, with its NUL), which `execve` copies too.
const PROGRAM_PATH: usize = 4096;
/// The decimal digits of the largest slot, generation or pid herd writes.
const DIGITS: usize = 20;

/// One string a worker is given: what it is, and its bytes with its NUL.
struct Part {
    what: What,
    bytes: usize,
}

/// What a string a worker is given is, for messages.
enum What {
    /// The worker command's argument of this number, and its first characters.
    Argument(usize, String),
    /// A variable, and where it comes from.
    Variable(OsString, &'static str),
}

impl fmt::Display for What {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            What::Argument(i, start) => write!(f, "argument {i} of the worker command ('{start}')"),
            What::Variable(name, source) => write!(
                f,
                "the workers' variable {}=... ({source})",
                name.to_string_lossy()
            ),
        }
    }
}

/// Whether the command and environment `args` gives its workers fit what `execve` takes:
/// else why not, in one line naming the largest argument or variable and the limit.
pub(super) fn check(args: &RunArgs) -> Result<(), String> {
    let stack = args
        .rlimit
        .iter()
        .find(|r| r.resource == libc::RLIMIT_STACK as i32)
        .map(|r| r.soft);
    fits(&parts(args), exec_limits(stack), stack.is_some())
}

/// Every argument and variable a worker of `args` gets, herd's own at their longest.
fn parts(args: &RunArgs) -> Vec<Part> {
    let mut parts: Vec<Part> = args
        .command
        .iter()
        .enumerate()
        .map(|(i, arg)| {
            // An invalid template is refused, with its reason, before any worker starts.
            let units = ArgTemplate::widest(arg, i).unwrap_or(arg.len());
            let text = arg.to_string_lossy();
            let preview: String = text.chars().take(16).collect();
            let more = if preview.len() < text.len() {
                "..."
            } else {
                ""
            };
            Part {
                what: What::Argument(i, format!("{preview}{more}")),
                bytes: units + 1,
            }
        })
        .collect();
    let longest = |n: usize| OsString::from("x".repeat(n));
    let mut sockets = vec![(SocketKind::Tcp, "x".repeat(ADDRESS)); args.binds.len()];
    sockets.extend(args.shm.iter().map(|_| (SocketKind::Shm, String::new())));
    let passed = Passed {
        sockets,
        einhorn_sock: Some(longest(SOCKET_PATH).into()),
    };
    let mut extra = worker_env(args, longest(SOCKET_PATH), longest(SOCKET_PATH), &passed);
    stop_signal::name_in(&mut extra, args.stop_signal);
    // Sets: a config file may give tens of thousands of variables.
    let given: HashSet<&OsString> = args.env.iter().map(|(name, _)| name).collect();
    let herds: HashSet<OsString> = extra
        .iter()
        .filter(|(name, _)| !given.contains(name))
        .map(|(name, _)| name.clone())
        .collect();
    // What herd sets for each worker as it starts it (`WorkerCommand::plan`).
    let names = args
        .binds
        .iter()
        .map(|b| b.name.as_ref().map_or(NAME, String::len));
    let names = names.chain(args.shm.iter().map(|s| s.name.len()));
    let fd_names = names.map(|n| n + 1).sum::<usize>().saturating_sub(1);
    let count = args.binds.len() + args.shm.len();
    let per_worker = [
        ("LISTEN_FDS", count.to_string().len()),
        ("LISTEN_FDNAMES", fd_names),
        ("HERD_WORKER", DIGITS),
        ("HERD_GENERATION", DIGITS),
        ("LISTEN_PID", DIGITS),
    ];
    for (name, value) in crate::command::worker_environment(extra, args.clear_env) {
        let source = if given.contains(&name) {
            "from env"
        } else if herds.contains(&name) {
            "herd's own, at its longest"
        } else {
            "from herd's environment"
        };
        parts.push(Part {
            bytes: name.len() + 1 + value.len() + 1,
            what: What::Variable(name, source),
        });
    }
    parts.extend(per_worker.map(|(name, value)| Part {
        what: What::Variable(name.into(), "herd's own, at its longest"),
        bytes: name.len() + 1 + value + 1,
    }));
    parts
}

/// Whether `parts` fit `limits` (set by the workers' `--rlimit stack` if `by_rlimit`).
fn fits(parts: &[Part], limits: ExecLimits, by_rlimit: bool) -> Result<(), String> {
    if let Some(most) = limits.per_string {
        if let Some(part) = parts.iter().find(|p| p.bytes > most) {
            return Err(format!(
                "{} is {} bytes, over Linux's limit of {} for one argument or variable \
                 (MAX_ARG_STRLEN: 32 pages, its NUL included): pass anything that large in a \
                 file instead",
                part.what,
                part.bytes - 1,
                most - 1
            ));
        }
    }
    let pointer = std::mem::size_of::<usize>();
    let total = PROGRAM_PATH + parts.iter().map(|p| p.bytes + pointer).sum::<usize>();
    if total <= limits.total {
        return Ok(());
    }
    let mut largest: Vec<&Part> = parts.iter().collect();
    largest.sort_by_key(|p| std::cmp::Reverse(p.bytes));
    let largest: Vec<String> = largest
        .iter()
        .take(3)
        .map(|p| format!("{} is {} bytes", p.what, p.bytes - 1))
        .collect();
    let stack = match by_rlimit {
        true => "the workers' --rlimit stack",
        false => "the stack limit, ulimit -s",
    };
    let arguments = parts
        .iter()
        .filter(|p| matches!(p.what, What::Argument(..)))
        .count();
    let variables = parts.len() - arguments;
    Err(format!(
        "the worker command and its environment, {arguments} arguments and {variables} \
         variables, take {total} bytes (each string with its NUL and a pointer, herd's own \
         variables and the program's path at their longest), over the system's limit of {} for \
         a program's arguments and environment (ARG_MAX; on Linux a quarter of {stack}, at most \
         6 MiB); the largest: {}: pass large values in a file instead",
        limits.total,
        largest.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, bytes: usize) -> Part {
        Part {
            what: What::Variable(name.into(), "from env"),
            bytes,
        }
    }

    const LIMITS: ExecLimits = ExecLimits {
        per_string: Some(131_072),
        total: 2 * 1024 * 1024,
    };

    #[test]
    fn one_string_over_linux_limit_is_named_with_the_limit() {
        assert!(fits(&[var("A", 131_072)], LIMITS, false).is_ok());
        let argument = Part {
            what: What::Argument(1, "xx...".into()),
            bytes: 131_073,
        };
        assert_eq!(
            fits(&[var("A", 1), argument], LIMITS, false).unwrap_err(),
            "argument 1 of the worker command ('xx...') is 131072 bytes, over Linux's limit of \
             131071 for one argument or variable (MAX_ARG_STRLEN: 32 pages, its NUL included): \
             pass anything that large in a file instead"
        );
        let too_long = fits(&[var("BIG", 131_073)], LIMITS, false).unwrap_err();
        assert!(
            too_long.starts_with("the workers' variable BIG=... (from env) is 131072 bytes"),
            "{too_long}"
        );
    }

    #[test]
    fn the_total_counts_pointers_and_the_program_path_and_names_the_largest() {
        // As on a system without Linux's limit for one string.
        let limits = ExecLimits {
            per_string: None,
            ..LIMITS
        };
        let pointer = std::mem::size_of::<usize>();
        let room = LIMITS.total - PROGRAM_PATH;
        let exactly = [var("A", room / 2 - pointer), var("B", room / 2 - pointer)];
        assert!(fits(&exactly, limits, false).is_ok());
        let over = [
            var("A", room / 2 - pointer),
            var("C", 1),
            var("B", room / 2 - pointer),
        ];
        let why = fits(&over, limits, true).unwrap_err();
        let total = LIMITS.total + 1 + pointer;
        let start = format!(
            "the worker command and its environment, 0 arguments and 3 variables, take {total} \
             bytes"
        );
        assert!(why.starts_with(&start), "{why}");
        assert!(why.contains("of the workers' --rlimit stack"), "{why}");
        let each = room / 2 - pointer - 1;
        let largest = format!(
            "; the largest: the workers' variable A=... (from env) is {each} bytes, the workers' \
             variable B=... (from env) is {each} bytes, the workers' variable C=... (from env) \
             is 0 bytes: "
        );
        assert!(why.contains(&largest), "{why}");
    }
}
