use std::sync::Mutex;

use super::*;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn one_round_at_a_time_and_a_slow_one_is_said_once() {
    let t0 = Instant::now();
    let mut round = Round::default();
    assert_eq!(round.ask(t0), Ask::Now);
    let waiting = |secs: u64, warn| Ask::Waiting {
        waited: Duration::from_secs(secs),
        warn,
    };
    // The answer never comes: every later tick waits, and one warns.
    assert_eq!(round.ask(t0 + SEC), waiting(1, false));
    assert_eq!(round.ask(t0 + SLOW_AFTER), waiting(10, true));
    assert_eq!(round.ask(t0 + 11 * SEC), waiting(11, false));
    assert_eq!(round.ask(t0 + 60 * SEC), waiting(60, false));
    assert_eq!(round.answered(t0 + 61 * SEC), Some(61 * SEC));
    // The next round starts afresh.
    assert_eq!(round.ask(t0 + 62 * SEC), Ask::Now);
    assert_eq!(
        round.answered(t0 + 63 * SEC),
        None,
        "not slow: nothing to say"
    );
    assert_eq!(round.answered(t0 + 64 * SEC), None, "no round out");
}

fn figures(pid: u32) -> Figures {
    Figures {
        pid,
        memory: Some(u64::from(pid) << 20),
        cpu_ticks: Some(u64::from(pid)),
        stopped: false,
        at: Instant::now(),
    }
}

/// Waits for `rx`'s next message, at most 10 s.
fn next<T>(rx: &std_mpsc::Receiver<T>) -> T {
    rx.recv_timeout(10 * SEC).expect("nothing within 10 s")
}

#[test]
fn a_stuck_read_never_blocks_the_asker() {
    // Reading worker 2 blocks until the test lets it go.
    let (entered_tx, entered) = std_mpsc::channel();
    let (release, released) = std_mpsc::channel::<()>();
    let released = Mutex::new(released);
    let mut sampler = Sampler::with_reader(move |pid, _| {
        if pid == 2 {
            entered_tx.send(()).unwrap();
            let _ = released.lock().unwrap().recv();
        }
        figures(pid)
    })
    .unwrap();
    let t0 = Instant::now();
    assert_eq!(
        sampler.ask(vec![1, 2, 3], MemoryKind::Pss, Vec::new(), t0),
        None
    );
    next(&entered);
    // The loop's next ticks return at once; the stuck worker is named once.
    assert_eq!(
        sampler.ask(vec![1, 2, 3], MemoryKind::Pss, Vec::new(), t0 + SEC),
        None
    );
    let slow = Slow {
        waited: SLOW_AFTER,
        pid: Some(2),
    };
    let at = t0 + SLOW_AFTER;
    assert_eq!(
        sampler.ask(vec![9], MemoryKind::Pss, Vec::new(), at),
        Some(slow)
    );
    assert_eq!(
        sampler.ask(vec![9], MemoryKind::Pss, Vec::new(), at + SEC),
        None
    );
    assert!(sampler.results.try_recv().is_err(), "nothing came back yet");
    release.send(()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let samples = runtime
        .block_on(async { tokio::time::timeout(10 * SEC, sampler.recv()).await })
        .expect("the round within 10 s")
        .expect("a round");
    let pids: Vec<u32> = samples.figures.iter().map(|f| f.pid).collect();
    assert_eq!(pids, [1, 2, 3], "the round asked for, not the skipped ones");
    assert!(samples.late.is_some(), "it was slow");
    assert_eq!(
        samples.figures[1],
        Figures {
            at: samples.figures[1].at,
            ..figures(2)
        }
    );
    // The next round is asked for, and comes back on time.
    assert_eq!(
        sampler.ask(vec![4], MemoryKind::Rss, Vec::new(), Instant::now()),
        None
    );
    let samples = runtime.block_on(sampler.recv()).expect("a round");
    assert_eq!((samples.figures.len(), samples.late), (1, None));
}

#[test]
fn reads_this_process() {
    let mut sampler = Sampler::start().unwrap();
    let me = std::process::id();
    assert_eq!(
        sampler.ask(vec![me], MemoryKind::Rss, Vec::new(), Instant::now()),
        None
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let samples = runtime.block_on(sampler.recv()).expect("a round");
    let mine = &samples.figures[0];
    assert_eq!(mine.pid, me);
    if cfg!(any(target_os = "linux", windows)) {
        assert!(mine.memory.unwrap_or(0) > 0, "{mine:?}");
        assert!(mine.cpu_ticks.is_some(), "{mine:?}");
    }
}
