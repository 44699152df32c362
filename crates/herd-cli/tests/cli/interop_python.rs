//! More real Python servers under herd (Twisted, hypercorn, waitress, Sanic, uWSGI), each
//! unmodified with 2 workers: answers come from 2 processes, a `herd upgrade` under load
//! loses no connection, and a stop is clean. The helpers serve `interop_more.rs` too;
//! `docs/interop.md` holds the table.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use crate::interop::several_answer;
use crate::util::*;

/// `tests/interop/NAME`.
pub(crate) fn interop_file(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
        .display()
        .to_string()
}

/// herd with 2 workers running `command` (with `env` set) on `http=127.0.0.1:0,nonblocking`,
/// `herd_args` before the `--`; returns once both are ready and answers came from both,
/// each answer starting with `marker`.
pub(crate) fn serve_with(
    herd_args: &[&str],
    command: &[&str],
    env: &[(&str, &str)],
    marker: &str,
) -> Herd {
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.envs(env.iter().copied())
            .args(["run", "-w", "2", "--ready", "delay=300ms"])
            .args(["-b", "http=127.0.0.1:0,nonblocking"])
            .args(herd_args)
            .arg("--")
            .args(command);
        cmd
    });
    let addr = herd.address("http");
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    several_answer(&herd, || get(&addr, "/"), marker);
    herd
}

/// The Python program `name` (`python3`, `twist`, `hypercorn`) beside the interpreter that
/// `python3` runs, when it is there: a version manager's shim (pyenv's are bash scripts) can
/// leave a subshell behind that herd rightly reports as left by the worker.
pub(crate) fn python_program(name: &str) -> String {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import os, sys; print(os.path.dirname(sys.executable))",
            ])
            .output()
            .ok()?;
        Some(String::from_utf8(out.stdout).ok()?.trim().into())
    });
    match dir.as_ref().map(|d| d.join(name)) {
        Some(path) if path.exists() => path.display().to_string(),
        _ => name.to_string(),
    }
}

