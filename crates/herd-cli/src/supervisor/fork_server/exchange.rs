//! A start's request to its fork server and the reply it awaits: one at a time per fork
//! server ([`Gate::Busy`](super::Gate::Busy)), read when the socket is readable, within
//! [`reply_timeout`].

use std::time::{Duration, Instant};

use super::ForkServers;

/// A request herd sent a fork server, awaiting its reply.
#[derive(Debug)]
pub(super) struct Asked<R> {
    pub(super) slot: usize,
    /// What the start holds; `None` once the start is no longer wanted (herd stops, its
    /// upgrade was aborted): a worker the reply names is then stopped.
    pub(super) request: Option<R>,
    pub(super) deadline: Instant,
    pub(super) timeout: Duration,
    /// Its socket reached end of file: herd killed it and waits for its exit, which says why.
    pub(super) closed: bool,
}

/// How long a start awaits the reply of a fork server that may load for `load` (the time a
/// worker has to become ready, `--ready-timeout`): [`REPLY_TIMEOUT`], or `load` where that is
/// shorter (a worker forked later than that would be late anyway).
pub fn reply_timeout(load: Duration) -> Duration {
    load.min(REPLY_TIMEOUT)
}

/// How long a start awaits its fork server's reply. A fork takes milliseconds, even of a large
/// process; the wait holds up only its own slot's start (the loop goes on), so it is set to
/// catch a hung fork server, not a busy machine: on a saturated one a healthy fork server has
/// been seen to take more than a second to be scheduled, read, fork twice and answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a fork server's reply is for (see [`ForkServers::answered`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Answered<R> {
    /// The start of `slot` that asked: it completes with the reply.
    Wanted { slot: usize, request: R },
    /// A start of `slot` no longer wanted: a worker the reply names is stopped.
    Unwanted { slot: usize },
    /// No request awaited it: the fork server broke the protocol.
    Unasked,
}

/// How a start that asked its fork server for its worker ended, for the loop.
pub enum Replied {
    /// The start of `slot`'s worker of `generation` ended so.
    Start {
        slot: usize,
        generation: u64,
        result: Result<crate::supervisor::warm_up::Spawned, crate::command::StartError>,
    },
    /// A start of `slot` no longer wanted got worker `pid`: it is to be stopped.
    Unwanted { slot: usize, pid: u32 },
}

/// A start whose fork server will not answer: it fails for `why` (if still wanted: `request`).
#[derive(Debug, PartialEq, Eq)]
pub struct Unanswered<R> {
    pub slot: usize,
    pub generation: u64,
    pub request: Option<R>,
    pub why: String,
}

impl<H, R> ForkServers<H, R> {
    /// herd asked fork server `pid` at `now` for `slot`'s worker (`request`: what the start
    /// holds meanwhile); the reply is awaited for [`reply_timeout`].
    pub fn ask(&mut self, pid: u32, slot: usize, request: R, now: Instant) {
        if let Some(server) = self.servers.get_mut(&pid) {
            let timeout = reply_timeout(server.timeout);
            server.asked = Some(Asked {
                slot,
                request: Some(request),
                deadline: now + timeout,
                timeout,
                closed: false,
            });
        }
    }

    /// The fork servers whose reply herd awaits on their socket: pids and handles.
    pub fn awaited(&self) -> impl Iterator<Item = (u32, &H)> + '_ {
        self.servers
            .values()
            .filter(|s| s.asked.as_ref().is_some_and(|a| !a.closed))
            .map(|s| (s.pid, &s.handle))
    }

    /// Whether a start awaits a reply (herd waits for it before it ends).
    pub fn awaiting(&self) -> bool {
        self.servers.values().any(|s| s.asked.is_some())
    }

    /// Fork server `pid` sent a reply: what it answers. A fork server herd closed meanwhile
    /// goes now (its handle dropped).
    pub fn answered(&mut self, pid: u32) -> Answered<R> {
        let Some(server) = self.servers.get_mut(&pid) else {
            return Answered::Unasked;
        };
        let Some(asked) = server.asked.take() else {
            return Answered::Unasked;
        };
        if server.closing {
            self.servers.remove(&pid);
        }
        match asked.request {
            Some(request) => Answered::Wanted {
                slot: asked.slot,
                request,
            },
            None => Answered::Unwanted { slot: asked.slot },
        }
    }

    /// Fork server `pid`'s socket reached end of file (or failed) while a request awaited its
    /// reply: herd kills it, and its exit fails the start (with what the exit says). Whether a
    /// request awaited one.
    pub fn closed_socket(&mut self, pid: u32) -> bool {
        let asked = self.servers.get_mut(&pid).and_then(|s| s.asked.as_mut());
        asked.map(|a| a.closed = true).is_some()
    }

    /// Fork server `pid` exited, as `how` says, while a request awaited its reply: that start
    /// fails. Call before [`exited`](Self::exited).
    pub fn unanswered(&mut self, pid: u32, how: &str) -> Option<Unanswered<R>> {
        let server = self.servers.get_mut(&pid)?;
        let asked = server.asked.take()?;
        let why = match asked.closed {
            true => format!(
                "its fork server (pid {pid}) closed its socket and ended ({how}) before it \
                 answered"
            ),
            false => format!("its fork server (pid {pid}) ended ({how}) before it answered"),
        };
        Some(Unanswered {
            slot: asked.slot,
            generation: server.generation,
            request: asked.request,
            why,
        })
    }

    /// The fork servers that did not answer in time at `now`: taken out, to be killed (the
    /// next start of their generation starts another); their pids and the starts that fail.
    pub fn overdue(&mut self, now: Instant) -> Vec<(u32, Unanswered<R>)> {
        let late: Vec<u32> = self
            .servers
            .values()
            .filter(|s| s.asked.as_ref().is_some_and(|a| now >= a.deadline))
            .map(|s| s.pid)
            .collect();
        late.into_iter()
            .filter_map(|pid| {
                let server = self.servers.remove(&pid)?;
                let asked = server.asked?;
                let within = humantime::format_duration(asked.timeout);
                let why = format!(
                    "its fork server (pid {pid}) did not answer within {within}; herd killed it"
                );
                let unanswered = Unanswered {
                    slot: asked.slot,
                    generation: server.generation,
                    request: asked.request,
                    why,
                };
                Some((pid, unanswered))
            })
            .collect()
    }
}
