//! The human form of `herd status`: a compact table.

use std::fmt::Write;
use std::time::Duration;

use crate::supervisor::status::Status;
use crate::text::escape;

/// Renders `status` as a few lines of text; `pid_here` is herd's pid as this client sees it,
/// when it is not the one herd says (herd in another PID namespace: a container's).
pub fn render(status: &Status, pid_here: Option<u32>) -> String {
    let mut out = String::new();
    header(&mut out, status, pid_here);
    table(&mut out, process_rows(status));
    many_orphans(&mut out, status);
    recycles(&mut out, status);
    recycle_holds(&mut out, status);
    out.push('\n');
    table(&mut out, socket_rows(status));
    out
}

/// The lines above the tables: herd itself, autoscaling, lost log lines.
fn header(out: &mut String, status: &Status, pid_here: Option<u32>) {
    // Killing a pid herd shows, from another namespace, would hit another process.
    let namespace = match pid_here {
        None => String::new(),
        Some(0) => " (in another PID namespace: the pids below are that namespace's)".to_string(),
        Some(here) => format!(" ({here} here: the pids below are in its PID namespace)"),
    };
    let upgrading = status
        .upgrading_to
        .map_or(String::new(), |g| format!(", upgrading to generation {g}"));
    let stopping = match (status.stopping, status.draining_ms) {
        (true, _) => ", stopping".to_string(),
        (false, Some(left)) => format!(", draining ({} left)", short(left)),
        (false, None) => String::new(),
    };
    // Among the ready ones, as the headline says ("of them"): a paused worker that is still
    // starting, or an old one stopping, is in its own row.
    let paused = status
        .workers
        .iter()
        .filter(|w| w.paused && w.state == "ready");
    let paused = match paused.count() {
        0 => String::new(),
        n => format!(" ({n} of them paused, serving nothing)"),
    };
    let _ = writeln!(
        out,
        "herd '{}' pid {}{namespace}, up {}, generation {}{upgrading}{stopping}: {} of {} \
         workers ready{paused}",
        escape(&status.name),
        status.pid,
        short(status.uptime_ms),
        status.generation,
        status.ready,
        status.desired
    );
    if let Some(a) = &status.autoscale {
        let last = match &a.last_decision {
            None => "no decision yet".to_string(),
            Some(d) => format!(
                "last: {} workers {} ago, {}",
                d.workers,
                short(d.ago_ms),
                escape(&d.reason)
            ),
        };
        let _ = writeln!(out, "autoscaling {}..{} ({last})", a.min, a.max);
    }
    if !status.fork_servers.is_empty() {
        let servers: Vec<String> = status
            .fork_servers
            .iter()
            .map(|f| {
                let state = if f.ready { "ready" } else { "loading" };
                format!("pid {} (generation {}, {state})", f.pid, f.generation)
            })
            .collect();
        let _ = writeln!(out, "fork servers: {}", servers.join(", "));
    }
    if status.log_lines_dropped > 0 {
        let _ = writeln!(
            out,
            "herd's log: {} lines lost (its stderr was closed, full or not read)",
            status.log_lines_dropped
        );
    }
    if status.worker_output_lines_dropped > 0 {
        let _ = writeln!(
            out,
            "workers' output: {} lines lost (herd's stdout or stderr was not written as fast as \
             the workers wrote)",
            status.worker_output_lines_dropped
        );
    }
}

/// Up to this many orphans get a row each; more are counted on one line.
const ORPHAN_ROWS: usize = 5;

/// The state of a slot a scale-up added whose worker waits to start.
pub const QUEUED: &str = "queued to start";

/// The state of a slot whose start waits for its fork server.
pub const FORKING: &str = "waiting for its fork server";

/// [`QUEUED`], with the bound that holds it back when herd says it: `queued to start
/// (--max-starting 1)`.
pub fn queued_state(status: &Status) -> String {
    match status.max_starting {
        Some(n) => format!("{QUEUED} (--max-starting {n})"),
        None => QUEUED.to_string(),
    }
}

