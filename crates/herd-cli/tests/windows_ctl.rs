//! The control clients on Windows, run under Wine by scripts/check-windows.sh: the real
//! herd.exe's `status` (table and JSON), `scale`, `upgrade`, `stop`, `signal`, and the sockets
//! fetched by an unrelated process with `herd::Sockets::from_control`, each against a fake
//! herd in this test process: the real control pipe server (`PipeServer`) answering canned
//! results and recording what it was asked.
#![cfg(windows)]

mod windows_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::windows::io::OwnedSocket;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use herd_cli::control::pipe_server::{PipePeer, PipeServer};
use herd_cli::control::protocol::{self, Request, Response};
use herd_cli::control::reply::Reply;
use herd_cli::control::results::{ScaleResult, SignalResult, Status, StopResult, UpgradeResult};
use herd_sys::windows::pipe::SecurePipe;
use serde_json::{json, Value};
use windows_support::SpawnUnderWine;

const HERD: &str = env!("CARGO_BIN_EXE_herd");
const TIMEOUT: Duration = Duration::from_secs(30);

/// A fake herd serving `pipe` on a thread of its own: it answers each request with a canned
/// result (a `sockets` request with `listener`), and sends each request it gets on `asked`.
struct FakeHerd {
    pipe: String,
    asked: mpsc::Receiver<(protocol::Command, u32)>,
}

impl FakeHerd {
    fn start(pipe: &str, listener: Option<&TcpListener>) -> FakeHerd {
        let (tell, asked) = mpsc::channel();
        let (bound, is_bound) = mpsc::channel();
        let socket: Option<OwnedSocket> = listener.map(|l| l.try_clone().unwrap().into());
        let name = pipe.to_string();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let server = PipeServer::bind(SecurePipe::new(&name, &[]).unwrap()).unwrap();
                bound.send(()).unwrap();
                let socket = std::sync::Arc::new(socket);
                server
                    .serve(move |request: Request, peer: PipePeer| {
                        let _ = tell.send((request.command.clone(), peer.pid));
                        let socket = socket.as_ref().as_ref().map(|s| s.try_clone().unwrap());
                        async move { canned(request.command, socket) }
                    })
                    .await;
            });
        });
        is_bound
            .recv_timeout(TIMEOUT)
            .expect("the fake herd serves");
        FakeHerd {
            pipe: pipe.to_string(),
            asked,
        }
    }

    /// The next request it got, and from which process.
    fn asked(&self) -> (protocol::Command, u32) {
        self.asked.recv_timeout(TIMEOUT).expect("a request")
    }
}

/// A status of two workers and one socket.
fn status() -> Status {
    serde_json::from_value(json!({
        "pid": 77, "name": "web", "version": "0", "uptime_ms": 60000, "generation": 3,
        "upgrading_to": null, "stopping": false, "desired": 2, "running": 2, "ready": 2,
        "workers": [
            {"slot": 0, "pid": 101, "generation": 3, "state": "ready", "stopping_reason": null,
             "uptime_ms": 5000, "restarts": 0, "last_exit": null, "status": "serving"},
            {"slot": 1, "pid": 102, "generation": 3, "state": "ready", "stopping_reason": null,
             "uptime_ms": 5000, "restarts": 1, "last_exit": null, "status": null}
        ],
        "waiting": [], "attached": [],
        "sockets": [{"name": "http", "fd": 3, "kind": "tcp", "family": "inet", "type": "stream",
                     "address": "127.0.0.1:8080"}]
    }))
    .unwrap()
}

