//! The command line: `herd [--log-level L] [--log-format F] run [OPTIONS] -- COMMAND [ARGS...]`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use herd_sys::process::Signal;

pub use crate::spec::Balance;
use crate::spec::{BindSpec, ShmSpec};

/// The most workers one herd runs; more is almost surely a typo.
pub const MAX_WORKERS: usize = 4096;

/// The longest duration any option takes: far beyond any sane grace period or timeout, and
/// far below what would overflow a clock reading.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// herd binds listening sockets once and runs N worker processes that share them.
#[derive(Debug, Parser)]
#[command(name = "herd", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// How much herd logs to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// `text` for people, `json` (one object per line) for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The control socket [default: $HERD_CONTROL, else $XDG_RUNTIME_DIR/herd/NAME.sock, else
    /// /tmp/herd-UID/NAME.sock].
    #[arg(long, global = true, value_name = "PATH")]
    pub control: Option<PathBuf>,

    /// Also trust a herd that runs as this uid (root and your own uid always are) [default:
    /// $HERD_CONTROL_OWNER]: needed to reach another user's herd that lets you in with
    /// --control-allow-uid, unless only root or that user could have prepared its socket's
    /// path (see docs/security.md).
    #[arg(long, global = true, value_name = "UID",
          value_parser = |t: &str| parse_number::<u32>(t, 0, "--control-owner"))]
    pub control_owner: Option<u32>,

    /// Which herd, when several run side by side: names the default control socket.
    #[arg(long, global = true, value_name = "NAME", default_value = "default")]
    pub name: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// herd's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bind sockets once and run N workers that share them, restarting any that exit.
    Run(Box<RunArgs>),
    /// Show a running herd's workers and sockets.
    Status(StatusArgs),
    /// Set the number of workers: N, +N or -N. Scaling down stops the highest slots
    /// gracefully.
    Scale(ScaleArgs),
    /// Replace every worker by a new generation, one ready worker at a time (same command
    /// line: picks up new code on disk). Exits non-zero, old workers still serving, if the
    /// new generation fails.
    Upgrade(UpgradeArgs),
    /// Stop a running herd: workers get the stop signal, then SIGKILL after the grace period.
    /// Waits until every worker is gone.
    Stop(StopArgs),
    /// Send a signal to every worker, or to one slot's worker.
    Signal(SignalArgs),
    /// Replace herd's own program with the binary now on disk, in the same process: same pid,
    /// same workers, same sockets. If the new binary cannot run, the old one keeps running.
    Reexec,
    /// Fetch a running herd's sockets and run COMMAND with them, laid out as `herd run` lays
    /// them out (fds from 3, LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID): one more worker, started
    /// by hand. It is listed in `herd status` and gets the stop signal when herd stops, but it
    /// is not restarted.
    Attach(AttachArgs),
}

/// `herd attach`.
#[derive(Debug, Args)]
#[command(override_usage = "herd attach [--only NAME,...] -- <COMMAND> [ARGS]...")]
pub struct AttachArgs {
    /// Only these sockets, by name (comma-separated).
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub only: Vec<String>,

    /// The program and its arguments; {fd:NAME} is replaced.
    #[arg(last = true, required = true, value_name = "COMMAND",
          value_parser = clap::value_parser!(OsString))]
    pub command: Vec<OsString>,
}

/// `herd status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the control protocol's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `herd scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// N sets the number of workers (and stops autoscaling); +N adds and -N removes workers;
    /// MIN..MAX autoscales between those bounds.
    #[arg(value_name = "N|+N|-N|MIN..MAX", allow_hyphen_values = true, value_parser = parse_scale)]
    pub target: ScaleTarget,
}

/// What `herd scale` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleTarget {
    /// Autoscale between these bounds.
    Bounds(usize, usize),
    /// Exactly this many workers.
    Set(usize),
    /// This many more (or fewer).
    Delta(i64),
}

/// `herd upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// How long the whole upgrade may take before it is aborted; herd refuses one shorter than
    /// its --min-ready (times the rounds of --max-surge workers it takes).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_positive_duration,
          allow_negative_numbers = true)]
    pub timeout: Duration,
}

/// `herd stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// How long workers may take to finish [default: the herd's --grace].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_negative_numbers = true)]
    pub grace: Option<Duration>,

    /// Kill the workers at once.
    #[arg(long, conflicts_with = "grace")]
    pub fast: bool,
}

