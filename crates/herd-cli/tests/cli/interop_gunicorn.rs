//! gunicorn under herd with the shipped recipe, `examples/gunicorn_herd.conf.py`: herd counts a
//! gunicorn ready only once its worker is about to accept (gunicorn's arbiter alone says
//! `READY=1` before it forks the worker), and upgrades under load lose nothing.
//! docs/interop.md, "gunicorn under herd".

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;

use crate::interop_python::{interop_file, python_program, stops_cleanly, upgrades_under_load};
use crate::util::*;

/// herd with one gunicorn worker run with `tests/interop/gunicorn_gated.conf.py` (the recipe
/// when `recipe`), whose gunicorn worker waits after its fork on the FIFO `gate` in herd's
/// temporary directory. Returns once the gunicorn worker waits there: its arbiter has passed
/// `Arbiter.start`, where gunicorn says `READY=1`.
fn gated_gunicorn(recipe: bool) -> (Herd, std::fs::File) {
    let herd = Herd::start_with(|dir| {
        let gate = dir.join("gate");
        let made = Command::new("mkfifo").arg(&gate).status().unwrap();
        assert!(made.success(), "mkfifo {}: {made}", gate.display());
        let mut cmd = herd_json();
        cmd.env("GUNICORN_GATE", &gate)
            .env("GUNICORN_RECIPE", if recipe { "1" } else { "0" })
            .args(["run", "-w", "1", "--ready", "notify"])
            .args(["-b", "http=127.0.0.1:0,nonblocking", "--"])
            .arg(python_program("gunicorn"))
            .args(["-c", &interop_file("gunicorn_gated.conf.py")])
            .args(["--chdir", &interop_file(""), "wsgi_app:app"]);
        cmd
    });
    let gate = herd.dir.path().join("gate");
    // A non-blocking open for writing fails (ENXIO) until the worker has the FIFO open.
    let writer = wait_until("gunicorn's worker to wait at the gate", || {
        open_writer(&gate)
    });
    (herd, writer)
}

fn open_writer(fifo: &Path) -> Result<std::fs::File, String> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .map_err(|e| e.to_string())
}

/// What the recipe is for: gunicorn's arbiter says `READY=1` in `Arbiter.start`, before it
/// forks its worker, so herd counts it ready while no process of it can accept yet.
#[test]
fn gunicorn_alone_says_ready_before_its_worker_can_accept() {
    let (herd, mut gate) = gated_gunicorn(false);
    wait_status(&herd, "the arbiter's READY=1", |s| s["ready"] == 1);
    gate.write_all(b"go").unwrap();
    drop(gate);
    let addr = herd.address("http");
    wait_until("an answer", || get(&addr, "/").map_err(|e| e.to_string()));
}

/// With the recipe, `READY=1` comes from gunicorn's worker right before its accept loop: herd
/// does not count it ready while the worker is held after its fork, and does once it is let
/// go; the first request is then answered by that worker.
#[test]
fn gunicorn_recipe_says_ready_once_its_worker_accepts() {
    let (herd, mut gate) = gated_gunicorn(true);
    // herd has read the worker's `STATUS=`, and so whatever the arbiter said before the fork.
    let status = wait_status(&herd, "the worker's STATUS= at the gate", |s| {
        s["workers"][0]["status"] == "at the gate"
    });
    assert_eq!(
        status["ready"], 0,
        "ready before the worker can accept: {status}"
    );
    gate.write_all(b"go").unwrap();
    drop(gate);
    let status = wait_status(&herd, "the worker's READY=1", |s| s["ready"] == 1);
    let master = worker_pids(&status)[0];
    let body = get(&herd.address("http"), "/").unwrap();
    let pid: u32 = body.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert_ne!(
        pid, master,
        "{body:?} came from the arbiter, not its worker"
    );
    stops_cleanly(herd);
}

/// The recipe as docs/interop.md gives it: two upgrades while clients connect back to back
/// lose no request, and herd stops cleanly.
#[test]
fn gunicorn_recipe_upgrades_under_load_lose_nothing() {
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "2", "--ready", "notify"])
            .args(["-b", "http=127.0.0.1:0,nonblocking", "--"])
            .arg(python_program("gunicorn"))
            .args(["-c", &example("gunicorn_herd.conf.py")])
            .args(["--chdir", &interop_file(""), "wsgi_app:app"]);
        cmd
    });
    wait_status(&herd, "2 ready gunicorns", |s| settled(s, 2));
    upgrades_under_load(&herd, |body| body.starts_with("gunicorn pid"));
    stops_cleanly(herd);
}

