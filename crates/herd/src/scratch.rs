//! Test support: a path in the temporary directory that is removed, with whatever is under
//! it, when the test ends, also when it fails (a `Drop` guard, run while a panic unwinds).

use std::path::{Path, PathBuf};

/// `$TMPDIR/NAME-PID`, removed on drop; anything left there by an earlier run of the same pid
/// is removed first.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// Claims `$TMPDIR/NAME-PID`, empty.
    pub(crate) fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        remove(&path);
        Scratch(path)
    }

    /// The path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove(&self.0);
    }
}

fn remove(path: &Path) {
    if std::fs::remove_dir_all(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}