/// `herd signal`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    /// The signal: HUP, USR1, SIGUSR2, 10, RTMIN+1, ... (not 32 or 33, which the C library
    /// keeps for itself).
    #[arg(value_name = "SIGNAL", value_parser = parse_signal)]
    pub signal: Signal,

    /// Only the worker in this slot.
    #[arg(long, value_name = "SLOT", value_parser = parse_slot, allow_negative_numbers = true)]
    pub worker: Option<usize>,
}

/// `herd run`.
#[derive(Debug, Args)]
#[command(
    after_long_help = RUN_HELP,
    override_usage = "herd run [OPTIONS] --bind <SPEC>... -- <COMMAND> [ARGS]..."
)]
pub struct RunArgs {
    /// A socket to bind and share: [NAME=]ADDRESS[,OPTION...] (repeatable; see below).
    #[arg(
        short,
        long = "bind",
        value_name = "SPEC",
        required_unless_present = "takeover"
    )]
    pub binds: Vec<BindSpec>,

    /// Take over the sockets of the herd at this control socket: start this herd's workers on
    /// them, and once they are ready, take over its control socket (this path) and socket
    /// files, and ask the old herd to stop. Without --bind, every socket is taken as it is.
    #[arg(long, value_name = "CONTROL_PATH")]
    pub takeover: Option<PathBuf>,

    /// Shared memory for the workers: NAME=SIZE (e.g. counters=4096, cache=64M), passed like a
    /// socket (after the sockets, named NAME in LISTEN_FDNAMES), kept across restarts and
    /// upgrades (repeatable).
    #[arg(long, value_name = "NAME=SIZE")]
    pub shm: Vec<ShmSpec>,

    /// How workers share each TCP socket herd binds: `shared` (one socket and one accept queue
    /// for all; an idle worker takes the next client) or `reuseport` (one SO_REUSEPORT socket
    /// and queue per worker slot; the kernel spreads new connections over the ready workers).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = Balance::Shared)]
    pub balance: Balance,

    /// How many workers to run: N, or MIN..MAX to autoscale from the accept queue and the
    /// workers' busyness [default: the number of CPUs available to herd].
    #[arg(short, long, value_name = "N|MIN..MAX", value_parser = parse_workers,
          allow_negative_numbers = true)]
    pub workers: Option<Workers>,

    /// How long stopping workers may take to finish before they are killed (e.g. 30s, 1m30s).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration,
          allow_negative_numbers = true)]
    pub grace: Duration,

    /// The signal that asks a worker to stop (e.g. TERM, INT, QUIT, USR1).
    #[arg(long, value_name = "SIGNAL", default_value = "TERM", value_parser = parse_stop_signal,
          allow_negative_numbers = true)]
    pub stop_signal: Signal,

    /// When a new worker counts as ready: `delay=DURATION` (alive that long, or READY=1
    /// sooner) or `notify` (only READY=1 on NOTIFY_SOCKET).
    #[arg(long, value_name = "MODE", default_value = "delay=1s", value_parser = parse_ready)]
    pub ready: ReadyMode,

    /// With --ready notify: how long a worker may take to send READY=1 before it counts as
    /// failed.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_positive_duration,
          allow_negative_numbers = true)]
    pub ready_timeout: Duration,

    /// Workers must send WATCHDOG=1 at least this often once ready (they get WATCHDOG_USEC);
    /// one that misses its deadline is killed and restarted.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration,
          allow_negative_numbers = true)]
    pub watchdog: Option<Duration>,

    /// During an upgrade, how many new workers may be starting at once.
    #[arg(long, value_name = "N", default_value_t = 1, allow_negative_numbers = true,
          value_parser = |t: &str| parse_number::<u32>(t, 1, "--max-surge"))]
    pub max_surge: u32,

    /// How long a new worker must stay ready before it replaces an old one in an upgrade, or
    /// completes a takeover (like Kubernetes' minReadySeconds). One that exits within it
    /// aborts the upgrade and the old workers keep serving; 0 counts a worker at once.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration,
          allow_negative_numbers = true)]
    pub min_ready: Duration,

    /// Run workers as this user (name or uid). herd must be root: it binds privileged ports and
    /// keeps running as root to start workers; only the workers drop privileges.
    #[arg(long, value_name = "USER", value_parser = parse_user, allow_negative_numbers = true)]
    pub user: Option<String>,

    /// With --user: the workers' group [default: the user's primary group].
    #[arg(long, value_name = "GROUP", requires = "user", value_parser = parse_group,
          allow_negative_numbers = true)]
    pub group: Option<String>,

    /// The workers' working directory.
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// The workers' umask (octal, e.g. 027).
    #[arg(long, value_name = "OCTAL", value_parser = parse_umask, allow_negative_numbers = true)]
    pub umask: Option<u32>,

    /// The workers' limit on open files (RLIMIT_NOFILE, soft and hard).
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = |t: &str| parse_number::<u64>(t, 1, "--nofile"))]
    pub nofile: Option<u64>,

    /// A resource limit for the workers: NAME=SOFT[:HARD], NAME one of nofile, nproc, core, as,
    /// data, fsize, stack, cpu, memlock (repeatable). Limits no worker can start with are
    /// refused: cpu=0, as or data below 16 MiB, stack below 64 KiB.
    #[arg(long, value_name = "NAME=SOFT[:HARD]", value_parser = parse_rlimit,
          allow_negative_numbers = true)]
    pub rlimit: Vec<Rlimit>,

    /// Set KEY=VALUE in the workers' environment (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(OsString, OsString)>,

    /// Start the workers from an empty environment (PATH kept), plus --env and herd's own
    /// variables.
    #[arg(long)]
    pub clear_env: bool,

    /// Serve Prometheus metrics at http://ADDR/metrics: HOST:PORT, :PORT or [V6ADDR]:PORT, as
    /// for --bind (e.g. 127.0.0.1:9100, localhost:9100, :9100).
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics)]
    pub metrics: Option<BindSpec>,

    /// Also allow this uid on the control socket (repeatable; herd's own uid and root always
    /// are). The socket's directory becomes 0711 and the socket 0666 so that it can connect;
    /// everyone else is refused by credentials.
    #[arg(long, value_name = "UID", allow_negative_numbers = true,
          value_parser = |t: &str| parse_number::<u32>(t, 0, "--control-allow-uid"))]
    pub control_allow_uid: Vec<u32>,

    /// Also allow peers whose primary gid is this (repeatable).
    #[arg(long, value_name = "GID", allow_negative_numbers = true,
          value_parser = |t: &str| parse_number::<u32>(t, 0, "--control-allow-gid"))]
    pub control_allow_gid: Vec<u32>,

    /// The worker program and its arguments; {fd:NAME}, {worker} and {generation} are replaced.
    #[arg(last = true, required = true, value_name = "COMMAND",
          value_parser = clap::value_parser!(OsString))]
    pub command: Vec<OsString>,
}

