//! The terminal's input, read on a thread of its own, and whether the terminal hung up.
//! crossterm's reader never returns once its terminal has hung up (a closed window, a lost
//! ssh session: every read then gives 0 bytes, and it reads again, at 100% CPU,
//! crossterm-rs/crossterm#793), so the view never waits in it: it waits for this thread's
//! events with a timeout, and looks whether the terminal is gone, as it looks for a signal.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use crossterm::event::{self, Event};

/// Events from the terminal.
pub struct Input {
    events: Receiver<std::io::Result<Event>>,
    terminal: Terminal,
}

/// What waiting for input gave.
pub enum Got {
    /// An event (a key, a resize).
    Event(Event),
    /// Nothing within the wait.
    Nothing,
    /// The terminal hung up: the view ends as a SIGHUP ends it.
    HungUp,
}

impl Input {
    /// Starts reading the terminal.
    pub fn start() -> std::io::Result<Input> {
        let terminal = Terminal::open()?;
        let (send, events) = mpsc::channel();
        std::thread::Builder::new()
            .name("herd-top-keys".to_string())
            .spawn(move || loop {
                let event = event::read();
                let failed = event.is_err();
                if send.send(event).is_err() || failed {
                    return;
                }
            })?;
        Ok(Input { events, terminal })
    }

    /// Whether the terminal hung up.
    pub fn hung_up(&self) -> bool {
        self.terminal.hung_up()
    }

    /// The next event, waiting at most `wait`.
    pub fn next(&self, wait: Duration) -> std::io::Result<Got> {
        if self.terminal.hung_up() {
            return Ok(Got::HungUp);
        }
        match self.events.recv_timeout(wait) {
            Ok(Ok(event)) => Ok(Got::Event(event)),
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Ok(Got::Nothing),
            Err(RecvTimeoutError::Disconnected) => {
                Err(std::io::Error::other("the terminal's reader stopped"))
            }
        }
    }
}

/// The terminal crossterm reads: standard input when it is one, else `/dev/tty`.
#[cfg(unix)]
struct Terminal(Option<std::fs::File>);

#[cfg(unix)]
impl Terminal {
    fn open() -> std::io::Result<Terminal> {
        use std::io::IsTerminal;
        match std::io::stdin().is_terminal() {
            true => Ok(Terminal(None)),
            false => std::fs::File::open("/dev/tty").map(|tty| Terminal(Some(tty))),
        }
    }

    fn hung_up(&self) -> bool {
        use std::os::fd::AsFd;
        let stdin = std::io::stdin();
        let fd = match &self.0 {
            Some(tty) => tty.as_fd(),
            None => stdin.as_fd(),
        };
        herd_sys::fd::hung_up(fd).unwrap_or(false)
    }
}

/// On Windows, closing the console ends the process: nothing to look at.
#[cfg(windows)]
struct Terminal;

#[cfg(windows)]
impl Terminal {
    fn open() -> std::io::Result<Terminal> {
        Ok(Terminal)
    }

    fn hung_up(&self) -> bool {
        false
    }
}
