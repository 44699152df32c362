//! [`super`]'s checks and names, on directories made here.

use super::*;

fn me() -> WorkerUser<'static> {
    WorkerUser {
        uid: herd_sys::process::effective_uid(),
        gids: &[],
    }
}

#[test]
fn names_are_unguessable_and_clashes_retried() {
    let base = tempfile::tempdir().unwrap();
    let a = NotifyDir::create(base.path(), me()).unwrap();
    let b = NotifyDir::create(base.path(), me()).unwrap();
    let name = a.path.file_name().unwrap().to_str().unwrap().to_string();
    assert!(is_name(&name), "{name}");
    assert_ne!(a.path, b.path);
    assert!(!name.contains(&std::process::id().to_string()));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&a.path), 0o700, "closed until opened");
    a.open().unwrap();
    assert_eq!(mode(&a.path), 0o711);
    // Someone holds the first name: the next one is used.
    let mut names = vec![Ok(name.clone()), Ok(format!("{PREFIX}{}", "0".repeat(32)))];
    names.reverse();
    let c = create_first_free(base.path(), || names.pop().unwrap()).unwrap();
    assert!(c.path.ends_with(format!("{PREFIX}{}", "0".repeat(32))));
    // Every name taken: a one-line error, no endless loop.
    let e = create_first_free(base.path(), || Ok(name.clone()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("were all taken"), "{e}");
    // Dropped: gone, once empty.
    let path = a.path.clone();
    drop(a);
    assert!(!path.exists());
}

#[test]
fn a_directory_made_anew_is_neither_adopted_nor_removed() {
    let base = tempfile::tempdir().unwrap();
    let dir = NotifyDir::create(base.path(), me()).unwrap();
    let socket = dir.socket();
    let _bound = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    let handed = Some(dir.identity);
    assert!(NotifyDir::adopt(&socket, handed).is_some());
    assert!(NotifyDir::adopt(&socket, None).is_none());
    let other = base.path().join("elsewhere").join(SOCKET);
    assert!(NotifyDir::adopt(&other, handed).is_none());
    // Replaced behind herd's back: not herd's to remove.
    std::fs::remove_dir_all(&dir.path).unwrap();
    std::fs::create_dir(&dir.path).unwrap();
    std::fs::write(dir.path.join("theirs"), "").unwrap();
    assert!(dir.open().is_err());
    let path = dir.path.clone();
    drop(dir);
    assert!(path.join("theirs").exists());
}

/// Removed just before a re-exec, the directory is still the new image's to make again.
#[test]
fn a_directory_removed_before_the_hand_over_is_adopted_and_made_again() {
    let base = tempfile::tempdir().unwrap();
    let dir = NotifyDir::create(base.path(), me()).unwrap();
    let (socket, handed) = (dir.socket(), Some(dir.identity));
    std::mem::forget(dir);
    std::fs::remove_dir(socket.parent().unwrap()).unwrap();
    let mut adopted = NotifyDir::adopt(&socket, handed).expect("adopted");
    assert!(adopted.gone());
    assert!(adopted.make_again().unwrap());
    assert!(!adopted.gone());
    // Removed at the end (it was made again empty); a file in its place is not adopted.
    drop(adopted);
    assert!(!socket.parent().unwrap().exists());
    std::fs::write(socket.parent().unwrap(), "").unwrap();
    assert!(NotifyDir::adopt(&socket, handed).is_none());
}

#[test]
fn stale_directories_are_removed_and_live_ones_kept() {
    let base = tempfile::tempdir().unwrap();
    let uid = herd_sys::process::effective_uid();
    let live = NotifyDir::create(base.path(), me()).unwrap();
    let _bound = std::os::unix::net::UnixDatagram::bind(live.socket()).unwrap();
    let dead = NotifyDir::create(base.path(), me()).unwrap();
    drop(std::os::unix::net::UnixDatagram::bind(dead.socket()).unwrap());
    drop(std::os::unix::net::UnixListener::bind(dead.einhorn()).unwrap());
    let fresh = NotifyDir::create(base.path(), me()).unwrap();
    let other = base.path().join("herd-notify-other");
    std::fs::create_dir(&other).unwrap();
    remove_stale(base.path(), uid);
    assert!(live.socket().exists());
    assert!(!dead.path.exists(), "its socket's herd is gone");
    assert!(fresh.path.exists(), "empty, but just made");
    assert!(other.exists(), "not a name herd makes");
    remove_stale(base.path(), uid + 1);
    assert!(live.path.exists());
    std::fs::remove_file(live.socket()).unwrap();
}