/// A resource limit for workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rlimit {
    /// The option's value as given, for messages (`nofile=65536`).
    pub text: String,
    /// The `setrlimit` resource.
    pub resource: i32,
    /// The soft limit.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// When a worker counts as ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyMode {
    /// After it stayed alive this long (or sent READY=1 sooner).
    Delay(Duration),
    /// When it sends READY=1.
    Notify,
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings (crashes, restarts).
    Warn,
    /// Also worker starts, exits and signals.
    Info,
    /// Also internal details.
    Debug,
    /// Everything.
    Trace,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// A fixed number of workers, or autoscaling bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// Exactly this many.
    Fixed(usize),
    /// Between these, as the load requires.
    Auto(usize, usize),
}

fn parse_count(text: &str, least: usize) -> Result<usize, String> {
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is not a number of workers: it must be positive (at least {least})"
        ));
    }
    let n: usize = match text.parse() {
        Ok(n) => n,
        Err(_) if all_digits(text) => {
            return Err(format!(
                "'{text}' is too large: at most {MAX_WORKERS} workers"
            ))
        }
        Err(_) => return Err(format!("'{text}' is not a number of workers")),
    };
    match n {
        n if n < least => Err(format!("a herd needs at least {least} worker")),
        n if n > MAX_WORKERS => Err(format!(
            "'{text}' is too large: at most {MAX_WORKERS} workers"
        )),
        n => Ok(n),
    }
}

