//! `--fork-server`: each generation's workers are forked by one process of that generation, its
//! fork server, which has loaded what they share (a Python app's imports), instead of each
//! starting the command anew. The protocol is in docs/fork-server.md; `python/herd_fork.py`
//! speaks it for any Python server. Pure: which fork server each start waits for, and what
//! its start, readiness, exit and timeout mean for the starts held back meanwhile.
//!
//! - A start of generation G asks [`ForkServers::gate`]: G's fork server is ready (fork the
//!   worker from it), loading (hold the start back until it is ready), or missing (start it,
//!   then hold the start back). Starts held back go ahead when it says `READY=1`; they fail
//!   with its exit's reason when it exits first or does not say it within the time a worker
//!   has to become ready (`--ready-timeout`).
//! - A fork server that is ready and then exits (killed, crashed) is started anew by the next
//!   start that needs it; the workers it forked are herd's children and serve on.
//! - A fork server that loads beside serving workers (an upgrade's, a restart's while others
//!   serve) loads at `--starting-nice`'s priority, as a worker that starts beside them does; it gets herd's back when it says `READY=1` (before it forks anything, so that
//!   its workers are born at herd's priority), or when its warm-up ends (starved, budget).
//! - Once G's fork server is ready, the older ones are closed: they exit when herd closes its
//!   end of their socket. A start of an older generation (a restart during an upgrade) starts
//!   one anew, closed once the upgrade has ended.
//! - A start that goes ahead sends its request and the loop goes on: the start awaits the
//!   reply, its slot still starting, and the fork server takes no other request meanwhile
//!   ([`Gate::Busy`]: one reply per request, so that a reply nobody asked for is told apart).
//!   The reply completes the start ([`Answered`]); no reply within
//!   [`reply_timeout`](exchange::reply_timeout), or the fork server's exit, fails it
//!   ([`Unanswered`]). A start no longer wanted meanwhile (herd
//!   stops, its upgrade was aborted) still gets its reply read: the worker it names is a real
//!   process, stopped as a worker; a fork server closed meanwhile is closed once it answered.

mod exchange;
mod request;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::status::ForkServerStatus;

use exchange::Asked;
#[cfg(test)]
use exchange::{reply_timeout, REPLY_TIMEOUT};
pub use exchange::{Answered, Replied, Unanswered};
pub use request::{encode_request, parse_reply, Reply};

/// What a start of a generation does about its fork server.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Fork the worker from it now.
    Ready,
    /// It is loading: hold the start back.
    Loading,
    /// It is ready, but a start awaits its reply to an earlier request: hold the start back.
    Busy,
    /// There is none: start one, then hold the start back.
    Missing,
}

/// What a start's look at its fork server came to (the platform's `fork_gate`).
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The start goes ahead (its fork server is ready, or it needs none).
    Go,
    /// Its fork server is loading: the start waits.
    Wait,
    /// Its fork server was just started, as `pid`, lowered so while it loads: the start waits.
    Started {
        pid: u32,
        lowered: Option<super::warm_up::Lowered>,
    },
}

/// A fork server's course.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Course {
    /// Started at this instant, not ready yet.
    Loading(Instant),
    /// It said `READY=1`.
    Ready,
    /// herd killed it for not saying `READY=1` in time; its exit is on its way.
    TimedOut,
}

/// One generation's fork server; `H` is what herd holds of it (its socket's end), `R` what a
/// start that asked it for a worker holds until the reply.
#[derive(Debug)]
struct Server<H, R> {
    pid: u32,
    generation: u64,
    course: Course,
    /// How long it may load.
    timeout: Duration,
    /// Whether herd said it is slow to load (see [`SLOW_LOAD`]).
    said_slow: bool,
    /// Since when it loads at herd's priority: from its start, or from the end of its
    /// warm-up at `--starting-nice` ([`ForkServers::raised`]); none while it loads lowered.
    /// [`SLOW_LOAD`] counts from then, since a load starved at a low priority is only slow.
    full_since: Option<Instant>,
    /// The request whose reply herd awaits.
    asked: Option<Asked<R>>,
    /// herd closed it while a request awaited its reply: it goes once that is answered.
    closing: bool,
    handle: H,
}

