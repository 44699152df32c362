//! systemd's fd store: herd hands its sockets and `--shm` memory to systemd, and adopts them
//! at the next start, so that a herd killed with SIGKILL refuses no connection and loses no
//! count. The test plays systemd: it takes the fds from the notify socket, holds them while
//! no herd runs, and passes them back with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::os::unix::io::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::util::*;

/// Sets LISTEN_PID to its own pid and execs the rest of its arguments, with the fds the test
/// placed at 3, 4, ...: the part of systemd that passes the store back.
const PASS_BACK: &str = r#"
import os, sys
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[1], sys.argv[1:])
"#;

/// What herd stored, by FDNAME, read from the notify socket until READY=1; the messages in
/// the order they came.
pub(crate) fn receive_store(notify: &UnixDatagram) -> (BTreeMap<String, OwnedFd>, Vec<String>) {
    let mut stored = BTreeMap::new();
    let mut heard = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let got = herd_sys::fdpass::recv_with_fds(notify.as_fd(), &mut buf)
            .unwrap_or_else(|e| panic!("no READY=1 from herd ({e}); heard {heard:?}"));
        let message = String::from_utf8_lossy(&buf[..got.len]).into_owned();
        let name = message.lines().find_map(|l| l.strip_prefix("FDNAME="));
        if let (true, Some(name)) = (message.contains("FDSTORE=1"), name) {
            assert_eq!(got.fds.len(), 1, "{message}");
            stored.insert(name.to_string(), got.fds.into_iter().next().unwrap());
        }
        let ready = message.contains("READY=1");
        heard.push(message);
        if ready {
            return (stored, heard);
        }
    }
}

/// The hit number in counter.py's answer.
pub(crate) fn hit(body: &str) -> u64 {
    let n = body.strip_prefix("hit ").and_then(|b| b.split(' ').next());
    n.and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a hit: {body:?}"))
}

/// The `--bind` and `--shm` both starts share.
pub(crate) const WEB_AND_COUNTER: [&str; 4] = ["-b", "web=127.0.0.1:0", "--shm", "counter=4096"];

/// The herd command line both starts share, with `made` (its `--bind` and `--shm`).
fn herd_run(cmd: &mut Command, notify: &std::path::Path, made: &[&str]) {
    cmd.args([
        "--log-format",
        "json",
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
    ])
    .args(made)
    .args(["--", "python3", &example("counter.py")])
    .env("NOTIFY_SOCKET", notify)
    .env("FDSTORE", "8");
}

#[test]
fn a_killed_herd_restarted_from_the_store_refuses_nothing_and_keeps_its_memory() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut first = Herd::start_with(|_| {
        let mut cmd = Command::new(HERD);
        herd_run(&mut cmd, &notify_path, &WEB_AND_COUNTER);
        cmd
    });
    let (stored, heard) = receive_store(&notify);
    let names: Vec<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(names, ["herd.counter", "herd.web"], "{heard:?}");
    first.wait_for_event(
        "fdstore_stored",
        &[("names", "herd.web,herd.counter".into())],
    );
    let addr = first.address("web");
    let mut count = 0;
    for _ in 0..5 {
        count = hit(&get(&addr, "/").unwrap());
    }
    assert_eq!(count, 5);

    let connecting = Connecting::start(&addr);
    let workers: Vec<u32> = first.started(2).iter().map(|(_, pid)| *pid).collect();
    first.signal(libc::SIGKILL);
    first.wait_exit();
    wait_gone(&workers);

    // No herd runs: these wait in the stored socket's queue.
    let waiting: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).expect("connect while no herd runs");
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            std::io::Write::write_all(&mut stream, b"GET / HTTP/1.0\r\n\r\n").unwrap();
            stream
        })
        .collect();

    let second = restart(&stored, &notify_path);
    let mut hits: Vec<u64> = waiting
        .into_iter()
        .map(|mut stream| {
            let mut response = String::new();
            std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
            hit(response.split_once("\r\n\r\n").unwrap().1)
        })
        .collect();
    assert_eq!(connecting.finish(), 0, "connections were refused");
    assert_eq!(second.address("web"), addr);
    second.wait_for_event("fdstore_restored", &[("names", "counter,web".into())]);
    // The count goes on from the first herd's (the load's connections count too), in the
    // very memory the store holds.
    hits.sort();
    hits.dedup();
    assert_eq!(hits.len(), 10, "{hits:?}");
    assert!(hits[0] > count, "{hits:?} after {count}");
    counts_in(&stored["herd.counter"], &addr);
}

