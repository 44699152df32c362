//! Which columns of the workers' table fit a width, and how wide each is. A number is never
//! cut: columns are left out whole, the least useful first, and only the STATE text, the one
//! column that is not a number, is shortened (with an ellipsis) when it must be.

use super::super::model::{Model, Row};

/// The STATE column, which always shows and takes what width is left.
pub const STATE: usize = 3;

/// The columns that may be left out, in the order they are: MEM, CPU, GEN, RESTARTS, UPTIME.
/// SLOT, PID and STATE always show.
const LEFT_OUT_FIRST: [usize; 5] = [5, 4, 2, 6, 7];

/// The STATE width that no column is left out to exceed: "restarting in 5s" whole.
const STATE_ROOM: usize = 16;

/// The columns shown in `width` characters and the spaces between them.
#[derive(Debug, PartialEq, Eq)]
pub struct Columns {
    /// Each column shown, in the table's order, with its width.
    pub shown: Vec<(usize, usize)>,
    /// The spaces between two columns: two when every column fits whole with them, else one.
    pub spacing: usize,
}

/// The columns of `rows` that fit in `width` characters.
pub fn fit(rows: &[&Row], width: usize) -> Columns {
    let natural = natural_widths(rows);
    let wide = fit_spaced(&natural, width, 2);
    let whole = |c: &(usize, usize)| c.1 == natural[c.0];
    match wide.shown.len() == natural.len() && wide.shown.iter().all(whole) {
        true => wide,
        false => fit_spaced(&natural, width, 1),
    }
}

/// The columns of `natural` widths that fit in `width` characters, `spacing` apart.
fn fit_spaced(natural: &[usize], width: usize, spacing: usize) -> Columns {
    let state_wants = natural[STATE].min(STATE_ROOM);
    let others = |shown: &[usize]| {
        let spaces = shown.len().saturating_sub(1) * spacing;
        let widths = shown.iter().filter(|&&c| c != STATE).map(|&c| natural[c]);
        widths.sum::<usize>() + spaces
    };
    let mut shown: Vec<usize> = (0..natural.len()).collect();
    for column in LEFT_OUT_FIRST {
        if others(&shown) + state_wants <= width {
            break;
        }
        shown.retain(|&c| c != column);
    }
    let state = width.saturating_sub(others(&shown)).min(natural[STATE]);
    let width_of = |c: usize| if c == STATE { state } else { natural[c] };
    Columns {
        shown: shown.into_iter().map(|c| (c, width_of(c))).collect(),
        spacing,
    }
}

/// Each column's widest text, its name included.
fn natural_widths(rows: &[&Row]) -> Vec<usize> {
    (0..Model::HEADER.len())
        .map(|c| {
            let cells = rows.iter().map(|row| row.cells[c].chars().count());
            cells.fold(Model::HEADER[c].len(), usize::max)
        })
        .collect()
}

/// `text` in at most `width` characters: whole, or cut with an ellipsis as its last one.
pub fn ellipsis(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    match width {
        0 => String::new(),
        _ => kept + "…",
    }
}

#[cfg(test)]
mod tests;
