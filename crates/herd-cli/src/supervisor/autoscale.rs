//! Autoscaling from the accept queue, as a pure state machine: samples in (connections waiting
//! in the shared queue, how busy the workers are), decisions out (a new number of workers,
//! with its reason). The driver samples every [`SAMPLE_EVERY`].
//!
//! The policy, with hysteresis:
//! - **Up, fast**: when connections have been waiting for [`UP_AFTER`] samples in a row, or
//!   at least [`QUEUE_PER_WORKER`] of them in a single sample (a long queue is not noise), add
//!   workers at once: one per [`QUEUE_PER_WORKER`] waiting connections (at least one). Or when
//!   the workers have been nearly all busy ([`BUSY_HIGH`]) for as long, add one. Then wait
//!   [`UP_COOLDOWN`] for the new workers to take load before adding more.
//! - **Down, slow**: when the queue has been empty and the workers mostly idle (below
//!   [`BUSY_LOW`]) for [`DOWN_AFTER`], remove one worker; then wait [`DOWN_COOLDOWN`].
//! - **Never** outside MIN..MAX, and never up while some wanted slot has no ready worker
//!   (starting, or crashing and backing off): a crash is not a reason to scale.
//! - **By hand** (`herd scale +N`, SIGTTIN, `herd top`'s `+`), within the bounds: the
//!   measurement starts over at the new size ([`Autoscaler::scaled_by_hand`]), so a pool grown
//!   by hand stays so for a whole idle period, not until the next sample.
//!
//! Windows has no way to read a listening socket's accept queue, so there (as for UDP and Unix
//! sockets on Linux) every sample has `queued: 0` and busyness alone decides: up by one worker
//! after [`UP_AFTER`] samples at [`BUSY_HIGH`] or more, down as above; no early sample ever
//! comes. Busyness is the workers' CPU time, from `GetProcessTimes` there.

use std::time::{Duration, Instant};

use herd_core::{Ago, Ahead, Epoch};

/// How often the driver samples.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How often the driver looks at the accept queue alone, between samples, to take an early
/// sample when [`QUEUE_PER_WORKER`] connections wait (one `getsockopt` per TCP socket).
pub const QUEUE_CHECK_EVERY: Duration = Duration::from_millis(20);
/// Consecutive samples with waiting connections (or busy workers) before scaling up.
pub const UP_AFTER: u32 = 2;
/// Waiting connections per worker added.
pub const QUEUE_PER_WORKER: u32 = 4;
/// Average busyness above which workers count as saturated.
pub const BUSY_HIGH: f64 = 0.9;
/// Average busyness below which workers count as idle.
pub const BUSY_LOW: f64 = 0.3;
/// Pause after scaling up.
pub const UP_COOLDOWN: Duration = Duration::from_millis(500);
/// How long the pool must be idle before one worker goes.
pub const DOWN_AFTER: Duration = Duration::from_secs(5);
/// Pause after scaling down.
pub const DOWN_COOLDOWN: Duration = Duration::from_secs(2);
/// Whether herd can read the accept queues here: Windows has no such figure.
const QUEUE_READABLE: bool = cfg!(unix);

/// One sample of the pool's load.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Connections waiting in the accept queues (TCP sockets; UDP and Unix sockets have none
    /// to read, so for them only busyness counts).
    pub queued: u32,
    /// Average share of the last interval the workers spent on the CPU, 0.0 to 1.0.
    pub busy: f64,
    /// Whether every wanted slot has a ready worker.
    pub settled: bool,
}

/// A decision: the new number of workers and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// How many workers to run.
    pub workers: usize,
    /// Why, for the log and `herd status`.
    pub reason: String,
}

/// The autoscaler's state.
#[derive(Clone, Debug)]
pub struct Autoscaler {
    /// The fewest workers.
    pub min: usize,
    /// The most workers.
    pub max: usize,
    pressure: u32,
    idle_since: Option<Instant>,
    quiet_until: Option<Instant>,
    /// The last decision, and when it was made.
    pub last: Option<(Instant, Decision)>,
}

impl Autoscaler {
    /// An autoscaler keeping the pool within `min..=max`.
    pub fn new(min: usize, max: usize) -> Autoscaler {
        Autoscaler {
            min,
            max: max.max(min),
            pressure: 0,
            idle_since: None,
            quiet_until: None,
            last: None,
        }
    }