/// What the fake herd answers to `command`.
fn canned(command: protocol::Command, socket: Option<OwnedSocket>) -> Reply {
    use protocol::Command as C;
    let response = match command {
        C::Status => Response::ok(status()),
        C::Scale {
            workers, min, max, ..
        } => Response::ok(ScaleResult {
            previous: 2,
            workers: workers.unwrap_or(3),
            min,
            max,
        }),
        C::Upgrade { .. } => Response::ok(UpgradeResult {
            generation: 4,
            overridden: Vec::new(),
        }),
        C::Stop { .. } => Response::ok(StopResult { stopped: true }),
        C::Signal { .. } => Response::ok(SignalResult { signalled: 2 }),
        C::Sockets { .. } => {
            let info = json!({"sockets": [{"name": "http", "kind": "tcp", "family": "inet",
                                           "type": "stream", "address": "127.0.0.1:1"}]});
            let result: herd_cli::control::results::SocketsResult =
                serde_json::from_value(info).unwrap();
            return Reply {
                response: Response::ok(result),
                fds: socket.into_iter().collect(),
            };
        }
        C::Reexec | C::Logs { .. } => Response::error(protocol::ErrorCode::Internal, "no"),
    };
    Reply::from(response)
}

fn unique_pipe(test: &str) -> String {
    format!(r"\\.\pipe\herd-test\{}\{test}", std::process::id())
}

/// Runs herd.exe with `args`.
fn herd(args: &[&str]) -> Output {
    Command::new(HERD)
        .args(args)
        .stdin(Stdio::null())
        .output_under_wine()
        .unwrap()
}

