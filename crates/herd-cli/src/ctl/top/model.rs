//! What `herd top` shows, from the statuses it samples: rows of text and each socket's
//! accept-queue history. Pure: statuses in, text and numbers out.

use std::collections::{BTreeMap, VecDeque};

use super::super::status::degraded;
use super::super::table::short;
use crate::control::results::Status;
use crate::text::escape;

/// How many samples of each socket's accept queue are kept: a minute at one a second.
pub const HISTORY: usize = 60;

/// How many of herd's recent events are shown.
pub const EVENTS: usize = 8;

/// The last status and what came before it.
#[derive(Default)]
pub struct Model {
    status: Option<Status>,
    /// Each socket's accept queue, oldest first (0 where the platform has no figure).
    queues: BTreeMap<String, VecDeque<u64>>,
    /// A line for the user: an answer to a key, or a question.
    pub note: Option<String>,
}

/// One row of the workers' table: a worker, or a slot waiting to restart or to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The text under each of [`Model::HEADER`].
    pub cells: [String; 8],
    /// Ready, not paused and not stopping: a row that may be left out when space runs short.
    pub healthy: bool,
}

/// One socket: its line of text and its queue's last minute.
#[derive(Debug, PartialEq, Eq)]
pub struct SocketLine {
    /// Name, address and the queue now.
    pub text: String,
    /// The queue, oldest first.
    pub history: Vec<u64>,
}

impl Model {
    /// The number of workers herd wants, as of the last sample.
    pub fn desired(&self) -> Option<usize> {
        self.status.as_ref().map(|s| s.desired)
    }

    /// herd now wants `workers` (a scale's answer), until the next sample says.
    pub fn set_desired(&mut self, workers: usize) {
        if let Some(status) = self.status.as_mut() {
            status.desired = workers;
        }
    }

    /// Takes a new sample.
    pub fn update(&mut self, status: Status) {
        for socket in &status.sockets {
            let history = self.queues.entry(socket.name.clone()).or_default();
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(u64::from(socket.queue.unwrap_or(0)));
        }
        let names: Vec<&str> = status.sockets.iter().map(|s| s.name.as_str()).collect();
        self.queues.retain(|name, _| names.contains(&name.as_str()));
        self.status = Some(status);
    }

    /// herd, its generation and how many workers are ready; whether the pool is degraded.
    pub fn title(&self) -> (String, bool) {
        let Some(s) = &self.status else {
            return ("waiting for herd's status".to_string(), false);
        };
        let upgrading = s
            .upgrading_to
            .map_or(String::new(), |g| format!(", upgrading to {g}"));
        // A stopping herd is said to be once, before its counts, and not called degraded; too
        // few ready is said by the counts ("6 of 8 ready (degraded: 6 of 8 workers ready)"
        // did not fit 80 columns).
        // A paused worker serves nothing: counted apart from the ready ones.
        let paused = (s.workers.iter())
            .filter(|w| w.state == "ready" && w.paused)
            .count();
        let serving = s.ready.saturating_sub(paused);
        let (stopping, health) = match (s.stopping, degraded(s)) {
            (true, _) => (", stopping", String::new()),
            // In its --drain-delay: still serving, about to stop.
            (false, _) if s.draining_ms.is_some() => (", draining", String::new()),
            (false, Some(_)) if serving < s.desired => ("", " (degraded)".to_string()),
            (false, Some(why)) => ("", format!(" ({why})")),
            (false, None) => ("", " (healthy)".to_string()),
        };
        let paused = match paused {
            0 => String::new(),
            n => format!(", {n} paused"),
        };
        let line = format!(
            "herd '{}' pid {}, up {}, generation {}{upgrading}{stopping}: {serving} of {} \
             ready{paused}{health}",
            escape(&s.name),
            s.pid,
            short(s.uptime_ms),
            s.generation,
            s.desired,
        );
        (line, degraded(s).is_some())
    }

    /// The column names of [`Model::workers`].
    pub const HEADER: [&'static str; 8] = [
        "SLOT", "PID", "GEN", "STATE", "CPU", "MEM", "RESTARTS", "UPTIME",
    ];

