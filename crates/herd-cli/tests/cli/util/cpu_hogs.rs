//! CPU load a test owns: a busy loop per core, killed when dropped. One test at a time
//! saturates the machine (the tests of this binary share a process): a test that needs the
//! machine not saturated by another test's hogs before its own takes [`CpuHogs::quiet`] first.

use std::sync::{Mutex, MutexGuard};

/// Held while a test's hogs run, or while a test needs none of another's.
static SATURATION: Mutex<()> = Mutex::new(());

/// No other test's hogs run while this lives.
pub struct Quiet {
    _held: MutexGuard<'static, ()>,
}

/// Processes that keep every core busy while they live (each for 120 s at most, should the
/// test die before it kills them).
pub struct CpuHogs {
    hogs: Vec<std::process::Child>,
    _quiet: Quiet,
}

impl CpuHogs {
    /// Waits until no other test's hogs run, and keeps them from starting.
    pub fn quiet() -> Quiet {
        Quiet {
            _held: SATURATION.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// A busy loop per core herd may run on: beside them a `SCHED_IDLE` task gets no CPU.
    pub fn start() -> CpuHogs {
        CpuHogs::quiet().saturate()
    }
}

impl Quiet {
    /// Starts the hogs, still keeping any other test's from starting.
    pub fn saturate(self) -> CpuHogs {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hog = || {
            let busy =
                "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end: pass";
            std::process::Command::new("/usr/bin/python3")
                .args(["-c", busy])
                .spawn()
                .unwrap()
        };
        CpuHogs {
            hogs: (0..cores).map(|_| hog()).collect(),
            _quiet: self,
        }
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        for hog in &mut self.hogs {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}
