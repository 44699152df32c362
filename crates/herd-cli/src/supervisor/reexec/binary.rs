//! Which binary a re-exec runs: the path herd was started by, checked and resolved anew at
//! each re-exec.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::logging::LogEvent;
pub use crate::replaceable::{replaceable, Replaceable};

/// The path herd was started by, which `herd reexec` runs again: `argv[0]` made absolute
/// against the directory herd started in, or looked up in `PATH` when it has no `/`, provided
/// it names this very binary (symlinks followed, the same device and inode as
/// `/proc/self/exe`). Symlinks are kept, so that a re-exec follows a link switched since
/// (`/opt/current/herd`, alternatives, Nix profiles); [`resolve`] follows them at re-exec time.
/// The running file (`/proc/self/exe`) when `argv[0]` names no file or another program
/// (`exec -a NAME`, systemd's `ExecStart=@`), which is logged. Warns when the binary is where
/// someone else could replace it, which `herd reexec` refuses ([`executable`]).
pub fn invoked() -> anyhow::Result<PathBuf> {
    let invoked = find_invoked()?;
    let uid = herd_sys::process::effective_uid();
    if let Some(Replaceable { why, fix }) = replaceable(&resolve(&invoked), uid) {
        tracing::warn!(
            event = LogEvent::SetupNote.as_str(),
            "herd reexec will refuse to run {}: {why}, so someone else could replace herd's \
             binary and run as herd's user; {fix} before a herd reexec",
            invoked.display()
        );
    }
    Ok(invoked)
}

fn find_invoked() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let arg0 = std::env::args_os().next().unwrap_or_default();
    let cwd = std::env::current_dir().ok();
    let path = std::env::var_os("PATH");
    let running = std::fs::metadata("/proc/self/exe")
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let this_binary = |p: &Path| {
        running.is_some() && std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())) == running
    };
    if let Some(invoked) = invoked_path(&arg0, cwd.as_deref(), path.as_deref(), this_binary) {
        return Ok(invoked);
    }
    let exe = std::env::current_exe().context("cannot find herd's own binary")?;
    let other = invoked_path(&arg0, cwd.as_deref(), path.as_deref(), is_executable);
    let arg0 = arg0.to_string_lossy();
    match other {
        Some(other) => tracing::warn!(
            event = LogEvent::SetupNote.as_str(),
            argv0 = %arg0,
            names = %other.display(),
            exe = %exe.display(),
            "argv[0] names another program, not this herd; herd reexec runs herd's own binary"
        ),
        None => tracing::info!(
            event = LogEvent::SetupNote.as_str(),
            argv0 = %arg0,
            exe = %exe.display(),
            "argv[0] names no file of herd's; herd reexec runs herd's own binary"
        ),
    }
    Ok(exe)
}

/// `arg0` as a path that stays valid after a change of directory, if `usable` accepts it.
pub(super) fn invoked_path(
    arg0: &std::ffi::OsStr,
    cwd: Option<&Path>,
    path_var: Option<&std::ffi::OsStr>,
    usable: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let absolute = |p: &Path| -> Option<PathBuf> {
        if p.is_absolute() {
            Some(p.to_path_buf())
        } else {
            // `./herd` becomes `DIR/herd`; `..` stays, as symlinks give it its meaning.
            Some(cwd?.join(p).components().collect())
        }
    };
    if arg0.is_empty() {
        return None;
    }
    if arg0.as_bytes().contains(&b'/') {
        return absolute(Path::new(arg0)).filter(|p| usable(p));
    }
    // As the shell found it: the first directory of PATH that holds it (an empty entry is the
    // current directory).
    std::env::split_paths(path_var?)
        .filter_map(|dir| absolute(&dir.join(arg0)))
        .find(|p| usable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The file `invoked` names now, symlinks followed: the file a re-exec checks and then runs,
/// so that a link switched between the two cannot swap in an unchecked binary. `invoked`
/// itself when it cannot be resolved ([`executable`] then says why).
pub fn resolve(invoked: &Path) -> PathBuf {
    std::fs::canonicalize(invoked).unwrap_or_else(|_| invoked.to_path_buf())
}

/// Checks that `exe` is an executable file that only root or herd's own user could have put
/// there (see [`replaceable`]).
pub fn executable(exe: &Path) -> anyhow::Result<()> {
    let shown = exe.display();
    let meta = std::fs::metadata(exe)
        .with_context(|| format!("cannot re-execute {shown}; herd keeps running"))?;
    use std::os::unix::fs::PermissionsExt;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        bail!("cannot re-execute {shown}: it is not an executable file; herd keeps running");
    }
    if let Some(Replaceable { why, fix }) = replaceable(exe, herd_sys::process::effective_uid()) {
        bail!(
            "cannot re-execute {shown}: {why}, so someone else could have replaced herd's \
             binary and would run as herd's user: {fix}, make sure the binary is the one you \
             installed, then run herd reexec again; herd keeps running"
        );
    }
    Ok(())
}