/// Checks that the herd at `addr` counts its hits in `memory` (the fd the store holds).
fn counts_in(memory: &OwnedFd, addr: &str) {
    let memory = std::fs::File::from(memory.try_clone().unwrap());
    // Once the load's last queued connections are served, a hit is the stored memory's count.
    wait_until("a hit counted in the stored memory", || {
        let last = hit(&get(addr, "/").unwrap());
        let mut counter = [0u8; 8];
        std::os::unix::fs::FileExt::read_exact_at(&memory, &mut counter, 0).unwrap();
        match u64::from_ne_bytes(counter) {
            stored if stored == last => Ok(()),
            stored => Err(format!("hit {last}, the stored memory says {stored}")),
        }
    });
}

/// A client that connects (and hangs up) over and over, counting the connections refused.
/// Requests in flight when the workers die may be cut off: that is SIGKILL's doing; a refused
/// connection is the port closing.
struct Connecting {
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Connecting {
    fn start(addr: &str) -> Connecting {
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let (stopped, refusals, addr) = (stop.clone(), refused.clone(), addr.to_string());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Err(e) = TcpStream::connect(&addr) {
                    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
                    refusals.fetch_add(1, Ordering::Relaxed);
                }
                // A pace, not a wait: the queue must not fill while no herd runs.
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        Connecting {
            stop,
            refused,
            thread,
        }
    }

    /// Stops; how many connections were refused.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.refused.load(Ordering::Relaxed)
    }
}

/// Starts herd as systemd does after a restart: the stored fds at 3, 4, ... in `stored`'s
/// order, named in LISTEN_FDNAMES, LISTEN_PID set to herd's pid by [`PASS_BACK`].
pub(crate) fn restart(stored: &BTreeMap<String, OwnedFd>, notify: &std::path::Path) -> Herd {
    restart_making(stored, notify, &WEB_AND_COUNTER)
}

/// [`restart`] with `made` as its `--bind` and `--shm`.
pub(crate) fn restart_making(
    stored: &BTreeMap<String, OwnedFd>,
    notify: &std::path::Path,
    made: &[&str],
) -> Herd {
    let listed: Vec<(&str, &OwnedFd)> = stored.iter().map(|(n, fd)| (n.as_str(), fd)).collect();
    restart_listing(&listed, notify, made)
}

