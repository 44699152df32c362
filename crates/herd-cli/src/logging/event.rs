//! The stable names of herd's log events: the `event` field of every log line at `info` and
//! above, for log consumers and tests to match on instead of the message's wording.
//!
//! `docs/logging.md` lists each with when it is logged and its fields; a test checks that the
//! table and this list agree. A name, once released, keeps its meaning.

/// Defines [`LogEvent`] from `Variant = "name"` pairs, with [`LogEvent::ALL`] and
/// [`LogEvent::as_str`], so the list is written once.
macro_rules! log_events {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// One kind of log line; [`LogEvent::as_str`] is its `event` field.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum LogEvent {
            $($(#[$doc])* $variant,)*
        }

        impl LogEvent {
            /// Every event, in the order of the docs table.
            pub const ALL: &'static [LogEvent] = &[$(LogEvent::$variant,)*];

            /// The stable snake_case name, as logged in the `event` field.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(LogEvent::$variant => $name,)*
                }
            }
        }
    };
}

log_events! {
    /// herd starts supervising.
    Starting = "starting",
    /// The control socket accepts clients.
    ControlReady = "control_ready",
    /// A socket is bound and ready for the workers (listening, or a shared memory segment).
    Listening = "listening",
    /// The metrics endpoint accepts scrapes.
    MetricsReady = "metrics_ready",
    /// The `--health` endpoint accepts probes.
    HealthReady = "health_ready",
    /// A socket file left by a process that is gone was removed before binding.
    StaleSocketRemoved = "stale_socket_removed",
    /// Sockets and shared memory systemd's fd store gave back are adopted instead of bound.
    FdstoreRestored = "fdstore_restored",
    /// Sockets and shared memory were handed to systemd's fd store.
    FdstoreStored = "fdstore_stored",
    /// Fds herd no longer uses were removed from systemd's fd store.
    FdstoreRemoved = "fdstore_removed",
    /// An fd systemd's fd store gave back no longer fits its `--bind` or `--shm` (another
    /// address or size): herd makes a new one and replaces it in the store.
    FdstoreReplaced = "fdstore_replaced",
    /// A socket or shared memory is not stored in systemd's fd store (over its maximum, a name
    /// systemd refuses, or per-worker sockets).
    FdstoreNotStored = "fdstore_not_stored",
    /// `$FDSTORE` is not a number or 0: herd's fds are not stored.
    FdstoreOff = "fdstore_off",
    /// A note about how herd adapts to its setup (permissions, limits, names).
    SetupNote = "setup_note",
    /// A worker process was started.
    WorkerStarted = "worker_started",
    /// A worker became ready.
    WorkerReady = "worker_ready",
    /// A worker was seen stopped (`SIGSTOP`, a debugger): it serves nothing meanwhile.
    WorkerPaused = "worker_paused",
    /// A paused worker runs again.
    WorkerResumed = "worker_resumed",
    /// A generation's fork server was started (`--fork-server`).
    ForkServerStarted = "fork_server_started",
    /// A fork server has loaded for 5 s without saying `READY=1`.
    ForkServerSlow = "fork_server_slow",
    /// A fork server said `READY=1`: it forks its generation's workers.
    ForkServerReady = "fork_server_ready",
    /// A fork server exited, or herd gave up on it and killed it.
    ForkServerExited = "fork_server_exited",
    /// A ready worker could not get herd's priority back (`--starting-nice`).
    PriorityNotRestored = "priority_not_restored",
    /// A worker still starting gets herd's priority back (`--starting-nice`).
    WarmUpOver = "warm_up_over",
    /// A worker still starting, starved of CPU in `SCHED_IDLE`, trickles at a low nice value
    /// (`--starting-nice`).
    WarmUpTrickle = "warm_up_trickle",
    /// A worker exited; the message says why and whether it restarts.
    WorkerExited = "worker_exited",
    /// A worker is killed (SIGKILL): it did not stop in time, or its watchdog expired.
    WorkerKilled = "worker_killed",
    /// A worker could not be started; herd retries.
    WorkerStartFailed = "worker_start_failed",
    /// `herd signal` sent a signal to workers.
    WorkersSignalled = "workers_signalled",
    /// A signal could not be sent to a process herd supervises.
    SignalFailed = "signal_failed",
    /// A system call failed unexpectedly; herd goes on.
    SystemError = "system_error",
    /// herd turned again after it could not act for a while (stopped, frozen, starved): that
    /// time does not count against its workers' deadlines.
    Resumed = "resumed",
    /// A rolling upgrade started.
    UpgradeStarted = "upgrade_started",
    /// A rolling upgrade finished: every worker runs the new generation.
    UpgradeFinished = "upgrade_finished",
    /// A rolling upgrade failed; the old workers keep serving.
    UpgradeAborted = "upgrade_aborted",
    /// A rolling upgrade was abandoned because herd is stopping.
    UpgradeAbandoned = "upgrade_abandoned",
    /// An upgrade was asked for but cannot start.
    UpgradeRefused = "upgrade_refused",
    /// `herd upgrade --reload-config` reads the config file again, off herd's loop.
    ConfigReading = "config_reading",
    /// `herd upgrade --reload-config` read the config file again; the new generation runs
    /// what it says.
    ConfigReloaded = "config_reloaded",
    /// The config file read again changed keys that herd's command line gives, which win.
    ConfigOverridden = "config_overridden",
    /// The number of workers changes.
    Scaling = "scaling",
    /// A change of the number of workers was refused.
    ScaleRefused = "scale_refused",
    /// A signal that means nothing to herd (SIGUSR1) was ignored.
    SignalIgnored = "signal_ignored",
    /// Autoscaling was turned on.
    AutoscaleOn = "autoscale_on",
    /// Autoscaling was turned off by a fixed scale.
    AutoscaleOff = "autoscale_off",
    /// The autoscaler decided on a new number of workers.
    Autoscale = "autoscale",
    /// A reuseport slot's queue did not drain in time; its worker is stopped anyway.
    DrainTimeout = "drain_timeout",
    /// A worker is recycled (--max-memory, --max-lifetime): its successor starts.
    Recycle = "recycle",
    /// A recycled worker's successor is available: the old worker is told to stop.
    Recycled = "recycled",
    /// A worker is due for recycling, but capacity does not allow it yet.
    RecycleDeferred = "recycle_deferred",
    /// A worker over --max-memory is held back so as not to recycle in a loop.
    RecycleHeldBack = "recycle_held_back",
    /// A recycle ended without a successor; the old worker serves on.
    RecycleAborted = "recycle_aborted",
    /// Reading the workers' memory and CPU time has not returned for 10 s.
    SamplingSlow = "sampling_slow",
    /// The workers' memory and CPU time were read again after a slow round.
    SamplingResumed = "sampling_resumed",
    /// A graceful stop waits out `--drain-delay`: not ready, still serving.
    Draining = "draining",
    /// herd stops gracefully.
    Stopping = "stopping",
    /// herd stops at once, killing every worker.
    StoppingAtOnce = "stopping_at_once",
    /// A stop was asked for while herd is already stopping.
    AlreadyStopping = "already_stopping",
    /// Every worker has exited; herd exits.
    Stopped = "stopped",
    /// As herd stops, processes it did not start or could not reach still hold a socket of
    /// its: the port stays in use.
    SocketStillHeld = "socket_still_held",
    /// A new herd took over: its socket files are its own now (logged by the old herd).
    TakenOver = "taken_over",
    /// A second takeover's stop refused: another herd took this one over first.
    TakeoverRefused = "takeover_refused",
    /// A process started outside herd registered with `herd attach`.
    WorkerAttached = "worker_attached",
    /// An attached process exited.
    AttachedWorkerExited = "attached_worker_exited",
    /// An attached process was sent a signal.
    AttachedWorkerSignalled = "attached_worker_signalled",
    /// An attached process is killed: it did not stop within the grace period.
    AttachedWorkerKilled = "attached_worker_killed",
    /// An attached process survived SIGKILL; herd stops without it.
    AttachedWorkerStuck = "attached_worker_stuck",
    /// An attached process shares its process group with others: only it is signalled.
    AttachedGroupShared = "attached_group_shared",
    /// A process exited leaving processes in its group; herd stops them.
    LeftoversStopping = "leftovers_stopping",
    /// The processes a process left are gone.
    LeftoversGone = "leftovers_gone",
    /// The processes a process left are killed: they did not stop in time.
    LeftoversKilled = "leftovers_killed",
    /// The processes a process left survived SIGKILL; herd no longer waits for them.
    LeftoversStuck = "leftovers_stuck",
    /// A process a worker left behind was re-parented to herd (or found again after a
    /// re-exec); herd reaps it and stops it when it stops.
    OrphanAdopted = "orphan_adopted",
    /// An orphan born while its worker warmed up lowered (`--starting-nice`) gets herd's
    /// priority.
    OrphanRaised = "orphan_raised",
    /// An orphan exited and was reaped.
    OrphanExited = "orphan_exited",
    /// An orphan was sent the stop signal as herd stops.
    OrphanSignalled = "orphan_signalled",
    /// An orphan is killed: it did not stop within the grace period.
    OrphanKilled = "orphan_killed",
    /// An orphan survived SIGKILL; herd no longer waits for it.
    OrphanStuck = "orphan_stuck",
    /// Lines about orphans coming and going were held back (more than a burst in a window).
    OrphanLinesHeld = "orphan_lines_held",
    /// `herd reexec`: the new binary is being checked.
    ReexecChecking = "reexec_checking",
    /// `herd reexec`: the new binary passed its check.
    ReexecCheckPassed = "reexec_check_passed",
    /// `herd reexec`: the check was killed because herd is stopping.
    ReexecCheckKilled = "reexec_check_killed",
    /// `herd reexec` was refused or failed; herd keeps running.
    ReexecRefused = "reexec_refused",
    /// herd re-executes itself.
    ReexecStarted = "reexec_started",
    /// herd runs on in its new binary after a re-exec.
    Reexecuted = "reexecuted",
    /// `--takeover`: the old herd's sockets were fetched.
    TakeoverSocketsFetched = "takeover_sockets_fetched",
    /// `--takeover`: a socket of the old herd's is not taken (no `--bind` names it).
    SocketNotTaken = "socket_not_taken",
    /// `--takeover`: a socket file stays the old herd's.
    SocketFileNotTaken = "socket_file_not_taken",
    /// `--takeover`: the socket file of a socket not taken is removed, the old herd stopped.
    UntakenSocketFileRemoved = "untaken_socket_file_removed",
    /// `--takeover`: every worker is ready; the old herd is asked to stop.
    TakeoverComplete = "takeover_complete",
    /// A takeover failed: this herd stops its workers gracefully and exits 1.
    TakeoverAborted = "takeover_aborted",
    /// `--takeover`: the old herd has stopped.
    OldHerdStopped = "old_herd_stopped",
    /// `--takeover`: the old herd did not stop.
    OldHerdNotStopped = "old_herd_not_stopped",
    /// `--takeover`: the old herd predates takeovers and gets a plain stop.
    OldHerdPredatesTakeover = "old_herd_predates_takeover",
    /// `--takeover`: the old herd stopped before the takeover completed; this herd serves on.
    OldHerdGone = "old_herd_gone",
    /// `--takeover`: the old herd did not answer the stop in time; this herd serves on.
    OldHerdSilent = "old_herd_silent",
    /// `--takeover`: the old herd removed socket files that this herd's sockets had.
    SocketFilesLost = "socket_files_lost",
    /// `--takeover`: the control socket moved to the old herd's path.
    ControlMoved = "control_moved",
    /// `--takeover`: the control socket stays at its takeover path.
    ControlNotMoved = "control_not_moved",
    /// A socket shut down by a worker was made to listen again.
    SocketRestored = "socket_restored",
    /// A worker's own `listen` replaced a socket's backlog.
    BacklogReplaced = "backlog_replaced",
    /// A worker changed a socket's blocking mode (`O_NONBLOCK`), which every worker shares.
    BlockingModeChanged = "blocking_mode_changed",
    /// A worker turned `SO_LINGER` on for a shared TCP socket, which every accepted connection
    /// inherits.
    SharedLingerSet = "shared_linger_set",
    /// A socket shut down by a worker cannot listen again.
    SocketLost = "socket_lost",
    /// A socket file herd created (a Unix listener's, the notify socket's) was removed.
    SocketFileRemoved = "socket_file_removed",
    /// A client was refused by the control socket's access check.
    ControlDenied = "control_denied",
    /// Refused control connections were not logged one by one.
    ControlDeniedUnlogged = "control_denied_unlogged",
    /// The control socket cannot accept a connection (out of file descriptors), or the
    /// control pipe its next instance; herd retries.
    ControlAcceptFailed = "control_accept_failed",
    /// herd closed a control client's connection because the client left its answer unread.
    ControlClientClosed = "control_client_closed",
    /// einhorn's ack socket cannot accept a connection; herd backs off and retries.
    EinhornAcceptFailed = "einhorn_accept_failed",
    /// The Windows notify pipe cannot create its next instance; herd reads one worker's
    /// message at a time meanwhile, and retries.
    NotifyPipeFailed = "notify_pipe_failed",
    /// A notify message was dropped.
    NotifyDropped = "notify_dropped",
    /// Dropped notify messages were not logged one by one.
    NotifyDroppedUnlogged = "notify_dropped_unlogged",
    /// Log lines were lost: stderr was not writable.
    LogLinesDropped = "log_lines_dropped",
    /// Lines of worker output were lost: herd's stdout or stderr was not written fast enough.
    WorkerOutputDropped = "worker_output_dropped",
}

#[cfg(test)]
mod tests;
