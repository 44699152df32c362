//! Privilege separation and worker limits: --user/--group, --chdir, --umask, --nofile,
//! --rlimit, --env, --clear-env.

use std::os::unix::fs::DirBuilderExt;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

fn facts(herd: &Herd, addr: &str) -> Value {
    wait_status(herd, "a ready worker", |s| s["ready"] == 1);
    serde_json::from_str(&get(addr, "/").unwrap()).unwrap()
}

#[test]
fn workers_run_as_another_user_behind_a_privileged_port() {
    if !root_or_skip("needs root to bind a privileged port and switch users") {
        return;
    }
    // Port 80 if it is free, else another privileged port.
    let port = (80..1024)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap();
    let spec = format!("http=127.0.0.1:{port}");
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--user",
        "nobody",
        "--group",
        "65534",
        "--ready",
        "notify",
        "-b",
        &spec,
        "--",
        "/usr/bin/python3",
        &worker("whoami.py"),
    ]);
    let addr = herd.address("http");
    assert_eq!(addr, format!("127.0.0.1:{port}"));
    // READY=1 reached herd: the notify socket is reachable for the unprivileged worker.
    let facts = facts(&herd, &addr);
    assert_eq!(facts["uid"], 65534, "{facts}");
    assert_eq!(facts["gid"], 65534, "{facts}");
    assert!(
        !facts["groups"]
            .as_array()
            .unwrap()
            .contains(&Value::from(0)),
        "no root group: {facts}"
    );
    assert_eq!(facts["can_bind_privileged"], false, "{facts}");
    // herd itself keeps root, to start the next workers.
    assert_eq!(
        status_field(herd.pid(), "Uid").split_whitespace().next(),
        Some("0")
    );
}

#[test]
fn workers_get_their_directory_umask_limits_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap().display().to_string();
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--ready",
        "notify",
        "--chdir",
        &cwd,
        "--umask",
        "027",
        "--nofile",
        "1234",
        "--rlimit",
        "core=0",
        "--env",
        "GREETING=hi",
        "--clear-env",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "/usr/bin/python3",
        &worker("whoami.py"),
    ]);
    let addr = herd.address("http");
    let facts = facts(&herd, &addr);
    assert_eq!(facts["cwd"], cwd.as_str());
    assert_eq!(facts["umask"], 0o027);
    assert_eq!(facts["nofile"], serde_json::json!([1234, 1234]));
    assert_eq!(facts["env"]["GREETING"], "hi");
    assert_eq!(
        facts["env"]["HOME"],
        Value::Null,
        "--clear-env drops HOME: {facts}"
    );
    assert!(
        facts["env"]["PATH"].is_string(),
        "--clear-env keeps PATH: {facts}"
    );
    assert_eq!(
        facts["env"]["HERD_WORKER"], "0",
        "herd's own variables stay: {facts}"
    );
}

#[test]
fn bad_worker_options_are_usage_errors() {
    for (args, needle) in [
        (
            &["--user", "no-such-user-herd"][..],
            "no user named 'no-such-user-herd'",
        ),
        (
            &["--chdir", "/nonexistent/dir"][..],
            "--chdir /nonexistent/dir: no such directory",
        ),
        (&["--rlimit", "bogus=1"][..], "unknown resource 'bogus'"),
        (&["--rlimit", "nofile=10:5"][..], "above the hard limit"),
        (&["--umask", "999"][..], "not an octal umask"),
        (&["--env", "NOEQUALS"][..], "is not KEY=VALUE"),
    ] {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-b", "127.0.0.1:0", "--", "true"]);
        assert_fails(&all, 2, needle);
    }
}

