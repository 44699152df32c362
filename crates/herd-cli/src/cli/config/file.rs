//! Reading a config file safely: only a regular file, refused by its kind before it is opened
//! (opening a FIFO would wait for a writer, opening a device may act on it), opened without
//! waiting all the same (a FIFO put in its place meanwhile must not block herd), and at most
//! [`MAX_BYTES`] of it (`/dev/zero` must not eat herd's memory).

use std::io::Read;
use std::path::Path;

/// The largest config file herd reads.
pub const MAX_BYTES: u64 = 16 << 20;

/// The contents of the regular file at `path`, or why it cannot be a config file.
pub fn read(path: &Path) -> Result<String, String> {
    let fail = |why: String| format!("{}: cannot read the config file: {why}", path.display());
    // Its kind first, from the path: what is not a regular file is never opened.
    let metadata = std::fs::metadata(path).map_err(|e| fail(cannot_open(&e)))?;
    if let Some(why) = not_a_file(&metadata) {
        return Err(fail(why));
    }
    let file = imp::open(path).map_err(|e| fail(cannot_open(&e)))?;
    // And again from the file opened, which may have been put in its place since.
    let metadata = file.metadata().map_err(|e| fail(cannot_read(&e)))?;
    if let Some(why) = not_a_file(&metadata) {
        return Err(fail(why));
    }
    let mut text = String::new();
    let read = file.take(MAX_BYTES + 1).read_to_string(&mut text);
    read.map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => fail("it is not UTF-8 text: save it as UTF-8".into()),
        _ => fail(cannot_read(&e)),
    })?;
    if text.len() as u64 > MAX_BYTES {
        return Err(fail(format!("it is larger than {} MiB", MAX_BYTES >> 20)));
    }
    Ok(text)
}

/// Why a file of this `metadata` is no config file, if it is not a regular file.
fn not_a_file(metadata: &std::fs::Metadata) -> Option<String> {
    if metadata.is_dir() {
        return Some(
            "it is a directory: give the path of a TOML file, such as herd.toml".to_string(),
        );
    }
    (!metadata.is_file()).then(|| {
        "it is not a regular file (a FIFO, a device or a socket): give the path of a TOML \
         file, such as herd.toml"
            .to_string()
    })
}

/// Why a config file opened could not be read (`error`: `/proc/self/mem`'s `EIO`, a failing
/// disk, a lost network mount), in herd's words, the OS's quoted.
fn cannot_read(error: &std::io::Error) -> String {
    let not = if cfg!(unix) {
        ", not one of /proc or /sys"
    } else {
        ""
    };
    format!(
        "reading it failed ('{error}'): give --config the path of an ordinary TOML file, such \
         as herd.toml{not} (or check the disk it is on)"
    )
}

/// Why a config file cannot be opened (`error`), and what to do: the OS's words only for
/// what herd has no advice for.
fn cannot_open(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::NotFound => "no such file: create it or give --config the right path".into(),
        ErrorKind::NotADirectory => {
            "no such file (a directory on its path is a file): give --config the right path".into()
        }
        ErrorKind::PermissionDenied => "permission denied: make it readable by the user herd \
                                        runs as (and its directories searchable), or give \
                                        --config a file that is"
            .to_string(),
        _ => format!(
            "it cannot be opened ('{error}'): give --config the path of a TOML file herd may \
             open, such as herd.toml"
        ),
    }
}

#[cfg(unix)]
mod imp {
    use std::fs::{File, OpenOptions};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    /// Opens `path` for reading without waiting for a FIFO's writer.
    pub fn open(path: &Path) -> std::io::Result<File> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
    }
}

#[cfg(windows)]
mod imp {
    use std::fs::File;
    use std::path::Path;

    /// Opens `path` for reading.
    pub fn open(path: &Path) -> std::io::Result<File> {
        File::open(path)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_of_bounded_size_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.toml");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let error = read(&fifo).unwrap_err();
        assert!(error.contains("not a regular file"), "{error}");
        let error = read(Path::new("/dev/zero")).unwrap_err();
        assert!(error.contains("not a regular file"), "{error}");
        let error = read(dir.path()).unwrap_err();
        assert!(
            error.ends_with("it is a directory: give the path of a TOML file, such as herd.toml"),
            "{error}"
        );
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; (MAX_BYTES + 1) as usize]).unwrap();
        let error = read(&big).unwrap_err();
        assert!(error.contains("larger than 16 MiB"), "{error}");
        // The OS's words ("No such file or directory (os error 2)") said neither what to do
        // nor, for a permission, whose.
        let missing = dir.path().join("missing.toml");
        let error = read(&missing).unwrap_err();
        assert_eq!(
            error,
            format!(
                "{}: cannot read the config file: no such file: create it or give --config \
                 the right path",
                missing.display()
            )
        );
        let error = read(&big.join("herd.toml")).unwrap_err();
        assert!(
            error.ends_with(
                ": no such file (a directory on its path is a file): give --config the right path"
            ),
            "{error}"
        );
        let denied = cannot_open(&std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(
            denied.starts_with("permission denied: make it readable by the user herd runs as"),
            "{denied}"
        );
        // A socket file was opened, and refused in the OS's words: "No such device or
        // address (os error 6)". Its kind is known before it is opened.
        let socket = dir.path().join("socket.toml");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let error = read(&socket).unwrap_err();
        assert!(error.contains("not a regular file"), "{error}");
        let other = cannot_open(&std::io::Error::from_raw_os_error(libc::ELOOP));
        assert!(
            other.starts_with("it cannot be opened ('")
                && other.ends_with(
                    "'): give --config the path of a TOML file herd may open, such as herd.toml"
                ),
            "{other}"
        );
        let fine = dir.path().join("fine.toml");
        std::fs::write(&fine, "workers = 2\n").unwrap();
        assert_eq!(read(&fine).unwrap(), "workers = 2\n");
    }

    /// `/proc/self/mem` is a regular file that cannot be read from its start: herd ended with
    /// the OS's bare "Input/output error (os error 5)"; it says now that the read failed and
    /// what to give instead.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_that_cannot_be_read_is_said_in_herds_words() {
        let error = read(Path::new("/proc/self/mem")).unwrap_err();
        assert_eq!(
            error,
            "/proc/self/mem: cannot read the config file: reading it failed ('Input/output \
             error (os error 5)'): give --config the path of an ordinary TOML file, such as \
             herd.toml, not one of /proc or /sys (or check the disk it is on)"
        );
    }
}
