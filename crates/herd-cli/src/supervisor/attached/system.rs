//! The real [`Processes`]: the pidfd, or else the pid checked against the start time.

use herd_sys::process::{self, Signal};

use super::{boot_ticks, Attached, Processes};

/// The real system: the pidfd, or else the pid checked against the start time.
pub struct System;

impl System {
    fn send(attached: &Attached, signal: Signal) -> std::io::Result<()> {
        // The group's id is the process's pid, in use while the process lives (or is a
        // zombie): checked just before.
        if attached.group && !attached.exited() {
            return process::signal_group(attached.pid, signal);
        }
        match &attached.pidfd {
            Some(pidfd) => pidfd.signal(signal),
            None => process::signal_process(attached.pid, signal),
        }
    }
}

impl Processes for System {
    fn exited(&mut self, attached: &Attached) -> bool {
        attached.exited()
    }

    fn now_ticks(&mut self) -> u64 {
        boot_ticks()
    }

    fn signal(&mut self, attached: &Attached, signal: Signal) -> std::io::Result<()> {
        process::send_stop(signal, |signal| System::send(attached, signal))
    }
}