/// Runs `herd --control PIPE ARGS`, which must succeed, and returns its stdout.
fn herd_ok(pipe: &str, args: &[&str]) -> String {
    let mut all = vec!["--control", pipe];
    all.extend_from_slice(args);
    let out = herd(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "herd {args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn status_shows_the_table_and_the_json_herd_sent() {
    let fake = FakeHerd::start(&unique_pipe("status"), None);
    let table = herd_ok(&fake.pipe, &["status"]);
    assert!(
        table.starts_with("herd 'web' pid 77, up 1m0s, generation 3: 2 of 2 workers ready"),
        "{table}"
    );
    assert!(
        table.contains("serving") && table.contains("127.0.0.1:8080"),
        "{table}"
    );
    let (command, pid) = fake.asked();
    assert_eq!(command, protocol::Command::Status);
    assert_ne!(
        pid,
        std::process::id(),
        "asked by herd.exe, not this process"
    );

    let printed: Value = serde_json::from_str(&herd_ok(&fake.pipe, &["status", "--json"])).unwrap();
    assert_eq!(printed, serde_json::to_value(status()).unwrap());
}

#[test]
fn scale_upgrade_stop_and_signal_send_what_unix_sends() {
    let fake = FakeHerd::start(&unique_pipe("commands"), None);
    use protocol::Command as C;
    let cases: &[(&[&str], C, &str)] = &[
        (
            &["scale", "3"],
            C::Scale {
                workers: Some(3),
                delta: None,
                min: None,
                max: None,
            },
            "scaled from 2 to 3 workers\n",
        ),
        (
            &["scale", "2..5"],
            C::Scale {
                workers: None,
                delta: None,
                min: Some(2),
                max: Some(5),
            },
            "autoscaling between 2 and 5 workers (now 3)\n",
        ),
        (
            &["upgrade", "--timeout", "90s"],
            C::Upgrade {
                timeout_ms: Some(90_000),
                reload_config: false,
            },
            "upgraded: every worker now runs generation 4\n",
        ),
        (
            &["upgrade", "--reload-config"],
            C::Upgrade {
                timeout_ms: Some(600_000),
                reload_config: true,
            },
            "upgraded with the config file read again: every worker now runs generation 4\n",
        ),
        (
            &["stop"],
            C::Stop {
                grace_ms: None,
                fast: false,
                takeover: false,
            },
            "stopped\n",
        ),
        (
            &["stop", "--fast"],
            C::Stop {
                grace_ms: None,
                fast: true,
                takeover: false,
            },
            "stopped\n",
        ),
        (
            &["signal", "sigterm", "--worker", "1"],
            C::Signal {
                signal: "TERM".into(),
                slot: Some(1),
            },
            "sent TERM to 2 workers\n",
        ),
        (
            &["signal", "KILL"],
            C::Signal {
                signal: "KILL".into(),
                slot: None,
            },
            "sent KILL to 2 workers\n",
        ),
    ];
    for (args, sent, printed) in cases {
        assert_eq!(herd_ok(&fake.pipe, args), *printed, "{args:?}");
        assert_eq!(fake.asked().0, *sent, "{args:?}");
    }
}

#[test]
fn the_default_pipe_is_the_one_herd_names_and_a_missing_herd_is_named() {
    let name = format!("ctl-test-{}", std::process::id());
    let user = herd_sys::windows::sid::Sid::current_user().unwrap();
    let pipe = herd_cli::control::pipe_name::resolve(None, None, &name, user.as_str()).unwrap();
    let fake = FakeHerd::start(&pipe, None);
    let out = herd(&["--name", &name, "stop", "--fast"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(matches!(
        fake.asked().0,
        protocol::Command::Stop { fast: true, .. }
    ));

    let out = herd(&["--name", "nobody-here", "status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "herd: error: no herd named nobody-here is running (pipe \\\\.\\pipe\\herd\\{}\\nobody-here): \
         start one with 'herd run', or select it with --name or --control\n",
        user.as_str()
    );
    assert_eq!(stderr, expected);
    let out = herd(&["--control", r"\\.\pipe\herd-test\none", "status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(r"herd: error: no herd is running at \\.\pipe\herd-test\none: "),
        "{stderr}"
    );
}

#[test]
fn bad_client_input_fails_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["signal", "HUP"], "signal 'HUP' has no meaning on Windows"),
        (&["--name", r"a\b", "status"], "--name 'a\\b' must be"),
        (
            &["--control", "C:\\x.sock", "status"],
            "on Windows the control channel is a local named pipe",
        ),
        (
            &["--control-owner", "5", "status"],
            "--control-owner is not available on Windows",
        ),
    ];
    for (args, needle) in cases {
        let out = herd(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// With `HERD_TEST_FETCH` set to a pipe, this test binary is a program unrelated to herd: it
/// fetches the socket `http` from the herd there, says `ready PID`, and answers one connection
/// with `fetched by PID`.
#[test]
fn fetching_program() {
    let Some(pipe) = std::env::var_os("HERD_TEST_FETCH") else {
        return;
    };
    let mut sockets = herd::Sockets::from_control(Path::new(&pipe)).expect("sockets from herd");

    let listener = sockets.take_tcp_listener("http").unwrap().expect("http");
    let pid = std::process::id();
    println!("ready {pid}");

    let (mut stream, _) = listener.accept().unwrap();
    let _ = writeln!(stream, "fetched by {pid}");
}

#[test]
fn an_unrelated_process_fetches_the_sockets_and_serves_on_them() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let fake = FakeHerd::start(&unique_pipe("fetch"), Some(&listener));
    drop(listener);
    let mut program = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fetching_program",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("HERD_TEST_FETCH", &fake.pipe)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn_under_wine()
        .unwrap();
    let (tell, told) = mpsc::channel();
    let stdout = BufReader::new(program.stdout.take().unwrap());
    std::thread::spawn(move || {
        // libtest's "test fetching_program ... " leads the line.
        let ready = (stdout.lines().map_while(Result::ok))
            .find_map(|l| l.split("ready ").nth(1).map(str::to_string));
        let _ = tell.send(ready);
    });
    let ready = told
        .recv_timeout(TIMEOUT)
        .expect("the program says it is ready");
    let ready = ready.expect("the program fetched the sockets");
    assert_eq!(ready, program.id().to_string());
    let (command, pid) = fake.asked();
    assert_eq!(
        command,
        protocol::Command::Sockets {
            only: None,
            attach: false
        }
    );
    assert_eq!(
        pid,
        program.id(),
        "herd knows the program by the pipe's word"
    );

    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(answer.trim(), format!("fetched by {}", program.id()));
    let _ = program.kill();
    let _ = program.wait();
}

#[test]
fn herds_own_client_rebuilds_the_sockets_too() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let fake = FakeHerd::start(&unique_pipe("ctl-fetch"), Some(&listener));
    drop(listener);
    let fetched = herd_cli::ctl::fetch(Path::new(&fake.pipe), vec!["http".into()], true).unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].0.name, "http");
    let (command, _) = fake.asked();
    let only = Some(vec!["http".to_string()]);
    assert_eq!(command, protocol::Command::Sockets { only, attach: true });
    let rebuilt = TcpListener::from(fetched.into_iter().next().unwrap().1);
    let _client = TcpStream::connect(address).unwrap();
    rebuilt.accept().unwrap();
}

/// Serves `pipe` once with a raw server that writes `answer` and then holds the pipe open
/// until the client goes.
fn raw_server(pipe: &str, answer: Vec<u8>) -> std::thread::JoinHandle<()> {
    let (bound, is_bound) = mpsc::channel();
    let pipe = pipe.to_string();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut server = tokio::net::windows::named_pipe::ServerOptions::new()
                .first_pipe_instance(true)
                .create(&pipe)
                .unwrap();
            bound.send(()).unwrap();
            server.connect().await.unwrap();
            let _ = server.write_all(&answer).await;
            let _ = server.read(&mut [0; 1]).await;
        });
    });
    is_bound.recv_timeout(TIMEOUT).unwrap();
    server
}

