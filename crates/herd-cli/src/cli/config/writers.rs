//! Whether someone other than root and herd's user could have written herd's config file:
//! herd runs the command it names, as herd's user, at every `herd upgrade --reload-config`.

use std::path::Path;

/// Why someone other than root and herd's user could have written the config file at `path`
/// (the file, a directory above it, a symlink on the way), and what mends it, in words that
/// follow `PATH: `; `None` if no one could.
#[cfg(unix)]
pub fn others_could_write(path: &Path) -> Option<String> {
    let uid = herd_sys::process::effective_uid();
    // A file that is not there is said so by its read; but whoever could make it there
    // meanwhile could choose its contents: its directory is judged then.
    let judged = match std::fs::metadata(path) {
        Ok(_) => path,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.parent()?,
        // Its read says why (a lost network filesystem, a directory herd may not search).
        Err(_) => return None,
    };
    if !judged.exists() {
        return None;
    }
    let crate::replaceable::Replaceable { why, fix } =
        crate::replaceable::replaceable_file(judged, uid)?;
    Some(format!(
        "{why}, so someone else could choose what herd runs as uid {uid}: {fix}, and check the \
         file's contents"
    ))
}

/// Never said on Windows, whose files' access lists herd does not judge (docs/windows.md).
#[cfg(windows)]
pub fn others_could_write(_path: &Path) -> Option<String> {
    None
}
