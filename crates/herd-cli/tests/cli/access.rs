//! Who may talk to whom over the control socket: users let in with `--control-allow-uid`/`gid`
//! reach it as themselves, and clients refuse a server that another user prepared for them.
//! Both need root, to act as several users.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::*;

pub(crate) fn root() -> bool {
    root_or_skip("needs root to act as several users")
}

/// Runs `herd ARGS` as `uid`:`gid` with a clean control environment plus `env`; returns its
/// exit code, stdout and stderr.
pub(crate) fn herd_as(
    uid: u32,
    gid: u32,
    env: &[(&str, &Path)],
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = Command::new(HERD);
    cmd.env_remove("HERD_CONTROL")
        .env_remove("XDG_RUNTIME_DIR")
        .args(args)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sets `path`'s permission bits to `mode`.
fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A temporary directory anyone may write, sticky like /tmp.
pub(crate) fn shared_tmp() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    set_mode(tmp.path(), 0o1777);
    tmp
}

/// Makes the directory `path` with mode 0755, owned by `id` (as uid and gid).
fn owned_dir(path: &Path, id: u32) {
    std::fs::create_dir(path).unwrap();
    set_mode(path, 0o755);
    std::os::unix::fs::chown(path, Some(id), Some(id)).unwrap();
}

pub(crate) fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn control_allow_uid_and_gid_admit_those_users_and_no_other() {
    if !root() {
        return;
    }
    // herd's default place: TMPDIR/herd-0, in a directory anyone may enter, like /tmp.
    let tmp = shared_tmp();
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("TMPDIR", tmp.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("HERD_CONTROL")
            .args([
                "run",
                "--name",
                "web",
                "-w",
                "1",
                "--control-allow-uid",
                "65534",
                "--control-allow-gid",
                "4343",
                "-b",
                "127.0.0.1:0",
                "--",
                "sleep",
                "1000",
            ]);
        cmd
    });
    herd.started(1);
    // Ready, so that `herd status` exits 0 rather than 3 (degraded).
    herd.wait_for_event("worker_ready", &[]);
    herd.wait_for_event("control_ready", &[]);
    let dir = tmp.path().join("herd-0");
    let sock = dir.join("web.sock");
    // Others may pass through the directory, never list it; the socket lets them knock.
    assert_eq!(mode(&dir), 0o711);
    assert_eq!(mode(&sock), 0o666);
    let sock_arg = sock.to_str().unwrap();

    // The allowed uid, as itself, with no chmod by anyone.
    let (code, stdout, stderr) = herd_as(
        65534,
        65534,
        &[],
        &["--control", sock_arg, "status", "--json"],
    );
    assert_eq!(code, 0, "--control-allow-uid 65534 is admitted: {stderr}");
    assert!(stdout.contains("\"workers\""), "{stdout}");
    // A user whose primary group is allowed.
    let (code, _, stderr) = herd_as(4000, 4343, &[], &["--control", sock_arg, "status"]);
    assert_eq!(code, 0, "--control-allow-gid 4343 is admitted: {stderr}");
    // Anyone else reaches the socket and is refused by credentials.
    let (code, _, stderr) = herd_as(4001, 4001, &[], &["--control", sock_arg, "stop"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("uid 4001 is not allowed"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    herd.wait_for_event("control_denied", &[("uid", 4001.into())]);
    let (code, stdout, stderr) = herd_as(0, 0, &[], &["--control", sock_arg, "status", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let workers = status["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{status}");
    assert_ne!(
        workers[0]["state"], "stopping",
        "the refused stop did nothing"
    );
    // herd's own user still finds it by name, in a directory now open to passers-by.
    let (code, _, stderr) = herd_as(
        0,
        0,
        &[("TMPDIR", tmp.path())],
        &["--name", "web", "status"],
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn an_allow_list_behind_a_private_directory_is_reported() {
    // XDG_RUNTIME_DIR is 0700: the allowed users could never reach the socket; say so.
    let runtime = tempfile::tempdir().unwrap();
    set_mode(runtime.path(), 0o700);
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("XDG_RUNTIME_DIR", runtime.path())
            .env_remove("HERD_CONTROL")
            .args([
                "run",
                "--control-allow-uid",
                "65534",
                "-b",
                "127.0.0.1:0",
                "--",
                "sleep",
                "1000",
            ]);
        cmd
    });
    let warning = herd.wait_event("the warning", |e| {
        e["event"] == "setup_note"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("other users cannot reach"))
    });
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.contains(runtime.path().to_str().unwrap()),
        "{message}"
    );
    assert!(message.contains("pass --control"), "{message}");
}

#[test]
fn clients_refuse_a_server_in_another_users_directory() {
    if !root() {
        return;
    }
    const ATTACKER: u32 = 4242;
    const VICTIM: u32 = 65534;
    let tmp = shared_tmp();
    // The attacker's directory with a decoy socket, a symlink where the victim's default
    // directory belongs, and a decoy directly in the shared directory.
    let evil = tmp.path().join("evil");
    std::fs::create_dir(&evil).unwrap();
    std::os::unix::fs::chown(&evil, Some(ATTACKER), Some(ATTACKER)).unwrap();
    let loose = tmp.path().join("app.sock");
    let _decoy = FakeHerd::start_as(ATTACKER, &[&evil.join("default.sock"), &loose]);
    let link = tmp.path().join(format!("herd-{VICTIM}"));
    std::os::unix::fs::symlink(&evil, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(ATTACKER), Some(ATTACKER)).unwrap();

    let env = [("TMPDIR", tmp.path())];
    let refused = |args: &[&str], needle: &str| {
        let (code, stdout, stderr) = herd_as(VICTIM, VICTIM, &env, args);
        assert_eq!(code, 1, "{args:?} must fail: {stdout}{stderr}");
        assert!(
            stdout.is_empty(),
            "{args:?} printed the decoy's answer: {stdout}"
        );
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    };
    // The default path runs through the attacker's symlink.
    for command in [&["stop"][..], &["status"], &["upgrade"], &["scale", "3"]] {
        refused(command, "is not a directory");
    }
    // The attacker's own directory at that place.
    std::fs::remove_file(&link).unwrap();
    owned_dir(&link, ATTACKER);
    refused(&["stop"], &format!("belongs to uid {ATTACKER}"));
    // A path named explicitly, in a directory anyone may write: the server's uid decides.
    let loose = loose.to_str().unwrap();
    let why = format!("it runs as uid {ATTACKER}");
    refused(&["--control", loose, "stop"], &why);
    refused(&["--control", loose, "signal", "HUP"], &why);
    // The worker library's fetch, behind `herd attach`, refuses it too: no decoy sockets.
    refused(&["--control", loose, "attach", "--", "true"], &why);
}

#[test]
fn clients_refuse_a_server_in_a_directory_the_attacker_made_for_them() {
    if !root() {
        return;
    }
    const ATTACKER: u32 = 4242;
    const VICTIM: u32 = 4343;
    let tmp = shared_tmp();
    // The victim's default directory, made by the attacker first with the modes herd would
    // give it: the attacker owns both the directory and the decoy socket in it.
    let dir = tmp.path().join(format!("herd-{VICTIM}"));
    owned_dir(&dir, ATTACKER);
    let sock = dir.join("default.sock");
    let _decoy = FakeHerd::start_as(ATTACKER, &[&sock]);
    let shown = sock.to_str().unwrap();

    let run = |env: &[(&str, &Path)], args: &[&str]| {
        let mut env = env.to_vec();
        env.push(("TMPDIR", tmp.path()));
        herd_as(VICTIM, VICTIM, &env, args)
    };
    let refused = |env: &[(&str, &Path)], args: &[&str], needle: &str| {
        let (code, stdout, stderr) = run(env, args);
        assert_eq!(code, 1, "{args:?} must fail: {stdout}{stderr}");
        assert!(
            stdout.is_empty(),
            "{args:?} printed the decoy's answer: {stdout}"
        );
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    };
    let why = format!("it runs as uid {ATTACKER}");
    // The default path, --control, HERD_CONTROL, and the library's fetch (herd attach).
    refused(&[], &["stop"], &format!("belongs to uid {ATTACKER}"));
    refused(&[], &["--control", shown, "stop"], &why);
    refused(&[("HERD_CONTROL", &sock)], &["stop"], &why);
    refused(&[("HERD_CONTROL", &sock)], &["status"], &why);
    refused(&[], &["--control", shown, "attach", "--", "true"], &why);
    refused(&[("HERD_CONTROL", &sock)], &["attach", "--", "true"], &why);
    // Naming another owner does not help; the refusal says how to trust this one.
    refused(
        &[],
        &["--control", shown, "--control-owner", "4000", "stop"],
        &format!("--control-owner {ATTACKER}"),
    );
    // Naming this server's uid is the caller's say.
    let (code, stdout, stderr) = run(
        &[],
        &["--control", shown, "--control-owner", "4242", "stop"],
    );
    assert_eq!((code, stdout.as_str()), (0, "stopped\n"), "{stderr}");
    let owner = Path::new("4242");
    let (code, _, stderr) = run(
        &[("HERD_CONTROL_OWNER", owner)],
        &["--control", shown, "stop"],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(
        &[("HERD_CONTROL_OWNER", Path::new("app"))],
        &["--control", shown, "stop"],
    );
    assert_eq!(
        code, 2,
        "a uid that is not a number is a usage error: {stderr}"
    );
    assert!(stderr.contains("HERD_CONTROL_OWNER"), "{stderr}");
}

#[test]
fn clients_trust_another_users_herd_where_only_that_user_could_put_it() {
    if !root() {
        return;
    }
    const APP: u32 = 4242;
    const DEPLOY: u32 = 4343;
    let tmp = shared_tmp();
    // /srv (root's, 0755) / app (app's, 0755) / herd.sock: nobody but root and app could
    // have put a socket there.
    let srv = tmp.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    set_mode(&srv, 0o755);
    let dir = srv.join("app");
    owned_dir(&dir, APP);
    let sock = dir.join("herd.sock");
    let _server = FakeHerd::start_as(APP, &[&sock]);
    let (code, stdout, stderr) = herd_as(
        DEPLOY,
        DEPLOY,
        &[],
        &["--control", sock.to_str().unwrap(), "stop"],
    );
    assert_eq!((code, stdout.as_str()), (0, "stopped\n"), "{stderr}");
    // Once the root-owned directory is open to others, it no longer is.
    set_mode(&srv, 0o777);
    let (code, _, stderr) = herd_as(DEPLOY, DEPLOY, &[("HERD_CONTROL", &sock)], &["stop"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("it runs as uid {APP}")),
        "{stderr}"
    );
}

#[test]
fn an_allowed_user_names_another_users_herd_with_control_owner() {
    if !root() {
        return;
    }
    const APP: u32 = 4242;
    const DEPLOY: u32 = 4343;
    // app's herd in a directory of its own, directly in a directory anyone may write (as
    // /tmp/herd-app would be): anyone could have made such a directory.
    let tmp = shared_tmp();
    let dir = tmp.path().join("app");
    owned_dir(&dir, APP);
    let sock = dir.join("herd.sock");
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("HERD_CONTROL", &sock)
            .uid(APP)
            .gid(APP)
            .args(["run", "-w", "1", "--control-allow-uid", "4343"])
            .args(["-b", "127.0.0.1:0", "--", "sleep", "1000"]);
        cmd
    });
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    let shown = sock.to_str().unwrap();
    // Not trusted by itself...
    let (code, stdout, stderr) = herd_as(DEPLOY, DEPLOY, &[], &["--control", shown, "status"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("--control-owner 4242"), "{stderr}");
    // ...but once deploy names app as its owner.
    let owner = ["--control", shown, "--control-owner", "4242"];
    let (code, stdout, stderr) = herd_as(
        DEPLOY,
        DEPLOY,
        &[],
        &[&owner[..], &["status", "--json"]].concat(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"workers\""), "{stdout}");
    // But herd (as app) may not signal deploy's processes: it could not stop one attached
    // with the pool, which would go on holding the port after herd stopped. Refused, saying
    // so (was: attached, then given up on at herd's stop, which exited 0).
    let out = tmp.path().join("ran.txt");
    let script = format!("touch {}", out.display());
    let attach = [&owner[..], &["attach", "--", "sh", "-c", &script]].concat();
    let (code, stdout, stderr) = herd_as(DEPLOY, DEPLOY, &[], &attach);
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    assert!(
        stderr.contains("herd (uid 4242) may not signal the attaching process (uid 4343)")
            && stderr.trim_end().lines().count() == 1,
        "{stderr}"
    );
    assert!(!out.exists(), "the command ran");
    let (code, stdout, stderr) = herd_as(APP, APP, &[], &["--control", shown, "status", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["attached"], serde_json::json!([]));
}

#[test]
fn refused_connections_are_logged_at_a_bounded_rate() {
    if !root() {
        return;
    }
    // The allow list opens the socket (0666) to everyone, so any user can knock at will.
    let tmp = tempfile::tempdir().unwrap();
    set_mode(tmp.path(), 0o711);
    let sock = tmp.path().join("flood.sock");
    let sock_arg = sock.to_str().unwrap().to_string();
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "--control",
            &sock_arg,
            "--control-allow-uid",
            "65534",
        ])
        .args(&ONE_SLEEPER[1..]);
        cmd
    });
    herd.started(1);
    const KNOCKS: u64 = 200;
    // Another user connects KNOCKS times and reads each refusal: once it has them all, herd
    // has dealt with every connection.
    let flood = Command::new("python3")
        .args([
            "-c",
            "import socket, sys\n\
             for _ in range(int(sys.argv[2])):\n\
             \x20   s = socket.socket(socket.AF_UNIX)\n\
             \x20   s.connect(sys.argv[1])\n\
             \x20   assert b'permission_denied' in s.recv(4096)\n\
             \x20   s.close()\n",
            &sock_arg,
            &KNOCKS.to_string(),
        ])
        .uid(65533)
        .gid(65533)
        .output()
        .unwrap();
    assert!(flood.status.success(), "{flood:?}");
    let denied = |e: &serde_json::Value| e["event"] == "control_denied";
    let summary = |e: &serde_json::Value| e["event"] == "control_denied_unlogged";
    // Every refusal is accounted for, logged or counted; the count comes when the window
    // ends, without another knock.
    let (logged, counted) = herd.wait_for("every refusal logged or counted", |lines| {
        let logged = events(lines).filter(|e| denied(e)).count() as u64;
        let counted: u64 = events(lines)
            .filter(|e| summary(e))
            .map(|e| e["suppressed"].as_u64().unwrap())
            .sum();
        (logged + counted >= KNOCKS).then_some((logged, counted))
    });
    assert_eq!(logged + counted, KNOCKS);
    assert!(logged <= 10, "{logged} refusals logged one by one");
}

