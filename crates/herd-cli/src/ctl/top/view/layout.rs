//! How the screen's lines are shared: the workers' table first, then the sockets, then the
//! recent events; which workers show when not all fit; lines of text wrapped at spaces.

use super::super::model::{Row, EVENTS};

/// How many lines each box takes.
#[derive(Debug, PartialEq, Eq)]
pub struct Heights {
    /// The workers' table.
    pub table: u16,
    /// The sockets' accept queues.
    pub sockets: u16,
    /// The recent events.
    pub events: u16,
}

/// How the `rest` of the lines (after the title, autoscaling and keys) is shared, each box with
/// its two borders: the workers' table first, a line for each of its `rows` and its header;
/// then the sockets, a line for each of `sockets`; then the recent events, up to [`EVENTS`].
/// A box that has no room for one line is left out; the table takes what is left.
pub fn heights(rest: u16, rows: usize, sockets: usize) -> Heights {
    let boxed = |lines: usize| u16::try_from(lines).unwrap_or(u16::MAX).saturating_add(2);
    let table = boxed(rows).saturating_add(1).min(rest);
    let sockets = boxed(sockets).min(rest - table);
    let sockets = if sockets < 3 { 0 } else { sockets };
    let events = (EVENTS as u16 + 2).min(rest - table - sockets);
    let events = if events < 3 { 0 } else { events };
    Heights {
        table: rest - sockets - events,
        sockets,
        events,
    }
}

/// The `rows` shown in `room` lines and those left out, each in their order. When some must be
/// left out, the last line says so ([`more`]), and rows in trouble (not ready, restarting,
/// paused...) are kept before healthy ones: they are what the view is looked at for.
pub fn shown(rows: &[Row], room: usize) -> (Vec<&Row>, Vec<&Row>) {
    if rows.len() <= room {
        return (rows.iter().collect(), Vec::new());
    }
    // Troubled (healthy: false) first; a stable sort keeps each kind in its order.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].healthy);
    let mut keep = vec![false; rows.len()];
    for &i in order.iter().take(room.saturating_sub(1)) {
        keep[i] = true;
    }
    let pick = |want: bool| {
        let kept = rows.iter().zip(&keep).filter(move |&(_, &k)| k == want);
        kept.map(|(row, _)| row).collect()
    };
    (pick(true), pick(false))
}

/// The line that counts the rows `left_out`.
pub fn more(left_out: &[&Row]) -> String {
    let n = left_out.len();
    match left_out.iter().filter(|r| !r.healthy).count() {
        0 => format!("+{n} more (not shown, all ready)"),
        troubled => format!("+{n} more (not shown, {troubled} of them not ready or paused)"),
    }
}

/// The most lines one event wraps to in the recent events' box.
const EVENT_LINES: usize = 3;

/// The recent `events` (newest first) in at most `room` lines of `width` characters: each
/// wrapped at spaces (at most [`EVENT_LINES`] lines), the newest first, as many as fit; on a
/// narrow terminal an event's end (its pid, its fix) still shows.
pub fn event_lines(events: &[String], width: usize, room: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for event in events {
        let left = room.saturating_sub(lines.len());
        if left == 0 {
            break;
        }
        lines.extend(wrap(event, width, left.min(EVENT_LINES)));
    }
    lines
}

/// `text` in lines of at most `width` characters: whole when it fits, else broken at spaces (a
/// word longer than a line is cut), at most `most` lines, the last ending with an ellipsis when
/// text is left.
pub fn wrap(text: &str, width: usize, most: usize) -> Vec<String> {
    let width = width.max(1);
    if text.chars().count() <= width {
        return vec![text.to_string()];
    }
    let mut lines = break_at_spaces(text, width);
    if lines.len() > most {
        lines.truncate(most);
        if let Some(last) = lines.last_mut() {
            let kept: String = last.chars().take(width - 1).collect();
            *last = kept + "…";
        }
    }
    lines
}

/// `text`'s words in lines of at most `width` (one or more) characters, a word longer than a
/// line cut.
fn break_at_spaces(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() <= width {
            line.push(' ');
            line.push_str(word);
            continue;
        }
        if len > 0 {
            lines.push(std::mem::take(&mut line));
        }
        let mut chars: Vec<char> = word.chars().collect();
        while chars.len() > width {
            lines.push(chars.drain(..width).collect());
        }
        line = chars.into_iter().collect();
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests;
