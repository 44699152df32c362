//! Where the supervisor's inputs come from: signals, control requests, metrics scrapes, the
//! workers' `sd_notify` datagrams, finished re-exec checks, the old herd's answer during a
//! takeover, and timers. [`Sources::next`] waits for the next one, as an [`Input`].

#[cfg(unix)]
use std::os::unix::io::{AsFd, OwnedFd};
#[cfg(unix)]
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(unix)]
use herd_sys::pidfd::{ExitWatch, PidFd};
#[cfg(unix)]
use tokio::net::{UnixDatagram, UnixListener};
use tokio::sync::mpsc;
#[cfg(unix)]
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{interval, Interval, MissedTickBehavior};

use super::platform::{Intents, NotifySocket};
use super::signals::Intent;
use super::takeover::StopAnswer;
#[cfg(unix)]
use super::{attached, balance, leftovers, reexec_check, relisten};
use super::{autoscale, metrics};
use crate::control::request::ControlRequest;
#[cfg(unix)]
use crate::control::server::{self, AccessPolicy};

/// One input to the supervisor.
pub enum Input {
    /// A signal arrived.
    Signal(Intent),
    /// A control client asked something.
    Control(ControlRequest),
    /// `--metrics` was scraped.
    Scrape(metrics::Scrape),
    /// A check of a new binary before a re-exec ended.
    #[cfg(unix)]
    ReexecChecked(reexec_check::Checked),
    /// The old herd answered the stop that ends a takeover.
    TakeoverAnswered(StopAnswer),
    /// A worker's `sd_notify` datagram is waiting.
    #[cfg(unix)]
    Notify,
    /// A worker's notify message came, from this pid.
    #[cfg(windows)]
    Notified(u32, Vec<u8>),
    /// A timer fired.
    Tick(Tick),
}

/// Which timer fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// A deadline of the pool or of the attached processes passed, or the loop just needed to
    /// turn (attached processes and drains are looked at on every turn).
    Turn,
    /// Time for an autoscaling sample.
    Autoscale,
    /// A quick look at the accept queue between two autoscaling samples.
    QueueCheck,
    /// Time to check that no worker shut a shared socket down.
    #[cfg(unix)]
    CheckSockets,
    /// Time to look at the process groups exited workers left.
    #[cfg(unix)]
    Leftovers,
}

/// What the supervisor waits for on this turn.
pub struct Wants {
    /// The earliest deadline of the pool and of the attached processes.
    pub deadline: Option<Instant>,
    /// Autoscaling samples (autoscaling is on and herd is not stopping).
    pub autoscale: bool,
    /// Regular turns while attached processes without a pidfd live.
    #[cfg(unix)]
    pub attached: bool,
    /// Regular turns while reuseport slots drain.
    #[cfg(unix)]
    pub drains: bool,
    /// Regular looks at leftover process groups.
    #[cfg(unix)]
    pub leftovers: bool,
}

/// The open input channels and timers.
pub struct Sources {
    signals: Intents,
    #[cfg(unix)]
    notify: UnixDatagram,
    requests: mpsc::Receiver<ControlRequest>,
    scrapes: mpsc::Receiver<metrics::Scrape>,
    #[cfg(windows)]
    notify: NotifySocket,
    #[cfg(unix)]
    checked: mpsc::Receiver<reexec_check::Checked>,
    /// Where re-exec checks report.
    #[cfg(unix)]
    pub checked_tx: mpsc::Sender<reexec_check::Checked>,
    answered: mpsc::Receiver<StopAnswer>,
    /// Where the old herd's answer to a takeover's stop is reported.
    pub answered_tx: mpsc::Sender<StopAnswer>,
    timers: Timers,
    /// Woken when an attached process's pidfd becomes readable (it exited).
    #[cfg(unix)]
    attached_exited: Arc<Notify>,
    server: JoinHandle<()>,
    /// A copy of the control socket's fd, handed to the next image on re-exec.
    #[cfg(unix)]
    pub control_fd: OwnedFd,
    /// A copy of the metrics socket's fd, handed to the next image on re-exec.
    #[cfg(unix)]
    pub metrics_fd: Option<OwnedFd>,
}

/// Periodic work, on intervals that live across loop turns: a timer made anew on each turn
/// would never fire while other inputs keep the loop busy.
struct Timers {
    autoscale: Interval,
    queue_check: Interval,
    #[cfg(unix)]
    attached: Interval,
    #[cfg(unix)]
    drains: Interval,
    #[cfg(unix)]
    sockets: Interval,
    #[cfg(unix)]
    leftovers: Interval,
}

fn every(period: Duration) -> Interval {
    let mut timer = interval(period);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}

impl Sources {
    /// Installs the signal handlers (before any worker is forked, so that no exit is missed)
    /// and starts serving the control socket and `--metrics`.
    #[cfg(unix)]
    pub fn open(
        (control, policy): (std::os::unix::net::UnixListener, AccessPolicy),
        notify: &NotifySocket,
        metrics_listener: Option<std::net::TcpListener>,
    ) -> anyhow::Result<Sources> {
        let signals = Intents::install()?;
        let notify = UnixDatagram::from_std(notify.socket.try_clone()?)?;
        let control_fd = control.as_fd().try_clone_to_owned()?;
        control.set_nonblocking(true)?;
        let listener = UnixListener::from_std(control)?;
        let (requests_tx, requests) = mpsc::channel(64);
        let server = tokio::spawn(server::serve(listener, policy, requests_tx));
        let (scrapes_tx, scrapes) = mpsc::channel(16);
        let metrics_fd = match metrics_listener {
            Some(listener) => {
                let fd = listener.as_fd().try_clone_to_owned()?;
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                tokio::spawn(metrics::serve(listener, scrapes_tx));
                Some(fd)
            }
            None => None,
        };
        let (checked_tx, checked) = mpsc::channel(1);
        let (answered_tx, answered) = mpsc::channel(2);
        let timers = Timers {
            autoscale: every(autoscale::SAMPLE_EVERY),
            queue_check: every(autoscale::QUEUE_CHECK_EVERY),
            attached: every(attached::CHECK_EVERY),
            drains: every(balance::DRAIN_CHECK),
            sockets: every(relisten::CHECK_EVERY),
            leftovers: every(leftovers::CHECK_EVERY),
        };
        Ok(Sources {
            signals,
            notify,
            requests,
            scrapes,
            checked,
            checked_tx,
            answered,
            answered_tx,
            timers,
            attached_exited: Arc::new(Notify::new()),
            server,
            control_fd,
            metrics_fd,
        })
    }

