//! CPU load a test owns: a busy loop per core, killed when dropped.

/// Processes that keep every core busy while they live (each for 120 s at most, should the
/// test die before it kills them).
pub struct CpuHogs(Vec<std::process::Child>);

impl CpuHogs {
    /// A busy loop per core herd may run on: beside them a `SCHED_IDLE` task gets no CPU.
    pub fn start() -> CpuHogs {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hog = || {
            let busy =
                "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end: pass";
            std::process::Command::new("/usr/bin/python3")
                .args(["-c", busy])
                .spawn()
                .unwrap()
        };
        CpuHogs((0..cores).map(|_| hog()).collect())
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}
