//! Signals by number and by name (`TERM`, `SIGTERM`, `15`, `RTMIN+2`).

use std::fmt;

use super::imp;

/// A signal number, with the conventional names (`TERM`, `SIGTERM` and `15` all parse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal(pub(super) libc::c_int);

/// Every standard signal by its short name, in number order (1 to 31 on Linux). The first
/// name of a number is the one shown; later ones (`IOT`, `POLL`, `CLD`) are accepted aliases.
const NAMES: &[(&str, libc::c_int)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("POLL", libc::SIGPOLL),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    ("EMT", libc::SIGEMT),
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    ("INFO", libc::SIGINFO),
];

impl Signal {
    /// `SIGTERM`.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// `SIGKILL`.
    pub const KILL: Signal = Signal(libc::SIGKILL);
    /// `SIGINT`.
    pub const INT: Signal = Signal(libc::SIGINT);
    /// `SIGQUIT`.
    pub const QUIT: Signal = Signal(libc::SIGQUIT);
    /// `SIGHUP`.
    pub const HUP: Signal = Signal(libc::SIGHUP);
    /// `SIGCHLD`.
    pub const CHLD: Signal = Signal(libc::SIGCHLD);
    /// `SIGTTIN`.
    pub const TTIN: Signal = Signal(libc::SIGTTIN);
    /// `SIGTTOU`.
    pub const TTOU: Signal = Signal(libc::SIGTTOU);
    /// `SIGCONT`.
    pub const CONT: Signal = Signal(libc::SIGCONT);
    /// `SIGUSR1`.
    pub const USR1: Signal = Signal(libc::SIGUSR1);
    /// `SIGUSR2`.
    pub const USR2: Signal = Signal(libc::SIGUSR2);
    /// `SIGURG` (ignored by default, so a stray one is harmless).
    pub const URG: Signal = Signal(libc::SIGURG);

    /// Parses `TERM`, `SIGTERM`, `sigterm` or `15`, and real-time signals by number or as
    /// `RTMIN`, `RTMIN+N`, `RTMAX-N` (`SIG` prefix optional). The numbers the C library keeps
    /// for its own threads ([`Signal::is_reserved`]) are refused.
    pub fn from_name(text: &str) -> Option<Signal> {
        if let Ok(n) = text.parse::<libc::c_int>() {
            return Self::from_number(n);
        }
        let upper = text.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some(n) = real_time(bare) {
            return Self::from_number(n);
        }
        NAMES
            .iter()
            .find(|(name, _)| *name == bare)
            .map(|&(_, n)| Signal(n))
    }

    /// The signal with this number, if it is a valid signal (1 to 64 on Linux) that the C
    /// library does not keep for itself.
    pub fn from_number(n: libc::c_int) -> Option<Signal> {
        if (1..=max_signal()).contains(&n) && !Self::is_reserved(n) {
            Some(Signal(n))
        } else {
            None
        }
    }

    /// Whether `n` is one of the real-time signals the C library keeps for its own threads
    /// (glibc's 32 and 33, musl's 32 to 34: those below `SIGRTMIN()`). Sent to a process, they
    /// kill it or confuse its threading: no worker can use them.
    pub fn is_reserved(n: libc::c_int) -> bool {
        n > imp::LAST_STANDARD && n < imp::rt_min()
    }

    /// The first real-time signal a program may use (`SIGRTMIN()`), if the system has any.
    pub fn rt_min() -> Option<libc::c_int> {
        Some(imp::rt_min()).filter(|n| *n <= max_signal())
    }

    /// The signal's number.
    pub fn number(self) -> libc::c_int {
        self.0
    }

    /// The short name (`TERM`), or `None` for signals without one (real-time signals).
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .iter()
            .find(|(_, n)| *n == self.0)
            .map(|(name, _)| *name)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "SIG{name}"),
            None => write!(f, "signal {}", self.0),
        }
    }
}

