//! Windows, run under Wine: what a worker inherits besides its sockets, through
//! `herd::windows::spawn_with`: its stop event (and no other worker's) and shared memory; and
//! `spawn_suspended`, whose worker runs nothing before its parent's preparation. The
//! test binary re-executes itself to play each worker (`play`).
#![cfg(windows)]

use std::io::{BufRead, BufReader};
use std::os::windows::io::AsHandle;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use herd::windows::{spawn_suspended, spawn_with, Inherited};
use herd_sys::job::Job;
use herd_sys::windows::event::Event;
use herd_sys::windows::{handle, process, shm};

const ROLE: &str = "HERD_TEST_ROLE";
const PATIENCE: Duration = Duration::from_secs(60);

/// This test binary as a worker playing `role`, its stdout piped.
fn worker(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "play",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(ROLE, role)
        .stdout(Stdio::piped());
    command
}

/// The lines a worker writes, read on a thread.
struct Lines(mpsc::Receiver<String>);

impl Lines {
    fn of(child: &mut Child) -> Lines {
        let (send, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Lines(lines)
    }

    /// The next line that starts with `prefix` (the test harness writes lines of its own);
    /// panics when none comes in time.
    fn next(&self, prefix: &str) -> String {
        loop {
            let line = self
                .0
                .recv_timeout(PATIENCE)
                .expect("a line from the worker");
            if line.starts_with(prefix) {
                return line;
            }
        }
    }
}

/// Acts the role named in the environment; does nothing in a normal test run.
#[test]
fn play() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "stop" => stop_worker(),
        "shm" => shm_worker(),
        "bad_env" => bad_env_worker(),
        "launcher" => launcher(),
        "sleeper" => std::thread::sleep(PATIENCE * 2),
        other => panic!("no role {other}"),
    }
    std::process::exit(0);
}

/// Says which stop event it was given, whether it can take another worker's, then waits for
/// its own to be set.
fn stop_worker() {
    println!("value={}", std::env::var("HERD_STOP_EVENT").unwrap());
    let other: u64 = std::env::var("OTHER_EVENT").unwrap().parse().unwrap();
    println!(
        "other: {:?}",
        handle::claim(other).map_err(|e| e.raw_os_error())
    );
    let stop = herd::stop_requested().unwrap().expect("a stop request");
    assert!(std::env::var_os("HERD_STOP_EVENT").is_none(), "taken out");
    println!("requested: {}", stop.is_requested());
    println!("stopped: {}", stop.wait_timeout(PATIENCE));
}

/// Adds 1000 to the shared counter, one at a time.
fn shm_worker() {
    let memory = herd::shm("counter").unwrap();
    let counter = memory.atomic_u64(0).unwrap();
    for _ in 0..1000 {
        counter.fetch_add(1, Ordering::SeqCst);
    }
    println!("again: {}", herd::shm("counter").unwrap_err());
    println!("len: {}", memory.len());
}

/// Reports what the library says of a bad environment.
fn bad_env_worker() {
    println!("stop: {}", herd::stop_requested().unwrap_err());
    println!("shm: {}", herd::shm("counter").unwrap_err());
    match herd::notify::ready() {
        Err(e) => println!("notify: {e}"),
        Ok(sent) => println!("notify: sent {sent}"),
    }
}

/// Starts a sleeper before anything else (as a `cmd /c` launcher starts its program), says
/// its pid, and sleeps.
fn launcher() {
    let mut sleeper = Command::new(std::env::current_exe().unwrap());
    sleeper
        .args(["--exact", "play", "--test-threads=1", "--quiet"])
        .env(ROLE, "sleeper")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut sleeper = sleeper.spawn().unwrap();
    println!("sleeper {}", sleeper.id());
    let _ = sleeper.wait();
}

#[test]
fn a_worker_spawned_suspended_runs_nothing_before_its_parent_lets_it() {
    let job = Job::kill_on_close().unwrap();
    let mut launcher = spawn_suspended(&mut worker("launcher"), 0, &[], &[], |child| {
        // A launcher running already would start its sleeper meanwhile, outside the job.
        std::thread::sleep(Duration::from_millis(500));
        job.assign(child.as_handle())
    })
    .unwrap();
    let lines = Lines::of(&mut launcher);
    let line = lines.next("sleeper ");
    let pid: u32 = line["sleeper ".len()..].parse().unwrap();
    let sleeper = process::Process::open(pid).expect("the sleeper runs");
    drop(job);
    let ended = process::wait(&sleeper, Some(PATIENCE)).unwrap();
    if !ended {
        let _ = process::terminate(&sleeper, 1);
    }
    assert!(ended, "the launcher's sleeper escaped the job");
    let _ = launcher.wait();
}