    /// Listens for Ctrl-C, standard input and the workers' exits (before any worker starts,
    /// so that no exit is missed) and starts serving the control pipe.
    #[cfg(windows)]
    pub fn open(
        control: super::platform::Control,
        notify: &NotifySocket,
        metrics_listener: Option<std::net::TcpListener>,
    ) -> anyhow::Result<Sources> {
        let signals = Intents::install()?;
        let (requests_tx, requests) = mpsc::channel(64);
        let server = control.serve(requests_tx);
        let (scrapes_tx, scrapes) = mpsc::channel(16);
        if let Some(listener) = metrics_listener {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tokio::spawn(metrics::serve(listener, scrapes_tx));
        }
        let (answered_tx, answered) = mpsc::channel(2);
        let timers = Timers {
            autoscale: every(autoscale::SAMPLE_EVERY),
            queue_check: every(autoscale::QUEUE_CHECK_EVERY),
        };
        Ok(Sources {
            signals,
            requests,
            scrapes,
            notify: std::sync::Arc::clone(notify),
            answered,
            answered_tx,
            timers,
            server,
        })
    }

    /// The notify socket, to read the datagrams an [`Input::Notify`] announced.
    #[cfg(unix)]
    pub fn notify(&self) -> &UnixDatagram {
        &self.notify
    }

    /// Waits for the next input.
    #[cfg(unix)]
    pub async fn next(&mut self, wants: &Wants) -> Input {
        let deadline = wants.deadline.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(86400 * 365),
            tokio::time::Instant::from_std,
        );
        let t = &mut self.timers;
        tokio::select! {
            intent = self.signals.recv() => Input::Signal(intent),
            Some(request) = self.requests.recv() => Input::Control(request),
            Some(scrape) = self.scrapes.recv() => Input::Scrape(scrape),
            Some(done) = self.checked.recv() => Input::ReexecChecked(done),
            Some(answer) = self.answered.recv() => Input::TakeoverAnswered(answer),
            _ = self.notify.readable() => Input::Notify,
            _ = self.attached_exited.notified() => Input::Tick(Tick::Turn),
            _ = tokio::time::sleep_until(deadline), if wants.deadline.is_some() => {
                Input::Tick(Tick::Turn)
            }
            _ = t.autoscale.tick(), if wants.autoscale => Input::Tick(Tick::Autoscale),
            _ = t.queue_check.tick(), if wants.autoscale => Input::Tick(Tick::QueueCheck),
            _ = t.attached.tick(), if wants.attached => Input::Tick(Tick::Turn),
            _ = t.drains.tick(), if wants.drains => Input::Tick(Tick::Turn),
            _ = t.sockets.tick() => Input::Tick(Tick::CheckSockets),
            _ = t.leftovers.tick(), if wants.leftovers => Input::Tick(Tick::Leftovers),
        }
    }

    /// Waits for the next input.
    #[cfg(windows)]
    pub async fn next(&mut self, wants: &Wants) -> Input {
        let deadline = wants.deadline.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(86400 * 365),
            tokio::time::Instant::from_std,
        );
        let t = &mut self.timers;
        tokio::select! {
            intent = self.signals.recv() => Input::Signal(intent),
            Some(request) = self.requests.recv() => Input::Control(request),
            Some(scrape) = self.scrapes.recv() => Input::Scrape(scrape),
            (pid, message) = self.notify.recv() => Input::Notified(pid, message),
            Some(answer) = self.answered.recv() => Input::TakeoverAnswered(answer),
            _ = tokio::time::sleep_until(deadline), if wants.deadline.is_some() => {
                Input::Tick(Tick::Turn)
            }
            _ = t.autoscale.tick(), if wants.autoscale => Input::Tick(Tick::Autoscale),
            _ = t.queue_check.tick(), if wants.autoscale => Input::Tick(Tick::QueueCheck),
        }
    }

    /// Wakes the loop when the process `pidfd` holds exits (its pidfd becomes readable). A
    /// pidfd that cannot be registered with the runtime is polled every
    /// [`attached::CHECK_EVERY`] instead.
    #[cfg(unix)]
    pub fn watch_exit(&self, pidfd: Arc<PidFd>) {
        let wake = Arc::clone(&self.attached_exited);
        let registered = ExitWatch::new(Arc::clone(&pidfd));
        tokio::spawn(async move {
            match registered {
                Ok(watch) => watch.exited().await,
                Err(_) => {
                    let mut poll = every(attached::CHECK_EVERY);
                    while !pidfd.has_exited() {
                        poll.tick().await;
                    }
                }
            }
            wake.notify_one();
        });
    }

    /// Stops serving control clients.
    pub fn close(self) {
        self.server.abort();
    }
}
