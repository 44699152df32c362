//! Servers that fork workers of their own or speak more than HTTP, unmodified, under herd:
//! unicorn, Puma, lighttpd, HAProxy and php-fpm. Each runs with 2 workers, answers from 2
//! processes, survives two `herd upgrade`s under load without a failed request, and stops
//! cleanly. The recipes are rows of the table in `docs/interop.md`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;

use crate::interop::several_answer;
use crate::util::*;

/// Checks the server `herd` runs: two processes answer `request`, two upgrades under a load
/// of `request`s lose none (an answer must pass `ok`), and a stop leaves nothing behind.
fn exercise<R>(herd: Herd, request: R, marker: &str, ok: fn(&str) -> bool)
where
    R: Fn() -> std::io::Result<String> + Clone + Send + Sync + 'static,
{
    exercise_started(herd, request, marker, ok, None);
}

/// [`exercise`], for a server that says `started` (once per herd worker) when it is fully up:
/// each generation is stopped only after that.
fn exercise_started<R>(
    herd: Herd,
    request: R,
    marker: &str,
    ok: fn(&str) -> bool,
    started: Option<&str>,
) where
    R: Fn() -> std::io::Result<String> + Clone + Send + Sync + 'static,
{
    let settle = |generation: u64| {
        wait_status(&herd, &format!("generation {generation} settled"), |s| {
            settled(s, 2) && s["generation"] == generation
        });
        if let Some(text) = started {
            let wanted = 2 * generation as usize;
            herd.wait_for(&format!("{wanted} x {text:?}"), |lines| {
                let seen = lines
                    .iter()
                    .filter(|l| matches!(l, Line::Text(t) if t.contains(text)));
                (seen.count() >= wanted).then_some(())
            });
        }
    };
    settle(1);
    several_answer(&herd, &request, marker);

    let load = Load::start_with(2, request, ok);
    for generation in [2, 3] {
        let (code, stdout, stderr) = herd.ctl(&["upgrade"]);
        assert_eq!(code, 0, "upgrade failed: {stdout}{stderr}");
        settle(generation);
    }
    load.finish_without_failures(20);
    stop_cleanly(herd);
}

/// `herd stop`: herd exits 0, every process of every worker's process group is gone, and
/// herd logged no warning or error.
fn stop_cleanly(mut herd: Herd) {
    let groups: Vec<u32> = events(&herd.lines())
        .filter(|e| is_start(e))
        .map(|e| e["pid"].as_u64().unwrap() as u32)
        .collect();
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "herd stop: {stderr}");
    let status = herd.wait_exit();
    assert!(
        status.success(),
        "herd exited with {status}; it logged{}",
        last_lines(&herd.lines())
    );
    wait_until("the workers' processes to exit", || {
        let left = in_groups(&groups);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("left behind: {left:?}"))
        }
    });
    let lines = herd.lines();
    let complaints: Vec<&serde_json::Value> = events(&lines)
        .filter(|e| matches!(e["level"].as_str(), Some("WARN" | "ERROR")))
        // Servers that call listen() again replace herd's backlog: said once, by design.
        .filter(|e| e["event"] != "backlog_replaced")
        .collect();
    assert!(
        complaints.is_empty(),
        "herd complained: {complaints:#?}; it logged{}",
        last_lines(&lines)
    );
}

/// Writes `text` to `dir/name`; returns the path.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `herd run -w 2 OPTIONS -- COMMAND`.
fn herd_run(options: &[&str], command: &[&str]) -> Command {
    let mut cmd = herd_json();
    cmd.args(["run", "-w", "2"])
        .args(options)
        .arg("--")
        .args(command);
    cmd
}

const RACK_APP: &str = "run ->(env) { [200, {'content-type' => 'text/plain'}, \
                        [\"#{ENV.fetch('MARKER')} pid #{Process.pid}\\n\"]] }\n";