/// How long a fork server loads at herd's priority (after its warm-up at `--starting-nice`, if
/// it was lowered) before herd says it has not said `READY=1` yet: a command
/// that does not speak the protocol (`python3 app.py` without `herd_fork.py`) would otherwise
/// go unexplained until `--ready-timeout` (a minute by default).
pub const SLOW_LOAD: Duration = Duration::from_secs(5);

/// What became of a fork server that exited (see [`ForkServers::exited`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// It was ready: the next start of its generation starts another.
    WasReady { generation: u64 },
    /// It never became ready: the starts of its generation held back fail, for this reason.
    Failed { generation: u64, why: String },
    /// It never became ready, but another of its generation runs (started after herd killed
    /// this one for loading too long): the starts held back wait for that one.
    Superseded { generation: u64 },
}

/// The fork servers herd runs, by pid.
#[derive(Debug)]
pub struct ForkServers<H, R = ()> {
    servers: BTreeMap<u32, Server<H, R>>,
}

impl<H, R> Default for ForkServers<H, R> {
    fn default() -> Self {
        ForkServers {
            servers: BTreeMap::new(),
        }
    }
}

impl<H, R> ForkServers<H, R> {
    /// What a start of `generation` does about its fork server.
    pub fn gate(&self, generation: u64) -> Gate {
        let mut gate = Gate::Missing;
        for server in self.of(generation) {
            match server.course {
                Course::Ready if server.asked.is_none() => return Gate::Ready,
                Course::Ready => gate = Gate::Busy,
                Course::Loading(_) if gate != Gate::Busy => gate = Gate::Loading,
                Course::Loading(_) | Course::TimedOut => {}
            }
        }
        gate
    }

    /// The ready fork server of `generation` that awaits no reply: its pid and handle.
    pub fn ready(&self, generation: u64) -> Option<(u32, &H)> {
        self.of(generation)
            .find(|s| s.course == Course::Ready && s.asked.is_none())
            .map(|s| (s.pid, &s.handle))
    }

    /// The fork servers still loading whose generation `which` picks: closing their socket
    /// does not end them (they read it only once loaded), so those closed are killed too.
    pub fn loading(&self, which: impl Fn(u64) -> bool) -> Vec<u32> {
        (self.servers.values())
            .filter(|s| matches!(s.course, Course::Loading(_)) && which(s.generation))
            .map(|s| s.pid)
            .collect()
    }

    /// The generation of fork server `pid`.
    pub fn generation_of(&self, pid: u32) -> Option<u64> {
        self.servers.get(&pid).map(|s| s.generation)
    }

    /// `pid` was started at `now` as `generation`'s fork server, at herd's priority (see
    /// [`lowered`](Self::lowered)); it may load for `timeout`.
    pub fn started(
        &mut self,
        generation: u64,
        pid: u32,
        handle: H,
        now: Instant,
        timeout: Duration,
    ) {
        let server = Server {
            pid,
            generation,
            course: Course::Loading(now),
            timeout,
            said_slow: false,
            full_since: Some(now),
            asked: None,
            closing: false,
            handle,
        };
        self.servers.insert(pid, server);
    }

    /// `pid` said `READY=1`: its generation, if it is a fork server that was loading. The
    /// older generations' fork servers are to be closed then ([`close_before`](Self::close_before)).
    pub fn said_ready(&mut self, pid: u32) -> Option<u64> {
        let server = self.servers.get_mut(&pid)?;
        if !matches!(server.course, Course::Loading(_)) {
            return None;
        }
        server.course = Course::Ready;
        Some(server.generation)
    }