fn parse_workers(text: &str) -> Result<Workers, String> {
    match text.split_once("..") {
        None => parse_count(text, 1).map(Workers::Fixed),
        Some((min, max)) => {
            let (min, max) = (parse_count(min, 1)?, parse_count(max, 1)?);
            if min > max {
                return Err(format!("{min}..{max}: the minimum is above the maximum"));
            }
            Ok(Workers::Auto(min, max))
        }
    }
}

/// Parses `30s`, `1m30s`, `500ms`, or a plain number of seconds, up to [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is not a duration: it cannot be negative; write e.g. 30s, 1m30s or 500ms"
        ));
    }
    let too_long = || {
        format!(
            "'{text}' is too long: durations are at most {} days",
            MAX_DURATION.as_secs() / 86400
        )
    };
    let duration = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs.min(MAX_DURATION.as_secs() + 1)),
        Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(too_long())
        }
        Err(_) => humantime::parse_duration(text).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => too_long(),
            e => format!("'{text}' is not a duration ({e}); write e.g. 30s, 1m30s or 500ms"),
        })?,
    };
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

/// [`parse_duration`], for a period that must not be zero (a timeout, a watchdog interval).
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(format!(
            "'{text}' is zero: the duration must be positive (e.g. 30s or 500ms)"
        )),
        d => Ok(d),
    }
}

/// A whole number of at least `least`, for `option`; a negative one is named as such (clap
/// would otherwise take `-1` for a flag), and so is one too large for the option's type.
fn parse_number<T>(text: &str, least: T, option: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Bounded,
{
    match text.parse::<T>() {
        Ok(n) if n >= least => Ok(n),
        _ if text.starts_with('-') => Err(format!(
            "{option} '{text}': the value must be positive (at least {least})"
        )),
        Ok(_) => Err(format!(
            "{option} '{text}': the value must be at least {least}"
        )),
        Err(_) if all_digits(text) => Err(format!(
            "{option} '{text}' is too large: the maximum is {}",
            T::MAX
        )),
        Err(_) => Err(format!(
            "{option} '{text}' is not a whole number (at least {least})"
        )),
    }
}

/// The largest value of a number type, for "too large" messages.
trait Bounded {
    const MAX: Self;
}

impl Bounded for u32 {
    const MAX: u32 = u32::MAX;
}

impl Bounded for u64 {
    const MAX: u64 = u64::MAX;
}

/// Whether `text` is a run of decimal digits (so a failed parse means it is too large).
fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

fn parse_slot(text: &str) -> Result<usize, String> {
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is not a slot: slots are numbered from 0 (see 'herd status')"
        ));
    }
    match text.parse::<usize>() {
        Ok(slot) if slot < MAX_WORKERS => Ok(slot),
        Ok(_) => Err(slot_too_large(text)),
        Err(_) if all_digits(text) => Err(slot_too_large(text)),
        Err(_) => Err(format!(
            "'{text}' is not a slot number (0, 1, ...; see 'herd status')"
        )),
    }
}

fn slot_too_large(text: &str) -> String {
    format!(
        "slot {text} is too large: a herd has at most {MAX_WORKERS} workers, slots 0 to {}",
        MAX_WORKERS - 1
    )
}

fn parse_user(text: &str) -> Result<String, String> {
    parse_id(text, "user", "uid")
}

fn parse_group(text: &str) -> Result<String, String> {
    parse_id(text, "group", "gid")
}

/// A user or group (`what`) by name or number (`number`: uid or gid): not empty, not negative.
fn parse_id(text: &str, what: &str, number: &str) -> Result<String, String> {
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is not a {what}: give a {what} name or a {number}, which must be positive \
             (0 or more)"
        ));
    }
    if text.is_empty() {
        return Err(format!(
            "the {what} is empty: give a {what} name or a {number}"
        ));
    }
    Ok(text.to_string())
}

fn parse_umask(text: &str) -> Result<u32, String> {
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is not a umask: it must be positive, an octal number from 0 to 777 (e.g. 027)"
        ));
    }
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("'{text}' is not an octal umask from 0 to 777 (e.g. 027)"))
}

