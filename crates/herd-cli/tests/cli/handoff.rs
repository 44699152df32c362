//! Handing sockets to other processes: `herd attach`, the `sockets` command, and what a
//! fetching process receives.

use std::io::Write;
use std::os::unix::io::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::*;

#[test]
fn an_attached_worker_serves_is_listed_and_is_stopped() {
    let mut herd = hello_on_http();
    let addr = herd.address("http");
    herd.wait_for_event("control_ready", &[]);
    let mut attached = Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .args(["attach", "--", "python3", &example("hello.py")])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = attached.id();
    herd.wait_for_event("worker_attached", &[("pid", pid.into())]);
    let status = herd.status();
    assert_eq!(status["attached"][0]["pid"], pid, "{status}");
    assert_eq!(
        status["attached"][0]["sockets"],
        serde_json::json!(["http"])
    );
    // The attached process takes its share of the connections.
    wait_until("the attached worker to answer", || {
        let body = get(&addr, "/").unwrap();
        if body.contains(&format!("pid {pid},")) {
            Ok(())
        } else {
            Err(body)
        }
    });
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(herd.wait_exit().code(), Some(0));
    let status = attached.wait().unwrap();
    assert!(
        status.success(),
        "the attached worker stops gracefully: {status:?}"
    );
}

#[test]
fn attach_refuses_unknown_sockets_and_worker_templates() {
    let herd = sleeper_on_http();
    let (code, _, stderr) = herd.ctl(&["attach", "--only", "nope", "--", "true"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no socket is named \"nope\""), "{stderr}");
    let (code, _, stderr) = herd.ctl(&["attach", "--", "echo", "{worker}"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("{worker} has no value"), "{stderr}");
    let (code, _, stderr) = herd.ctl(&["attach", "--", "echo", "{generation}"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("{generation} has no value"), "{stderr}");
    assert!(herd.status()["attached"].as_array().unwrap().is_empty());
}

/// Sends the `sockets` request and receives every fd that comes back.
fn fetch_raw(control: &str, request: &[u8]) -> (Value, Vec<std::os::unix::io::OwnedFd>) {
    let mut stream = UnixStream::connect(control).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request).unwrap();
    let mut bytes = Vec::new();
    let mut fds = Vec::new();
    let mut buf = [0u8; 4096];
    while !bytes.contains(&b'\n') {
        let got = herd_sys::fdpass::recv_with_fds(stream.as_fd(), &mut buf).unwrap();
        assert!(got.len > 0, "herd closed the connection");
        bytes.extend_from_slice(&buf[..got.len]);
        fds.extend(got.fds);
    }
    let line = String::from_utf8(bytes).unwrap();
    (serde_json::from_str(line.trim()).unwrap(), fds)
}

#[test]
fn fetched_fds_are_exactly_the_sockets_and_cloexec() {
    let herd = Herd::start_with(|dir| {
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "-w",
            "1",
            "-b",
            "web=127.0.0.1:0",
            "-b",
            "dns=udp://127.0.0.1:0",
            "-b",
        ])
        .arg(format!("local=unix:{}/s.sock", dir.display()))
        .args(["--", "sleep", "1000"]);
        cmd
    });
    herd.started(1);
    let web = herd.address("web");
    let (reply, fds) = fetch_raw(
        &herd.control(),
        b"{\"version\":1,\"command\":\"sockets\"}\n",
    );
    assert_eq!(reply["ok"], true, "{reply}");
    let sockets = reply["result"]["sockets"].as_array().unwrap();
    let names: Vec<&str> = sockets
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "dns", "local"]);
    assert_eq!(sockets[0]["family"], "inet");
    assert_eq!(sockets[0]["type"], "stream");
    assert_eq!(sockets[1]["type"], "datagram");
    assert_eq!(sockets[2]["family"], "unix");
    assert_eq!(sockets[0]["address"], web.as_str());
    assert_eq!(fds.len(), 3);
    for fd in &fds {
        assert!(herd_sys::fd::is_cloexec(fd.as_fd()).unwrap());
    }
    let listener = std::net::TcpListener::from(fds.into_iter().next().unwrap());
    assert_eq!(listener.local_addr().unwrap().to_string(), web);
    drop(listener);

    let (reply, fds) = fetch_raw(
        &herd.control(),
        b"{\"version\":1,\"command\":\"sockets\",\"only\":[\"dns\"]}\n",
    );
    assert_eq!(reply["result"]["sockets"].as_array().unwrap().len(), 1);
    assert_eq!(fds.len(), 1);

    // The worker library fetches the same way.
    let mut sockets = herd::Sockets::from_control(std::path::Path::new(&herd.control())).unwrap();
    let listener = sockets.take_tcp_listener("web").unwrap().unwrap();
    assert_eq!(listener.local_addr().unwrap().to_string(), web);
    assert!(sockets.take_udp_socket("dns").unwrap().is_some());
}

