//! The signals that end `herd top` from outside (`kill`, `timeout`, a closed terminal): each is
//! noted by a handler that only sets a flag, the view ends as `q` ends it, the terminal is
//! given back, and then the signal takes its default action, so that the shell sees the process
//! ended by it. Without this, SIGTERM or SIGHUP would end the process at once and leave the
//! terminal in raw mode on the alternate screen, the cursor hidden.

#[cfg(unix)]
mod imp {
    use herd_sys::process::{catch, caught, default_disposition, signal_process, Signal};

    /// The signals that end the view.
    const ENDING: [Signal; 3] = [Signal::TERM, Signal::HUP, Signal::INT];

    /// Catches the ending signals: from now on they only set a flag ([`arrived`]).
    pub fn watch() -> std::io::Result<()> {
        ENDING.iter().try_for_each(|&signal| catch(signal))
    }

    /// The ending signal that arrived since [`watch`], if any.
    pub fn arrived() -> Option<Signal> {
        ENDING.iter().copied().find(|&signal| caught(signal))
    }

    /// Ends the process by `signal`'s default action, as it would have ended without
    /// [`watch`]; exits 128 + its number if the signal does not end it.
    pub fn die_of(signal: Signal) -> ! {
        let _ = default_disposition(signal);
        let _ = signal_process(herd_sys::process::current_pid(), signal);
        std::process::exit(128 + signal.number())
    }

    /// Ends the process as the SIGHUP of a terminal that hung up does.
    pub fn die_of_hang_up() -> ! {
        die_of(Signal::HUP)
    }
}

#[cfg(windows)]
mod imp {
    /// No signal to catch: closing the console ends the process and its console with it.
    pub enum Signal {}

    /// Nothing to catch.
    pub fn watch() -> std::io::Result<()> {
        Ok(())
    }

    /// Never one.
    pub fn arrived() -> Option<Signal> {
        None
    }

    /// Never called: no signal arrives.
    pub fn die_of(signal: Signal) -> ! {
        match signal {}
    }

    /// No terminal is found hung up here: not called.
    pub fn die_of_hang_up() -> ! {
        std::process::exit(1)
    }
}

pub use imp::*;
