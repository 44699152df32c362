//! How busy the workers are, from their CPU time: the autoscaler's second signal beside the
//! accept queue, and its only one on Windows, which has no accept queue to read. Pure: the
//! caller reads each worker's CPU ticks (`platform::cpu_ticks`: /proc on Linux,
//! `GetProcessTimes` in 100 ns units on Windows) and passes `now`.

use std::collections::HashMap;
use std::time::Instant;

/// Remembers each worker's CPU ticks at the last sample.
#[derive(Debug, Default)]
pub struct CpuMeter {
    seen: HashMap<u32, (u64, Instant)>,
    /// The busyness at the last regular sample.
    last: f64,
}

impl CpuMeter {
    /// The average share of a CPU the workers used since the last sample, 0.0 to 1.0, from
    /// `readings` (each ready worker's pid and CPU ticks now) at `per_second` ticks a second.
    /// Workers seen for the first time count from the next sample; those gone are forgotten.
    pub fn sample(
        &mut self,
        readings: impl IntoIterator<Item = (u32, u64)>,
        per_second: u64,
        now: Instant,
    ) -> f64 {
        let per_second = per_second.max(1) as f64;
        let mut seen = HashMap::new();
        let (mut total, mut count) = (0.0, 0);
        for (pid, ticks) in readings {
            if let Some(&(before, at)) = self.seen.get(&pid) {
                let seconds = now.saturating_duration_since(at).as_secs_f64();
                if seconds > 0.0 {
                    total += (ticks.saturating_sub(before) as f64 / per_second / seconds).min(1.0);
                    count += 1;
                }
            }
            seen.insert(pid, (ticks, now));
        }
        self.seen = seen;
        self.last = if count == 0 {
            0.0
        } else {
            total / count as f64
        };
        self.last
    }

    /// The busyness at the last sample: an early sample (the queue grew between two regular
    /// ones) reuses it, since CPU ticks over a few milliseconds would say nothing.
    pub fn last(&self) -> f64 {
        self.last
    }
}

/// `herd_pool_saturation`: the share of the pool's maximum in use, 0.0 to 1.0. Busy workers
/// are counted as the busyness above counts them, each ready worker by its `shares` of a CPU
/// (at most one), and divided by `max`, the most workers the pool may run (none: 0.0).
pub fn saturation(shares: impl IntoIterator<Item = f64>, max: usize) -> f64 {
    if max == 0 {
        return 0.0;
    }
    let finite = shares.into_iter().filter(|s| s.is_finite());
    let busy: f64 = finite.map(|s| s.clamp(0.0, 1.0)).sum();
    (busy / max as f64).min(1.0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn busyness_is_the_average_share_of_a_cpu_since_the_last_sample() {
        let mut meter = CpuMeter::default();
        let t0 = Instant::now();
        assert_eq!(
            meter.sample([(1, 100), (2, 100)], 100, t0),
            0.0,
            "no baseline yet"
        );
        let t1 = t0 + Duration::from_secs(2);
        // Worker 1 used 1 s of CPU in 2 s, worker 2 none.
        let busy = meter.sample([(1, 200), (2, 100)], 100, t1);
        assert!((busy - 0.25).abs() < 1e-9, "{busy}");
        assert_eq!(meter.last(), busy);
    }

    #[test]
    fn windows_ticks_of_100_ns_give_the_same_busyness() {
        let mut meter = CpuMeter::default();
        let t0 = Instant::now();
        meter.sample([(8, 0), (12, 5_000_000)], 10_000_000, t0);
        let t1 = t0 + Duration::from_millis(100);
        // 80 ms and 20 ms of CPU in 100 ms.
        let busy = meter.sample([(8, 800_000), (12, 5_200_000)], 10_000_000, t1);
        assert!((busy - 0.5).abs() < 1e-9, "{busy}");
    }

    #[test]
    fn a_worker_counts_at_most_one_cpu_and_new_or_gone_workers_do_not_skew_it() {
        let mut meter = CpuMeter::default();
        let t0 = Instant::now();
        meter.sample([(1, 0)], 100, t0);
        let t1 = t0 + Duration::from_secs(1);
        // Worker 1 is multi-threaded (3 CPUs); worker 3 is new.
        assert_eq!(meter.sample([(1, 300), (3, 5000)], 100, t1), 1.0);
        let t2 = t1 + Duration::from_secs(1);
        // Worker 1 exited: only worker 3 counts, from its first reading.
        assert_eq!(meter.sample([(3, 5000)], 100, t2), 0.0);
    }

    #[test]
    fn saturation_is_busy_workers_over_the_pools_maximum() {
        // Two workers fully busy and one half busy, of at most 5.
        assert!((saturation([1.0, 1.0, 0.5], 5) - 0.5).abs() < 1e-9);
        // A multi-threaded worker counts as one busy worker.
        assert!((saturation([3.0, 0.0], 4) - 0.25).abs() < 1e-9);
        // More busy workers than the maximum (an upgrade's surge) is still 1.
        assert_eq!(saturation([1.0, 1.0, 1.0], 2), 1.0);
        assert_eq!(saturation([], 4), 0.0);
        assert_eq!(saturation([1.0], 0), 0.0);
        // Nonsense readings count as idle.
        assert_eq!(saturation([f64::NAN, -1.0, f64::INFINITY], 2), 0.0);
    }

    #[test]
    fn no_time_passed_or_ticks_that_went_back_give_no_nonsense() {
        let mut meter = CpuMeter::default();
        let t0 = Instant::now();
        meter.sample([(1, 100)], 0, t0);
        assert_eq!(meter.sample([(1, 50)], 0, t0), 0.0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(meter.sample([(1, 10)], 100, t1), 0.0);
    }
}