#[test]
fn a_disallowed_uid_fetches_nothing() {
    if !root_or_skip("needs root to switch users") {
        return;
    }
    let herd = sleepers(&["-w", "1"]);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    // Open the socket to everyone, as a careless admin might: the credential check still holds.
    std::fs::set_permissions(
        herd.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        herd.control(),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let out = Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .args(["attach", "--", "true"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("permission_denied"), "{stderr}");
    assert!(herd.status()["attached"].as_array().unwrap().is_empty());
}

#[test]
fn more_sockets_than_one_message_holds_arrive_in_batches() {
    // 300 sockets: more than the 252 fds one SCM_RIGHTS message carries.
    let mut args: Vec<String> = vec!["run".into(), "-w".into(), "1".into()];
    for _ in 0..300 {
        args.extend(["-b".to_string(), "127.0.0.1:0".to_string()]);
    }
    args.extend(["--".into(), "sleep".into(), "1000".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let herd = Herd::start(&args);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    let control = herd.control();
    let fetched = herd::fetch::fetch(
        std::path::Path::new(&control),
        &herd::fetch::FetchOptions::default(),
    )
    .unwrap();
    assert_eq!(fetched.len(), 300);
    let status = herd.status();
    for (i, f) in fetched.iter().enumerate() {
        assert_eq!(
            f.address,
            status["sockets"][i]["address"].as_str().unwrap(),
            "socket {i}"
        );
        let local = socket2::SockRef::from(&f.fd)
            .local_addr()
            .unwrap()
            .as_socket()
            .unwrap();
        assert_eq!(
            local.to_string(),
            f.address,
            "fd {i} is the socket its entry describes"
        );
    }
}

/// `herd attach` under an open-file limit too low for the sockets herd sends: the kernel
/// installs what fits and drops the rest (`MSG_CTRUNC`). The error names the limit and how to
/// raise it, not "unexpected answer ...: more fds than fit in one message", which blamed herd.
#[test]
fn attach_under_too_low_a_file_limit_says_so() {
    let mut args: Vec<&str> = vec!["run", "-w", "1"];
    for _ in 0..12 {
        args.extend(["-b", "127.0.0.1:0"]);
    }
    args.extend(["--", "sleep", "1000"]);
    let herd = Herd::start(&args);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    let out = Command::new("prlimit")
        .args(["--nofile=8:8", HERD, "attach", "--", "true"])
        .env("HERD_CONTROL", herd.control())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot receive the sockets from")
            && stderr.contains("its open-file limit (8) is too low for them; raise it (ulimit -n")
            && stderr.trim_end().lines().count() == 1,
        "{stderr}"
    );
}

/// `herd attach` run with stray fds of its caller in and around 3..3+N (as an interactive
/// shell keeps fd 10 open): the attached program gets exactly the N sockets at 3, 4, ... (the
/// same sockets as herd's own worker) and none of the strays, for 8, 64 and 300 sockets.
#[test]
fn attach_places_the_sockets_past_its_callers_stray_fds() {
    for n in [8usize, 64, 300] {
        let mut args = vec!["run".to_string(), "-w".into(), "1".into()];
        for i in 0..n {
            args.extend(["-b".to_string(), format!("s{i}=127.0.0.1:0")]);
        }
        args.extend(["--".to_string(), "sleep".into(), "1000".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let herd = Herd::start(&args);
        let worker = herd.started(1)[0].1;
        let link = |pid: u32, fd: usize| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .unwrap()
                .display()
                .to_string()
        };
        let expected: Vec<String> = (0..n).map(|i| link(worker, 3 + i)).collect();
        herd.wait_for_event("control_ready", &[]);

        // Strays: the first and last fds of the range, fd 10, the first fd above the range
        // and one further up.
        let strays = [3, 10, n + 2, n + 3, n + 40].map(|fd| fd as i32);
        let null = std::fs::File::open("/dev/null").unwrap();
        let source = std::os::unix::io::AsRawFd::as_raw_fd(&null);
        // No braces: herd attach expands templates in its arguments.
        let report = "import json, os\n\
            fds = dict()\n\
            for fd in os.listdir('/proc/self/fd'):\n\
            \x20   try: fds[int(fd)] = os.readlink('/proc/self/fd/' + fd)\n\
            \x20   except OSError: pass\n\
            env = os.environ.get\n\
            print(json.dumps(dict(fds=fds, count=env('LISTEN_FDS'), names=env('LISTEN_FDNAMES'))))\n";
        let mut attach = Command::new(HERD);
        attach
            .env("HERD_CONTROL", herd.control())
            .args(["attach", "--", "python3", "-c", report])
            .stdin(Stdio::null());
        // SAFETY: the child only calls fcntl and dup2 (async-signal-safe) before exec.
        unsafe {
            attach.pre_exec(move || {
                let high = libc::fcntl(source, libc::F_DUPFD, 600);
                if high < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for fd in strays {
                    if libc::dup2(high, fd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let out = attach.output().unwrap();
        drop(null);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{n} sockets: {stderr}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["count"], n.to_string(), "{n} sockets: {report}");
        let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        assert_eq!(report["names"], names.join(":"));
        let fds = report["fds"].as_object().unwrap();
        let mut numbers: Vec<usize> = fds.keys().map(|k| k.parse().unwrap()).collect();
        numbers.sort_unstable();
        // 0, 1, 2 and the sockets; python's own listing fd is gone by the time it reads links.
        assert_eq!(
            numbers,
            (0..3 + n).collect::<Vec<_>>(),
            "{n} sockets: the attached program's fds"
        );
        let got: Vec<&str> = (0..n)
            .map(|i| fds[&(3 + i).to_string()].as_str().unwrap())
            .collect();
        assert_eq!(
            got, expected,
            "{n} sockets: the same sockets as herd's worker"
        );
    }
}

/// `herd --control ./c.sock attach -- COMMAND`: COMMAND gets an absolute `HERD_CONTROL`, so it
/// reaches herd after changing directory.
#[test]
fn attach_hands_on_an_absolute_control_path() {
    let herd = sleepers(&["-w", "1"]);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    let script = format!("cd / && printf '%s\\n' \"$HERD_CONTROL\" && exec '{HERD}' status --json");
    let out = Command::new(HERD)
        .current_dir(herd.dir.path())
        .env_remove("HERD_CONTROL")
        .args(["--control", "./control.sock", "attach", "--", "sh", "-c"])
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let (control, status) = stdout.split_once('\n').unwrap();
    assert_eq!(control, herd.control(), "{stdout}");
    let status: Value = serde_json::from_str(status).unwrap();
    assert_eq!(status["pid"], herd.pid(), "{status}");
}
