//! The supervisor's inputs that only Unix has: the workers' `sd_notify` datagrams, finished
//! re-exec checks, attached processes' pidfds, and the timers of the checks that only Unix
//! makes (drains of reuseport slots, shut-down sockets, leftover process groups, orphans).

use std::os::unix::io::{AsFd, OwnedFd};
use std::sync::Arc;

use herd_sys::notify::Receiver;
use herd_sys::pidfd::{ExitWatch, PidFd};
use tokio::net::{UnixDatagram, UnixListener};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Interval;

use super::{fork_servers, NotifySocket};
use crate::control::request::ControlRequest;
use crate::control::server::{self, AccessPolicy};
use crate::supervisor::sources::{self, every, Tick};
use crate::supervisor::{attached, balance, leftovers, orphans, reexec_check, relisten};

/// An input only Unix has.
pub enum Input {
    /// A check of a new binary before a re-exec ended.
    ReexecChecked(reexec_check::Checked),
    /// A worker's `sd_notify` datagram is waiting.
    Notify,
    /// A process acknowledged einhorn's way (`--compat einhorn`): its pid.
    EinhornAck(u32),
    /// Time to check that no worker shut a shared socket down.
    CheckSockets,
    /// Time to look at the process groups exited workers left.
    Leftovers,
    /// Time to look for orphans.
    Orphans,
    /// Fork server `pid`'s socket, whose reply a start awaits, had this to read (empty at end
    /// of file).
    ForkReply(u32, std::io::Result<Vec<u8>>),
}

/// What the loop waits for on this turn, of what only Unix has.
pub struct Wants {
    /// Regular turns while attached processes without a pidfd live.
    pub attached: bool,
    /// Regular turns while reuseport slots drain.
    pub drains: bool,
    /// Regular looks at leftover process groups.
    pub leftovers: bool,
    /// Frequent looks at orphans, while herd stops and waits for them.
    pub orphans: bool,
    /// The sockets of the fork servers whose reply a start awaits, with their pids.
    pub fork_replies: Vec<(u32, fork_servers::Handle)>,
}

/// What the control endpoint serves: the bound socket and who may use it.
pub type ControlServer = (std::os::unix::net::UnixListener, AccessPolicy);

/// The open input channels and timers only Unix has.
pub struct Inputs {
    notify: UnixDatagram,
    /// Reads the notify socket, whose readiness `notify` waits for.
    notify_receiver: Receiver,
    /// The pids of processes that acknowledged einhorn's way (none without the socket).
    einhorn_acks: mpsc::Receiver<u32>,
    /// Where einhorn's socket's server sends them, and its task: to serve it again when its
    /// file was removed and it is bound anew.
    einhorn: (mpsc::Sender<u32>, Option<JoinHandle<()>>),
    checked: mpsc::Receiver<reexec_check::Checked>,
    /// Where re-exec checks report.
    pub checked_tx: mpsc::Sender<reexec_check::Checked>,
    /// Woken when an attached process's pidfd becomes readable (it exited).
    attached_exited: Arc<Notify>,
    attached: Interval,
    drains: Interval,
    sockets: Interval,
    leftovers: Interval,
    orphans: Interval,
    orphans_stopping: Interval,
    /// A copy of the control socket's fd, handed to the next image on re-exec.
    pub control_fd: OwnedFd,
    /// Who may use the control socket, and where its requests go: to serve it again when its
    /// file was removed and it is bound anew.
    control: (AccessPolicy, mpsc::Sender<ControlRequest>),
    /// A copy of the metrics socket's fd, handed to the next image on re-exec.
    pub metrics_fd: Option<OwnedFd>,
    /// A copy of the `--health` socket's fd, handed to the next image on re-exec.
    pub health_fd: Option<OwnedFd>,
}

impl Inputs {
    /// Opens the notify socket's input and serves the control socket, each request sent to
    /// `requests`; the server's task.
    pub fn open(
        (control, policy): ControlServer,
        notify: &NotifySocket,
        requests: mpsc::Sender<ControlRequest>,
    ) -> anyhow::Result<(Inputs, JoinHandle<()>)> {
        let control_fd = control.as_fd().try_clone_to_owned()?;
        control.set_nonblocking(true)?;
        let listener = UnixListener::from_std(control)?;
        let again = (policy.clone(), requests.clone());
        let server = tokio::spawn(server::serve(listener, policy, requests));
        let (checked_tx, checked) = mpsc::channel(1);
        let (acks_tx, einhorn_acks) = mpsc::channel(64);
        let einhorn_server = match &notify.einhorn {
            Some(einhorn) => Some(einhorn.serve(acks_tx.clone())?),
            None => None,
        };
        let inputs = Inputs {
            notify: UnixDatagram::from_std(notify.socket.try_clone()?)?,
            notify_receiver: Receiver::new(notify.socket.as_fd())?,
            einhorn_acks,
            einhorn: (acks_tx, einhorn_server),
            checked,
            checked_tx,
            attached_exited: Arc::new(Notify::new()),
            attached: every(attached::CHECK_EVERY),
            drains: every(balance::DRAIN_CHECK),
            sockets: every(relisten::CHECK_EVERY),
            leftovers: every(leftovers::CHECK_EVERY),
            orphans: every(orphans::SCAN_EVERY),
            orphans_stopping: every(orphans::STOP_CHECK_EVERY),
            control_fd,
            control: again,
            metrics_fd: None,
            health_fd: None,
        };
        Ok((inputs, server))
    }

