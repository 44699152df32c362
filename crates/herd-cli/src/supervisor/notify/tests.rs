use super::*;

/// Across a re-exec, a directory removed and made again before the new image looked is
/// not taken for herd's: its socket is not bound again there.
#[test]
fn a_restored_socket_is_not_bound_again_in_a_directory_made_anew() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("h.1.notify");
    let bound = NotifySocket::bind(&path, herd_sys::process::effective_uid()).unwrap();
    let (socket, file) = (OwnedFd::from(bound.socket), bound._file);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let mut restored = NotifySocket::restore(socket, file, None).unwrap();
    let e = restored.bind_again_if_removed().unwrap_err().to_string();
    assert!(e.contains("is not the directory herd bound it in"), "{e}");
    assert!(!path.exists());
}

/// Across a re-exec, the directory the previous image bound the socket in is handed over:
/// a file removed before the new image looked is bound again there. Learnt from the file
/// at the hand-over only, it was never known, and the removal only said.
#[test]
fn a_restored_socket_removed_before_the_hand_over_is_bound_again_in_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.1.notify");
    let bound = NotifySocket::bind(&path, herd_sys::process::effective_uid()).unwrap();
    let handed = bound.dir();
    assert!(handed.is_some());
    let (socket, file) = (OwnedFd::from(bound.socket), bound._file);
    std::fs::remove_file(&path).unwrap();
    let mut restored = NotifySocket::restore(socket, file, handed).unwrap();
    assert!(restored.bind_again_if_removed().unwrap().is_some());
    assert!(path.exists());
}

/// Its directory replaced by another with a `notify` of its own, or by a file: both are
/// said (an error), not taken for herd's socket still being there.
#[test]
fn a_directory_put_in_the_sockets_place_is_an_error() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("h.1.notify");
    let mut bound = NotifySocket::bind(&path, herd_sys::process::effective_uid()).unwrap();
    assert!(bound.bind_again_if_removed().unwrap().is_none());
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(&path, b"").unwrap();
    let e = bound.bind_again_if_removed().unwrap_err().to_string();
    assert!(e.contains("is not the directory herd bound it in"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"").unwrap();
    assert!(crate::supervisor::socket_files::removed(&path));
    let e = bound.bind_again_if_removed().unwrap_err().to_string();
    assert!(e.contains("is not the directory herd bound it in"), "{e}");
    assert!(std::fs::metadata(&dir).unwrap().is_file());
}

/// A clean-up loop that removes herd's directory again while herd binds its socket in it
/// anew: the next try, in the same look, makes it again. Any other failure is not tried
/// again.
#[test]
fn a_bind_the_directorys_removal_failed_is_tried_again_at_once() {
    let base = tempfile::tempdir().unwrap();
    let me = herd_sys::process::effective_uid();
    let dir = NotifyDir::create(base.path(), WorkerUser { uid: me, gids: &[] }).unwrap();
    let mut socket = NotifySocket::bind(&dir.socket(), me).unwrap();
    dir.open().unwrap();
    socket.made_dir = Some(dir);
    let (path, mut tries) = (socket.path.clone(), 0);
    let e = socket.retry_while_dir_removed(|_| -> anyhow::Result<()> {
        tries += 1;
        bail!("fails")
    });
    assert!(e.is_err());
    assert_eq!(tries, 1);
    tries = 0;
    let old = socket.retry_while_dir_removed(|notify| {
        tries += 1;
        if tries == 1 {
            std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
            bail!("removed meanwhile");
        }
        notify.bind_again(&path)
    });
    assert!(old.is_ok());
    assert_eq!(tries, 2);
    assert!(path.exists());
}

/// The directory herd made, swapped for another at its name between herd's look and its
/// bind (something with root's rights removed it, another user made theirs): the bind is
/// an error, and nothing in the other is chmodded or chowned.
#[test]
fn a_socket_bound_as_its_directory_is_swapped_is_refused() {
    if !Path::new("/proc/self/fd").is_dir() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let me = herd_sys::process::effective_uid();
    let dir = NotifyDir::create(base.path(), WorkerUser { uid: me, gids: &[] }).unwrap();
    let path = dir.socket();
    let (parent, moved) = (path.parent().unwrap(), base.path().join("moved"));
    let e = dir
        .within(&path, |at, path| {
            std::fs::rename(parent, &moved).unwrap();
            std::fs::create_dir(parent).unwrap();
            NotifySocket::bind_at(at, path, me)
        })
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("just bound (its directory removed, or replaced)"),
        "{e:#}"
    );
    assert!(!moved.join(path.file_name().unwrap()).exists());
    let stray = std::fs::symlink_metadata(&path).unwrap();
    assert_ne!(stray.mode() & 0o777, 0o600, "not chmodded");
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_dir(parent).unwrap();
    std::fs::rename(&moved, parent).unwrap();
}

#[test]
fn descendants_are_attributed_to_their_worker() {
    let me = std::process::id();
    let parent = herd_sys::process::parent_of(me).unwrap();
    assert_eq!(attribute(me, |p| p == parent), Some(parent));
    assert_eq!(attribute(me, |p| p == me), Some(me));
    assert_eq!(attribute(me, |_| false), None);
}
