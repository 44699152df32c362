//! The terminal while `herd top` runs: raw mode and the alternate screen, restored however it
//! ends (a key, herd gone, an error, a panic).

use std::io::Stdout;
use std::mem::ManuallyDrop;
use std::sync::Once;

use crossterm::{cursor, execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

/// The screen `herd top` draws on.
pub type Screen = Terminal<CrosstermBackend<Stdout>>;

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
        .and_then(|()| Terminal::new(CrosstermBackend::new(std::io::stdout())));
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