/// unicorn's own `LISTEN_FDS` support; its master forks one worker; QUIT is graceful.
#[test]
fn unicorn_with_its_listen_fds_support() {
    let herd = Herd::start_with(|dir| {
        let app = write(dir, "app.ru", RACK_APP);
        let config = write(dir, "unicorn.rb", "worker_processes 1\n");
        let mut cmd = herd_run(
            &[
                "--stop-signal",
                "QUIT",
                "--ready",
                "delay=500ms",
                "-b",
                // unicorn calls listen() again with its own backlog, 1024: herd's is the same,
                // so that it stays as herd set it (else herd warns that it changed).
                "http=127.0.0.1:0,nonblocking,backlog=1024",
            ],
            &["unicorn", "-c", &config, &app],
        );
        cmd.env("MARKER", "unicorn");
        cmd
    });
    let addr = herd.address("http");
    // A unicorn stopped while its master is still starting its worker can miss the QUIT and
    // wait for herd's grace to end (seen under load): each generation finishes starting first.
    exercise_started(
        herd,
        move || get(&addr, "/"),
        "unicorn pid",
        |b| b.starts_with("unicorn pid"),
        Some("worker=0 ready"),
    );
}

/// Puma in single mode on the activated sockets only, ready through `sd_notify`; TERM is its
/// graceful stop. `queue_requests false`, as docs/interop.md says: with Puma's default, a
/// connection it accepted before the request's first bytes came waits in its reactor, which
/// closes it unanswered when Puma stops (1 of 15211 requests in a CI run).
#[test]
fn puma_on_activated_sockets_only() {
    let herd = Herd::start_with(|dir| {
        let app = write(dir, "app.ru", RACK_APP);
        let config = write(dir, "puma.rb", "queue_requests false\n");
        let mut cmd = herd_run(
            &["--ready", "notify", "-b", "http=127.0.0.1:0,nonblocking"],
            &[
                "puma",
                "--bind-to-activated-sockets",
                "only",
                "--config",
                &config,
                &app,
            ],
        );
        cmd.env("MARKER", "puma");
        cmd
    });
    let addr = herd.address("http");
    exercise(
        herd,
        move || get(&addr, "/"),
        "puma pid",
        |b| b.starts_with("puma pid"),
    );
}

/// lighttpd with `server.systemd-socket-activation`, serving a page that names its pid (written
/// by `include_shell` as lighttpd reads its config); INT is its graceful stop.
#[test]
fn lighttpd_with_systemd_socket_activation() {
    let herd = Herd::start_with(|dir| {
        let page = write(
            dir,
            "page.sh",
            "echo \"lighttpd pid $PPID\" > \"$(dirname \"$0\")/$PPID.txt\"\n\
             echo \"index-file.names = (\\\"$PPID.txt\\\")\"\n",
        );
        let config = write(
            dir,
            "lighttpd.conf",
            &format!(
                "server.systemd-socket-activation = \"enable\"\n\
                 server.document-root = \"{}\"\n\
                 include_shell \"exec /bin/sh {page}\"\n",
                dir.display()
            ),
        );
        herd_run(
            &[
                "--stop-signal",
                "INT",
                "--ready",
                "delay=500ms",
                "-b",
                "http=127.0.0.1:0,nonblocking",
            ],
            &["lighttpd", "-D", "-f", &config],
        )
    });
    let addr = herd.address("http");
    exercise(
        herd,
        move || get(&addr, "/"),
        "lighttpd pid",
        |b| b.starts_with("lighttpd pid"),
    );
}

/// A backend for HAProxy on a port of its own: each answer's body is the request's `X-Via`
/// header, which HAProxy sets to its own pid. Runs until the test process exits.
fn via_backend() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_with_via(stream));
        }
    });
    addr
}

fn answer_with_via(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut via = String::from("no X-Via header");
    let mut lines = BufReader::new(stream.try_clone()?).lines();
    while let Some(line) = lines.next().transpose()? {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("x-via") {
                via = value.trim().to_string();
            }
        }
    }
    let body = format!("{via}\n");
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// HAProxy in master-worker mode (`-Ws`: READY=1 through `sd_notify`) on `bind fd@3`,
/// proxying to a backend; USR1 is its graceful (soft) stop.
#[test]
fn haproxy_on_fd_3_in_master_worker_mode() {
    let backend = via_backend();
    let herd = Herd::start_with(|dir| {
        let config = write(
            dir,
            "haproxy.cfg",
            &format!(
                "global\n    nbthread 1\n\
                 defaults\n    mode http\n    timeout connect 5s\n    timeout client 10s\n    \
                 timeout server 10s\n\
                 frontend web\n    bind fd@3\n    \
                 http-request set-header X-Via \"haproxy pid %pid\"\n    default_backend app\n\
                 backend app\n    server app {backend}\n"
            ),
        );
        herd_run(
            &[
                "--ready",
                "notify",
                "--stop-signal",
                "USR1",
                "-b",
                "http=127.0.0.1:0,nonblocking",
            ],
            &["haproxy", "-Ws", "-f", &config],
        )
    });
    let addr = herd.address("http");
    exercise(
        herd,
        move || get(&addr, "/"),
        "haproxy pid",
        |b| b.starts_with("haproxy pid"),
    );
}