/// With `--user`, the workers' notify socket is theirs (0600) in a directory of herd's that
/// others may pass through (0711): the workers say `READY=1`, through a re-exec too, and no
/// other local user can send a datagram (a sender could otherwise attach files whose release
/// holds herd's closing threads). Stopped, herd leaves nothing behind.
#[test]
fn a_user_herds_notify_socket_admits_its_workers_and_no_other_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    if !root_or_skip("needs root to run workers as another user") {
        return;
    }
    let mut herd = user_herd(&[]);
    // READY=1 arrived: the notify socket was created and reached.
    let addr = herd.address("http");
    assert_eq!(facts(&herd, &addr)["uid"], 65534);
    let notify = env_var(herd.started(1)[0].1, "NOTIFY_SOCKET").unwrap();
    let socket = std::path::PathBuf::from(&notify);
    let dir = socket.parent().unwrap().to_path_buf();
    let name = dir.file_name().unwrap().to_str().unwrap();
    assert!(
        dir.starts_with(std::env::temp_dir()) && name.starts_with("herd-notify-"),
        "{notify}"
    );
    assert!(!notify.contains(&herd.pid().to_string()), "{notify}");
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (65534, 0o600)
    );
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o711));
    // Another user is refused by the kernel.
    let send = "import socket, sys\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
        try:\n    s.sendto(b'READY=1', sys.argv[1])\n\
        except PermissionError:\n    sys.exit(13)\n";
    let refused = std::process::Command::new("/usr/bin/python3")
        .args(["-c", send, &notify])
        .uid(65533)
        .gid(65533)
        .status()
        .unwrap();
    assert_eq!(refused.code(), Some(13), "another user reached {notify}");
    // Across a re-exec the same socket serves, and a worker started after it says READY=1.
    let (code, _, err) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{err}");
    let fresh = herd.started(2)[1].1;
    assert!(environ(fresh).contains(&format!("NOTIFY_SOCKET={notify}")));
    assert_eq!(facts(&herd, &addr)["uid"], 65534);
    // Its file removed (an operator's clean-up): bound again, the workers' again, and the
    // next generation says READY=1 there.
    std::fs::remove_file(&socket).unwrap();
    herd.wait_for_event("socket_file_removed", &[("socket", "notify".into())]);
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (65534, 0o600)
    );
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o711);
    let (code, _, err) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{err}");
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// A temporary directory the workers of another user cannot pass through, that another user
/// could move things in, or that herd cannot write (a read-only file system), is a usage error
/// before anything is bound, for `herd run` and `herd check` alike.
#[test]
fn a_tmpdir_unfit_for_the_workers_notify_socket_is_a_usage_error() {
    if !root_or_skip("needs root to run workers as another user") {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let closed = top.path().join("closed");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&closed)
        .unwrap();
    let open = top.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let control = top.path().join("control.sock");
    let config = top.path().join("herd.toml");
    std::fs::write(
        &config,
        "user = \"nobody\"\nbind = [\"127.0.0.1:0\"]\ncommand = [\"true\"]\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let run = ["run", "--user", "nobody", "-b", "127.0.0.1:0", "--", "true"];
    let check = ["check", "--config", config];
    // A read-only TMPDIR (systemd's ProtectSystem=strict without PrivateTmp=yes), made in a
    // mount namespace of herd's own, where the system allows one.
    let read_only = top.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    let mut cases = vec![
        (&closed, "cannot pass through", false),
        (&open, "not sticky", false),
    ];
    if private_mounts_work() {
        cases.push((&read_only, "read-only file system", true));
    }
    for (tmpdir, needle, remount) in cases {
        for args in [&run[..], &check[..]] {
            let verb = args[0];
            let mut command = if remount {
                let mut c = std::process::Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(r#"mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@""#)
                    .arg(tmpdir)
                    .arg(HERD);
                c
            } else {
                std::process::Command::new(HERD)
            };
            let mut herd = command
                .env("TMPDIR", tmpdir)
                .env("HERD_CONTROL", &control)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let status = wait_child(&mut herd, Duration::from_secs(30), libc::SIGKILL);
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut herd.stderr.take().unwrap(), &mut stderr).unwrap();
            assert_eq!(status.and_then(|s| s.code()), Some(2), "{verb}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{verb}: {stderr}");
            assert!(
                stderr.contains(needle) && stderr.contains("TMPDIR"),
                "{stderr}"
            );
        }
    }
    assert!(!control.exists(), "the control socket was bound");
}

/// herd running one worker (`whoami.py`) as `nobody` that says `READY=1` on its notify socket,
/// with `extra` options for `herd run`.
pub(crate) fn user_herd(extra: &[&str]) -> Herd {
    let whoami = worker("whoami.py");
    let mut args = vec!["run", "-w", "1", "--user", "nobody", "--ready", "notify"];
    args.extend_from_slice(extra);
    args.extend(["-b", "http=127.0.0.1:0", "--", "/usr/bin/python3", &whoami]);
    Herd::start(&args)
}

/// Whether a process may have a mount namespace of its own here and bind-mount in it, read-only
/// too (`unshare --mount`, then `mount --bind` and a read-only remount of a scratch directory):
/// root in a container may lack `CAP_SYS_ADMIN`, or have mounts denied (AppArmor, seccomp).
fn private_mounts_work() -> bool {
    let scratch = tempfile::tempdir().unwrap();
    let works = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" "$0" && mount -o remount,bind,ro "$0""#)
        .arg(scratch.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        eprintln!("skipping what needs a private mount namespace with bind mounts: none here");
    }
    works
}

/// A `--user` herd killed with SIGKILL leaves its notify directory; the next one removes it.
#[test]
fn the_notify_directory_of_a_killed_user_herd_is_removed_by_the_next() {
    if !root_or_skip("needs root to run workers as another user") {
        return;
    }
    let args = [
        "run",
        "-w",
        "1",
        "--user",
        "nobody",
        "-b",
        "127.0.0.1:0",
        "--",
        "sleep",
        "1000",
    ];
    let mut killed = Herd::start(&args);
    let notify = env_var(killed.started(1)[0].1, "NOTIFY_SOCKET").unwrap();
    let dir = std::path::Path::new(&notify)
        .parent()
        .unwrap()
        .to_path_buf();
    killed.signal(libc::SIGKILL);
    killed.wait_exit();
    assert!(
        dir.exists(),
        "{} was removed by a killed herd",
        dir.display()
    );
    let next = Herd::start(&args);
    next.started(1);
    assert!(!dir.exists(), "{} is still there", dir.display());
}

/// einhorn's acknowledgement socket of workers of another user is theirs, beside their notify
/// socket, and their acks count, across a re-exec too.
#[test]
fn einhorn_acks_of_workers_of_another_user_count() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !root_or_skip("needs root to run workers as another user") {
        return;
    }
    let worker = repo().join("crates/herd-cli/tests/interop/einhorn_worker.rb");
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--user",
        "nobody",
        "--ready",
        "notify",
        "--min-ready",
        "0",
        "--compat",
        "einhorn",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "ruby",
        worker.to_str().unwrap(),
    ]);
    let status = wait_status(&herd, "a worker ready by its ack", |s| settled(s, 1));
    let pid = worker_pids(&status)[0];
    let find = |name: &str| {
        let value =
            env_var(pid, name).unwrap_or_else(|| panic!("no {name} in {pid}'s environment"));
        std::path::PathBuf::from(value)
    };
    let (ack, notify) = (find("EINHORN_SOCK_PATH"), find("NOTIFY_SOCKET"));
    assert_eq!(ack.parent(), notify.parent());
    let meta = std::fs::symlink_metadata(&ack).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (65534, 0o600)
    );
    let (code, _, err) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{err}");
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
    assert!(
        !notify.parent().unwrap().exists(),
        "{} left behind",
        notify.display()
    );
}

