//! `Type=notify-reload`: systemd sends SIGHUP for `systemctl reload` and waits for
//! `RELOADING=1` (with a `MONOTONIC_USEC=` no older than its signal) and then `READY=1`. Every
//! SIGHUP must end that way, whether the upgrade finished, was aborted or was refused. The test
//! plays systemd.

use std::os::unix::net::UnixDatagram;

use crate::systemd::expect;
use crate::util::*;

/// The monotonic clock, in microseconds, as systemd stamps its reload.
fn monotonic_usec() -> u64 {
    // SAFETY: a zeroed timespec is valid; clock_gettime writes into it.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) },
        0
    );
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000
}

/// Sends SIGHUP as systemd does for `systemctl reload`, and checks what it hears: RELOADING=1
/// stamped after the signal, then READY=1 with a status saying `outcome`.
fn reload(herd: &Herd, notify: &UnixDatagram, outcome: &str) {
    let sent = monotonic_usec();
    herd.signal(libc::SIGHUP);
    let reloading = expect(notify, "RELOADING=1");
    let stamp: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC: {reloading}"))
        .parse()
        .unwrap();
    assert!(
        stamp >= sent,
        "stamped {stamp}, before the signal at {sent}"
    );
    let ready = expect(notify, "READY=1");
    assert!(!ready.contains("RELOADING=1"), "{ready}");
    assert!(ready.contains(&format!("STATUS={outcome}")), "{ready}");
}

#[test]
fn every_reload_signal_ends_with_ready_and_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    let broken = dir.path().join("broken");
    // Workers of a generation started once `broken` exists exit at once.
    let script = format!(
        "test -e {} && exit 3; exec python3 {}",
        broken.display(),
        example("hello.py")
    );
    let mut herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "2", "--ready", "notify", "--min-ready", "0"])
            .args(["-b", "web=127.0.0.1:0", "--", "sh", "-c", &script])
            .env("NOTIFY_SOCKET", &notify_path);
        cmd
    });
    expect(&notify, "READY=1");

    reload(&herd, &notify, "generation 2, 2 workers");
    std::fs::write(&broken, "").unwrap();
    reload(&herd, &notify, "upgrade aborted; the old workers serve");
    herd.wait_for_event("upgrade_aborted", &[]);
    std::fs::remove_file(&broken).unwrap();

    herd.signal(libc::SIGTERM);
    expect(&notify, "STOPPING=1");
    assert!(herd.wait_exit().success());
}

/// A reload herd refuses (here: `--min-ready` makes an upgrade longer than SIGHUP's 10 minutes)
/// still ends with READY=1, and says why.
#[test]
fn a_refused_reload_signal_ends_with_ready() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "--ready", "notify", "--min-ready", "11m"])
            .args([
                "-b",
                "web=127.0.0.1:0",
                "--",
                "python3",
                &example("hello.py"),
            ])
            .env("NOTIFY_SOCKET", &notify_path);
        cmd
    });
    expect(&notify, "READY=1");
    reload(&herd, &notify, "upgrade refused: ");
    herd.wait_for_event("upgrade_refused", &[]);
}
