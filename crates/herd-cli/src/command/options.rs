//! The workers' user and directory, checked when herd starts.

use std::path::{Path, PathBuf};

use herd_sys::process::{lookup_group, lookup_user};

/// The uid, gid and groups of `--user USER [--group GROUP]`. USER is a name or a uid; a uid
/// that the user database does not know is accepted with `--group` (it has no primary group
/// to default to). `None` when herd is not root and USER is herd's own user: the workers are
/// that user already, and only root may change groups.
pub fn credentials(
    user: &str,
    group: Option<&str>,
) -> Result<Option<(u32, u32, Vec<u32>)>, String> {
    let known = lookup_user(user).map_err(|e| format!("cannot look up --user {user}: {e}"))?;
    let gid = match group {
        None => None,
        Some(group) => Some(
            lookup_group(group)
                .map_err(|e| format!("cannot look up --group {group}: {e}"))?
                .ok_or_else(|| {
                    format!("--group {group}: no group named '{group}'; give a group name or a gid")
                })?,
        ),
    };
    let (uid, primary, mut groups) = match (known, user.parse::<u32>()) {
        (Some(u), _) => (u.uid, u.gid, u.groups),
        (None, Ok(uid)) => match gid {
            Some(gid) => (uid, gid, Vec::new()),
            None => {
                return Err(format!(
                    "--user {user}: no user has uid {uid} in the user database, so it has no \
                     primary group; give the workers' group with --group, or a known user"
                ))
            }
        },
        (None, Err(_)) => {
            return Err(format!(
                "--user {user}: no user named '{user}'; give a user name or a uid"
            ))
        }
    };
    let euid = herd_sys::process::effective_uid();
    if euid != 0 {
        if uid != euid {
            return Err(format!(
                "--user {user} needs herd to run as root (it runs as uid {euid})"
            ));
        }
        return Ok(None);
    }
    let gid = gid.unwrap_or(primary);
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    Ok(Some((uid, gid, groups)))
}

/// `--chdir DIR`, checked and made absolute (not resolved: a symlink such as `current` is
/// followed anew by each worker, so it picks up a new release).
pub fn working_dir(dir: &Path) -> Result<PathBuf, String> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("--chdir {shown}: no such directory"))
        }
        Err(e) => return Err(format!("--chdir {shown}: cannot use it: {e}")),
        Ok(meta) if !meta.is_dir() => {
            return Err(format!(
                "--chdir {shown} is a file, not a directory; give the directory the workers \
                 run in"
            ))
        }
        Ok(_) => {}
    }
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| format!("--chdir {shown}: cannot find herd's own directory: {e}"))?;
    Ok(cwd.join(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories() {
        assert!(working_dir(Path::new("/etc/passwd"))
            .unwrap_err()
            .contains("is a file, not a directory"));
        assert!(working_dir(Path::new("/nonexistent/herd"))
            .unwrap_err()
            .contains("no such directory"));
        assert!(working_dir(Path::new(".")).unwrap().is_absolute());
    }

    #[test]
    fn users() {
        let e = credentials("no-such-herd-user", None).unwrap_err();
        assert!(e.contains("no user named 'no-such-herd-user'"), "{e}");
        let e = credentials("4000000", None).unwrap_err();
        assert!(
            e.contains("no user has uid 4000000") && e.contains("--group"),
            "{e}"
        );
        if herd_sys::process::effective_uid() == 0 {
            assert_eq!(
                credentials("4000000", Some("4000001")).unwrap(),
                Some((4000000, 4000001, vec![4000001]))
            );
            assert_eq!(credentials("0", None).unwrap().map(|c| c.0), Some(0));
        }
    }
}