/// The environment of the Python servers: `tests/interop` on the module path, and the word
/// `pid_app.py` starts its answers with.
fn python_env(marker: &str) -> [(&'static str, String); 2] {
    [
        ("PYTHONPATH", interop_file("")),
        ("APP_MARKER", marker.to_string()),
    ]
}

/// [`serve_with`] for a Python server whose app is `pid_app.py`, answering `MARKER pid N`.
fn serve_python(herd_args: &[&str], command: &[&str], marker: &str) -> Herd {
    let env = python_env(marker);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    serve_with(herd_args, command, &env, &format!("{marker} pid"))
}

/// Two `herd upgrade`s while clients connect back to back: every request is answered (`ok`),
/// and generation 3 settles with 2 workers.
pub(crate) fn upgrades_under_load(herd: &Herd, ok: fn(&str) -> bool) {
    let addr = herd.address("http");
    let load = Load::start(&addr, 2, ok);
    for _ in 0..2 {
        let (code, stdout, stderr) = herd.ctl(&["upgrade"]);
        assert_eq!(code, 0, "upgrade failed: {stdout}{stderr}");
    }
    wait_status(herd, "generation 3 settled", |s| {
        settled(s, 2) && s["generation"] == 3
    });
    load.finish_without_failures(20);
}

/// Stops herd with SIGTERM: it exits 0, logged no warning or error, and no process is left
/// in any worker's process group. `backlog_replaced` does not count: it is the warning due to
/// a server that calls `listen()` again with its own backlog (its row in docs/interop.md).
pub(crate) fn stops_cleanly(mut herd: Herd) {
    // Each worker leads a process group of its own.
    let groups: Vec<u32> = events(&herd.lines())
        .filter(|e| is_start(e))
        .map(|e| e["pid"].as_u64().unwrap() as u32)
        .collect();
    herd.signal(libc::SIGTERM);
    let status = herd.wait_exit();
    let lines = herd.lines();
    assert!(
        status.success(),
        "herd: {status}; it logged{}",
        last_lines(&lines)
    );
    let complaints: Vec<_> = events(&lines)
        .filter(|e| e["level"] == "WARN" || e["level"] == "ERROR")
        .filter(|e| e["event"] != "backlog_replaced")
        .collect();
    assert!(complaints.is_empty(), "herd complained: {complaints:#?}");
    assert_eq!(in_groups(&groups), Vec::<u32>::new(), "left behind");
}

/// One `herd upgrade` while clients connect back to back, for a server that ends the
/// connections it holds without an answer when it stops: some requests may be cut that way
/// (an empty answer, or a reset), but none is refused, and generation 2 serves.
fn upgrade_under_load_cuts_only_held_connections(herd: &Herd, ok: fn(&str) -> bool) {
    let addr = herd.address("http");
    let load = Load::start(&addr, 2, ok);
    let (code, stdout, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "upgrade failed: {stdout}{stderr}");
    let status = wait_status(herd, "generation 2 settled", |s| {
        settled(s, 2) && s["generation"] == 2
    });
    let (served, failures) = load.finish();
    assert!(served > 20, "only {served} requests were served");
    let cut = |f: &String| f.contains("not an HTTP response: \"\"") || f.contains("reset");
    assert!(failures.iter().all(cut), "{failures:?}");
    let new = worker_pids(&status);
    wait_until("an answer from generation 2", || {
        let body = get(&addr, "/").map_err(|e| e.to_string())?;
        let pid = body.trim().rsplit(' ').next().and_then(|p| p.parse().ok());
        pid.filter(|pid| new.contains(pid)).ok_or(body)
    });
}

/// `twist` stops at once on SIGTERM: its reactor ends every open connection as it shuts down
/// (`disconnectAll`, a "during shutdown" trigger in `twisted/internet/base.py`), and `twist
/// web` waits for none. The app is a Twisted resource (`--class`): with `--wsgi`, a stop under
/// load can hang until herd's grace ends, since `twist web` stops its WSGI thread pool only
/// after the reactor (`twisted/web/tap.py`) while a request's thread waits for the reactor to
/// write its answer (`blockingCallFromThread` in `twisted/web/wsgi.py`).
#[test]
fn twisted_from_its_systemd_endpoint() {
    let herd = serve_python(
        &[],
        &[
            &python_program("twist"),
            "--log-format",
            "text",
            "web",
            "--listen",
            "systemd:domain=INET:name=http",
            "--class",
            "twisted_app.PidResource",
        ],
        "twisted",
    );
    upgrade_under_load_cuts_only_held_connections(&herd, |b| b.starts_with("twisted pid"));
    stops_cleanly(herd);
}

/// hypercorn stops by setting its `terminated` event before it closes its listener, and
/// every connection without a request in progress closes on that event
/// (`hypercorn/asyncio/tcp_server.py`, `_idle_timeout`): one accepted an instant before the
/// stop, its request not yet read, is closed without an answer.
#[test]
fn hypercorn_on_its_fd_bind() {
    let herd = serve_python(
        &[],
        &[
            &python_program("hypercorn"),
            "--workers",
            "0",
            "--bind",
            "fd://3",
            "pid_app:asgi",
        ],
        "hypercorn",
    );
    upgrade_under_load_cuts_only_held_connections(&herd, |b| b.starts_with("hypercorn pid"));
    stops_cleanly(herd);
}

#[test]
fn waitress_through_serve_sockets() {
    let app = interop_file("waitress_app.py");
    let herd = serve_python(&[], &[&python_program("python3"), &app], "waitress");
    upgrades_under_load(&herd, |b| b.starts_with("waitress pid"));
    stops_cleanly(herd);
}

/// Sanic, like hypercorn, closes every connection without a request in progress once it has
/// closed its listener (`close_if_idle` in `_serve_http_1`, `sanic/server/runners.py`), one
/// accepted an instant before, its request not yet read, included.
#[test]
fn sanic_in_single_process_mode() {
    let app = interop_file("sanic_app.py");
    let herd = serve_python(&[], &[&python_program("python3"), &app], "sanic");
    upgrade_under_load_cuts_only_held_connections(&herd, |b| b.starts_with("sanic pid"));
    stops_cleanly(herd);
}

/// Sanic's default multi-process mode calls `shutdown()` on the socket it was given when its
/// main process stops (`sanic/mixins/startup.py`, `serve`): that stops the socket for every
/// worker. herd notices, says who did it, and makes the socket listen again, so the other
/// worker serves on; single-process mode (above) does not do it.
#[test]
fn sanic_multi_process_mode_shuts_the_shared_socket_down() {
    let app = interop_file("sanic_app.py");
    let env = python_env("sanic");
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("SANIC_MULTI_PROCESS", "1"));
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.envs(env.iter().copied())
            .args(["run", "-w", "2", "-b", "http=127.0.0.1:0,nonblocking"])
            .args(["--", &python_program("python3"), &app]);
        cmd
    });
    // Each herd worker is a Sanic main process whose own worker process serves; both serve
    // (so both main processes handle SIGTERM) before one is stopped.
    // Six Python processes start (a main, a manager and a worker per herd worker): on a busy
    // machine that takes longer than one wait.
    let limit = std::time::Duration::from_secs(60);
    wait_until_within("2 Sanic processes serving", limit, || {
        let lines = herd.lines();
        let serving = lines
            .iter()
            .filter(|l| matches!(l, Line::Text(t) if t.contains("sanic_app.py: pid")));
        let count = serving.count();
        (count >= 2).then_some(()).ok_or(format!("{count} serving"))
    });
    let addr = herd.address("http");
    several_answer(&herd, || get(&addr, "/"), "sanic pid");
    let (code, _, stderr) = herd.ctl(&["scale", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let warning = herd.wait_for_event("socket_restored", &[]);
    assert_eq!(warning["socket"], "http", "{warning}");
    wait_status(&herd, "1 worker", |s| settled(s, 1));
    let answer = get(&addr, "/").unwrap();
    assert!(answer.starts_with("sanic pid"), "{answer:?}");
}

/// uWSGI adopts `LISTEN_FDS` sockets (`uwsgi_setup_systemd`) with its default protocol:
/// `--protocol http` makes that HTTP. Its graceful stop (SIGHUP, `gracefully_kill`) exits at
/// once unless a request is in progress, and a connection counts as one only once reading
/// starts (`in_request`, set in `wsgi_req_recv` after `wsgi_req_accept`): one accepted an
/// instant before is reset.
#[test]
fn uwsgi_from_systemd_sockets_speaking_http() {
    let app = interop_file("pid_app.py");
    let herd = serve_python(
        &["--stop-signal", "HUP"],
        &[
            "uwsgi",
            "--plugin",
            "python3",
            "--protocol",
            "http",
            "--wsgi-file",
            &app,
            "--callable",
            "wsgi",
        ],
        "uwsgi",
    );
    upgrade_under_load_cuts_only_held_connections(&herd, |b| b.starts_with("uwsgi pid"));
    stops_cleanly(herd);
}

/// Sends one request in the uwsgi protocol (what nginx's `uwsgi_pass` speaks) to `addr`;
/// returns the body of the HTTP response that comes back.
fn uwsgi_request(addr: &str) -> std::io::Result<String> {
    let vars = [
        ("REQUEST_METHOD", "GET"),
        ("PATH_INFO", "/"),
        ("SERVER_PROTOCOL", "HTTP/1.0"),
        ("SERVER_NAME", "test"),
        ("SERVER_PORT", "80"),
    ];
    let mut body = Vec::new();
    for (key, value) in vars {
        for part in [key, value] {
            body.extend_from_slice(&(part.len() as u16).to_le_bytes());
            body.extend_from_slice(part.as_bytes());
        }
    }
    // The header: modifier1 0 (WSGI), the size of the variables, modifier2 0.
    let mut packet = vec![0];
    packet.extend_from_slice(&(body.len() as u16).to_le_bytes());
    packet.push(0);
    packet.extend_from_slice(&body);
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.write_all(&packet)?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!("{response:?}"))),
    }
}

/// uWSGI's default protocol on the socket herd passes: the test speaks uwsgi.
#[test]
fn uwsgi_from_systemd_sockets_speaking_uwsgi() {
    let app = interop_file("pid_app.py");
    let env = python_env("uwsgi");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.envs(env.iter().copied())
            .args([
                "run",
                "-w",
                "2",
                "--stop-signal",
                "HUP",
                "--ready",
                "delay=300ms",
            ])
            .args(["-b", "uwsgi=127.0.0.1:0,nonblocking", "--"])
            .args(["uwsgi", "--plugin", "python3", "--wsgi-file", &app])
            .args(["--callable", "wsgi"]);
        cmd
    });
    let addr = herd.address("uwsgi");
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    several_answer(&herd, || uwsgi_request(&addr), "uwsgi pid");
    stops_cleanly(herd);
}
