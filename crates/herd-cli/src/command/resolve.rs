//! Finding the worker's program: a path, or a name searched in `PATH`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Finds `program` the way a shell would: as given if it contains `/`, else in `path_var`.
/// The error says what is wrong and how to fix it.
pub fn resolve_program(program: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, String> {
    let shown = program.to_string_lossy();
    if program.is_empty() {
        return Err("the worker command is empty".to_string());
    }
    if program.as_bytes().contains(&b'/') {
        let path = Path::new(program);
        return check_executable(path).map(|()| path.to_path_buf());
    }
    let default_path = OsString::from("/usr/local/bin:/usr/bin:/bin");
    let search = path_var.unwrap_or(&default_path);
    for dir in std::env::split_paths(search) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "command '{shown}' was not found in PATH ({}); install it, or give its full path",
        search.to_string_lossy()
    ))
}

fn check_executable(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("command '{shown}' does not exist"),
        _ => format!("cannot use command '{shown}': {e}"),
    })?;
    if meta.is_dir() {
        return Err(format!("command '{shown}' is a directory, not a program"));
    }
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(format!(
            "command '{shown}' is not executable (mode {:o}); run 'chmod +x {shown}' or start \
             it through its interpreter (e.g. 'python3 {shown}')",
            mode & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_in_path() {
        let found = resolve_program(OsStr::new("sh"), Some(OsStr::new("/nope:/bin"))).unwrap();
        assert_eq!(found, PathBuf::from("/bin/sh"));
        let err =
            resolve_program(OsStr::new("no-such-herd-cmd"), Some(OsStr::new("/bin"))).unwrap_err();
        assert!(err.contains("not found in PATH"), "{err}");
    }

    #[test]
    fn explains_unusable_paths() {
        assert!(resolve_program(OsStr::new("/etc/passwd"), None)
            .unwrap_err()
            .contains("not executable"));
        assert!(resolve_program(OsStr::new("/etc"), None)
            .unwrap_err()
            .contains("directory"));
        assert!(resolve_program(OsStr::new("./nope"), None)
            .unwrap_err()
            .contains("does not exist"));
    }
}
