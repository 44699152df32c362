//! How many lines herd writes about orphans. A worker that leaves a daemon behind at every
//! request would otherwise write two lines per request into herd's log (adopted, exited): at
//! most [`BURST`] lines about orphans coming and going per [`WINDOW`], then one line, once the
//! window is over (or herd is done with its orphans), counts those held back by kind. A line
//! about an orphan that holds herd's sockets is never held back. At herd's stop, each step
//! (signalled, killed, given up) names at most [`NAMED_AT_STOP`] orphans, one line each, and
//! one more line counts the rest.

use std::time::{Duration, Instant};

/// Lines about orphans written per [`WINDOW`] before they are held back.
pub const BURST: u32 = 10;
/// The window [`BURST`] counts over.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Orphans named one line each by a step of herd's stop.
pub const NAMED_AT_STOP: usize = 10;

/// What a line about an orphan says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Adopted,
    Exited,
    Raised,
}

/// Lines held back, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub adopted: u32,
    pub exited: u32,
    pub raised: u32,
}

impl Held {
    /// All of them.
    pub fn total(&self) -> u32 {
        self.adopted
            .saturating_add(self.exited)
            .saturating_add(self.raised)
    }
}

/// The lines written and held back in the current window.
#[derive(Debug, Default)]
pub struct Lines {
    /// When the window began; `None` between windows.
    start: Option<Instant>,
    written: u32,
    held: Held,
}

impl Lines {
    /// Whether a line of `kind` may be written at `now`, and what the window before it held
    /// back if it just ended (to be said first).
    pub fn allow(&mut self, kind: Kind, now: Instant) -> (bool, Option<Held>) {
        let ended = self.end_window(now);
        self.start.get_or_insert(now);
        if self.written < BURST {
            self.written += 1;
            return (true, ended);
        }
        let count = match kind {
            Kind::Adopted => &mut self.held.adopted,
            Kind::Exited => &mut self.held.exited,
            Kind::Raised => &mut self.held.raised,
        };
        *count = count.saturating_add(1);
        (false, ended)
    }

    /// Ends the window if it is over; what it held back, if any, to be said in one line.
    pub fn end_window(&mut self, now: Instant) -> Option<Held> {
        let over = self
            .start
            .is_some_and(|start| now.saturating_duration_since(start) >= WINDOW);
        if !over {
            return None;
        }
        self.start = None;
        self.written = 0;
        self.take()
    }

    /// What was held back so far, if any (herd is done with its orphans, or re-executes: said
    /// before it goes); the window goes on.
    pub fn take(&mut self) -> Option<Held> {
        let held = std::mem::take(&mut self.held);
        (held.total() > 0).then_some(held)
    }
}

/// Calls `say` for each of the first [`NAMED_AT_STOP`] of `items` and `act` for every one;
/// returns how many were not named.
pub fn name_a_few<T>(
    items: impl IntoIterator<Item = T>,
    mut say: impl FnMut(&T),
    mut act: impl FnMut(T),
) -> usize {
    let mut unnamed = 0;
    for (i, item) in items.into_iter().enumerate() {
        if i < NAMED_AT_STOP {
            say(&item);
        } else {
            unnamed += 1;
        }
        act(item);
    }
    unnamed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_written_then_held_back_by_kind_and_counted_once_the_window_ends() {
        let t0 = Instant::now();
        let mut lines = Lines::default();
        for _ in 0..BURST {
            assert_eq!(lines.allow(Kind::Adopted, t0), (true, None));
        }
        assert_eq!(lines.allow(Kind::Adopted, t0), (false, None));
        assert_eq!(lines.allow(Kind::Exited, t0 + WINDOW / 2), (false, None));
        assert_eq!(lines.allow(Kind::Exited, t0 + WINDOW / 2), (false, None));
        assert_eq!(lines.allow(Kind::Raised, t0 + WINDOW / 2), (false, None));
        assert_eq!(lines.end_window(t0 + WINDOW / 2), None, "not over yet");
        let held = Held {
            adopted: 1,
            exited: 2,
            raised: 1,
        };
        assert_eq!(lines.end_window(t0 + WINDOW), Some(held));
        assert_eq!(lines.end_window(t0 + WINDOW * 3), None, "counted once");
        assert_eq!(lines.allow(Kind::Exited, t0 + WINDOW * 3), (true, None));
    }

    #[test]
    fn a_window_that_held_nothing_back_says_nothing() {
        let t0 = Instant::now();
        let mut lines = Lines::default();
        assert_eq!(lines.allow(Kind::Adopted, t0), (true, None));
        assert_eq!(lines.end_window(t0 + WINDOW), None);
        assert_eq!(lines.take(), None);
    }

    #[test]
    fn the_first_line_after_a_window_brings_what_it_held_back() {
        let t0 = Instant::now();
        let mut lines = Lines::default();
        for _ in 0..=BURST {
            lines.allow(Kind::Exited, t0);
        }
        let held = Held {
            exited: 1,
            ..Held::default()
        };
        assert_eq!(lines.allow(Kind::Exited, t0 + WINDOW), (true, Some(held)));
        assert_eq!(lines.take(), None, "said once");
    }

    #[test]
    fn what_was_held_back_is_taken_at_the_end_and_the_window_goes_on() {
        let t0 = Instant::now();
        let mut lines = Lines::default();
        for _ in 0..BURST + 3 {
            lines.allow(Kind::Adopted, t0);
        }
        assert_eq!(lines.take().map(|h| h.adopted), Some(3));
        assert_eq!(
            lines.allow(Kind::Adopted, t0),
            (false, None),
            "the same window"
        );
    }

    #[test]
    fn a_few_are_named_and_every_one_is_acted_on() {
        let (mut named, mut acted) = (Vec::new(), 0);
        let unnamed = name_a_few(0..25, |i| named.push(*i), |_| acted += 1);
        assert_eq!((named.len(), acted, unnamed), (NAMED_AT_STOP, 25, 15));
        assert_eq!(name_a_few(0..3, |_| {}, |_| {}), 0);
    }
}
