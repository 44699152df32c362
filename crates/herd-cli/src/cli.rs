//! The command line: `herd [--log-level L] [--log-format F] run [OPTIONS] -- COMMAND [ARGS...]`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::spec::Balance;
use crate::spec::{BindSpec, ShmSpec};
use clap::{Args, Parser, Subcommand};

pub mod config;
mod cpus;
mod parse;
mod recycle;
mod run_help;
mod stop;
mod surge;
pub mod unavailable;
mod values;

use crate::supervisor::warm_up::{parse_starting_nice, StartingNice};
use crate::worker_env::{parse_compat, Compat};
use run_help::RUN_HELP;
pub use stop::{SignalArgs, StopArgs};
pub use values::{LogFormat, LogLevel, ReadyMode, WorkerOutput, Workers};

pub use cpus::cpus;
use herd_core::MaxSurge;
pub use parse::{parse_duration, Rlimit, Signal};
use parse::{
    parse_env, parse_group, parse_health, parse_lines, parse_metrics, parse_number,
    parse_positive_duration, parse_ready, parse_rlimit, parse_scale, parse_slot, parse_stop_signal,
    parse_umask, parse_user, parse_watchdog, parse_workers,
};
#[cfg(unix)]
pub use parse::{show_rlimit, signal_error, MIN_MEMORY_LIMIT, MIN_STACK_LIMIT};
use recycle::{parse_max_lifetime, parse_max_memory};
pub use recycle::{MaxLifetime, MaxMemory, MemoryKind};
use surge::{parse_max_starting, parse_max_surge};

/// The most workers one herd runs; more is almost surely a typo.
pub const MAX_WORKERS: usize = 4096;

/// The longest duration any option takes: far beyond any sane grace period or timeout, and
/// far below what would overflow a clock reading.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// herd binds listening sockets once and runs N worker processes that share them.
#[derive(Debug, Parser)]
#[command(
    name = "herd",
    bin_name = "herd",
    version,
    propagate_version = true,
    max_term_width = 100
)]
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
    #[arg(long, global = true, value_name = "UID", allow_negative_numbers = true,
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
    /// Check a config file for `herd run --config` without starting anything: binds no
    /// socket, starts no worker.
    Check(CheckArgs),
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
    /// A live view of the pool: workers, accept queues over the last minute, recent events.
    /// Keys: + and - scale by one, u upgrades (after y), q or Ctrl-C quits.
    Top,
    /// Show the workers' recent output lines (herd keeps them with --worker-output prefix or
    /// json), and with -f every new line as it comes, until Ctrl-C or herd stops.
    Logs(LogsArgs),
}

/// `herd logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only the workers in this slot (each generation's).
    #[arg(long, value_name = "SLOT", value_parser = parse_slot, allow_negative_numbers = true)]
    pub worker: Option<usize>,

    /// At most this many of the last lines [default: every line herd keeps, up to 10000].
    #[arg(short = 'n', long, value_name = "LINES", allow_negative_numbers = true,
          value_parser = parse_lines)]
    pub lines: Option<u32>,

    /// Keep printing new lines as the workers write them.
    #[arg(short, long)]
    pub follow: bool,

    /// Print each line as a JSON object (time, worker, pid, generation, stream, line) instead
    /// of `[worker SLOT pid PID gen N] LINE`.
    #[arg(long)]
    pub json: bool,
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

/// `herd check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file to check, as `herd run --config FILE` would read it.
    #[arg(long, value_name = "FILE", required = true)]
    pub config: PathBuf,
}

/// `herd status`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 3 when fewer workers are ready than herd wants \
    (degraded) or herd is stopping, 0 when not, 1 when no herd answers; with --json, 0 \
    whenever herd answers."
)]
pub struct StatusArgs {
    /// Print the control protocol's JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Print the status again every second until Ctrl-C (which exits with the last status's
    /// code) or until herd is gone (exit 1). On a terminal the screen is redrawn; otherwise
    /// each status follows the last, after a line `--- TIME`.
    #[arg(short, long)]
    pub watch: bool,
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
    /// How long the whole upgrade may take before it is aborted; herd refuses one no longer
    /// than its --min-ready.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_positive_duration,
          allow_negative_numbers = true)]
    pub timeout: Duration,

    /// Read the herd's --config file again first: the new generation gets its command,
    /// environment and worker options. Changes that need new sockets are refused, and the
    /// running workers are left as they are.
    #[arg(long)]
    pub reload_config: bool,
}

