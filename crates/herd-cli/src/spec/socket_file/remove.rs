//! Removing a socket file herd created (or took over), only if it still is that file.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Removes the socket file at `path` if it is the file `identity` (device, inode); whether it
/// did. The look and the removal go through one descriptor of its directory on Linux
/// (`/proc/self/fd/N/NAME`): whoever may write to a directory on the way could otherwise swap
/// a symlink in between the two, and have herd (root, often) remove a file elsewhere by the
/// same name. Elsewhere, or without `/proc`, the look comes just before the removal.
pub(super) fn remove_if_same(path: &Path, identity: (u64, u64)) -> io::Result<bool> {
    let target = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) if cfg!(target_os = "linux") => {
            use std::os::unix::fs::OpenOptionsExt;
            use std::os::unix::io::AsRawFd;
            // O_DIRECTORY: whatever is there now is opened only if it is a directory (a FIFO
            // put there would block the open).
            let dir = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK)
                .open(if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                });
            match dir {
                Ok(dir) => {
                    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
                    if by_fd.exists() {
                        return remove_there(&by_fd.join(name), identity);
                    }
                    path.to_path_buf()
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        _ => path.to_path_buf(),
    };
    remove_there(&target, identity)
}

/// Whether `meta` is that of the socket file `identity` (device, inode).
pub fn is_socket_file(meta: &std::fs::Metadata, identity: (u64, u64)) -> bool {
    meta.file_type().is_socket() && (meta.dev(), meta.ino()) == identity
}

/// Removes the socket file at `at` if it is the file `identity`; whether it did.
fn remove_there(at: &Path, identity: (u64, u64)) -> io::Result<bool> {
    match std::fs::symlink_metadata(at) {
        Ok(meta) if is_socket_file(&meta, identity) => std::fs::remove_file(at).map(|()| true),
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_very_socket_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let identity = (meta.dev(), meta.ino());
        assert!(!remove_if_same(&path, (identity.0, identity.1 + 1)).unwrap());
        assert!(path.exists(), "another file's identity: left");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        let meta = std::fs::symlink_metadata(&plain).unwrap();
        assert!(!remove_if_same(&plain, (meta.dev(), meta.ino())).unwrap());
        assert!(plain.exists(), "not a socket: left");
        assert!(!remove_if_same(&dir.path().join("gone/s"), identity).unwrap());
        assert!(remove_if_same(&path, identity).unwrap());
        assert!(!path.exists());
    }
}