/// One row per process: workers, slots waiting for a restart or to start, attached processes,
/// exited workers' leftover process groups, and orphans (when there are few).
fn process_rows(status: &Status) -> Vec<[String; 10]> {
    let mut rows = vec![[
        "SLOT",
        "PID",
        "GEN",
        "STATE",
        "UPTIME",
        "CPU",
        "MEM",
        "RESTARTS",
        "LAST EXIT",
        "STATUS",
    ]
    .map(str::to_string)];
    let dash = || "-".to_string();
    for w in &status.workers {
        let state = match (&w.stopping_reason, &w.recycling) {
            (Some(reason), _) => format!("{} ({reason})", w.state),
            (None, Some(why)) => format!("{} (recycling: {why})", w.state),
            (None, None) if w.state == "ready" && !w.available => {
                "ready (within min-ready)".to_string()
            }
            (None, None) => w.state.clone(),
        };
        // A stopped worker serves nothing, whatever herd last saw of it.
        let state = match w.paused {
            true => format!("{state}, paused (SIGCONT resumes it, or its debugger)"),
            false => state,
        };
        let cpu = w.cpu_percent.map_or_else(dash, |p| format!("{p:.1}%"));
        let memory = w.memory_bytes.map_or_else(dash, herd_core::format_bytes);
        rows.push([
            w.slot.to_string(),
            w.pid.to_string(),
            w.generation.to_string(),
            state,
            short(w.uptime_ms),
            cpu,
            memory,
            w.restarts.to_string(),
            w.last_exit.clone().unwrap_or_else(dash),
            w.status.clone().unwrap_or_default(),
        ]);
    }
    for s in &status.waiting {
        rows.push([
            s.slot.to_string(),
            dash(),
            dash(),
            format!("restarting in {}", short(s.restart_in_ms)),
            dash(),
            dash(),
            dash(),
            s.restarts.to_string(),
            s.last_exit.clone().unwrap_or_else(dash),
            String::new(),
        ]);
    }
    for f in &status.forking {
        let mut row = [(); 10].map(|_| dash());
        (row[0], row[2]) = (f.slot.to_string(), f.generation.to_string());
        row[3] = FORKING.to_string();
        row[9] = String::new();
        rows.push(row);
    }
    for &slot in &status.queued {
        let mut row = [(); 10].map(|_| dash());
        row[0] = slot.to_string();
        row[3] = queued_state(status);
        row[9] = String::new();
        rows.push(row);
    }
    for a in &status.attached {
        rows.push([
            dash(),
            a.pid.to_string(),
            dash(),
            "attached".into(),
            short(a.uptime_ms),
            dash(),
            dash(),
            dash(),
            dash(),
            format!("sockets: {}", a.sockets.join(",")),
        ]);
    }
    for l in &status.leftovers {
        let state = match l.kill_in_ms {
            0 => "exited; its processes got SIGKILL".to_string(),
            ms => format!("exited; its processes get SIGKILL in {}", short(ms)),
        };
        rows.push([
            l.slot.to_string(),
            l.pid.to_string(),
            dash(),
            state,
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            String::new(),
        ]);
    }
    if status.orphans.len() <= ORPHAN_ROWS {
        for o in &status.orphans {
            rows.push([
                dash(),
                o.pid.to_string(),
                dash(),
                "orphan".into(),
                short(o.known_ms),
                dash(),
                dash(),
                dash(),
                dash(),
                escape(&o.name).into_owned(),
            ]);
        }
    }
    rows
}

/// Many orphans: a count, below the table.
fn many_orphans(out: &mut String, status: &Status) {
    let n = status.orphans.len();
    if n > ORPHAN_ROWS {
        let _ = writeln!(
            out,
            "{n} orphans: processes workers left behind, which herd reaps and stops when it \
             stops (`herd status --json` lists them)"
        );
    }
}

