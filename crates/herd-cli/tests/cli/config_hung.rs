//! `herd upgrade --reload-config` with the config file on a filesystem that never answers (a
//! hung NFS server, here a FUSE mount whose daemon reads nothing): herd reads it off its loop,
//! so it supervises on, answers, refuses what needs the file, and stops when asked.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::config::{hello_config, pids};
use crate::util::*;

/// A FUSE mount over a directory, whose daemon never answers: every look into it waits, as a
/// hung network filesystem makes it wait. Dropped, the connection is aborted (the waits end
/// with ENOTCONN) and the mount detached.
pub(crate) struct Hung {
    fuse: Option<File>,
    dir: PathBuf,
}

impl Hung {
    /// Hangs `dir`, or `None` where this machine cannot mount FUSE (not root, no /dev/fuse,
    /// a container without the right).
    pub(crate) fn over(dir: &Path) -> Option<Hung> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let fuse = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .ok()?;
        let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0",
            fuse.as_raw_fd()
        );
        let data = std::ffi::CString::new(data).unwrap();
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let mounted = unsafe {
            libc::mount(
                c"hung".as_ptr(),
                target.as_ptr(),
                c"fuse".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        (mounted == 0).then(|| Hung {
            fuse: Some(fuse),
            dir: dir.to_path_buf(),
        })
    }

    /// The daemon's end of the connection (`/dev/fuse`), to serve the mount after all.
    pub(crate) fn daemon(&self) -> Option<&File> {
        self.fuse.as_ref()
    }

    /// Lets every wait end: the connection is aborted (and the daemon's end closed), the mount
    /// is detached.
    pub(crate) fn release(&mut self) {
        if self.fuse.take().is_none() {
            return;
        }
        abort(&self.dir);
        let target = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Aborts the FUSE connection mounted at `dir` (`/sys/fs/fuse/connections/N/abort`, N the
/// mount's minor device number, read from /proc/self/mountinfo: a stat of `dir` would wait),
/// even while a copy of the daemon's end is open (a daemon thread's).
fn abort(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let at = dir.to_string_lossy();
    let minor = mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.get(4) == Some(&at.as_ref())).then_some(())?;
        fields.get(2)?.split(':').nth(1).map(str::to_string)
    });
    let Some(minor) = minor else { return };
    let abort = format!("/sys/fs/fuse/connections/{minor}/abort");
    if !Path::new(&abort).exists() {
        // fusectl, as systemd mounts it; where it is not, this root test does.
        // SAFETY: NUL-terminated strings that outlive the call; no data.
        unsafe {
            libc::mount(
                c"fusectl".as_ptr(),
                c"/sys/fs/fuse/connections".as_ptr(),
                c"fusectl".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
    }
    let _ = std::fs::write(abort, b"1");
}

impl Drop for Hung {
    fn drop(&mut self) {
        self.release();
    }
}

/// A herd of 2 hello workers run from `conf/herd.toml` in its directory (the control socket
/// stays outside `conf`, which the test hangs).
fn herd_on_config_in_conf() -> (Herd, PathBuf) {
    let conf = std::sync::OnceLock::new();
    let herd = Herd::start_with(|dir| {
        let dir = dir.join("conf");
        std::fs::create_dir(&dir).unwrap();
        let path = hello_config(&dir, "", "v1");
        conf.set(dir).unwrap();
        let mut cmd = herd_json();
        cmd.args(["run", "--config", &path]);
        cmd
    });
    (herd, conf.into_inner().unwrap())
}

/// `herd ARGS` against `herd`, on a thread: what it said, once it ends.
fn ctl_later(herd: &Herd, args: &[&str]) -> std::thread::JoinHandle<(i32, String, String)> {
    let control = herd.control();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl_at(&control, &args)
    })
}

/// `herd ARGS` against `herd`, answered within 20 s (herd's loop turns), or a failure.
pub(crate) fn answered(herd: &Herd, args: &[&str]) -> (i32, String, String) {
    let ctl = Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = ctl.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(ctl.wait_with_output()));
    let Ok(out) = rx.recv_timeout(Duration::from_secs(20)) else {
        // SAFETY: kill with the pid of our own child, not reaped yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("herd {args:?} got no answer while the config file was read: herd's loop waits");
    };
    let out = out.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_config_file_that_never_answers_does_not_stop_supervision() {
    let (herd, conf) = herd_on_config_in_conf();
    let before = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    // Under the mount, the file is away: a read that ends after the mount has gone finds none,
    // as one that ends as the filesystem gives up finds none either.
    let (file, aside) = (conf.join("herd.toml"), conf.join("herd.toml.aside"));
    std::fs::rename(&file, &aside).unwrap();
    let Some(mut hung) = Hung::over(&conf) else {
        eprintln!("skipped: cannot mount FUSE here (needs root and /dev/fuse)");
        return;
    };
    let reload = ctl_later(&herd, &["upgrade", "--reload-config"]);
    herd.wait_for_event("config_reading", &[]);

    // herd answers, restarts a worker killed meanwhile, and refuses what needs the file.
    let first = pids(&before);
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(first[0] as i32, libc::SIGKILL) };
    herd.wait_event("the replacement", |e| {
        is_start(e)
            && e["pid"]
                .as_u64()
                .is_some_and(|pid| !first.contains(&(pid as u32)))
    });
    let (code, status, stderr) = answered(&herd, &["status", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["generation"], 1, "{status}");
    let (code, _, stderr) = answered(&herd, &["upgrade", "--reload-config"]);
    assert_eq!(code, FAILURE, "{stderr}");
    assert!(
        stderr.contains("has been reading the config file for") && stderr.contains("(busy)"),
        "{stderr}"
    );
    let (code, _, stderr) = answered(&herd, &["reexec"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("reading the config file"), "{stderr}");

    // The filesystem gives up: the first reload hears why, nothing changed, and the file
    // read again once it is there works.
    hung.release();
    let (code, _, stderr) = reload.join().unwrap();
    assert_eq!(code, FAILURE, "{stderr}");
    // As the filesystem gives up (the read fails), or once the mount is gone (no file there).
    let no_file = stderr.contains("cannot reload: no such file");
    assert!(
        (stderr.contains("cannot read the config file") || no_file)
            && stderr.contains("(config_invalid)"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    std::fs::rename(&aside, &file).unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, 0, "{stderr}");
    wait_status(&herd, "generation 2", |s| {
        settled(s, 2) && s["generation"] == 2
    });
}

#[test]
fn herd_stops_while_its_config_file_never_answers() {
    let (mut herd, conf) = herd_on_config_in_conf();
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let Some(_hung) = Hung::over(&conf) else {
        eprintln!("skipped: cannot mount FUSE here (needs root and /dev/fuse)");
        return;
    };
    let reload = ctl_later(&herd, &["upgrade", "--reload-config"]);
    herd.wait_for_event("config_reading", &[]);
    let (code, _, stderr) = answered(&herd, &["stop"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = reload.join().unwrap();
    assert_eq!(code, FAILURE, "{stderr}");
    assert!(
        stderr.contains("herd is stopping") && stderr.contains("(stopping)"),
        "{stderr}"
    );
    let status = herd.wait_exit();
    assert_eq!(status.code(), Some(0));
}