    /// Closes the fork servers `which` picks, but those killed whose exit is on its way: takes
    /// out those that await no reply (their pids and handles, to be closed), and marks the
    /// others to go once they have answered, their starts no longer wanted if `unwant`.
    fn close(&mut self, which: impl Fn(&Server<H, R>) -> bool, unwant: bool) -> Vec<(u32, H)> {
        let mut closed = Vec::new();
        let picked: Vec<u32> = self
            .servers
            .values()
            .filter(|s| which(s) && s.course != Course::TimedOut && !s.closing)
            .map(|s| s.pid)
            .collect();
        for pid in picked {
            let Some(server) = self.servers.get_mut(&pid) else {
                continue;
            };
            match &mut server.asked {
                Some(asked) => {
                    server.closing = true;
                    if unwant {
                        asked.request = None;
                    }
                }
                None => closed.extend(self.servers.remove(&pid).map(|s| (pid, s.handle))),
            }
        }
        closed
    }

    /// Takes `pid` out without an exit (herd gave up on it: it did not answer a request and
    /// was killed): the next start of its generation starts another. Its handle.
    pub fn forget(&mut self, pid: u32) -> Option<H> {
        self.servers.remove(&pid).map(|s| s.handle)
    }

    /// Fork server `pid` exited, as `how` says (`exited with status 1`): what that means for
    /// its generation's starts; `None` if it was none of herd's (any more).
    pub fn exited(&mut self, pid: u32, how: &str) -> Option<Ended> {
        let server = self.servers.remove(&pid)?;
        let generation = server.generation;
        Some(match server.course {
            Course::Ready => Ended::WasReady { generation },
            _ if self.gate(generation) != Gate::Missing => Ended::Superseded { generation },
            Course::Loading(_) => Ended::Failed {
                generation,
                why: format!(
                    "its fork server (pid {pid}) ended ({how}) before it said READY=1: see its output in herd's log"
                ),
            },
            Course::TimedOut => Ended::Failed {
                generation,
                why: format!(
                    "its fork server (pid {pid}) did not say READY=1 within {} (--ready-timeout) \
                     and was killed: does the command speak herd's fork-server protocol \
                     (python/herd_fork.py, docs/fork-server.md)?",
                    humantime::format_duration(server.timeout)
                ),
            },
        })
    }

    /// The fork servers still loading at `now` past their time: they are to be killed (their
    /// exit then fails their generation's starts). Their pids.
    pub fn timed_out(&mut self, now: Instant) -> Vec<u32> {
        self.servers
            .values_mut()
            .filter(|s| matches!(s.course, Course::Loading(since) if now >= since + s.timeout))
            .map(|s| {
                s.course = Course::TimedOut;
                s.pid
            })
            .collect()
    }

    /// herd could not act for `gap` (see [`Pool::resumed_after`](herd_core::Pool::resumed_after)):
    /// that time counts against no fork server. Each one loading has `gap` more to say
    /// `READY=1` (and is said slow that much later), and a reply awaited is due `gap` later:
    /// a reply that came while herd could not read it is read, not taken for a hung fork
    /// server.
    pub fn resumed_after(&mut self, gap: Duration) {
        let later = |t: Instant| t.checked_add(gap).unwrap_or(t);
        for s in self.servers.values_mut() {
            if let Course::Loading(since) = s.course {
                s.course = Course::Loading(later(since));
            }
            s.full_since = s.full_since.map(later);
            if let Some(asked) = &mut s.asked {
                asked.deadline = later(asked.deadline);
            }
        }
    }

    /// `pid` loads at a low priority (`--starting-nice`) from its start: its load is not said
    /// slow until it is [`raised`](Self::raised).
    pub fn lowered(&mut self, pid: u32) {
        if let Some(s) = self.servers.get_mut(&pid) {
            s.full_since = None;
        }
    }

    /// `pid`, started at a low priority (`--starting-nice`), got herd's at `now`: its load is
    /// said slow only [`SLOW_LOAD`] from then.
    pub fn raised(&mut self, pid: u32, now: Instant) {
        if let Some(s) = self.servers.get_mut(&pid) {
            s.full_since = Some(now);
        }
    }