#[test]
fn the_default_directory_is_closed_again_when_the_last_shared_herd_stops() {
    if !root() {
        return;
    }
    let tmp = shared_tmp();
    let start = |name: &str| {
        let herd = Herd::start_with(|_| {
            let mut cmd = herd_json();
            cmd.env("TMPDIR", tmp.path())
                .env_remove("XDG_RUNTIME_DIR")
                .env_remove("HERD_CONTROL")
                .args(["--name", name, "run", "--control-allow-uid", "65534"])
                .args(&ONE_SLEEPER[1..]);
            cmd
        });
        herd.wait_for_event("control_ready", &[]);
        herd
    };
    let stop = |mut herd: Herd, name: &str| {
        let sock = tmp.path().join(format!("herd-0/{name}.sock"));
        let (code, _, stderr) = ctl_at(sock.to_str().unwrap(), &["stop"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(herd.wait_exit().success());
    };
    let dir = tmp.path().join("herd-0");
    // Two herds with allow lists share the directory: the first to stop leaves it open for
    // the other, the last closes it.
    let a = start("a");
    let b = start("b");
    assert_eq!(mode(&dir), 0o711);
    stop(a, "a");
    assert_eq!(mode(&dir), 0o711, "b's users still need to pass through");
    stop(b, "b");
    assert_eq!(mode(&dir), 0o700);
    // A herd without an allow list leaves the directory as it is.
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("TMPDIR", tmp.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("HERD_CONTROL")
            .args(["--name", "c"])
            .args(ONE_SLEEPER);
        cmd
    });
    herd.wait_for_event("control_ready", &[]);
    stop(herd, "c");
    assert_eq!(mode(&dir), 0o700);
}