#[test]
fn a_worker_whose_preparation_fails_is_ended_and_the_error_returned() {
    let mut pid = 0;
    let e = spawn_suspended(&mut worker("launcher"), 0, &[], &[], |child| {
        pid = child.id();
        Err(std::io::Error::other("refused"))
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "refused");
    // Its pid no longer names a live process: it was ended and reaped.
    assert!(process::Process::open(pid)
        .map_or(true, |p| process::wait(&p, Some(Duration::ZERO)).unwrap()));
}

#[test]
fn a_worker_inherits_its_own_stop_event_at_the_same_value_and_no_other() {
    // Events first, so that the two below have values above any a new process opens at
    // start: a value a worker did not inherit is then no handle of its own either.
    let _filler: Vec<Event> = (0..64).map(|_| Event::new().unwrap()).collect();
    let (first, second) = (Event::new().unwrap(), Event::new().unwrap());
    let value = |event: &Event| handle::value(event.as_handle());
    let mut workers = Vec::new();
    for (own, other) in [(&first, &second), (&second, &first)] {
        let mut command = worker("stop");
        command.env("OTHER_EVENT", value(other).to_string());
        let inherit = [Inherited::StopEvent(own.as_handle())];
        let mut child = spawn_with(&mut command, &[], &inherit).unwrap();
        assert!(!handle::is_inheritable(own.as_handle()).unwrap());
        let lines = Lines::of(&mut child);
        assert_eq!(lines.next("value="), format!("value={}", value(own)));
        assert_eq!(
            lines.next("other: "),
            "other: Err(Some(6))",
            "ERROR_INVALID_HANDLE"
        );
        assert_eq!(lines.next("requested: "), "requested: false");
        workers.push((child, lines));
    }
    first.set().unwrap();
    assert_eq!(workers[0].1.next("stopped: "), "stopped: true");
    assert_eq!(workers[0].0.wait().unwrap().code(), Some(0));
    assert!(
        herd_sys::windows::process::exit_code(&workers[1].0)
            .unwrap()
            .is_none(),
        "the second worker did not see the first one's request"
    );
    second.set().unwrap();
    assert_eq!(workers[1].1.next("stopped: "), "stopped: true");
    assert_eq!(workers[1].0.wait().unwrap().code(), Some(0));
}

#[test]
fn workers_share_the_inherited_memory_and_the_parent_sees_their_sum() {
    let memory = shm::create(4096).unwrap();
    let inherit = [Inherited::SharedMemory("counter", memory.as_handle())];
    let mut workers: Vec<Child> = (0..2)
        .map(|_| spawn_with(&mut worker("shm"), &[], &inherit).unwrap())
        .collect();
    for child in &mut workers {
        let lines = Lines::of(child);
        let again = lines.next("again: ");
        assert!(again.contains("\"counter\" was already taken"), "{again}");
        assert_eq!(lines.next("len: "), "len: 4096");
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
    let view = shm::Mapping::new(memory.as_handle()).unwrap();
    assert_eq!(view.atomic_u64(0).unwrap().load(Ordering::SeqCst), 2000);
    assert!(!handle::is_inheritable(memory.as_handle()).unwrap());
}

#[test]
fn a_bad_environment_is_one_clear_error() {
    let file = std::env::temp_dir().join(format!("herd-notify-{}", std::process::id()));
    std::fs::write(&file, "keep").unwrap();
    let mut child = worker("bad_env")
        .env("HERD_STOP_EVENT", "0x44")
        .env("HERD_SHM", "counter")
        .env("NOTIFY_SOCKET", &file)
        .spawn()
        .unwrap();
    let lines = Lines::of(&mut child);
    assert_eq!(
        lines.next("stop: "),
        "stop: HERD_STOP_EVENT=\"0x44\" is not a handle value (herd sets it: do not set it \
         yourself)"
    );
    assert_eq!(
        lines.next("shm: "),
        "shm: HERD_SHM: \"counter\" is not NAME=HANDLE (herd sets it: do not set it yourself)"
    );
    let notify = lines.next("notify: ");
    assert!(
        notify.ends_with(r"on Windows NOTIFY_SOCKET must be a named pipe (\\.\pipe\NAME)"),
        "{notify}"
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "keep",
        "a file is not written"
    );
    let _ = std::fs::remove_file(&file);

    // A number that is no handle this worker inherited.
    let mut child = worker("bad_env")
        .env("HERD_STOP_EVENT", "1048572")
        .env("HERD_SHM", "counter=1048572")
        .spawn()
        .unwrap();
    let lines = Lines::of(&mut child);
    let stop = lines.next("stop: ");
    assert!(
        stop.starts_with("stop: HERD_STOP_EVENT=1048572 is not a handle this process inherited"),
        "{stop}"
    );
    let shm = lines.next("shm: ");
    assert_eq!(
        lines.next("notify: "),
        "notify: sent false",
        "no NOTIFY_SOCKET"
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(
        shm.starts_with("shm: HERD_SHM: counter=1048572 is not a handle this process inherited"),
        "{shm}"
    );
}

#[test]
fn what_cannot_be_named_in_the_environment_is_refused_before_spawning() {
    let (a, b) = (Event::new().unwrap(), Event::new().unwrap());
    let memory = shm::create(4096).unwrap();
    let refused = |inherit: &[Inherited<'_>]| {
        let e = spawn_with(&mut Command::new("no-such-program"), &[], inherit).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
        e.to_string()
    };
    let two = [
        Inherited::StopEvent(a.as_handle()),
        Inherited::StopEvent(b.as_handle()),
    ];
    assert!(refused(&two).contains("one stop event"));
    let bad_name = [Inherited::SharedMemory("a,b", memory.as_handle())];
    assert!(refused(&bad_name).contains("cannot name shared memory"));
    let twice = [
        Inherited::SharedMemory("c", memory.as_handle()),
        Inherited::SharedMemory("c", memory.as_handle()),
    ];
    assert!(refused(&twice).contains("given twice"));
}