    /// Takes a sample of a pool of `current` workers; returns a decision when the pool should
    /// change.
    pub fn sample(&mut self, current: usize, sample: Sample, now: Instant) -> Option<Decision> {
        let bounded = current.clamp(self.min, self.max);
        if bounded != current {
            return self.decide(
                bounded,
                format!("bounds are {}..{}", self.min, self.max),
                now,
                None,
            );
        }
        let saturated = sample.queued > 0 || sample.busy >= BUSY_HIGH;
        let idle = sample.queued == 0 && sample.busy < BUSY_LOW;
        self.pressure = if saturated { self.pressure + 1 } else { 0 };
        self.idle_since = if idle {
            self.idle_since.or(Some(now))
        } else {
            None
        };
        if self.quiet_until.is_some_and(|t| now < t) {
            return None;
        }
        let urgent = sample.queued >= QUEUE_PER_WORKER;
        if (self.pressure >= UP_AFTER || urgent) && sample.settled && current < self.max {
            let add = if sample.queued > 0 {
                (sample.queued / QUEUE_PER_WORKER).max(1) as usize
            } else {
                1
            };
            let workers = (current + add).min(self.max);
            let reason = if sample.queued > 0 {
                format!("{} connections waiting in the accept queue", sample.queued)
            } else {
                format!("workers {:.0}% busy", sample.busy * 100.0)
            };
            self.pressure = 0;
            return self.decide(workers, reason, now, Some(UP_COOLDOWN));
        }
        if let Some(since) = self.idle_since {
            if now.duration_since(since) >= DOWN_AFTER && current > self.min {
                let reason = idle_reason(sample.busy, QUEUE_READABLE);
                self.idle_since = Some(now);
                return self.decide(current - 1, reason, now, Some(DOWN_COOLDOWN));
            }
        }
        None
    }

    /// The pool was scaled by hand: what was measured at the old size says nothing of the new
    /// one. The idle period and the pressure start over, so that the next decision needs a
    /// whole idle period (or [`UP_AFTER`] busy samples) at the new size; a cooldown running
    /// goes on.
    pub fn scaled_by_hand(&mut self) {
        self.pressure = 0;
        self.idle_since = None;
    }

    fn decide(
        &mut self,
        workers: usize,
        reason: String,
        now: Instant,
        cooldown: Option<Duration>,
    ) -> Option<Decision> {
        self.quiet_until = cooldown.map(|c| now + c);
        let decision = Decision { workers, reason };
        self.last = Some((now, decision.clone()));
        Some(decision)
    }
}

/// Why an idle pool shrinks: the workers' busyness, and the empty queue where one is read.
fn idle_reason(busy: f64, queue_readable: bool) -> String {
    let queue = if queue_readable {
        "queue empty and "
    } else {
        ""
    };
    format!(
        "{queue}workers {:.0}% busy for {}s",
        busy * 100.0,
        DOWN_AFTER.as_secs()
    )
}

/// Autoscaling's state across a re-exec, its times relative to the moment it was saved.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    /// The bounds, or `None` when autoscaling is off.
    pub bounds: Option<(usize, usize)>,
    /// The last decision: when, the number of workers, and why.
    pub last: Option<(Ago, usize, String)>,
    /// Samples in a row that asked for more workers.
    #[serde(default)]
    pub pressure: u32,
    /// Since when the pool had been idle.
    #[serde(default)]
    pub idle_ms: Option<Ago>,
    /// When the cooldown after the last decision ends.
    #[serde(default)]
    pub quiet_ms: Option<Ahead>,
}

impl Saved {
    /// Records `autoscaler` (`None`: off) at `epoch`. Every field is named, so that one added
    /// to [`Autoscaler`] later does not compile until it is carried over too.
    pub fn save(autoscaler: Option<&Autoscaler>, epoch: Epoch) -> Saved {
        let Some(Autoscaler {
            min,
            max,
            pressure,
            idle_since,
            quiet_until,
            last,
        }) = autoscaler
        else {
            return Saved {
                bounds: None,
                last: None,
                pressure: 0,
                idle_ms: None,
                quiet_ms: None,
            };
        };
        Saved {
            bounds: Some((*min, *max)),
            last: last
                .as_ref()
                .map(|(at, d)| (epoch.ago(*at), d.workers, d.reason.clone())),
            pressure: *pressure,
            idle_ms: idle_since.map(|at| epoch.ago(at)),
            quiet_ms: quiet_until.map(|until| epoch.ahead(until)),
        }
    }