fn parse_rlimit(text: &str) -> Result<Rlimit, String> {
    let (name, limits) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=SOFT[:HARD] (e.g. nofile=65536)"))?;
    let resource = herd_sys::spawn::resource_by_name(name).ok_or_else(|| {
        format!(
            "unknown resource '{name}'; known: nofile, nproc, core, as, data, fsize, stack, cpu, \
             memlock"
        )
    })?;
    let number = |n: &str| -> Result<u64, String> {
        match n {
            "unlimited" | "infinity" => Ok(libc::RLIM_INFINITY),
            n => n.parse().map_err(|_| match all_digits(n) {
                true => format!(
                    "'{n}' is too large: the maximum is {}; write 'unlimited' for no limit",
                    u64::MAX - 1
                ),
                false => format!("'{n}' is not a number (or 'unlimited')"),
            }),
        }
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (number(soft)?, number(hard)?),
        None => (number(limits)?, number(limits)?),
    };
    if soft > hard {
        return Err(format!(
            "the soft limit {} is above the hard limit {}",
            show_rlimit(soft),
            show_rlimit(hard)
        ));
    }
    if resource == libc::RLIMIT_NOFILE as i32 && soft == 0 {
        return Err(
            "nofile=0 leaves a worker unable to open any file or accept any connection; \
             give at least 1 (e.g. nofile=65536)"
                .to_string(),
        );
    }
    if let Some(why) = unworkable_limit(name, soft) {
        return Err(format!("{text}: {why}"));
    }
    Ok(Rlimit {
        text: text.to_string(),
        resource,
        soft,
        hard,
    })
}

/// A resource limit as herd shows it: `unlimited` for `RLIM_INFINITY`, else the number.
pub fn show_rlimit(value: u64) -> String {
    if value == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        value.to_string()
    }
}

/// The smallest address space (`as`) and data segment (`data`) a worker may be given: below
/// 16 MiB not even a small dynamically linked program can map its C library and allocate what
/// it needs to start.
pub const MIN_MEMORY_LIMIT: u64 = 16 << 20;

/// The smallest stack (`stack`) a worker may be given: the kernel places the arguments and the
/// environment on it, and the C library's start-up and the program's first calls need more.
pub const MIN_STACK_LIMIT: u64 = 64 << 10;

/// Why a soft limit of `soft` on resource `name` would kill every worker, if it would.
fn unworkable_limit(name: &str, soft: u64) -> Option<String> {
    let floor = |least: u64, why: &str| {
        (soft < least).then(|| {
            format!(
                "every worker would die at start (SIGSEGV or SIGKILL): {why}; give at least \
                 {least} bytes ({} KiB), or 'unlimited'",
                least >> 10
            )
        })
    };
    match name {
        "cpu" if soft == 0 => Some(
            "a worker would get no CPU time at all and be killed (SIGXCPU, SIGKILL) as soon as \
             it runs; give seconds of CPU time (e.g. cpu=3600), or 'unlimited'"
                .to_string(),
        ),
        "as" => floor(
            MIN_MEMORY_LIMIT,
            "below 16 MiB of address space not even a small program can map its C library",
        ),
        "data" => floor(
            MIN_MEMORY_LIMIT,
            "below 16 MiB of data segment not even a small program can allocate what it needs \
             to start",
        ),
        "stack" => floor(
            MIN_STACK_LIMIT,
            "below 64 KiB of stack a program cannot hold its arguments and environment and \
             start",
        ),
        _ => None,
    }
}

/// `--metrics`: a TCP address in any form `--bind` takes, without a name or options.
fn parse_metrics(text: &str) -> Result<BindSpec, String> {
    let bad = || {
        format!(
            "'{text}' is not a TCP address for --metrics; write HOST:PORT, :PORT or \
             [V6ADDR]:PORT (e.g. 127.0.0.1:9100)"
        )
    };
    if text.contains([',', '=']) {
        return Err(bad());
    }
    let spec: BindSpec = text
        .parse()
        .map_err(|e| format!("--metrics '{text}': {e}"))?;
    match spec.address {
        crate::spec::Address::Tcp(_) => Ok(spec),
        _ => Err(bad()),
    }
}

fn parse_env(text: &str) -> Result<(OsString, OsString), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.into(), value.into())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

fn parse_ready(text: &str) -> Result<ReadyMode, String> {
    match text.split_once('=') {
        None if text == "notify" => Ok(ReadyMode::Notify),
        Some(("delay", d)) => parse_duration(d).map(ReadyMode::Delay),
        _ => Err(format!(
            "'{text}' is not a readiness mode; write 'notify' or 'delay=DURATION' (e.g. delay=1s)"
        )),
    }
}