/// [`restart_making`] from a store that lists `stored` in this order, a name perhaps twice.
pub(crate) fn restart_listing(
    stored: &[(&str, &OwnedFd)],
    notify: &std::path::Path,
    made: &[&str],
) -> Herd {
    // Above 2 + the number of fds, so that placing one cannot overwrite another.
    let high: Vec<OwnedFd> = stored
        .iter()
        .map(|(_, fd)| {
            // SAFETY: F_DUPFD_CLOEXEC on an fd we own returns a new fd we then own.
            let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
            assert!(raw >= 100);
            // SAFETY: `raw` is a fresh fd nothing else owns.
            unsafe { std::os::unix::io::FromRawFd::from_raw_fd(raw) }
        })
        .collect();
    let raws: Vec<i32> = high.iter().map(|fd| fd.as_raw_fd()).collect();
    let names: Vec<&str> = stored.iter().map(|(name, _)| *name).collect();
    let herd = Herd::start_with(|_| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", PASS_BACK, HERD]);
        herd_run(&mut cmd, notify, made);
        cmd.env("LISTEN_FDS", raws.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"));
        // SAFETY: the child only calls dup2 (async-signal-safe) on fds the parent keeps open.
        unsafe {
            cmd.pre_exec(move || {
                for (i, raw) in raws.iter().enumerate() {
                    if libc::dup2(*raw, 3 + i as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd
    });
    herd.wait_for_event("listening", &[("name", "web".into())]);
    drop(high);
    herd
}

/// What the store takes: the sockets herd binds and its memory, not those a `.socket` unit
/// passed (systemd holds them already), up to `$FDSTORE`; the rest is said.
#[test]
fn the_store_takes_what_herd_made_up_to_its_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    let herd = Herd::start_with(|_| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", crate::systemd::SYSTEMD, HERD, "--log-format", "json"])
            .args(["run", "-w", "1", "--ready", "notify", "-b", "systemd"])
            .args(["-b", "extra=127.0.0.1:0", "--shm", "memory=4096"])
            .args(["--", "python3", &example("hello.py")])
            .env("NOTIFY_SOCKET", &notify_path)
            .env("FDSTORE", "1");
        cmd
    });
    let (stored, heard) = receive_store(&notify);
    let names: Vec<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(names, ["herd.extra"], "{heard:?}");
    // The store is herd's: workers do not hear of it.
    let worker = herd.started(1)[0].1;
    let env = environ(worker);
    assert!(!env.iter().any(|v| v.starts_with("FDSTORE=")), "{env:?}");
    let warning = herd.wait_for_event("fdstore_not_stored", &[]);
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.contains("herd.memory not stored")
            && message.contains("raise FileDescriptorStoreMax= to 2"),
        "{message}"
    );
}

#[test]
fn store_settings_herd_cannot_use() {
    let out = Command::new(HERD)
        .args(["run", "--fdstore", "-b", "127.0.0.1:0", "--", "true"])
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(USAGE), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--fdstore needs systemd"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let _notify = UnixDatagram::bind(&notify_path).unwrap();
    for (value, needle) in [
        ("0", "FDSTORE=0: systemd's fd store holds nothing"),
        ("lots", "FDSTORE=\"lots\" is not a number"),
    ] {
        let herd = Herd::start_with(|_| {
            let mut cmd = herd_json();
            cmd.args(ONE_SLEEPER)
                .env("NOTIFY_SOCKET", &notify_path)
                .env("FDSTORE", value);
            cmd
        });
        let off = herd.wait_for_event("fdstore_off", &[]);
        assert!(off["message"].as_str().unwrap().contains(needle), "{off}");
        herd.started(1);
        let lines = herd.lines();
        assert!(events(&lines).all(|e| e["event"] != "fdstore_stored"));
    }
}

/// At start, what the store gives back is adopted by name; a stored fd no `--bind` or `--shm`
/// names any more is removed from the store (FDSTOREREMOVE=1), and nothing adopted is stored
/// again.
#[test]
fn a_stored_fd_nothing_names_is_removed_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    let listener = || OwnedFd::from(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let web = listener();
    let web_addr = std::net::TcpListener::from(web.try_clone().unwrap())
        .local_addr()
        .unwrap()
        .to_string();
    let stored: BTreeMap<String, OwnedFd> = [
        (
            "herd.counter",
            herd_sys::shm::create("counter", 4096).unwrap(),
        ),
        ("herd.old", listener()),
        ("herd.web", web),
    ]
    .into_iter()
    .map(|(name, fd)| (name.to_string(), fd))
    .collect();
    let herd = restart(&stored, &notify_path);
    assert_eq!(herd.address("web"), web_addr);
    herd.wait_for_event("fdstore_restored", &[("names", "counter,old,web".into())]);
    herd.wait_for_event("fdstore_removed", &[("names", "herd.old".into())]);
    let (again, heard) = receive_store(&notify);
    assert!(again.is_empty(), "{heard:?}");
    assert!(
        heard
            .iter()
            .any(|m| m.contains("FDSTOREREMOVE=1") && m.contains("FDNAME=herd.old")),
        "{heard:?}"
    );
    assert_eq!(hit(&get(&web_addr, "/").unwrap()), 1);
}

/// A stored Unix socket keeps its file when herd stops: clients still reach the socket the
/// store holds, and the next herd serves them.
#[test]
fn a_stored_unix_socket_keeps_its_file_when_herd_stops() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    let path = dir.path().join("app.sock");
    let bind = format!("app=unix:{}", path.display());
    let mut herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "--ready", "notify", "-b", &bind])
            .args(["--", "python3", &example("hello.py")])
            .env("NOTIFY_SOCKET", &notify_path)
            .env("FDSTORE", "1");
        cmd
    });
    let (stored, heard) = receive_store(&notify);
    assert!(stored.contains_key("herd.app"), "{heard:?}");
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
    assert!(path.exists(), "herd removed the stored socket's file");
    std::os::unix::net::UnixStream::connect(&path).expect("the stored socket still listens");
}