    /// The autoscaler as it was, continued at `epoch`, or `None` when it was off.
    pub fn restore(self, epoch: Epoch) -> Option<Autoscaler> {
        let (min, max) = self.bounds?;
        let mut autoscaler = Autoscaler::new(min, max);
        autoscaler.last = self
            .last
            .map(|(at, workers, reason)| (epoch.past(at), Decision { workers, reason }));
        autoscaler.pressure = self.pressure;
        autoscaler.idle_since = self.idle_ms.map(|at| epoch.past(at));
        autoscaler.quiet_until = self.quiet_ms.map(|until| epoch.future(until));
        Some(autoscaler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_autoscaler_keeps_its_cooldown_pressure_and_idle_time() {
        let t0 = Instant::now();
        let mut a = Autoscaler::new(1, 8);
        a.pressure = 2;
        a.idle_since = Some(t0);
        a.quiet_until = Some(t0 + Duration::from_secs(30));
        let decision = Decision {
            workers: 3,
            reason: "busy".into(),
        };
        a.last = Some((t0, decision.clone()));
        let saved = Saved::save(Some(&a), Epoch::at(t0 + Duration::from_secs(10)));
        let json = serde_json::to_string(&saved).unwrap();
        // The new image's clock: only the times relative to the save matter.
        let t2 = t0 + Duration::from_secs(100);
        let b = serde_json::from_str::<Saved>(&json)
            .unwrap()
            .restore(Epoch::at(t2))
            .unwrap();
        assert_eq!((b.min, b.max, b.pressure), (1, 8, 2));
        assert_eq!(b.quiet_until, Some(t2 + Duration::from_secs(20)));
        assert_eq!(b.idle_since, Some(t2 - Duration::from_secs(10)));
        assert_eq!(b.last, Some((t2 - Duration::from_secs(10), decision)));
    }

    #[test]
    fn an_older_herds_saved_autoscaler_still_reads() {
        let saved: Saved = serde_json::from_str(r#"{"bounds":[2,4],"last":null}"#).unwrap();
        let a = saved.restore(Epoch::at(Instant::now())).unwrap();
        assert_eq!((a.min, a.max, a.pressure, a.quiet_until), (2, 4, 0, None));
        let off: Saved = serde_json::from_str(r#"{"bounds":null,"last":null}"#).unwrap();
        assert!(off.restore(Epoch::at(Instant::now())).is_none());
    }

    fn queued(n: u32) -> Sample {
        Sample {
            queued: n,
            busy: 0.5,
            settled: true,
        }
    }

    const IDLE: Sample = Sample {
        queued: 0,
        busy: 0.05,
        settled: true,
    };

    #[test]
    fn a_growing_queue_scales_up_fast_within_bounds() {
        let t0 = Instant::now();
        let mut a = Autoscaler::new(1, 8);
        assert_eq!(
            a.sample(1, queued(3), t0),
            None,
            "one sample is not a trend"
        );
        let d = a.sample(1, queued(3), t0 + SAMPLE_EVERY).unwrap();
        assert_eq!(d.workers, 2);
        assert!(d.reason.contains("3 connections waiting"), "{}", d.reason);
        // Cooling down: no decision for a while, however long the queue.
        assert_eq!(a.sample(2, queued(40), t0 + 2 * SAMPLE_EVERY), None);
        assert_eq!(a.sample(2, queued(40), t0 + 3 * SAMPLE_EVERY), None);
        // The queue stayed long through the cooldown: right after it, several are added at
        // once, but never beyond max.
        let later = t0 + UP_COOLDOWN + 4 * SAMPLE_EVERY;
        let d = a.sample(2, queued(40), later).unwrap();
        assert_eq!(d.workers, 8);
        assert_eq!(
            a.sample(8, queued(40), later + 10 * UP_COOLDOWN),
            None,
            "at max"
        );
    }

    #[test]
    fn a_long_queue_scales_up_on_the_first_sample() {
        let t0 = Instant::now();
        let mut a = Autoscaler::new(1, 8);
        let d = a.sample(1, queued(8), t0).unwrap();
        assert_eq!(d.workers, 3);
        assert!(d.reason.contains("8 connections waiting"), "{}", d.reason);
        // Still not while a wanted worker is not ready yet.
        let mut b = Autoscaler::new(1, 8);
        let unsettled = Sample {
            settled: false,
            ..queued(8)
        };
        assert_eq!(b.sample(1, unsettled, t0), None);
    }

    #[test]
    fn busy_workers_scale_up_too() {
        let t0 = Instant::now();
        let mut a = Autoscaler::new(1, 4);
        let busy = Sample {
            queued: 0,
            busy: 0.95,
            settled: true,
        };
        a.sample(2, busy, t0);
        let d = a.sample(2, busy, t0 + SAMPLE_EVERY).unwrap();
        assert_eq!(d.workers, 3);
        assert!(d.reason.contains("95% busy"), "{}", d.reason);
    }

    #[test]
    fn idle_pools_shrink_slowly_one_at_a_time() {
        let t0 = Instant::now();
        let mut a = Autoscaler::new(2, 8);
        assert_eq!(a.sample(5, IDLE, t0), None);
        assert_eq!(
            a.sample(5, IDLE, t0 + DOWN_AFTER - SAMPLE_EVERY),
            None,
            "not idle long enough"
        );
        let d = a.sample(5, IDLE, t0 + DOWN_AFTER).unwrap();
        assert_eq!(d.workers, 4);
        // Cooldown, then another full idle period before the next step.
        assert_eq!(a.sample(4, IDLE, t0 + DOWN_AFTER + DOWN_COOLDOWN), None);
        let d = a.sample(4, IDLE, t0 + 2 * DOWN_AFTER).unwrap();
        assert_eq!(d.workers, 3);
        // Any load resets the idle clock: hysteresis.
        assert_eq!(
            a.sample(3, queued(0), t0 + 2 * DOWN_AFTER + DOWN_COOLDOWN),
            None
        );
        assert_eq!(a.sample(3, IDLE, t0 + 3 * DOWN_AFTER), None);
        // Never below min.
        let mut t = t0 + 4 * DOWN_AFTER;
        let mut workers = 3;
        for _ in 0..10 {
            if let Some(d) = a.sample(workers, IDLE, t) {
                workers = d.workers;
            }
            t += DOWN_AFTER;
        }
        assert_eq!(workers, 2);
    }

    #[test]
    fn without_a_queue_to_read_busyness_alone_scales_up_and_down() {
        // Windows: every sample says nothing is queued.
        let busy = |busy| Sample {
            queued: 0,
            busy,
            settled: true,
        };
        let t0 = Instant::now();
        let mut a = Autoscaler::new(1, 4);
        assert_eq!(
            a.sample(1, busy(0.95), t0),
            None,
            "one sample is not a trend"
        );
        let d = a.sample(1, busy(0.95), t0 + SAMPLE_EVERY).unwrap();
        assert_eq!(d.workers, 2, "one worker at a time: {d:?}");
        // Busy but not saturated: neither up nor down.
        let t1 = t0 + UP_COOLDOWN + SAMPLE_EVERY;
        for i in 0..100 {
            assert_eq!(a.sample(2, busy(0.6), t1 + i * SAMPLE_EVERY), None);
        }
        let t2 = t1 + 100 * SAMPLE_EVERY;
        assert_eq!(a.sample(2, busy(0.1), t2), None);
        let d = a.sample(2, busy(0.1), t2 + DOWN_AFTER).unwrap();
        assert_eq!(d.workers, 1, "{d:?}");
        assert!(
            d.reason.ends_with("workers 10% busy for 5s"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn the_idle_reason_names_the_queue_only_where_it_is_read() {
        assert_eq!(
            idle_reason(0.05, true),
            "queue empty and workers 5% busy for 5s"
        );
        assert_eq!(idle_reason(0.05, false), "workers 5% busy for 5s");
        assert_eq!(QUEUE_READABLE, !cfg!(windows));
    }

    /// `herd scale +1` on an idle pool was undone by the next sample (its idle period had
    /// begun before, at the old size): the new worker was stopped 8 ms after it started.
    #[test]
    fn a_scale_by_hand_is_measured_from_scratch() {
        let t0 = Instant::now();
        let idle = IDLE;
        let mut a = Autoscaler::new(1, 3);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(a.sample(1, idle, at(0)), None);
        assert_eq!(a.sample(1, idle, at(6_000)), None, "at the minimum");
        a.scaled_by_hand();
        assert_eq!(
            a.sample(2, idle, at(6_100)),
            None,
            "idle since before the scale"
        );
        assert_eq!(a.sample(2, idle, at(10_900)), None);
        let down = a.sample(2, idle, at(11_200)).map(|d| d.workers);
        assert_eq!(down, Some(1), "a whole idle period at the new size");
        // Pressure measured before a scale by hand counts no more.
        let mut a = Autoscaler::new(1, 3);
        let busy = Sample { busy: 1.0, ..idle };
        assert_eq!(a.sample(1, busy, at(0)), None);
        a.scaled_by_hand();
        assert_eq!(a.sample(1, busy, at(100)), None);
        assert_eq!(a.sample(1, busy, at(200)).map(|d| d.workers), Some(2));
    }

    #[test]
    fn crashes_do_not_scale() {
        let t0 = Instant::now();
        let mut a = Autoscaler::new(1, 8);
        let crashing = Sample {
            queued: 10,
            busy: 0.0,
            settled: false,
        };
        for i in 0..20 {
            assert_eq!(a.sample(2, crashing, t0 + i * SAMPLE_EVERY), None);
        }
    }

    #[test]
    fn new_bounds_are_applied_at_once() {
        let t0 = Instant::now();
        let mut a = Autoscaler::new(4, 6);
        assert_eq!(a.sample(2, IDLE, t0).unwrap().workers, 4);
        let mut a = Autoscaler::new(1, 3);
        let d = a.sample(8, IDLE, t0).unwrap();
        assert_eq!((d.workers, d.reason.as_str()), (3, "bounds are 1..3"));
    }
}
