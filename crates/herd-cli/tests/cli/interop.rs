//! Real servers, unmodified, under herd: each test starts the server with 2 workers and checks
//! that answers come from several processes. `docs/interop.md` holds the table.

use std::collections::BTreeSet;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;

use crate::interop_gunicorn::{exit_marks, exits_120_with_full_output, herd_with_exit_marks};
use crate::util::*;

fn interop(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(file)
        .display()
        .to_string()
}

/// Sends rounds of 4 concurrent requests until two different processes, each saying
/// `marker pid N`, have answered (within the test timeout). Concurrency matters: a server
/// that accepts from a non-blocking socket in a loop (gunicorn) serves back-to-back requests
/// from one process; and a server that forks its own workers (gunicorn, nginx) may start them
/// after herd counts it ready.
pub(crate) fn several_answer(
    herd: &Herd,
    request: impl Fn() -> std::io::Result<String> + Send + Sync,
    marker: &str,
) {
    let mut pids = BTreeSet::new();
    wait_until(&format!("two {marker} processes to answer"), || {
        std::thread::scope(|scope| {
            let round: Vec<_> = (0..4).map(|_| scope.spawn(&request)).collect();
            for answer in round {
                let body = answer.join().unwrap().unwrap_or_else(|e| {
                    panic!(
                        "request failed: {e}; herd logged{}",
                        last_lines(&herd.lines())
                    )
                });
                assert!(body.starts_with(marker), "{body:?} is not from {marker}");
                pids.insert(body.trim().to_string());
            }
        });
        if pids.len() >= 2 {
            Ok(())
        } else {
            Err(format!("only {pids:?}"))
        }
    });
}

fn serve(args: &[&str], marker: &str) -> Herd {
    let mut all = vec![
        "run",
        "-w",
        "2",
        "--ready",
        "delay=300ms",
        "-b",
        "http=127.0.0.1:0,nonblocking",
        "--",
    ];
    all.extend_from_slice(args);
    let herd = Herd::start(&all);
    let addr = herd.address("http");
    wait_status(&herd, "2 ready workers", |s| s["ready"] == 2);
    several_answer(&herd, || get(&addr, "/"), marker);
    herd
}

#[test]
fn gunicorn_with_socket_activation() {
    serve(
        &[
            "gunicorn",
            "--workers",
            "1",
            "--chdir",
            &interop(""),
            "wsgi_app:app",
        ],
        "gunicorn pid",
    );
}

/// gunicorn as docs/interop.md says to run it: `--preload`, so its arbiter imports the app
/// before it says READY=1, which herd waits for (`--ready notify`), and then serves the
/// inherited socket from the worker it forks.
#[test]
fn gunicorn_with_preload_says_ready() {
    let dir = interop("");
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0,nonblocking",
        "--",
        "gunicorn",
        "--preload",
        "--workers",
        "1",
        "--chdir",
        &dir,
        "wsgi_app:app",
    ]);
    let addr = herd.address("http");
    wait_status(&herd, "2 gunicorns to say READY=1", |s| s["ready"] == 2);
    several_answer(&herd, || get(&addr, "/"), "gunicorn pid");
}

#[test]
fn uvicorn_with_fd_template() {
    serve(
        &[
            "uvicorn",
            "--fd",
            "{fd:http}",
            "--app-dir",
            &interop(""),
            "asgi_app:app",
        ],
        "uvicorn pid",
    );
}

#[test]
fn node_listening_on_fd_3() {
    serve(&["node", &interop("server.js")], "node pid");
}

#[test]
fn go_file_listener() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("server");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(interop("server.go"))
        .env("GOFLAGS", "-mod=mod")
        .output()
        .expect("go is installed by scripts/setup.sh");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serve(&[&binary.display().to_string()], "go pid");
}