/// php-fpm's binary: `php-fpm`, or Debian's versioned `php-fpmX.Y`, in `PATH` or `/usr/sbin`.
fn php_fpm() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path.split(':').chain(["/usr/sbin"]);
    let mut found: Vec<String> = dirs
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .map(|entry| entry.path().display().to_string())
        .filter(|path| {
            let name = path.rsplit('/').next().unwrap_or("");
            name == "php-fpm"
                || name
                    .strip_prefix("php-fpm")
                    .is_some_and(|v| v.contains('.'))
        })
        .collect();
    found.sort();
    found
        .pop()
        .expect("php-fpm is installed by scripts/setup.sh")
}

/// php-fpm adopting herd's socket through `FPM_SOCKETS` on a blocking socket, ready through
/// `sd_notify`, asked over FastCGI; QUIT is its graceful stop.
#[test]
fn php_fpm_from_fpm_sockets() {
    let herd = Herd::start_with(|dir| {
        write(
            dir,
            "index.php",
            "<?php echo 'php-fpm pid ', getmypid(), \"\\n\";\n",
        );
        // php-fpm adopts the fd whose FPM_SOCKETS key is the pool's `listen` string; it never
        // binds that address itself then (herd's port is another here, chosen by the kernel).
        // With the default process_control_timeout (0), the master follows its graceful QUIT
        // with TERM at once, and a child killed mid-request resets its connection.
        let config = write(
            dir,
            "fpm.conf",
            "[global]\nerror_log = /proc/self/fd/2\ndaemonize = no\nprocess_control_timeout = 10s\n\
             [app]\nlisten = 127.0.0.1:9000\npm = static\npm.max_children = 1\n",
        );
        let mut cmd = herd_run(
            &[
                "--ready",
                "notify",
                "--stop-signal",
                "QUIT",
                "-b",
                "fcgi=127.0.0.1:0",
            ],
            &[
                &php_fpm(),
                "--nodaemonize",
                "--allow-to-run-as-root",
                "--fpm-config",
                &config,
            ],
        );
        cmd.env("FPM_SOCKETS", "127.0.0.1:9000=3");
        cmd
    });
    let addr = herd.address("fcgi");
    let script = herd.path("index.php");
    herd.wait_text("using inherited socket fd=3");
    exercise(
        herd,
        move || fastcgi_get(&addr, &script),
        "php-fpm pid",
        |b| b.starts_with("php-fpm pid"),
    );
}

/// A worker that says `STOPPING=1` as it exits, as HAProxy's master does on its soft stop:
/// herd takes the message before it reaps the worker, instead of dropping it (and warning)
/// as coming from no worker.
#[test]
fn a_stopping_message_sent_as_the_worker_exits_is_taken() {
    const WORKER: &str = "import os, signal, socket\n\
        path = os.environ['NOTIFY_SOCKET'].replace('@', '\\0', 1)\n\
        def say(message):\n    \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(message, path)\n\
        def stop(*_):\n    say(b'STOPPING=1')\n    os._exit(0)\n\
        signal.signal(signal.SIGTERM, stop)\n\
        say(b'READY=1')\n\
        while True:\n    signal.pause()\n";
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "-b",
        "127.0.0.1:0",
        "--",
        "python3",
        "-c",
        WORKER,
    ]);
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    for generation in [2, 3] {
        let (code, stdout, stderr) = herd.ctl(&["upgrade"]);
        assert_eq!(code, 0, "upgrade failed: {stdout}{stderr}");
        wait_status(&herd, &format!("generation {generation} settled"), |s| {
            settled(s, 2) && s["generation"] == generation
        });
    }
    stop_cleanly(herd);
}