/// The recipe copied to a gunicorn run without herd, under a service manager's notify socket
/// (systemd's `Type=notify` takes `READY=1` from the main process only, by default): it leaves
/// `READY=1` to gunicorn's arbiter, which says it before its worker passes the gate. With the
/// address taken from the arbiter, only the worker would say it, and systemd would ignore it.
#[test]
fn gunicorn_recipe_without_herd_leaves_ready_to_the_arbiter() {
    use std::os::unix::net::UnixDatagram;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let made = Command::new("mkfifo").arg(&gate).status().unwrap();
    assert!(made.success(), "mkfifo {}: {made}", gate.display());
    let address = dir.path().join("notify");
    let notify = UnixDatagram::bind(&address).unwrap();
    notify
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let gunicorn = Command::new(python_program("gunicorn"))
        .env("GUNICORN_GATE", &gate)
        .env("GUNICORN_RECIPE", "1")
        .env("NOTIFY_SOCKET", &address)
        .env_remove("HERD_WORKER")
        .args(["-c", &interop_file("gunicorn_gated.conf.py")])
        .args([
            "-b",
            "127.0.0.1:0",
            "--chdir",
            &interop_file(""),
            "wsgi_app:app",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // The worker waits at the gate until its process group is killed.
    struct Group(std::process::Child);
    impl Drop for Group {
        fn drop(&mut self) {
            // `kill` of the group this test started: gunicorn and its worker.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.0.id())])
                .status();
            let _ = self.0.wait();
        }
    }
    let _group = Group(gunicorn);
    let mut said = Vec::new();
    while !said
        .iter()
        .any(|m: &String| m.contains("STATUS=at the gate"))
    {
        let mut buf = [0u8; 512];
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification in 60s ({e}); said so far: {said:?}"));
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        said.iter().any(|m| m.contains("READY=1")),
        "the arbiter said no READY=1 before its worker reached the gate: {said:?}"
    );
}

/// herd running one worker, `command` (after `--`), that imports `tests/interop/exit_marks.py`
/// and marks in `marks`, with `env` set too; returns once the worker is ready, with the status.
pub(crate) fn herd_with_exit_marks(
    marks: &Path,
    env: &[(&str, &std::ffi::OsStr)],
    command: &[String],
) -> (Herd, serde_json::Value) {
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("EXIT_MARKS", marks)
            .envs(env.iter().copied())
            .args(["run", "-w", "1", "--ready", "notify"])
            .args(["-b", "http=127.0.0.1:0,nonblocking", "--"])
            .args(command);
        cmd
    });
    let status = wait_status(&herd, "a ready worker", |s| settled(s, 1));
    (herd, status)
}

/// What `tests/interop/exit_marks.py` marked in `path`: the pids whose `atexit` functions ran,
/// and those whose interpreter's teardown ran.
/// Runs `command`, which imports `tests/interop/exit_marks.py`, under herd with its stdout (and,
/// with `stderr_too`, its stderr) on /dev/full with a line in the buffer, stops herd, and checks
/// that the worker exits 120, as Python's own exit gives, with its `processes` processes marking
/// `atexit` and none `teardown`: herd, to look at what else it logged.
pub(crate) fn exits_120_with_full_output(
    command: &[String],
    stderr_too: bool,
    processes: usize,
) -> Herd {
    let marks = tempfile::tempdir().unwrap();
    let path = marks.path().join("marks");
    let full = std::ffi::OsStr::new("1");
    let env = [
        ("EXIT_MARKS_FULL_STDOUT", full),
        ("EXIT_MARKS_FULL_STDERR", full),
    ];
    let (mut herd, _) = herd_with_exit_marks(&path, &env[..1 + usize::from(stderr_too)], command);
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
    let exit = herd.wait_event("the worker's exit", is_exit);
    let how = exit["message"].as_str().unwrap_or_default();
    assert!(how.contains("120"), "{exit}");
    let (atexit, teardown) = exit_marks(&path);
    assert_eq!(atexit.len(), processes, "{atexit:?}");
    assert_eq!(teardown, Vec::<String>::new(), "teardowns");
    herd
}

pub(crate) fn exit_marks(path: &Path) -> (Vec<String>, Vec<String>) {
    let marks = std::fs::read_to_string(path).unwrap_or_default();
    let pids = |what: &str| -> Vec<String> {
        marks
            .lines()
            .filter_map(|l| l.strip_prefix(what))
            .map(|pid| pid.trim().to_owned())
            .collect()
    };
    (pids("atexit "), pids("teardown "))
}

/// The recipe ends a gunicorn that herd stops, its arbiter and its worker, without the
/// interpreter's teardown (tens of milliseconds of CPU each, taken from the workers still
/// serving during an upgrade), but after the app's `atexit` functions: herd stops cleanly,
/// and both processes mark `atexit` and neither `teardown`.
#[test]
fn gunicorn_recipe_stops_without_the_teardown_but_with_atexit() {
    let marks = tempfile::tempdir().unwrap();
    let path = marks.path().join("marks");
    let gunicorn = marked_gunicorn();
    let (herd, _) = herd_with_exit_marks(&path, &[], &gunicorn);
    get(&herd.address("http"), "/").unwrap();
    stops_cleanly(herd);
    let (atexit, teardown) = exit_marks(&path);
    assert_eq!(
        atexit.len(),
        2,
        "the arbiter's and the worker's: {atexit:?}"
    );
    assert_eq!(teardown, Vec::<String>::new(), "teardowns");
    // Written in the arbiter before the fork: both processes hold it and flush it.
    let kept = std::fs::read_to_string(path.with_extension("kept")).unwrap_or_default();
    assert_eq!(kept.lines().count(), 2, "open files' buffers: {kept:?}");
}