/// `--user` with a user in 300 groups (more than fit the first `getgrouplist` buffer) and
/// `--group` with a group whose entry is larger than 16 KiB (thousands of members): the
/// workers get every group. Runs herd in a private mount namespace whose `/etc/passwd` and
/// `/etc/group` are bind-mounted copies with the test's user and groups added.
#[test]
fn workers_get_every_group_of_a_user_in_hundreds_of_groups() {
    if !root_or_skip("needs root to switch users and mount") {
        return;
    }
    if !private_mounts_work() {
        return;
    }
    const UID: u32 = 64_000;
    const FIRST_GID: u32 = 61_000;
    let big_gid = FIRST_GID + 300;
    let dir = tempfile::tempdir().unwrap();
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd.push_str(&format!(
        "herdmany:x:{UID}:{UID}::/nonexistent:/usr/sbin/nologin\n"
    ));
    let mut group = std::fs::read_to_string("/etc/group").unwrap();
    group.push_str(&format!("herdmany:x:{UID}:\n"));
    for i in 0..300 {
        group.push_str(&format!("herdg{i}:x:{}:herdmany\n", FIRST_GID + i));
    }
    let members: Vec<String> = (0..3000).map(|i| format!("member{i:05}")).collect();
    group.push_str(&format!(
        "herdbig:x:{big_gid}:{},herdmany\n",
        members.join(",")
    ));
    let (passwd_file, group_file) = (dir.path().join("passwd"), dir.path().join("group"));
    std::fs::write(&passwd_file, passwd).unwrap();
    std::fs::write(&group_file, group).unwrap();
    let script = format!(
        "mount --bind {} /etc/passwd && mount --bind {} /etc/group && exec \"$@\"",
        passwd_file.display(),
        group_file.display()
    );
    let herd = Herd::start_with(|tmp| {
        let mut cmd = std::process::Command::new("unshare");
        cmd.env("HERD_CONTROL", tmp.join("control.sock"))
            .args(["-m", "sh", "-c", &script, "sh", HERD])
            .args(["--log-format", "json", "run", "-w", "1"])
            .args([
                "--user", "herdmany", "--group", "herdbig", "--ready", "notify",
            ])
            .args(["-b", "http=127.0.0.1:0", "--", "/usr/bin/python3"])
            .arg(worker("whoami.py"));
        cmd
    });
    let addr = herd.address("http");
    let facts = facts(&herd, &addr);
    assert_eq!(facts["uid"], UID, "{facts}");
    assert_eq!(facts["gid"], big_gid, "{facts}");
    let mut expected: Vec<u32> = (FIRST_GID..=big_gid).collect();
    expected.push(UID);
    let groups: Vec<u32> = facts["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(groups, expected, "every group of the user");
}
