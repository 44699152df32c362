//! gunicorn's worker run by `python/herd_gunicorn.py`, one process per herd worker with no
//! gunicorn arbiter: it serves herd's sockets with herd's backlog, says `READY=1` once its
//! app is loaded, loses nothing through upgrades, stops cleanly, and says why when its app
//! cannot load. docs/interop.md, "gunicorn under herd".

use std::process::Command;

use crate::interop_python::{interop_file, python_program, stops_cleanly, upgrades_under_load};
use crate::util::*;

fn herd_gunicorn() -> String {
    repo().join("python/herd_gunicorn.py").display().to_string()
}

/// herd running `workers` of herd_gunicorn.py on `socket`, serving `app`, with herd's options
/// `more`.
fn serve(workers: &str, socket: &str, app: &str, more: &[&str]) -> Herd {
    Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", workers, "--ready", "notify", "-b", socket])
            .args(more)
            .arg("--")
            .arg(python_program("python3"))
            .args([&herd_gunicorn(), "--preload", "--chdir", &interop_file("")])
            .arg(app);
        cmd
    })
}

/// Each herd worker is the process that answers, with no child (no arbiter, no forked
/// worker); herd's backlog stays in force (gunicorn alone would `listen()` again with 2048);
/// two upgrades under load lose nothing, and herd stops cleanly.
#[test]
fn herd_gunicorn_serves_in_the_worker_itself_and_upgrades_under_load() {
    let herd = serve(
        "2",
        "http=127.0.0.1:0,nonblocking,backlog=150",
        "wsgi_app:app",
        &[],
    );
    let status = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let pids = worker_pids(&status);
    for pid in &pids {
        assert_eq!(children(*pid), vec![], "worker {pid} has children");
    }
    let body = get(&herd.address("http"), "/").unwrap();
    let pid: u32 = body.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(pids.contains(&pid), "{body:?} not from a worker {pids:?}");
    assert_eq!(status["sockets"][0]["queue_limit"], 150, "{status}");
    upgrades_under_load(&herd, |body| body.starts_with("gunicorn pid"));
    let lines = herd.lines();
    let replaced = events(&lines).filter(|e| e["event"] == "backlog_replaced");
    assert_eq!(replaced.count(), 0, "{}", last_lines(&lines));
    stops_cleanly(herd);
}

/// An app that does not import: the worker exits with gunicorn's status for it (4) and says
/// why on its stderr, which herd logs; herd does not count it ready.
#[test]
fn herd_gunicorn_says_why_an_app_does_not_load() {
    let herd = serve("1", "http=127.0.0.1:0", "no_such_module:app", &[]);
    let status = wait_status(&herd, "the worker's exit", |s| {
        s["workers"][0]["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("exit code 4"))
    });
    assert_eq!(status["ready"], 0, "{status}");
    wait_until("the reason on the worker's stderr", || {
        let lines = herd.lines();
        match texts(&lines, |t| t.contains("no_such_module")).is_empty() {
            false => Ok(()),
            true => Err(last_lines(&lines)),
        }
    });
}

/// Started by a wrapper that does not `exec` it, the sockets are the wrapper's (`LISTEN_PID`):
/// it says so in one line and exits 2, rather than gunicorn binding its default address in
/// every worker.
#[test]
fn herd_gunicorn_behind_a_wrapper_says_why_it_has_no_socket() {
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "-w",
            "1",
            "--ready",
            "notify",
            "-b",
            "127.0.0.1:0",
            "--",
        ])
        .args(["sh", "-c", "\"$@\"; exit $?", "sh"])
        .arg(python_program("python3"))
        .args([
            &herd_gunicorn(),
            "--chdir",
            &interop_file(""),
            "wsgi_app:app",
        ]);
        cmd
    });
    wait_status(&herd, "the worker's exit", |s| {
        s["workers"][0]["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("exit code 2"))
    });
    let lines = herd.lines();
    let said = texts(&lines, |t| {
        t.starts_with("herd_gunicorn.py: herd's sockets are for pid")
    });
    assert!(!said.is_empty(), "{}", last_lines(&lines));
}