/// gunicorn run with `examples/gunicorn_herd.conf.py` whose output cannot be flushed as it stops
/// (stdout on /dev/full, a line in the buffer, in the arbiter and so in its worker) exits 120,
/// as Python's own exit does, and says why.
#[test]
fn gunicorn_recipe_that_cannot_flush_its_output_exits_120_as_python_does() {
    let herd = exits_120_with_full_output(&marked_gunicorn(), false, 2);
    herd.wait_text("while flushing sys.stdout");
}

/// gunicorn run with `examples/gunicorn_herd.conf.py` that can neither flush its output nor say
/// why (stdout and stderr on /dev/full, as on a full disk) still exits 120, arbiter and worker
/// without the teardown: the failing word of why does not cut their exit short.
#[test]
fn gunicorn_recipe_that_cannot_flush_its_output_nor_say_why_exits_120_without_the_teardown() {
    exits_120_with_full_output(&marked_gunicorn(), true, 2);
}

/// gunicorn with `examples/gunicorn_herd.conf.py`, serving `tests/interop/exit_marks.py`.
fn marked_gunicorn() -> [String; 6] {
    [
        python_program("gunicorn"),
        "-c".into(),
        example("gunicorn_herd.conf.py"),
        "--chdir".into(),
        interop_file(""),
        "exit_marks:app".into(),
    ]
}

/// herd's stop reaches gunicorn's whole process group, and gunicorn's arbiter queues a stop
/// for its main loop, whose turn first reaps a worker that exited and starts another: the
/// recipe's `when_ready` makes a stop signal set the arbiter's worker count to 0 at once, and
/// still queues it (not when gunicorn drops it, five signals waiting: the arbiter would run on
/// with no worker). Checked on the hook itself, in a Python process of its own with a
/// stand-in arbiter (the race it closes shows in about 1 of 10 stops).
#[test]
fn gunicorn_recipe_stop_signal_leaves_no_worker_to_start() {
    let script = r#"
import os, signal, sys
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"))

class Arbiter:
    num_workers = 1
    SIG_QUEUE = []
    def signal(self, sig, frame):  # as gunicorn's: a signal is dropped while five wait
        if len(self.SIG_QUEUE) < 5:
            self.SIG_QUEUE.append(sig)

arbiter = Arbiter()
for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
    signal.signal(signum, arbiter.signal)
when_ready(arbiter)
for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
    arbiter.num_workers = 1
    arbiter.SIG_QUEUE.clear()
    os.kill(os.getpid(), signum)
    print(signum, arbiter.num_workers, arbiter.SIG_QUEUE)
# With five signals waiting, gunicorn drops the stop: the workers must stay.
arbiter.num_workers = 1
arbiter.SIG_QUEUE[:] = [signal.SIGTTIN] * 5
os.kill(os.getpid(), signal.SIGTERM)
print("full", arbiter.num_workers, len(arbiter.SIG_QUEUE))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &example("gunicorn_herd.conf.py")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = format!(
        "{term} 0 [{term}]\n{int} 0 [{int}]\n{quit} 0 [{quit}]\nfull 1 5\n",
        term = libc::SIGTERM,
        int = libc::SIGINT,
        quit = libc::SIGQUIT
    );
    assert_eq!(stdout, expected);
}

/// A second stop signal (INT, which gunicorn's worker takes as "exit now") while the recipe's
/// worker runs its `atexit` functions on its way out does not cut them short: the worker's
/// function, held until the test has sent INT, marks that it finished.
#[test]
fn gunicorn_recipe_stopped_twice_finishes_its_atexit_functions() {
    let marks = tempfile::tempdir().unwrap();
    let path = marks.path().join("marks");
    let release = marks.path().join("release");
    let gunicorn = marked_gunicorn();
    let hold = [("EXIT_MARKS_HOLD", release.as_os_str())];
    let (mut herd, _) = herd_with_exit_marks(&path, &hold, &gunicorn);
    herd.signal(libc::SIGTERM);
    // The worker ends first: its arbiter waits for it before it ends too.
    let worker = wait_until("the worker's atexit functions to start", || {
        let (atexit, _) = exit_marks(&path);
        atexit.first().cloned().ok_or(atexit)
    });
    let sent = Command::new("kill")
        .args(["-INT", &worker])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -INT {worker}: {sent}");
    std::fs::write(&release, "").unwrap();
    let exited = herd.wait_exit();
    assert!(exited.success(), "herd: {exited}");
    let marks = std::fs::read_to_string(&path).unwrap();
    assert!(
        marks.lines().any(|l| l == format!("atexit-done {worker}")),
        "{marks}"
    );
}