    /// The fork servers loading at herd's priority for [`SLOW_LOAD`] at `now`, each once (and
    /// only where that comes before its timeout; never one still lowered): their pids,
    /// generations, timeouts and how long they have loaded.
    pub fn slow(&mut self, now: Instant) -> Vec<(u32, u64, Duration, Duration)> {
        self.servers
            .values_mut()
            .filter(|s| !s.said_slow && s.timeout > SLOW_LOAD)
            .filter(|s| matches!(s.course, Course::Loading(_)))
            .filter(|s| s.full_since.is_some_and(|full| now >= full + SLOW_LOAD))
            .map(|s| {
                s.said_slow = true;
                let loaded = match s.course {
                    Course::Loading(since) => now.saturating_duration_since(since),
                    _ => Duration::ZERO,
                };
                (s.pid, s.generation, s.timeout, loaded)
            })
            .collect()
    }

    /// When the next fork server that is loading runs out of time, or is to be said slow, or
    /// the next reply awaited is late.
    pub fn next_deadline(&self) -> Option<Instant> {
        let loading = self.servers.values().filter_map(|s| match s.course {
            Course::Loading(since) if !s.said_slow && s.timeout > SLOW_LOAD => {
                Some(s.full_since.map_or(since + s.timeout, |full| {
                    (full + SLOW_LOAD).min(since + s.timeout)
                }))
            }
            Course::Loading(since) => Some(since + s.timeout),
            _ => None,
        });
        let replies = self
            .servers
            .values()
            .filter_map(|s| Some(s.asked.as_ref()?.deadline));
        loading.chain(replies).min()
    }

    /// Every fork server's pid.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.servers.keys().copied()
    }

    /// Every fork server, for `herd status` (one herd killed and whose exit is on its way, or
    /// closed and awaited for a last reply, is not shown).
    pub fn statuses(&self) -> Vec<ForkServerStatus> {
        self.servers
            .values()
            .filter(|s| s.course != Course::TimedOut && !s.closing)
            .map(|s| ForkServerStatus {
                pid: s.pid,
                generation: s.generation,
                ready: s.course == Course::Ready,
            })
            .collect()
    }

    /// Closes the fork servers of generations after `generation` (an upgrade to them was
    /// aborted: none of their workers is wanted), but those killed whose exit is on its way:
    /// the pids and handles of those taken out, to be closed, and the slots whose starts
    /// awaited a reply from one, no longer wanted (it is closed once it has answered: a worker
    /// it forked is stopped).
    pub fn close_after(&mut self, generation: u64) -> (Vec<(u32, H)>, Vec<usize>) {
        let cancelled = self
            .servers
            .values()
            .filter(|s| s.generation > generation && !s.closing)
            .filter_map(|s| s.asked.as_ref().filter(|a| a.request.is_some()))
            .map(|a| a.slot)
            .collect();
        (self.close(|s| s.generation > generation, true), cancelled)
    }

    /// Closes the fork servers of generations before `generation`, but those killed whose exit
    /// is on its way: the pids and handles of those taken out, to be closed; one a start awaits
    /// a reply from goes once it has answered (that start is still wanted).
    pub fn close_before(&mut self, generation: u64) -> Vec<(u32, H)> {
        self.close(|s| s.generation < generation, false)
    }

    /// Closes every fork server (herd stops): the pids and handles of those taken out, to be
    /// closed; one a start awaits a reply from goes once it has answered (that start is no
    /// longer wanted: a worker it forked is stopped).
    pub fn close_all(&mut self) -> Vec<(u32, H)> {
        let mut closed = self.close(|_| true, true);
        // Those killed whose exit is on its way go too: herd waits for no loading.
        let killed: Vec<u32> = self
            .servers
            .values()
            .filter(|s| s.asked.is_none())
            .map(|s| s.pid)
            .collect();
        closed.extend(
            killed
                .into_iter()
                .filter_map(|pid| self.servers.remove(&pid).map(|s| (pid, s.handle))),
        );
        closed.sort_by_key(|&(pid, _)| pid);
        closed
    }

    fn of(&self, generation: u64) -> impl Iterator<Item = &Server<H, R>> {
        self.servers
            .values()
            .filter(move |s| s.generation == generation && !s.closing)
    }
}

#[cfg(test)]
mod tests;