    /// Keeps a copy of the `--metrics` or `--health` socket's fd, for a re-exec.
    pub fn keep_endpoint(
        &mut self,
        listener: &std::net::TcpListener,
        endpoint: crate::supervisor::http::Endpoint,
    ) -> std::io::Result<()> {
        let fd = Some(listener.as_fd().try_clone_to_owned()?);
        match endpoint {
            crate::supervisor::http::Endpoint::Metrics => self.metrics_fd = fd,
            crate::supervisor::http::Endpoint::Health => self.health_fd = fd,
        }
        Ok(())
    }

    /// Whether others than herd's user may use the control socket (it is then mode 0666).
    pub fn control_shared(&self) -> bool {
        !self.control.0.uids.is_empty() || !self.control.0.gids.is_empty()
    }

    /// Serves the control socket bound again at its path (its file was removed) from now on;
    /// its server's task. The connections the old one accepted are served on.
    pub fn serve_control_again(
        &mut self,
        control: std::os::unix::net::UnixListener,
    ) -> std::io::Result<JoinHandle<()>> {
        let control_fd = control.as_fd().try_clone_to_owned()?;
        control.set_nonblocking(true)?;
        let listener = UnixListener::from_std(control)?;
        self.control_fd = control_fd;
        let (policy, requests) = self.control.clone();
        Ok(tokio::spawn(server::serve(listener, policy, requests)))
    }

    /// Serves einhorn's socket bound again at its path (its file was removed) instead of the
    /// old one.
    pub fn serve_einhorn_again(
        &mut self,
        einhorn: &crate::supervisor::einhorn::EinhornSocket,
    ) -> anyhow::Result<()> {
        let server = einhorn.serve(self.einhorn.0.clone())?;
        if let Some(old) = self.einhorn.1.replace(server) {
            old.abort();
        }
        Ok(())
    }

    /// Reads the notify socket bound again at its path ([`NotifySocket::bind_again_if_removed`])
    /// from now on; the old one's receiver, to read what it still holds.
    pub fn replace_notify(
        &mut self,
        socket: &std::os::unix::net::UnixDatagram,
    ) -> std::io::Result<Receiver> {
        let receiver = Receiver::new(socket.as_fd())?;
        self.notify = UnixDatagram::from_std(socket.try_clone()?)?;
        Ok(std::mem::replace(&mut self.notify_receiver, receiver))
    }

    /// The notify socket, to wait for the datagrams an [`Input::Notify`] announced, and its
    /// receiver, to read them.
    pub fn notify(&self) -> (&UnixDatagram, &Receiver) {
        (&self.notify, &self.notify_receiver)
    }

    /// Waits for the next of these inputs.
    pub async fn next(&mut self, wants: &Wants) -> sources::Input {
        use sources::Input::{Platform, Tick as Timer};
        tokio::select! {
            Some(done) = self.checked.recv() => Platform(Input::ReexecChecked(done)),
            _ = self.notify.readable() => Platform(Input::Notify),
            Some(pid) = self.einhorn_acks.recv() => Platform(Input::EinhornAck(pid)),
            _ = self.attached_exited.notified() => Timer(Tick::Turn),
            _ = self.attached.tick(), if wants.attached => Timer(Tick::Turn),
            _ = self.drains.tick(), if wants.drains => Timer(Tick::Turn),
            _ = self.sockets.tick() => Platform(Input::CheckSockets),
            _ = self.leftovers.tick(), if wants.leftovers => Platform(Input::Leftovers),
            _ = self.orphans.tick() => Platform(Input::Orphans),
            _ = self.orphans_stopping.tick(), if wants.orphans => Platform(Input::Orphans),
            (pid, read) = fork_reply(&wants.fork_replies), if !wants.fork_replies.is_empty() => {
                Platform(Input::ForkReply(pid, read))
            }
        }
    }

    /// Wakes the loop when the process `pidfd` holds exits (its pidfd becomes readable). A
    /// pidfd that cannot be registered with the runtime is polled every
    /// [`attached::CHECK_EVERY`] instead.
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
}

/// The first reply of `awaited` (fork servers' sockets, by pid) that can be read: its fork
/// server's pid and what was read (empty at end of file). Reads only in the poll that returns,
/// so a turn that takes another input loses nothing.
async fn fork_reply(awaited: &[(u32, fork_servers::Handle)]) -> (u32, std::io::Result<Vec<u8>>) {
    std::future::poll_fn(|cx| {
        for (pid, socket) in awaited {
            // Readiness the read finds stale is cleared, and the socket polled again (which
            // registers this task to be woken).
            loop {
                let mut guard = match socket.poll_read_ready(cx) {
                    std::task::Poll::Ready(Ok(guard)) => guard,
                    std::task::Poll::Ready(Err(e)) => {
                        return std::task::Poll::Ready((*pid, Err(e)))
                    }
                    std::task::Poll::Pending => break,
                };
                let mut reply = vec![0u8; fork_servers::REPLY_ROOM];
                let read = guard.try_io(|s| {
                    let socket = socket2::SockRef::from(s.get_ref());
                    std::io::Read::read(&mut &*socket, &mut reply)
                });
                match read {
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Ok(read) => {
                        let read = read.map(|n| {
                            reply.truncate(n);
                            reply
                        });
                        return std::task::Poll::Ready((*pid, read));
                    }
                    Err(_would_block) => continue,
                }
            }
        }
        std::task::Poll::Pending
    })
    .await
}