#[test]
fn endless_and_silent_answers_fail_within_the_bounds() {
    let pipe = unique_pipe("endless");
    let server = raw_server(&pipe, vec![b'x'; 2 << 20]);
    let e = herd::fetch::fetch(Path::new(&pipe), &Default::default()).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("sent more than 1 MiB without a line end: it is not a herd"),
        "{e}"
    );
    server.join().unwrap();

    let pipe = unique_pipe("silent");
    let server = raw_server(&pipe, Vec::new());
    let mut connection = herd::pipe::Connection::open(Path::new(&pipe)).unwrap();
    connection.check_server().unwrap();
    let start = Instant::now();
    let late = connection.read_line(Some(start + Duration::from_millis(300)), 1 << 20);
    assert!(matches!(late, Err(herd::pipe::ReadError::Late)), "{late:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(connection);
    server.join().unwrap();
}

/// A takeover believes the pipe, not what is said over it: the fake herd's status names
/// process 77, while this test process serves its pipe.
#[test]
fn a_takeover_refuses_a_herd_whose_status_names_another_process() {
    let fake = FakeHerd::start(&unique_pipe("impostor"), None);
    let out = herd(&[
        "run",
        "--takeover",
        &fake.pipe,
        "-b",
        "http=127.0.0.1:0",
        "--",
        "no-such-worker",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("herd: error"))
        .collect();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(errors.len(), 1, "{stderr}");
    let served_by = format!("served by process {}", std::process::id());
    assert!(
        errors[0].contains("says herd is process 77") && errors[0].contains(&served_by),
        "{stderr}"
    );
    assert_eq!(fake.asked().0, protocol::Command::Status);
    // herd has exited: whatever it asked is recorded, and it asked for no socket.
    assert!(
        fake.asked.try_recv().is_err(),
        "it went on after the status"
    );
}

/// A herd that exits (another client's stop) after taking this client's stop request, before
/// answering it: `herd stop` reports the stop, as it would have been answered.
#[test]
fn a_stop_taken_and_unanswered_because_herd_exited_reports_the_stop() {
    let pipe = unique_pipe("stopped-unanswered");
    let server = raw_server(&pipe, Vec::new());
    let out = herd(&["--control", &pipe, "stop"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "stopped\n");
    server.join().unwrap();
}