#[test]
fn workers_that_cannot_pass_through_are_refused_in_one_line() {
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let closed = base.path().join("closed");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&closed)
        .unwrap();
    let uid = herd_sys::process::effective_uid();
    let stranger = WorkerUser {
        uid: uid.wrapping_add(12345).max(1),
        gids: &[],
    };
    let e = NotifyDir::create(&closed, stranger)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot pass through") && e.contains("TMPDIR"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    // Its group may: through.
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o710)).unwrap();
    let gid = std::fs::metadata(&closed).unwrap().gid();
    let member = WorkerUser {
        gids: &[gid],
        ..stranger
    };
    assert!(check_base(&closed, member).is_ok());
    assert!(check_base(&closed, stranger).is_err());
    let long = base.path().join("d".repeat(70));
    std::fs::create_dir(&long).unwrap();
    let e = NotifyDir::create(&long, me()).unwrap_err().to_string();
    assert!(e.contains("longer than 107 bytes"), "{e}");
}

#[test]
fn a_base_others_could_move_things_in_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = check_base(&open, me()).unwrap_err();
    assert!(e.contains("not sticky"), "{e}");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // Resolved: absolute, through a symlink, and relative.
    let link = base.path().join("link");
    std::os::unix::fs::symlink(&open, &link).unwrap();
    let real = std::fs::canonicalize(&open).unwrap();
    assert_eq!(check_base(&link, me()).unwrap(), real);
    if herd_sys::process::effective_uid() == 0 {
        let theirs = base.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(12345), None).unwrap();
        let e = check_base(&theirs, me()).unwrap_err();
        assert!(e.contains("belongs to another user"), "{e}");
        let their_link = base.path().join("their-link");
        std::os::unix::fs::symlink(&open, &their_link).unwrap();
        std::os::unix::fs::lchown(&their_link, Some(12345), None).unwrap();
        let e = check_base(&their_link, me()).unwrap_err();
        assert!(e.contains("a symlink of uid 12345"), "{e}");
    }
}

#[test]
fn a_base_that_is_not_a_directory_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let file = base.path().join("program");
    std::fs::write(&file, "").unwrap();
    // Executable, so that its mode bits would let anyone "pass through" it.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = check_base(&file, me()).unwrap_err();
    assert!(e.contains("not a directory"), "{e}");
}

#[test]
fn a_socket_herd_may_not_connect_to_is_kept() {
    let base = tempfile::tempdir().unwrap();
    let path = base.path().join(SOCKET);
    let bound = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    assert!(!unbound(&path));
    drop(bound);
    assert!(unbound(&path));
    // Any other failure (EACCES where herd may not connect; ENOENT here): kept.
    assert!(!unbound(&base.path().join("missing").join(SOCKET)));
}

/// A symlink put at the directory's name (after its removal) is not followed: the directory
/// it points to keeps its mode.
#[test]
fn a_symlink_at_the_directorys_name_is_not_followed() {
    let base = tempfile::tempdir().unwrap();
    let dir = NotifyDir::create(base.path(), me()).unwrap();
    let path = dir.socket().parent().unwrap().to_path_buf();
    std::fs::remove_dir(&path).unwrap();
    let victim = base.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    let e = dir.open().unwrap_err().to_string();
    assert!(e.contains("not the directory herd made"), "{e}");
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    std::fs::remove_file(&path).unwrap();
}

/// `within` names a file in herd's directory through an fd on it (`/proc/self/fd/N/NAME`)
/// that it checked is the directory herd made: one put at its name is refused before
/// anything is done there.
#[test]
fn files_are_named_through_an_fd_on_the_directory_itself() {
    let base = tempfile::tempdir().unwrap();
    let dir = NotifyDir::create(base.path(), me()).unwrap();
    let socket = dir.socket();
    let named = dir
        .within(&socket, |at, path| {
            assert_eq!(path, socket);
            Ok(at.to_path_buf())
        })
        .unwrap();
    if Path::new("/proc/self/fd").is_dir() {
        assert!(named.starts_with("/proc/self/fd"), "{}", named.display());
    } else {
        assert_eq!(named, socket);
    }
    std::fs::remove_dir(&dir.path).unwrap();
    std::fs::create_dir(&dir.path).unwrap();
    let e = dir.within(&socket, |_, _| Ok(())).unwrap_err().to_string();
    assert!(e.contains("is not the directory herd made"), "{e}");
}