fn parse_scale(text: &str) -> Result<ScaleTarget, String> {
    if text.contains("..") {
        return match parse_workers(text)? {
            Workers::Auto(min, max) => Ok(ScaleTarget::Bounds(min, max)),
            Workers::Fixed(n) => Ok(ScaleTarget::Set(n)),
        };
    }
    let bad = || format!("'{text}' is not a number of workers; write N, +N or -N");
    let (sign, digits) = match text.strip_prefix('+') {
        Some(rest) => (1, rest),
        None => match text.strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (0, text),
        },
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // Any change beyond MAX_WORKERS is out of range whatever the current count: say so
    // rather than overflow.
    let n = digits
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= MAX_WORKERS)
        .ok_or_else(|| format!("'{text}': at most {MAX_WORKERS} workers"))?;
    Ok(match sign {
        0 => ScaleTarget::Set(n),
        s => ScaleTarget::Delta(s * n as i64),
    })
}

fn parse_signal(text: &str) -> Result<Signal, String> {
    Signal::from_name(text).ok_or_else(|| signal_error(text))
}

/// Why `text` is not a signal a worker may be sent (shared with the control server).
pub fn signal_error(text: &str) -> String {
    match (text.parse::<libc::c_int>(), Signal::rt_min()) {
        (Ok(n), Some(min)) if Signal::is_reserved(n) => format!(
            "signal {n} is reserved by the C library for its threads (signals 32 to {}) and \
             would kill the workers; real-time signals start at {min} (RTMIN, RTMIN+1, ...)",
            min - 1
        ),
        _ => format!(
            "'{text}' is not a signal; write e.g. TERM, INT, QUIT, USR1, a number, or a \
             real-time signal as RTMIN+N or RTMAX-N"
        ),
    }
}

/// `--stop-signal`: any signal that can end a worker. Signals whose default action is to pause
/// the process (STOP, TSTP, TTIN, TTOU) or to do nothing (CHLD, CONT, URG, WINCH) would end
/// no worker that does not handle them, so every stop would wait out the grace period and end
/// in SIGKILL: they are refused.
fn parse_stop_signal(text: &str) -> Result<Signal, String> {
    let signal = parse_signal(text)?;
    let why = match signal.number() {
        libc::SIGSTOP => "SIGSTOP pauses it and cannot be caught",
        libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
            "by default that signal pauses it instead of ending it"
        }
        libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH => {
            "by default that signal is ignored"
        }
        _ => return Ok(signal),
    };
    Err(format!(
        "'{text}' cannot stop a worker: {why}; use TERM, INT, QUIT or a signal the worker \
         handles"
    ))
}

const RUN_HELP: &str = "\
Addresses (--bind):
  HOST:PORT          TCP on one address; HOST may be a name (the first address it resolves to)
  :PORT              TCP on every interface, IPv6 and IPv4 (dual-stack) where the system allows
  [V6ADDR]:PORT      TCP on an IPv6 address; link-local needs its interface: [fe80::1%eth0]:PORT
  tcp://HOST:PORT    TCP, explicitly
  udp://HOST:PORT    UDP (also udp://:PORT)
  unix:PATH          Unix stream socket file; a stale file is replaced, a live one is an error,
                     any other file is never touched; herd removes the files it created on exit
  unix:@NAME         Unix socket in Linux's abstract namespace
  systemd            every socket systemd passed to herd (socket activation), by its name
  fd:NAME            the socket systemd passed to herd under NAME
  Port 0 picks a free port; the real one is logged. NAME= names the socket for LISTEN_FDNAMES and
  {fd:NAME} (letters, digits, '.', '_', '-'); the default is derived from the address:
  tcp-8080, udp-53, unix-app.sock.

Options (after the address, comma-separated):
  backlog=N     accept-queue length (default: net.core.somaxconn)
  v6only        IPv6 only, no IPv4-mapped connections
  nodelay       TCP_NODELAY, inherited by accepted connections
  nonblocking   O_NONBLOCK on the shared socket, for async workers: the flag lives on the open
                file description that every worker shares, so all of them see the same mode
  mode=OCTAL    permissions of a Unix socket file, e.g. mode=660