/// The recent recycles, newest last, one line each; one that failed says so.
fn recycles(out: &mut String, status: &Status) {
    for r in &status.recycles {
        let (what, whom) = match (r.aborted, r.successor) {
            (false, Some(next)) => ("recycled", format!("pid {} -> pid {next}", r.pid)),
            (false, None) => ("recycled", format!("pid {}", r.pid)),
            (true, Some(next)) => (
                "recycle failed",
                format!(
                    "pid {} kept serving: pid {next} was gone before it was available",
                    r.pid
                ),
            ),
            (true, None) => (
                "recycle failed",
                format!("pid {} kept serving: its successor did not start", r.pid),
            ),
        };
        let _ = writeln!(
            out,
            "{what} {} ago: worker {} ({whom}), {}: {}",
            short(r.ago_ms),
            r.slot,
            r.reason,
            escape(&r.why)
        );
    }
}

/// The slots held back from recycling, one line each: for how long, who waits, and why.
fn recycle_holds(out: &mut String, status: &Status) {
    for h in &status.recycle_holds {
        let waiting = h
            .pid
            .map_or(String::new(), |pid| format!(" (pid {pid} waits)"));
        let _ = writeln!(
            out,
            "recycling held back in slot {} for {}{waiting}: {}",
            h.slot,
            short(h.left_ms),
            escape(&h.why)
        );
    }
}

/// One row per listening socket, with its accept queue: waiting connections and the backlog,
/// and the backlog herd set where a worker's own `listen` replaced it.
fn socket_rows(status: &Status) -> Vec<[String; 5]> {
    let mut rows = vec![["SOCKET", "FD", "KIND", "ADDRESS", "QUEUE"].map(str::to_string)];
    for s in &status.sockets {
        let queue = match (s.queue, s.queue_limit, s.backlog_set) {
            (Some(q), Some(limit), Some(set)) if limit != set && s.slot_queues.is_empty() => {
                format!("{q}/{limit} (herd set {set})")
            }
            (Some(q), Some(limit), _) => format!("{q}/{limit}"),
            _ => "-".into(),
        };
        let queue = if s.slot_queues.is_empty() {
            queue
        } else {
            let slots: Vec<String> = s.slot_queues.iter().map(u32::to_string).collect();
            format!("{queue} (reuseport, per slot: {})", slots.join(" "))
        };
        rows.push([
            s.name.clone(),
            s.fd.to_string(),
            s.kind.to_string(),
            s.address.clone(),
            queue,
        ]);
    }
    rows
}

/// Writes `rows` as aligned columns. Every cell is escaped: a worker's `STATUS=` text may hold
/// control characters that would otherwise reach the operator's terminal. Written straight
/// into `out`, each cell's width counted once (with 4096 workers, padding through `format!`
/// and a copy of every row took about a third of the client's time).
fn table<const N: usize>(out: &mut String, rows: Vec<[String; N]>) {
    let rows: Vec<[(String, usize); N]> = rows
        .into_iter()
        .map(|row| {
            row.map(|cell| {
                let cell = match escape(&cell) {
                    std::borrow::Cow::Borrowed(_) => cell,
                    std::borrow::Cow::Owned(escaped) => escaped,
                };
                let width = cell.chars().count();
                (cell, width)
            })
        })
        .collect();
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].1).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let start = out.len();
        for (c, (cell, width)) in row.iter().enumerate() {
            out.push_str(cell);
            if c + 1 < N {
                out.extend(std::iter::repeat_n(' ', widths[c] - width + 2));
            }
        }
        let line = out[start..].trim_end().len();
        out.truncate(start + line);
        out.push('\n');
    }
}

/// `350ms`, `12s`, `5m3s`, `2h10m`, `3d4h`.
pub(super) fn short(ms: u64) -> String {
    let d = Duration::from_millis(ms);
    let s = d.as_secs();
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests;