#[test]
fn rust_listenfd_server() {
    let server = Path::new(HERD)
        .parent()
        .unwrap()
        .join("examples/listenfd_server");
    if !server.exists() {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "herd-cli",
                "--example",
                "listenfd_server",
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
    serve(&[&server.display().to_string()], "listenfd pid");
}

/// herd running nginx with 2 workers on a Unix socket in `dir`, each nginx with the pid file
/// `dir/nginx-{worker}-{generation}.pid` (the recipe in docs/interop.md).
fn nginx(dir: &Path) -> Command {
    let sock = dir.join("nginx.sock");
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes 1;\nerror_log stderr notice;\nevents {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             server {{ listen unix:{}; location / {{ return 200 \"nginx pid $pid\\n\"; }} }}\n}}\n",
            sock.display()
        ),
    )
    .unwrap();
    let mut cmd = herd_json();
    // nginx adopts inherited sockets listed in NGINX ("3;") whose address matches a listen.
    cmd.env("NGINX", "3;")
        .args(["run", "-w", "2", "--stop-signal", "QUIT", "-b"])
        .arg(format!("http=unix:{},nonblocking", sock.display()))
        .args(["--", "nginx", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-g")
        .arg(format!("pid {d}/nginx-{{worker}}-{{generation}}.pid;"));
    cmd
}

#[test]
fn nginx_from_its_nginx_variable() {
    let herd = Herd::start_with(nginx);
    let sock = herd.path("nginx.sock");
    wait_status(&herd, "2 ready workers", |s| s["ready"] == 2);
    several_answer(
        &herd,
        || request(&mut UnixStream::connect(&sock)?, "/"),
        "nginx pid",
    );
    herd.wait_text("using inherited sockets");
}

/// During an upgrade the old and the new nginx of a slot run at once: with `{generation}` in
/// their pid file names, the old one removing its file on exit leaves the new one's alone, and
/// every worker has its pid file after the upgrade.
#[test]
fn nginx_keeps_its_pid_files_across_an_upgrade() {
    let herd = Herd::start_with(nginx);
    let pid_files = |generation: u64| -> Vec<Option<String>> {
        (0..2)
            .map(|slot| {
                let file = herd.path(&format!("nginx-{slot}-{generation}.pid"));
                std::fs::read_to_string(file)
                    .ok()
                    .map(|pid| pid.trim().to_string())
            })
            .collect()
    };
    let worker_pids = |status: &serde_json::Value| -> Vec<Option<String>> {
        let workers = status["workers"].as_array().unwrap();
        (0..2)
            .map(|slot| {
                workers
                    .iter()
                    .find(|w| w["slot"] == slot)
                    .map(|w| w["pid"].to_string())
            })
            .collect()
    };
    let status = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    wait_until("generation 1's pid files", || {
        let files = pid_files(1);
        if files == worker_pids(&status) {
            Ok(())
        } else {
            Err(format!("pid files {files:?}"))
        }
    });
    let (code, stdout, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let status = wait_status(&herd, "generation 2 settled", |s| {
        settled(s, 2) && s["generation"] == 2
    });
    wait_until("generation 2's pid files, generation 1's removed", || {
        let files = (pid_files(1), pid_files(2));
        if files.1 == worker_pids(&status) && files.0 == [None, None] {
            Ok(())
        } else {
            Err(format!("pid files of generations 1 and 2: {files:?}"))
        }
    });
}

#[test]
fn systemd_notify_reports_readiness() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "--ready-timeout",
        "10s",
        "-b",
        "http=127.0.0.1:0",
        "--",
        &interop("notify_worker.sh"),
    ]);
    herd.wait_for_events("worker_ready", 2, &[]);
    let status = herd.status();
    for w in status["workers"].as_array().unwrap() {
        let text = w["status"].as_str().unwrap_or("");
        assert!(
            text.starts_with("shell worker") && text.ends_with("ready"),
            "{status}"
        );
    }
}

/// Builds the herd library's example `name`, which needs the `tokio` feature.
fn tokio_example(name: &str) -> String {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "herd",
            "--features",
            "tokio",
            "--example",
            name,
        ])
        .status()
        .unwrap();
    assert!(status.success(), "cannot build example {name}");
    let dir = Path::new(HERD).parent().unwrap().join("examples");
    dir.join(name).display().to_string()
}

#[test]
fn rust_tokio_worker_on_a_nonblocking_socket() {
    let worker = Path::new(&tokio_example("tokio_worker")).to_path_buf();
    serve(&[&worker.display().to_string()], "tokio pid");

    // On a blocking socket it refuses, saying why, rather than flipping the shared mode.
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "http=127.0.0.1:0",
        "--",
        &worker.display().to_string(),
    ]);
    let refusal = herd.wait_text("is blocking, and tokio needs a non-blocking one");
    assert!(refusal.contains("bind it with `nonblocking`"), "{refusal}");
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// tokio with `herd::balanced::BalancedListener` on a blocking socket: it serves, and rolling
/// upgrades and a scale-down under load lose no connection (a worker told to stop serves
/// what its accept thread already holds).
#[test]
fn rust_tokio_balanced_worker_loses_nothing_when_replaced() {
    let worker = tokio_example("tokio_balanced");
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0",
        "--",
        &worker,
    ]);
    let addr = herd.address("http");
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    several_answer(&herd, || get(&addr, "/"), "tokio balanced pid");

    let load = Load::start(&addr, 2, |b| b.starts_with("tokio balanced pid"));
    for _ in 0..5 {
        let (code, _, stderr) = herd.ctl(&["upgrade"]);
        assert_eq!(code, 0, "upgrade failed: {stderr}");
    }
    herd.ctl(&["scale", "1"]);
    wait_status(&herd, "1 worker", |s| settled(s, 1));
    load.finish_without_failures(50);
}

/// `examples/hello.py` given no listening stream socket (a UDP socket and shared memory) says
/// in one line what it expected, instead of dying with a Python traceback.
#[test]
fn hello_py_says_what_it_expected_without_a_listening_socket() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "dns=udp://127.0.0.1:0",
        "--shm",
        "counter=4096",
        "--",
        "python3",
        &example("hello.py"),
    ]);
    let line = herd.wait_text("hello.py: ");
    herd.wait_event("the worker's exit", is_exit);
    assert!(
        line.contains("expected a listening TCP or Unix stream socket")
            && line.contains("dns (fd 3, a datagram socket)")
            && line.contains("counter (fd 4, not a socket)"),
        "{line}"
    );
    let texts: Vec<String> = herd
        .lines()
        .into_iter()
        .filter_map(|l| match l {
            Line::Text(t) => Some(t),
            Line::Event(_) => None,
        })
        .collect();
    assert_eq!(texts, [line], "one line of output from the worker");
}