    /// One row per worker, then one per slot waiting to restart or to start.
    pub fn workers(&self) -> Vec<Row> {
        let Some(s) = &self.status else {
            return Vec::new();
        };
        let dash = || "-".to_string();
        let mut rows: Vec<Row> = s
            .workers
            .iter()
            .map(|w| {
                let state = match (&w.stopping_reason, &w.recycling) {
                    (Some(reason), _) => format!("{} ({})", w.state, escape(reason)),
                    (None, Some(why)) => format!("{} (recycling: {})", w.state, escape(why)),
                    (None, None) => w.state.clone(),
                };
                // A stopped worker serves nothing, whatever herd last saw of it.
                let state = match w.paused {
                    true => format!("{state}, paused"),
                    false => state,
                };
                let healthy = w.state == "ready" && !w.paused && w.stopping_reason.is_none();
                let cells = [
                    w.slot.to_string(),
                    w.pid.to_string(),
                    w.generation.to_string(),
                    state,
                    w.cpu_percent.map_or_else(dash, |p| format!("{p:.1}%")),
                    w.memory_bytes.map_or_else(dash, herd_core::format_bytes),
                    w.restarts.to_string(),
                    short(w.uptime_ms),
                ];
                Row { cells, healthy }
            })
            .collect();
        let troubled = |cells| Row {
            cells,
            healthy: false,
        };
        rows.extend(s.waiting.iter().map(|w| {
            troubled([
                w.slot.to_string(),
                dash(),
                dash(),
                format!("restarting in {}", short(w.restart_in_ms)),
                dash(),
                dash(),
                w.restarts.to_string(),
                dash(),
            ])
        }));
        rows.extend(s.forking.iter().map(|f| {
            let mut cells = [(); 8].map(|_| dash());
            (cells[0], cells[2]) = (f.slot.to_string(), f.generation.to_string());
            cells[3] = crate::ctl::table::FORKING.to_string();
            troubled(cells)
        }));
        rows.extend(s.queued.iter().map(|slot| {
            let mut cells = [(); 8].map(|_| dash());
            cells[0] = slot.to_string();
            cells[3] = crate::ctl::table::queued_state(s);
            troubled(cells)
        }));
        rows
    }

    /// One line per socket, with its accept queue's history.
    pub fn sockets(&self) -> Vec<SocketLine> {
        let Some(s) = &self.status else {
            return Vec::new();
        };
        s.sockets
            .iter()
            .map(|socket| {
                let queue = match (socket.queue, socket.queue_limit) {
                    (Some(q), Some(limit)) => format!("queue {q}/{limit}"),
                    (Some(q), None) => format!("queue {q}"),
                    (None, _) => "queue -".to_string(),
                };
                let history = self.queues.get(&socket.name);
                SocketLine {
                    text: format!(
                        "{} {} {queue}",
                        escape(&socket.name),
                        escape(&socket.address)
                    ),
                    history: history.map_or_else(Vec::new, |h| h.iter().copied().collect()),
                }
            })
            .collect()
    }

    /// Autoscaling's bounds and last decision, when it is on.
    pub fn autoscale(&self) -> Option<String> {
        let a = self.status.as_ref()?.autoscale.as_ref()?;
        let last = match &a.last_decision {
            None => "no decision yet".to_string(),
            Some(d) => format!(
                "{} workers {} ago: {}",
                d.workers,
                short(d.ago_ms),
                escape(&d.reason)
            ),
        };
        Some(format!(
            "autoscaling {}..{}, last decision: {last}",
            a.min, a.max
        ))
    }

    /// herd's last [`EVENTS`] events, newest first.
    pub fn events(&self) -> Vec<String> {
        let Some(s) = &self.status else {
            return Vec::new();
        };
        s.events
            .iter()
            .rev()
            .take(EVENTS)
            .map(|e| {
                format!(
                    "{:>6} ago  {:<5} {}",
                    short(e.ago_ms),
                    e.level,
                    escape(&e.message)
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