/// gunicorn's `--timeout` is herd's `--watchdog`: an idle worker's heartbeat keeps it alive
/// past several deadlines, and one stuck in a request is killed and replaced.
#[test]
fn herd_gunicorn_heartbeat_is_herd_watchdog() {
    let herd = serve(
        "1",
        "http=127.0.0.1:0",
        "wsgi_app:app",
        &["--watchdog", "500ms"],
    );
    let status = wait_status(&herd, "a worker ready for 2 s", |s| {
        settled(s, 1) && s["workers"][0]["uptime_ms"].as_u64() >= Some(2000)
    });
    assert_eq!(
        status["workers"][0]["restarts"], 0,
        "idle, yet killed: {status}"
    );
    let addr = herd.address("http");
    let stuck = std::thread::spawn(move || get(&addr, "/hang"));
    let killed = herd.wait_for_event("worker_killed", &[]);
    assert_eq!(killed["message"], "killing worker: watchdog timeout");
    assert!(
        stuck.join().unwrap().is_err(),
        "the stuck request had no answer"
    );
    wait_status(&herd, "a replacement", |s| {
        settled(s, 1) && s["workers"][0]["restarts"] == 1
    });
    assert!(get(&herd.address("http"), "/")
        .unwrap()
        .starts_with("gunicorn pid"));
}

/// Without herd's sockets it is plain gunicorn: `--check-config` loads the app and exits 0.
#[test]
fn herd_gunicorn_outside_herd_is_gunicorn() {
    let out = Command::new(python_program("python3"))
        .arg(herd_gunicorn())
        .args([
            "--check-config",
            "--chdir",
            &interop_file(""),
            "wsgi_app:app",
        ])
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let bad = Command::new(python_program("python3"))
        .arg(herd_gunicorn())
        .args([
            "--check-config",
            "--chdir",
            &interop_file(""),
            "no_such_module:app",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "{bad:?}");
}

/// With `--fork-server` through herd_fork.py (docs/interop.md's second command): gunicorn is
/// imported once per generation, each worker forked from it serves itself, as herd's child,
/// and upgrades under load lose nothing.
#[test]
fn herd_gunicorn_forked_serves_and_upgrades_under_load() {
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "2", "--ready", "notify", "--fork-server"])
            .args(["-b", "http=127.0.0.1:0,nonblocking", "--"])
            .arg(python_program("python3"))
            .arg(repo().join("python/herd_fork.py"))
            .args([
                "--preload",
                "gunicorn.app.wsgiapp",
                "--preload",
                "gunicorn.workers.sync",
            ])
            .args([&herd_gunicorn(), "--preload", "--chdir", &interop_file("")])
            .arg("wsgi_app:app");
        cmd
    });
    let status = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    for pid in worker_pids(&status) {
        assert_eq!(children(pid), vec![], "worker {pid} has children");
    }
    upgrades_under_load(&herd, |body| body.starts_with("gunicorn pid"));
    stops_cleanly(herd);
}

/// gunicorn's `--max-requests` asks herd for a successor (`HERD_RECYCLE=1`) instead of
/// ending the worker: each is recycled (reason `asked`) while clients connect back to back,
/// none fails, and no exit counts toward a crash loop.
#[test]
fn herd_gunicorn_max_requests_is_a_recycle() {
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "2", "--ready", "notify"])
            .args(["-b", "http=127.0.0.1:0,nonblocking", "--"])
            .arg(python_program("python3"))
            .args([&herd_gunicorn(), "--max-requests", "30", "--preload"])
            .args(["--chdir", &interop_file(""), "wsgi_app:app"]);
        cmd
    });
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let load = Load::start(&herd.address("http"), 2, |b| b.starts_with("gunicorn pid"));
    herd.wait_for_events("recycled", 3, &[("reason", "asked".into())]);
    load.finish_without_failures(100);
    let lines = herd.lines();
    let restarted =
        events(&lines).filter(|e| e["event"] == "worker_exited" && !e["restart_in"].is_null());
    assert_eq!(restarted.count(), 0, "{}", last_lines(&lines));
}

