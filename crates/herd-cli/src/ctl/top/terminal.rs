//! The terminal while `herd top` runs: raw mode and the alternate screen, restored however it
//! ends (a key, herd gone, an error, a panic).

use std::io::Stdout;
use std::mem::ManuallyDrop;
use std::sync::Once;

use crossterm::{cursor, execute, terminal};
use ratatui::backend::{Backend, ClearType, CrosstermBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use ratatui::Terminal;

/// The screen `herd top` draws on.
pub type Screen = Terminal<Clamped<CrosstermBackend<Stdout>>>;

/// The most columns and rows `herd top` draws: ratatui keeps two buffers of a cell (some 40
/// bytes) per column and row, so a terminal that says it is 65535x65535 (`stty rows 65535 cols
/// 65535`, a broken emulator) would have it allocate hundreds of GB and abort, leaving the
/// terminal raw. Beyond these, `herd top` draws in the top-left corner.
pub const MAX_COLUMNS: u16 = 1024;
/// See [`MAX_COLUMNS`]: more rows than a pool of 4096 workers needs would not help either.
pub const MAX_ROWS: u16 = 512;

/// A backend whose size is at most [`MAX_COLUMNS`] x [`MAX_ROWS`]; everything else is the inner
/// backend's.
pub struct Clamped<B>(pub B);

/// What a terminal that says it has no columns or no rows gets: a pseudo-terminal no one set a
/// size for (`TIOCSWINSZ`) says 0x0, and `herd top` drew nothing on it.
pub const UNKNOWN_SIZE: Size = Size::new(80, 24);

/// `size` within [`MAX_COLUMNS`] x [`MAX_ROWS`]; [`UNKNOWN_SIZE`]'s width or height for a 0.
fn clamp(size: Size) -> Size {
    let or = |n: u16, unknown: u16| if n == 0 { unknown } else { n };
    Size::new(
        or(size.width, UNKNOWN_SIZE.width).min(MAX_COLUMNS),
        or(size.height, UNKNOWN_SIZE.height).min(MAX_ROWS),
    )
}

impl<B: Backend> Backend for Clamped<B> {
    type Error = B::Error;

    fn draw<'a, I>(&mut self, content: I) -> Result<(), Self::Error>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        self.0.draw(content)
    }

    fn append_lines(&mut self, n: u16) -> Result<(), Self::Error> {
        self.0.append_lines(n)
    }

    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        self.0.hide_cursor()
    }

    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.0.show_cursor()
    }

    fn get_cursor_position(&mut self) -> Result<Position, Self::Error> {
        self.0.get_cursor_position()
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> Result<(), Self::Error> {
        self.0.set_cursor_position(position)
    }

    fn clear(&mut self) -> Result<(), Self::Error> {
        self.0.clear()
    }

    fn clear_region(&mut self, clear_type: ClearType) -> Result<(), Self::Error> {
        self.0.clear_region(clear_type)
    }

    fn size(&self) -> Result<Size, Self::Error> {
        self.0.size().map(clamp)
    }

    fn window_size(&mut self) -> Result<WindowSize, Self::Error> {
        let size = self.0.window_size()?;
        Ok(WindowSize {
            columns_rows: clamp(size.columns_rows),
            pixels: size.pixels,
        })
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush()
    }
}

/// The terminal set up for drawing; dropping it gives the terminal back as it was.
pub struct Guard {
    /// Where to draw. Never dropped: ratatui's drop shows the cursor and, when that fails (a
    /// terminal that hung up), prints to stderr with `eprintln!`, which panics on a dead
    /// stderr; [`restore`] shows the cursor instead, ignoring errors.
    pub screen: ManuallyDrop<Screen>,
}

impl Guard {
    /// Puts the terminal in raw mode on the alternate screen, cursor hidden.
    pub fn enter() -> std::io::Result<Guard> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        terminal::enable_raw_mode()?;
        let screen = execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .and_then(|()| Terminal::new(Clamped(CrosstermBackend::new(std::io::stdout()))));
        match screen {
            Ok(screen) => Ok(Guard {
                screen: ManuallyDrop::new(screen),
            }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor; harmless when they are not
/// on.
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
}

#[cfg(test)]
mod tests;
