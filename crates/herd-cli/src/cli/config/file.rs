//! Reading a config file safely: only a regular file, opened without waiting (a FIFO put in
//! its place must not block herd), and at most [`MAX_BYTES`] of it (`/dev/zero` must not eat
//! herd's memory).

use std::io::Read;
use std::path::Path;

/// The largest config file herd reads.
pub const MAX_BYTES: u64 = 16 << 20;

/// The contents of the regular file at `path`, or why it cannot be a config file.
pub fn read(path: &Path) -> Result<String, String> {
    let fail = |why: String| format!("{}: cannot read the config file: {why}", path.display());
    let file = imp::open(path).map_err(|e| fail(cannot_open(&e)))?;
    let metadata = file.metadata().map_err(|e| fail(e.to_string()))?;
    if metadata.is_dir() {
        return Err(fail(
            "it is a directory: give the path of a TOML file, such as herd.toml".to_string(),
        ));
    }
    if !metadata.is_file() {
        return Err(fail(
            "it is not a regular file (a FIFO, a device or a socket): give the path of a TOML \
             file, such as herd.toml"
                .to_string(),
        ));
    }
    let mut text = String::new();
    let read = file.take(MAX_BYTES + 1).read_to_string(&mut text);
    read.map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => fail("it is not UTF-8 text: save it as UTF-8".into()),
        _ => fail(e.to_string()),
    })?;
    if text.len() as u64 > MAX_BYTES {
        return Err(fail(format!("it is larger than {} MiB", MAX_BYTES >> 20)));
    }
    Ok(text)
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
        _ => error.to_string(),
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
        let fine = dir.path().join("fine.toml");
        std::fs::write(&fine, "workers = 2\n").unwrap();
        assert_eq!(read(&fine).unwrap(), "workers = 2\n");
    }
}