/// herd running one herd_gunicorn.py worker with gunicorn's arguments `args`.
fn serve_with(args: &[&str]) -> Herd {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    Herd::start_with(move |_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "--ready", "notify"])
            .args(["-b", "http=127.0.0.1:0,nonblocking", "--"])
            .arg(python_program("python3"))
            .arg(herd_gunicorn())
            .args(&args);
        cmd
    })
}

/// `--pythonpath` is applied as gunicorn's `Application.run` applies it: an app found only
/// there loads (it was not: "No module named 'wsgi_app'", status 4).
#[test]
fn herd_gunicorn_takes_pythonpath() {
    let herd = serve_with(&[
        "--pythonpath",
        &interop_file(""),
        "--chdir",
        "/",
        "wsgi_app:app",
    ]);
    wait_status(&herd, "a ready worker", |s| settled(s, 1));
    assert!(get(&herd.address("http"), "/")
        .unwrap()
        .starts_with("gunicorn pid"));
}

/// `--reload`: a change to the app's file asks herd for a successor (reason `asked`), which
/// serves; gunicorn's reloader would have ended the worker, a crash to herd.
#[test]
fn herd_gunicorn_reload_is_a_recycle() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("wsgi_app.py");
    std::fs::copy(interop_file("wsgi_app.py"), &app).unwrap();
    let chdir = dir.path().display().to_string();
    let herd = serve_with(&["--reload", "--chdir", &chdir, "wsgi_app:app"]);
    let status = wait_status(&herd, "a ready worker", |s| settled(s, 1));
    let old = worker_pids(&status)[0];
    // Changed until herd hears of it: the reloader takes the files' times at its first look,
    // which may come after the first change.
    let recycled = wait_until("a recycle the worker asked for", || {
        let mut text = std::fs::read_to_string(&app).map_err(|e| e.to_string())?;
        text.push_str("# changed\n");
        // Whole or not at all: a successor that read it half-written failed to load the app,
        // and its slot waited 30s.
        let next = app.with_extension("next");
        std::fs::write(&next, text).map_err(|e| e.to_string())?;
        std::fs::rename(&next, &app).map_err(|e| e.to_string())?;
        let lines = herd.lines();
        let asked = events(&lines).find(|e| is_event(e, "recycled", &[("reason", "asked".into())]));
        asked.cloned().ok_or_else(|| last_lines(&lines))
    });
    assert_eq!(recycled["pid"], old, "{recycled}");
    let status = wait_status(&herd, "the successor", |s| {
        settled(s, 1) && worker_pids(s) != [old]
    });
    assert_eq!(status["workers"][0]["restarts"], 0, "{status}");
}

/// A hook that raises as the worker boots ends it with status 3 and one line after the
/// traceback (it was status 1, a crash, and only the traceback); a `--bind` of gunicorn's own
/// is said to be ignored, as `--workers` is.
#[test]
fn herd_gunicorn_says_why_a_worker_could_not_boot() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("raises.conf.py");
    std::fs::write(
        &conf,
        "def on_starting(server):\n    raise RuntimeError('boom')\n",
    )
    .unwrap();
    let conf = conf.display().to_string();
    let herd = serve_with(&[
        "-c",
        &conf,
        "--bind",
        "127.0.0.1:1",
        "--chdir",
        &interop_file(""),
        "wsgi_app:app",
    ]);
    wait_status(&herd, "the worker's exit", |s| {
        s["workers"][0]["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("exit code 3"))
    });
    let lines = herd.lines();
    let said = |start: &str| !texts(&lines, |t| t.starts_with(start)).is_empty();
    assert!(
        said("herd_gunicorn.py: the worker could not boot: boom"),
        "{}",
        last_lines(&lines)
    );
    assert!(
        said("herd_gunicorn.py: --bind ignored"),
        "{}",
        last_lines(&lines)
    );
}