/// `herd run`.
#[derive(Clone, Debug, Args)]
#[command(
    after_long_help = RUN_HELP,
    override_usage = "herd run [OPTIONS] --bind <SPEC>... -- <COMMAND> [ARGS]...\n       \
                      herd run --config <FILE> [OPTIONS] [-- <COMMAND> [ARGS]...]"
)]
pub struct RunArgs {
    /// A socket to bind and share: [NAME=]ADDRESS[,OPTION...] (repeatable; see below).
    #[arg(
        short,
        long = "bind",
        value_name = "SPEC",
        required_unless_present_any = ["takeover", "config"]
    )]
    pub binds: Vec<BindSpec>,

    /// Take over the sockets of the herd at this control socket: start this herd's workers on
    /// them, and once they are ready, take over its control socket (this path) and socket
    /// files, and ask the old herd to stop. Without --bind, every socket is taken as it is. On
    /// Windows: the old herd's --name or control pipe.
    #[arg(long, value_name = "CONTROL_PATH")]
    pub takeover: Option<PathBuf>,

    /// Shared memory for the workers: NAME=SIZE (e.g. counters=4096, cache=64M), passed like a
    /// socket (after the sockets, named NAME in LISTEN_FDNAMES), kept across restarts and
    /// upgrades (repeatable).
    #[arg(long, value_name = "NAME=SIZE")]
    pub shm: Vec<ShmSpec>,

    /// Hand the sockets herd binds and its --shm memory to systemd's fd store, and adopt them
    /// from it at the next start: the port stays open across a crash or a restart. On by
    /// itself with FileDescriptorStoreMax= (systemd 254+ sets $FDSTORE); this flag is for
    /// older systemd. Needs NOTIFY_SOCKET.
    #[arg(long)]
    pub fdstore: bool,

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
    #[arg(long, value_name = "DURATION", value_parser = parse_watchdog,
          allow_negative_numbers = true)]
    pub watchdog: Option<Duration>,

    /// How many workers beyond -w upgrades and recycling may run at once, a number or a share
    /// of the pool (100%: up to twice as many): a replacement counts from its new worker's
    /// start until the old worker has exited (grace included). 1 bounds memory at one extra
    /// worker, but then each slot waits out --min-ready in turn.
    #[arg(long, value_name = "N|N%", default_value = "100%", allow_negative_numbers = true,
          value_parser = parse_max_surge)]
    pub max_surge: MaxSurge,

    /// How many new workers may be starting (not yet ready) when upgrades, recycling and
    /// scale-ups beside serving workers start another, restarts after an exit aside (a crash
    /// loop would hold them back): start-ups take the CPU the serving workers need. auto: one
    /// per 4 CPUs herd may run on, at least 1.
    #[arg(long, value_name = "N|auto", default_value = "auto", allow_negative_numbers = true,
          value_parser = parse_max_starting)]
    pub max_starting: u32,

    /// How long a new worker must stay ready before it replaces an old one in an upgrade, or
    /// completes a takeover (like Kubernetes' minReadySeconds). One that exits within it
    /// aborts the upgrade and the old workers keep serving; 0 counts a worker at once.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration,
          allow_negative_numbers = true)]
    pub min_ready: Duration,

    /// A worker that starts while others serve (an upgrade's or a recycle's successor, a
    /// scale-up; not a restart) runs at a low priority until it is ready (or starved of CPU,
    /// on Linux 150ms of waiting in a row, or past its warm-up budget, 2x the slowest recent
    /// start-up at full priority, 0.25s to half its --ready-timeout and 5s), so
    /// its start-up leaves the CPU to them: auto (SCHED_IDLE on Linux, IDLE_PRIORITY_CLASS on
    /// Windows, else nice 19, when herd may raise it back), off, idle (the same, Linux and
    /// Windows), or a nice value 1-19 (on Windows BELOW_NORMAL_PRIORITY_CLASS for 1-9).
    #[arg(long, value_name = "NICE", default_value = "auto", value_parser = parse_starting_nice,
          allow_negative_numbers = true)]
    pub starting_nice: StartingNice,

    /// Recycle a worker whose memory stays above SIZE for two samples in a row (one a second):
    /// a successor starts in its slot, and once it is ready the old worker is stopped
    /// gracefully, as in an upgrade, within --max-surge and --max-starting. SIZE like 512M or 2G, of
    /// resident memory (the working set on Windows); pss=SIZE limits the proportional set size
    /// instead (Linux), which splits shared pages fairly between workers.
    #[arg(long, value_name = "[pss=]SIZE", value_parser = parse_max_memory,
          allow_negative_numbers = true)]
    pub max_memory: Option<MaxMemory>,

    /// Recycle each worker, as --max-memory does, after it has run DURATION plus its own
    /// random share of jitter (e.g. 6h,jitter=30m), so that they are not recycled all at once.
    #[arg(long, value_name = "DURATION[,jitter=DURATION]", value_parser = parse_max_lifetime,
          allow_negative_numbers = true)]
    pub max_lifetime: Option<MaxLifetime>,

    /// Run workers as this user (name or uid). herd must be root: it binds privileged ports and
    /// keeps running as root to start workers; only the workers drop privileges.
    #[arg(long, value_name = "USER", value_parser = parse_user, allow_negative_numbers = true)]
    pub user: Option<String>,

    /// With --user: the workers' group [default: the user's primary group].
    #[arg(long, value_name = "GROUP", value_parser = parse_group,
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

    /// Fork each generation's workers from one process of that generation, its fork server,
    /// which has loaded what they share (imports, the app) once (Linux): the command runs once
    /// per generation with HERD_FORK_SERVER set and must speak herd's fork-server protocol;
    /// run a Python server through python/herd_fork.py. See docs/fork-server.md.
    #[arg(long)]
    pub fork_server: bool,

    /// Also pass the sockets as another supervisor does, for servers written for it
    /// (repeatable): `einhorn` (EINHORN_FD_COUNT, EINHORN_FD_0..n) or `server-starter`
    /// (SERVER_STARTER_PORT, as start_server writes it).
    #[arg(long, value_name = "NAME", value_parser = parse_compat)]
    pub compat: Vec<Compat>,

    /// What becomes of the workers' stdout and stderr: `inherit` (they write to herd's own),
    /// `prefix` (herd reads them and writes whole lines, each as `[worker SLOT pid PID gen N]
    /// LINE`) or `json` (one object per line: time, worker, pid, generation, stream, line).
    /// With prefix and json, `herd logs` shows the recent lines.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = WorkerOutput::Inherit)]
    pub worker_output: WorkerOutput,

    /// Serve Prometheus metrics at http://ADDR/metrics (and /healthz and /readyz, as --health
    /// does): HOST:PORT, :PORT or [V6ADDR]:PORT, as for --bind (e.g. 127.0.0.1:9100,
    /// localhost:9100, :9100).
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics)]
    pub metrics: Option<BindSpec>,

    /// Serve health probes at http://ADDR/healthz (200 while herd's loop turns) and
    /// http://ADDR/readyz (200 while --ready-min workers are ready and herd is not stopping),
    /// on a listener of their own; --metrics serves them too. ADDR as for --metrics.
    #[arg(long, value_name = "ADDR", value_parser = parse_health)]
    pub health: Option<BindSpec>,

    /// How many ready workers /readyz needs to answer 200 (0: herd alone) [default: 1]. More
    /// than the pool's maximum is refused.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = |t: &str| parse_number::<u32>(t, 0, "--ready-min"))]
    pub ready_min: Option<u32>,

    /// On a graceful stop, how long /readyz answers 503 while everything keeps serving, so
    /// that load balancers stop sending new clients before any worker is asked to stop; then
    /// the workers get --grace. A second stop request skips the rest.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration,
          allow_negative_numbers = true)]
    pub drain_delay: Duration,

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

    /// Also allow this user on the control channel (repeatable): on Unix a user name or uid,
    /// as --control-allow-uid; on Windows an account name (DOMAIN\NAME) or a SID (S-1-5-...),
    /// which the control pipe's security descriptor admits.
    #[arg(long, value_name = "USER")]
    pub control_allow_user: Vec<String>,

    /// Read options from this TOML file: keys are the long option names (workers = 4,
    /// bind = ["http=:8080"]), plus command = [...] and an [env] table (see
    /// examples/herd.toml). Options on the command line override the file's.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The worker program and its arguments; {fd:NAME}, {worker} and {generation} are replaced.
    #[arg(last = true, required_unless_present = "config", value_name = "COMMAND",
          value_parser = clap::value_parser!(OsString))]
    pub command: Vec<OsString>,
}