/// `RTMIN`, `RTMIN+N`, `RTMAX` or `RTMAX-N` (upper case, no `SIG`) as a number, if it is one
/// and within `SIGRTMIN()..=SIGRTMAX()`.
fn real_time(name: &str) -> Option<libc::c_int> {
    let (min, max) = (imp::rt_min(), max_signal());
    if min > max {
        return None;
    }
    let offset = |rest: &str, sign: char| -> Option<libc::c_int> {
        match rest {
            "" => Some(0),
            rest => rest
                .strip_prefix(sign)
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))?
                .parse()
                .ok()
                .filter(|n: &libc::c_int| *n <= max - min),
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        offset(rest, '+').map(|n| min + n)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        offset(rest, '-').map(|n| max - n)
    } else {
        None
    }
}

/// The highest signal number this system knows.
pub(crate) fn max_signal() -> libc::c_int {
    imp::MAX_SIGNAL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signal_names() {
        assert_eq!(Signal::from_name("TERM"), Some(Signal::TERM));
        assert_eq!(Signal::from_name("sigterm"), Some(Signal::TERM));
        assert_eq!(Signal::from_name("SIGKILL"), Some(Signal::KILL));
        assert_eq!(Signal::from_name("15"), Some(Signal::TERM));
        assert_eq!(Signal::from_name("0"), None);
        assert_eq!(Signal::from_name("BOGUS"), None);
        assert_eq!(Signal::TERM.to_string(), "SIGTERM");
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_c_librarys_signals_are_refused_and_real_time_ones_parse() {
        let min = libc::SIGRTMIN();
        assert!(min > 32, "SIGRTMIN() is {min}");
        for n in 32..min {
            assert!(Signal::is_reserved(n), "{n}");
            assert_eq!(Signal::from_number(n), None, "{n}");
            assert_eq!(Signal::from_name(&n.to_string()), None, "{n}");
        }
        assert!(!Signal::is_reserved(15) && !Signal::is_reserved(min));
        assert_eq!(Signal::rt_min(), Some(min));
        assert_eq!(Signal::from_name(&min.to_string()), Some(Signal(min)));
        assert_eq!(Signal::from_name("RTMIN"), Some(Signal(min)));
        assert_eq!(Signal::from_name("sigrtmin+2"), Some(Signal(min + 2)));
        assert_eq!(Signal::from_name("RTMAX"), Some(Signal(64)));
        assert_eq!(Signal::from_name("SIGRTMAX-1"), Some(Signal(63)));
        assert_eq!(
            Signal::from_name(&format!("RTMIN+{}", 64 - min)),
            Some(Signal(64))
        );
        assert_eq!(Signal::from_name(&format!("RTMIN+{}", 65 - min)), None);
        assert_eq!(Signal::from_name(&format!("RTMAX-{}", 65 - min)), None);
        for bad in [
            "RTMIN-1", "RTMAX+1", "RTMIN+", "RTMIN+-1", "RTMIN+ 1", "RTMINX", "65",
        ] {
            assert_eq!(Signal::from_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_standard_signal_has_a_name() {
        for n in 1..=31 {
            let signal = Signal::from_number(n).unwrap();
            let name = signal
                .name()
                .unwrap_or_else(|| panic!("signal {n} has no name"));
            assert_eq!(Signal::from_name(name), Some(signal), "{name}");
            assert_eq!(Signal::from_name(&format!("SIG{name}")), Some(signal));
            assert_eq!(signal.to_string(), format!("SIG{name}"));
        }
        for (name, n) in [
            ("SEGV", libc::SIGSEGV),
            ("BUS", libc::SIGBUS),
            ("FPE", libc::SIGFPE),
            ("ILL", libc::SIGILL),
            ("SYS", libc::SIGSYS),
            ("XCPU", libc::SIGXCPU),
            ("XFSZ", libc::SIGXFSZ),
            ("URG", libc::SIGURG),
            ("TRAP", libc::SIGTRAP),
            ("VTALRM", libc::SIGVTALRM),
            ("PROF", libc::SIGPROF),
            ("IO", libc::SIGIO),
        ] {
            assert_eq!(Signal::from_name(name).map(Signal::number), Some(n));
        }
        assert_eq!(
            Signal::from_number(libc::SIGSEGV).unwrap().to_string(),
            "SIGSEGV"
        );
        assert_eq!(
            Signal::from_number(libc::SIGABRT).unwrap().name(),
            Some("ABRT")
        );
        // Real-time signals have numbers, not names.
        if cfg!(target_os = "linux") {
            assert_eq!(Signal::from_name("40").unwrap().to_string(), "signal 40");
        }
    }
}