/// `examples/hello.py` with `tests/interop/exit_marks.py` imported, as herd runs it.
fn marked_hello() -> [String; 2] {
    ["python3".into(), worker("hello_exit_marks.py")]
}

/// `examples/hello.py` stopped while it waits for a client ends without the interpreter's
/// teardown, which would take CPU from the workers still serving during an upgrade, but after
/// its `atexit` functions and with its open files flushed: herd stops cleanly, the worker
/// marks `atexit` and not `teardown`, and what it wrote to a file it keeps open is there.
#[test]
fn hello_py_stops_without_the_teardown_but_with_atexit() {
    let marks = tempfile::tempdir().unwrap();
    let path = marks.path().join("marks");
    let (herd, _) = herd_with_exit_marks(&path, &[], &marked_hello());
    get(&herd.address("http"), "/").unwrap();
    crate::interop_python::stops_cleanly(herd);
    let (atexit, teardown) = exit_marks(&path);
    assert_eq!(atexit.len(), 1, "{atexit:?}");
    assert_eq!(teardown, Vec::<String>::new(), "teardowns");
    let kept = std::fs::read_to_string(path.with_extension("kept")).unwrap_or_default();
    assert_eq!(
        kept,
        format!("kept {}\n", atexit[0]),
        "an open file's buffer"
    );
}

/// `examples/hello.py` whose output cannot be flushed as it stops (its stdout on /dev/full, a
/// line in the buffer) exits 120, as Python's own exit does, and says why: the exit that skips
/// the teardown hides no failure.
#[test]
fn hello_py_that_cannot_flush_its_output_exits_120_as_python_does() {
    let herd = exits_120_with_full_output(&marked_hello(), false, 1);
    let said = herd.wait_text("while flushing sys.stdout");
    assert!(said.contains("No space left on device"), "{said}");
}

/// `examples/hello.py` that can neither flush its output nor say why (its stdout and stderr on
/// /dev/full, as on a full disk) still exits 120 without the teardown: the failing word of why
/// does not cut its exit short.
#[test]
fn hello_py_that_cannot_flush_its_output_nor_say_why_exits_120_without_the_teardown() {
    exits_120_with_full_output(&marked_hello(), true, 1);
}

/// A second stop signal while `examples/hello.py` runs its `atexit` functions (herd's stop,
/// then the user's): they run once, and the worker still ends cleanly.
#[test]
fn hello_py_stopped_twice_runs_its_atexit_functions_once() {
    let marks = tempfile::tempdir().unwrap();
    let path = marks.path().join("marks");
    let release = marks.path().join("release");
    let hold = [("EXIT_MARKS_HOLD", release.as_os_str())];
    let (mut herd, status) = herd_with_exit_marks(&path, &hold, &marked_hello());
    let pid = worker_pids(&status)[0];
    herd.signal(libc::SIGTERM);
    wait_until("the worker's atexit functions to start", || {
        let (atexit, _) = exit_marks(&path);
        (!atexit.is_empty()).then_some(()).ok_or(atexit)
    });
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM {pid}: {sent}");
    std::fs::write(&release, "").unwrap();
    let exited = herd.wait_exit();
    assert!(exited.success(), "herd: {exited}");
    let (atexit, teardown) = exit_marks(&path);
    assert_eq!(atexit, vec![pid.to_string()]);
    assert_eq!(teardown, Vec::<String>::new(), "teardowns");
}

/// A program that `examples/hello.py`'s `atexit` functions start, once herd has stopped it, can
/// itself be stopped: it does not inherit the stop signals ignored (SIG_IGN survives `exec`),
/// which the worker made sure a second stop would not run those functions again.
#[test]
fn hello_py_atexit_functions_start_programs_that_can_be_stopped() {
    let marks = tempfile::tempdir().unwrap();
    let path = marks.path().join("marks");
    let child = [("EXIT_MARKS_CHILD", std::ffi::OsStr::new("1"))];
    let (mut herd, _) = herd_with_exit_marks(&path, &child, &marked_hello());
    herd.signal(libc::SIGTERM);
    let exited = herd.wait_exit();
    assert!(exited.success(), "herd: {exited}");
    let marks = std::fs::read_to_string(&path).unwrap();
    let mask = marks
        .lines()
        .find_map(|l| l.strip_prefix("child-ignores "))
        .unwrap_or_else(|| panic!("no child mark: {marks:?}"));
    // `child-ignores MASK PID`
    let mask = mask.split_whitespace().next().unwrap_or_default();
    let mask = u64::from_str_radix(mask, 16).unwrap();
    let stop = (1 << (libc::SIGTERM - 1)) | (1 << (libc::SIGINT - 1));
    assert_eq!(mask & stop, 0, "the child ignores TERM or INT: {mask:#x}");
}