What each worker gets:
  the sockets at fds 3, 4, ... in --bind order; LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (its own
  pid), as systemd's socket activation does; HERD_WORKER, its slot 0..N-1 (stable across
  restarts); HERD_GENERATION, 1 at start and one more with each upgrade; /dev/null as stdin,
  herd's stdout and stderr; no other fds; default signal dispositions and an empty signal mask;
  a process group of its own. Workers are killed if herd itself dies.

Templates in COMMAND and ARGS:
  {fd:NAME}   the fd number of socket NAME        {worker}   the worker's slot
  {{ and }}   literal braces                      {generation}   the worker's generation
  During an upgrade the old and the new worker of a slot run at once: a file each worker owns
  (a pid file, say) needs both, e.g. /run/app-{worker}-{generation}.pid.

Supervision:
  A worker that exits is restarted in its slot: at once after a healthy run (10s or more), with
  exponential backoff (100ms doubling up to 30s) when it keeps failing. A command that cannot be
  executed makes herd fail at once. What an exited worker leaves in its process group gets
  --stop-signal, then SIGKILL after --grace; a stop waits for it.

Readiness and the control socket:
  Workers get NOTIFY_SOCKET (sd_notify: READY=1, STATUS=..., WATCHDOG=1, STOPPING=1) and
  HERD_CONTROL. `herd status`, `scale`, `upgrade`, `stop` and `signal` talk to the control socket,
  selected by --name or --control. A rolling upgrade starts new workers (at most --max-surge at a
  time); each must be ready, and still ready --min-ready later, before the worker it replaces is
  told to stop. A new worker that exits or is not ready in time aborts the upgrade, and the old
  workers keep serving.

Signals to herd:
  TERM, INT   stop gracefully: workers get --stop-signal, then SIGKILL after --grace
  INT again   stop at once (SIGKILL)
  QUIT        stop at once (SIGKILL)
  HUP         rolling upgrade
  TTIN, TTOU  one more, one fewer worker (never below 1)
  USR2        re-execute herd's own binary in place (same pid, same workers and sockets)

Handing sockets over:
  `herd attach -- CMD` runs one more worker by hand on the sockets; `herd run --takeover PATH`
  starts a new herd on the sockets of the one at PATH and stops it once its own workers are
  ready; `herd reexec` replaces herd's binary in place. See docs/control-protocol.md.

Exit status:
  0 stopped as asked; 1 a runtime failure (a socket or a worker could not be set up);
  2 invalid arguments.

