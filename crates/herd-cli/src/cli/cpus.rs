//! The CPUs herd may run on: `-w`'s default, and what `--max-starting auto` divides.

/// `--max-starting auto` lets one worker start per this many CPUs (at least one): a start-up
/// takes about a CPU, and three in four stay with the serving workers.
pub const CPUS_PER_START: usize = 4;

/// The number of CPUs herd may run on (its affinity and cgroup quota included): the workers
/// without `--workers`, and what `--max-starting auto` divides.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `--max-starting auto` on `cpus` CPUs: one start-up per [`CPUS_PER_START`], at least one
/// (one on a machine of up to 7 CPUs).
pub fn auto_max_starting(cpus: usize) -> u32 {
    u32::try_from(cpus / CPUS_PER_START)
        .unwrap_or(u32::MAX)
        .max(1)
}
