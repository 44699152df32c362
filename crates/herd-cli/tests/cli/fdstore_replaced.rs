//! systemd's fd store when what it gives back no longer fits (a port moved, a size changed),
//! cannot be served (a connected socket, a file open read-only) or is there twice: herd
//! replaces it in the store, and serves. The test plays systemd, as in `fdstore.rs`.

use std::collections::BTreeMap;
use std::os::unix::io::OwnedFd;
use std::os::unix::net::UnixDatagram;

use crate::fdstore::{
    hit, receive_store, restart, restart_listing, restart_making, WEB_AND_COUNTER,
};
use crate::util::*;

/// systemd's notify socket in `dir`: its path, and the socket, read with the tests' timeout.
fn notify_in(dir: &tempfile::TempDir) -> (std::path::PathBuf, UnixDatagram) {
    let path = dir.path().join("systemd-notify.sock");
    let notify = UnixDatagram::bind(&path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    (path, notify)
}

/// Waits for herd's `fdstore_replaced` of `name` and checks that it says `why`.
fn replaced_saying(herd: &Herd, name: &str, why: &str) {
    let warning = herd.wait_for_event("fdstore_replaced", &[("name", name.into())]);
    let said = warning["message"].as_str().unwrap_or_default();
    assert!(said.contains(why), "{warning}");
}

/// Checks that the store heard `fdname` removed (`FDSTOREREMOVE=1`) before a store of it.
fn removed_then_stored(heard: &[String], fdname: &str) {
    let removal = format!("FDSTOREREMOVE=1\nFDNAME={fdname}");
    let removed_first = heard.iter().position(|m| m.contains(&removal));
    let stored_again = heard.iter().position(|m| m.contains("FDSTORE=1\n"));
    assert!(
        removed_first.is_some() && removed_first < stored_again,
        "{heard:?}"
    );
}

/// A restart whose `--bind` moved a stored socket's port, or whose `--shm` changed a stored
/// segment's size, replaces it: the new one serves and takes the old one's place in the store.
#[test]
fn a_stored_fd_that_no_longer_fits_is_replaced_in_the_store() {
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let moved = format!("web=127.0.0.1:{free_port}");
    for made in [
        ["-b", moved.as_str(), "--shm", "counter=4096"],
        ["-b", "web=127.0.0.1:0", "--shm", "counter=8192"],
    ] {
        let (replaced, message) = if made[3] == "counter=8192" {
            ("herd.counter", "8192")
        } else {
            ("herd.web", moved.as_str())
        };
        replaces_what_no_longer_fits(&made, replaced, message);
    }
}

/// Restarts herd with `made` from a store of `web` and a 4096-byte `counter`, and checks that
/// `replaced` is taken out of the store and stored anew, and that herd serves and stops.
fn replaces_what_no_longer_fits(made: &[&str], replaced: &str, message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (notify_path, notify) = notify_in(&dir);
    let stored: BTreeMap<String, OwnedFd> = [
        (
            "herd.counter",
            herd_sys::shm::create("counter", 4096).unwrap(),
        ),
        (
            "herd.web",
            OwnedFd::from(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
        ),
    ]
    .into_iter()
    .map(|(name, fd)| (name.to_string(), fd))
    .collect();
    let mut herd = restart_making(&stored, &notify_path, made);
    let warning = herd.wait_for_event("fdstore_replaced", &[]);
    assert!(
        warning["message"].as_str().unwrap().contains(message),
        "{warning}"
    );
    let (again, heard) = receive_store(&notify);
    let again: Vec<&str> = again.keys().map(String::as_str).collect();
    assert_eq!(again, [replaced], "{heard:?}");
    removed_then_stored(&heard, replaced);
    herd.wait_for_event("fdstore_removed", &[("names", replaced.into())]);
    let web = herd.address("web");
    if replaced == "herd.web" {
        assert!(
            message.ends_with(&web),
            "{web} is not the new port {message}"
        );
    }
    assert_eq!(hit(&get(&web, "/").unwrap()), 1);
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
}

/// An fd under herd's name in the store that herd cannot serve at all (a connected TCP
/// socket, not a listening one; a file open read-only for `--shm`, which was adopted, and each
/// worker's read-write mapping failed) is dropped from the store and replaced: refusing to start
/// on it would fail every restart, since systemd gives it back each time.
#[test]
fn a_stored_fd_herd_cannot_serve_is_replaced_not_fatal() {
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let connected = std::net::TcpStream::connect(peer.local_addr().unwrap()).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(4096).unwrap();
    let read_only = std::fs::File::open(file.path()).unwrap();
    for (name, unservable, why) in [
        ("web", OwnedFd::from(connected), "cannot be served"),
        ("counter", OwnedFd::from(read_only), "open read-only"),
        // Open read-write, it passed, and each worker's mapping failed (EPERM).
        (
            "counter",
            sealed(libc::F_SEAL_WRITE),
            "sealed with F_SEAL_WRITE",
        ),
        (
            "counter",
            sealed(libc::F_SEAL_FUTURE_WRITE),
            "sealed with F_SEAL_FUTURE_WRITE",
        ),
    ] {
        replaces_what_cannot_be_served(name, unservable, why);
    }
}

/// A 4096-byte memfd, open read-write, with `seal` added.
fn sealed(seal: libc::c_int) -> OwnedFd {
    use std::os::unix::io::{AsRawFd, FromRawFd};
    // SAFETY: memfd_create reads a NUL-terminated name and returns a fresh fd, owned here.
    let fd = unsafe {
        let raw = libc::memfd_create(
            c"sealed".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        );
        assert!(raw >= 0, "{}", std::io::Error::last_os_error());
        OwnedFd::from_raw_fd(raw)
    };
    // SAFETY: ftruncate and fcntl(F_ADD_SEALS) on the memfd we own, with integers.
    unsafe {
        assert_eq!(libc::ftruncate(fd.as_raw_fd(), 4096), 0);
        assert_eq!(libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seal), 0);
    }
    fd
}

/// Restarts herd from a store whose `name` is `unservable` (and the other of `web` and
/// `counter` fine), and checks that it is replaced, saying `why`, and that herd serves.
fn replaces_what_cannot_be_served(name: &str, unservable: OwnedFd, why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (notify_path, notify) = notify_in(&dir);
    let fine = match name {
        "web" => ("counter", herd_sys::shm::create("counter", 4096).unwrap()),
        _ => (
            "web",
            OwnedFd::from(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
        ),
    };
    let stored: BTreeMap<String, OwnedFd> = [(name, unservable), fine]
        .into_iter()
        .map(|(name, fd)| (format!("herd.{name}"), fd))
        .collect();
    let mut herd = restart(&stored, &notify_path);
    replaced_saying(&herd, name, why);
    let fdname = format!("herd.{name}");
    let (again, heard) = receive_store(&notify);
    let again: Vec<&str> = again.keys().map(String::as_str).collect();
    assert_eq!(again, [fdname.as_str()], "{heard:?}");
    removed_then_stored(&heard, &fdname);
    assert_eq!(hit(&get(&herd.address("web"), "/").unwrap()), 1);
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
}

/// A name the store holds twice (the store had taken a second fd under it): herd serves the
/// first, says so, and leaves the store one fd under the name (was: the second was named "not
/// taken: no --bind names this socket", and both stayed stored).
#[test]
fn a_name_the_store_holds_twice_is_stored_once_again() {
    let dir = tempfile::tempdir().unwrap();
    let (notify_path, notify) = notify_in(&dir);
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let first_addr = first.local_addr().unwrap().to_string();
    let first = OwnedFd::from(first);
    let second = OwnedFd::from(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let counter = herd_sys::shm::create("counter", 4096).unwrap();
    let listed = [
        ("herd.web", &first),
        ("herd.web", &second),
        ("herd.counter", &counter),
    ];
    let mut herd = restart_listing(&listed, &notify_path, &WEB_AND_COUNTER);
    replaced_saying(&herd, "web", "more than once");
    let (again, heard) = receive_store(&notify);
    let again: Vec<&str> = again.keys().map(String::as_str).collect();
    assert_eq!(again, ["herd.web"], "{heard:?}");
    removed_then_stored(&heard, "herd.web");
    assert_eq!(herd.address("web"), first_addr);
    assert!(
        !events(&herd.lines()).any(|e| e["event"] == "socket_not_taken"),
        "the second one is not named as untaken"
    );
    assert_eq!(hit(&get(&herd.address("web"), "/").unwrap()), 1);
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
}

/// A name the store holds twice whose first fd herd cannot serve (a file open read-only for
/// `--shm`) and whose second it can: the second is served (was: the first was refused, the
/// second closed as a duplicate, "herd serves the first", and the memory it held was lost).
#[test]
fn a_name_held_twice_serves_the_one_herd_can() {
    let dir = tempfile::tempdir().unwrap();
    let (notify_path, notify) = notify_in(&dir);
    let web = OwnedFd::from(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(4096).unwrap();
    let read_only = OwnedFd::from(std::fs::File::open(file.path()).unwrap());
    let counter = herd_sys::shm::create("counter", 4096).unwrap();
    let memory = std::fs::File::from(counter.try_clone().unwrap());
    std::os::unix::fs::FileExt::write_all_at(&memory, &41u64.to_ne_bytes(), 0).unwrap();
    let listed = [
        ("herd.web", &web),
        ("herd.counter", &read_only),
        ("herd.counter", &counter),
    ];
    let mut herd = restart_listing(&listed, &notify_path, &WEB_AND_COUNTER);
    replaced_saying(&herd, "counter", "open read-only");
    let (_, heard) = receive_store(&notify);
    removed_then_stored(&heard, "herd.counter");
    // The counter counts on in the memory the store kept.
    assert_eq!(hit(&get(&herd.address("web"), "/").unwrap()), 42);
    let lines = herd.lines();
    assert!(
        !events(&lines).any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("more than once"))),
        "{}",
        last_lines(&lines)
    );
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
}

/// fds passed back that herd cannot take (here `LISTEN_FDNAMES` names more than `LISTEN_FDS`
/// passes; also an fd it promises that is not open): none is adopted and herd binds anew, as
/// before, but says so (was: not a word, the stored port closed, and its new socket was stored
/// beside the old one under the same name).
#[test]
fn passed_fds_herd_cannot_take_are_said_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let _notify = UnixDatagram::bind(&notify_path).unwrap();
    let web = OwnedFd::from(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let listed = [("herd.web:herd.counter", &web)];
    let mut herd = restart_listing(&listed, &notify_path, &WEB_AND_COUNTER);
    let warning = herd.wait_event("the passed fds said not taken", |e| {
        e["event"] == "fdstore_replaced"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot take the fds passed to herd"))
    });
    assert_eq!(warning["level"], "WARN", "{warning}");
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
}