Examples:
  herd run -w 4 -b http=127.0.0.1:8080 --ready notify -- python3 examples/hello.py
  herd run -b http=:8000 -- uvicorn --fd {fd:http} app:app";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("365days"), Ok(MAX_DURATION));
        for text in [
            "18446744073709551615",
            "99999999999999999999999",
            "366days",
            "600000000000000000000ms",
            "1000y",
        ] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.contains("at most 365 days"), "{text}: {e}");
        }
        assert!(parse_duration("-1").unwrap_err().contains("negative"));
        assert!(parse_positive_duration("0")
            .unwrap_err()
            .contains("positive"));
        assert!(parse_positive_duration("0s")
            .unwrap_err()
            .contains("positive"));
        assert!(parse_ready("delay=18446744073709551615")
            .unwrap_err()
            .contains("at most"));
        assert_eq!(parse_ready("delay=0"), Ok(ReadyMode::Delay(Duration::ZERO)));
    }

    #[test]
    fn stop_signal_must_stop() {
        assert!(parse_stop_signal("STOP").unwrap_err().contains("SIGSTOP"));
        assert!(parse_stop_signal("19").is_err());
        assert_eq!(parse_stop_signal("QUIT"), Ok(Signal::QUIT));
    }

    #[test]
    fn reserved_signals_are_refused_by_name() {
        let min = Signal::rt_min().unwrap();
        for n in 32..min {
            let e = parse_signal(&n.to_string()).unwrap_err();
            assert!(e.contains("reserved by the C library"), "{n}: {e}");
        }
        assert_eq!(parse_signal(&min.to_string()).unwrap().number(), min);
        assert_eq!(parse_signal("RTMAX-1").unwrap().number(), 63);
        assert!(parse_signal("65").unwrap_err().contains("is not a signal"));
    }

    #[test]
    fn scale_targets_stay_in_range() {
        assert_eq!(parse_scale("3"), Ok(ScaleTarget::Set(3)));
        assert_eq!(parse_scale("+2"), Ok(ScaleTarget::Delta(2)));
        assert_eq!(parse_scale("-2"), Ok(ScaleTarget::Delta(-2)));
        assert_eq!(parse_scale("2..4"), Ok(ScaleTarget::Bounds(2, 4)));
        for text in [
            "+9223372036854775807",
            "-9223372036854775808",
            "99999999999999999999999",
            "+4097",
        ] {
            let e = parse_scale(text).unwrap_err();
            assert!(e.contains("at most 4096"), "{text}: {e}");
        }
        for text in ["", "+", "-", "+-1", "--1", "x", "1.5"] {
            assert!(parse_scale(text).is_err(), "{text}");
        }
    }

    #[test]
    fn negative_numbers_are_named() {
        assert!(parse_workers("-1")
            .unwrap_err()
            .contains("must be positive"));
        assert!(parse_umask("-1").unwrap_err().contains("must be positive"));
        assert!(parse_user("-1").unwrap_err().contains("must be positive"));
        assert_eq!(
            parse_group("-1").unwrap_err(),
            "'-1' is not a group: give a group name or a gid, which must be positive (0 or more)"
        );
        assert_eq!(
            parse_user("").unwrap_err(),
            "the user is empty: give a user name or a uid"
        );
        assert!(parse_slot("-1").unwrap_err().contains("numbered from 0"));
        let e = parse_number::<u64>("-1", 1, "--nofile").unwrap_err();
        assert!(
            e.contains("--nofile '-1'") && e.contains("must be positive"),
            "{e}"
        );
        assert!(parse_number::<u64>("0", 1, "--nofile").is_err());
        assert!(parse_rlimit("nofile=0").unwrap_err().contains("nofile=0"));
        assert!(parse_rlimit("nofile=0:10").is_err());
        assert!(parse_rlimit("core=0").is_ok());
    }

    #[test]
    fn limits_that_kill_every_worker_are_refused() {
        for (text, needle) in [
            ("cpu=0", "no CPU time"),
            ("cpu=0:10", "no CPU time"),
            ("as=1", "at least 16777216 bytes (16384 KiB)"),
            ("as=16777215", "address space"),
            ("data=1000", "data segment"),
            ("stack=1", "at least 65536 bytes (64 KiB)"),
        ] {
            let e = parse_rlimit(text).unwrap_err();
            assert!(
                e.starts_with(&format!("{text}: ")) && e.contains(needle),
                "{e}"
            );
        }
        for text in [
            "cpu=1",
            "as=16777216",
            "data=unlimited",
            "stack=65536",
            "fsize=0",
        ] {
            assert!(parse_rlimit(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn unlimited_is_shown_as_unlimited() {
        assert_eq!(
            parse_rlimit("as=unlimited:1000").unwrap_err(),
            "the soft limit unlimited is above the hard limit 1000"
        );
        assert_eq!(
            parse_rlimit("nofile=2000:1000").unwrap_err(),
            "the soft limit 2000 is above the hard limit 1000"
        );
        assert_eq!(show_rlimit(libc::RLIM_INFINITY), "unlimited");
        assert_eq!(show_rlimit(65536), "65536");
    }

    #[test]
    fn huge_numbers_are_called_too_large() {
        let huge = "18446744073709551615";
        let e = parse_number::<u32>(huge, 1, "--max-surge").unwrap_err();
        assert_eq!(
            e,
            format!("--max-surge '{huge}' is too large: the maximum is 4294967295")
        );
        let e = parse_number::<u64>("18446744073709551616", 1, "--nofile").unwrap_err();
        assert!(
            e.contains("too large: the maximum is 18446744073709551615"),
            "{e}"
        );
        assert!(parse_number::<u32>("1x", 1, "--max-surge")
            .unwrap_err()
            .contains("not a whole number"));
        assert!(parse_workers(huge).unwrap_err().contains("at most 4096"));
        assert!(parse_slot(huge).unwrap_err().contains("slots 0 to 4095"));
        assert!(parse_slot("4096").unwrap_err().contains("too large"));
        assert!(parse_rlimit(&format!("as={huge}9"))
            .unwrap_err()
            .contains("too large"));
    }
}
