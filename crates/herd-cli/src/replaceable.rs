//! Whether a file herd acts on (its own binary at a re-exec, its config file at a reload)
//! could have been put where it is by someone other than root and herd's user, who would then
//! run as herd's user: the check and what mends it.

use std::path::{Path, PathBuf};

/// Why a path could have been put where it is by someone other than root and herd's user,
/// and what mends it.
#[derive(Debug, PartialEq, Eq)]
pub struct Replaceable {
    /// The first entry that lets someone else in, and how (its owner, its mode).
    pub why: String,
    /// What to do about that entry, with the command (`chmod go-w`, `chown`): the check runs
    /// anew at each re-exec and reload, so herd need not be restarted.
    pub fix: String,
}

/// Why the file at `path` (absolute) could have been put there by someone other than root and
/// `uid`, as ssh's `StrictModes` judges a path: the first entry from it up to `/` that another
/// user owns, or (but a symlink, judged by its owner alone) that group or others may write (a
/// sticky directory of root's, `/tmp`, passes when the entry below it is root's or `uid`'s).
/// `None` if none. herd (root, often) runs the binary at a re-exec: whoever may replace it
/// becomes herd.
pub fn replaceable(path: &Path, uid: u32) -> Option<Replaceable> {
    use std::os::unix::fs::MetadataExt;
    let mut below: Option<u32> = None;
    for entry in path.ancestors() {
        let shown = entry.display();
        let meta = match std::fs::symlink_metadata(entry) {
            Ok(meta) => meta,
            Err(e) => {
                let fix = match uid {
                    0 => "make sure it is there".to_string(),
                    uid => format!(
                        "make sure it is there and that uid {uid} may search each directory \
                         above it"
                    ),
                };
                let why = format!("{shown} cannot be inspected ({e})");
                return Some(Replaceable { why, fix });
            }
        };
        let (owner, mode) = (meta.uid(), meta.mode());
        // A symlink's mode means nothing: whoever owns it may point it elsewhere (its target
        // is checked by the walk of the resolved path).
        let link = meta.file_type().is_symlink();
        if owner != 0 && owner != uid {
            // A non-root herd's own user is the natural owner; root's is root.
            let (to, named) = match uid {
                0 => ("root".to_string(), "root".to_string()),
                uid => (uid.to_string(), format!("root or uid {uid}")),
            };
            return Some(Replaceable {
                why: format!("{shown} belongs to uid {owner}"),
                fix: format!(
                    "make {named} its owner (chown {}{to} {shown})",
                    if link { "-h " } else { "" }
                ),
            });
        }
        let sticky_root = meta.is_dir() && mode & 0o1000 != 0 && owner == 0;
        let below_trusted = matches!(below, Some(b) if b == 0 || b == uid);
        if !link && mode & 0o022 != 0 && !(sticky_root && below_trusted) {
            return Some(Replaceable {
                why: format!(
                    "{shown} may be written by group or others (mode {:o})",
                    mode & 0o7777
                ),
                fix: format!("make it writable by its owner alone (chmod go-w {shown})"),
            });
        }
        below = Some(owner);
    }
    None
}

/// The most symlinks [`replaceable_file`] follows, as the kernel's `ELOOP` bound.
const MOST_LINKS: usize = 40;

/// [`replaceable`] for a config file that herd reads again at a reload, at `path` (relative to
/// the directory herd runs in): resolved one component at a time, each symlink on the way (of
/// a directory or of the file, the links between included) judged by its owner with the
/// directories above it, then the file the chain ends at.
pub fn replaceable_file(path: &Path, uid: u32) -> Option<Replaceable> {
    use std::path::Component;
    let absolute: PathBuf = match std::env::current_dir() {
        Ok(cwd) => cwd.join(path),
        Err(_) if path.is_absolute() => path.to_path_buf(),
        Err(e) => {
            return Some(Replaceable {
                why: format!("{} cannot be found from here ({e})", path.display()),
                fix: "give its absolute path".to_string(),
            })
        }
    };
    let mut pending: Vec<PathBuf> = Vec::new();
    push_components(&mut pending, &absolute);
    let mut resolved = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = pending.pop() {
        let name = match part.components().next() {
            Some(Component::Normal(name)) => name.to_owned(),
            Some(Component::ParentDir) => {
                resolved.pop();
                continue;
            }
            _ => continue,
        };
        let next = resolved.join(name);
        let is_link = std::fs::symlink_metadata(&next).map(|m| m.file_type().is_symlink());
        if !matches!(is_link, Ok(true)) {
            // A directory (or the file) as it is; what cannot be inspected is said below.
            resolved = next;
            continue;
        }
        // The link, and the directories it sits in: whoever may change it picks the file.
        if let Some(why) = replaceable(&next, uid) {
            return Some(why);
        }
        links += 1;
        let target = match std::fs::read_link(&next) {
            Ok(target) if links <= MOST_LINKS => target,
            _ => {
                return Some(Replaceable {
                    why: format!("{} cannot be followed (a loop of links?)", next.display()),
                    fix: "point it at the file itself".to_string(),
                })
            }
        };
        if target.is_absolute() {
            resolved = PathBuf::from("/");
        }
        push_components(&mut pending, &target);
    }
    replaceable(&resolved, uid)
}

/// Puts `path`'s components on `pending` (a stack: the first is popped first).
fn push_components(pending: &mut Vec<PathBuf>, path: &Path) {
    let parts: Vec<PathBuf> = path
        .components()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    pending.extend(parts.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file reached through a symlink is judged by the symlink's owner (whoever owns
    /// it may point it elsewhere), not its mode, which means nothing; and then as it resolves.
    #[test]
    fn a_symlink_is_judged_by_its_owner_and_its_target_by_the_resolved_walk() {
        use std::os::unix::fs::PermissionsExt;
        let uid = herd_sys::process::effective_uid();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let (file, link) = (dir.join("herd.toml"), dir.join("current.toml"));
        std::fs::write(&file, "workers = 1\n").unwrap();
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(replaceable_file(&link, uid), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let why = replaceable_file(&link, uid).unwrap();
        assert!(
            why.why.contains("may be written by group or others"),
            "{why:?}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        if uid == 0 {
            // A link between two root's, of another user's: it picks the file too.
            let (middle, first) = (dir.join("middle.toml"), dir.join("first.toml"));
            std::os::unix::fs::symlink(&file, &middle).unwrap();
            std::os::unix::fs::symlink(&middle, &first).unwrap();
            assert_eq!(replaceable_file(&first, 0), None);
            std::os::unix::fs::lchown(&middle, Some(65534), None).unwrap();
            let why = replaceable_file(&first, 0).unwrap();
            assert_eq!(
                why.why,
                format!("{} belongs to uid 65534", middle.display())
            );
            // A directory reached through another user's link, relative, with `..`.
            std::fs::create_dir(dir.join("sub")).unwrap();
            std::os::unix::fs::symlink("sub", dir.join("via")).unwrap();
            let through = dir.join("via/../via/../herd.toml");
            assert_eq!(replaceable_file(&through, 0), None);
            std::os::unix::fs::lchown(dir.join("via"), Some(65534), None).unwrap();
            assert!(replaceable_file(&through, 0).is_some());
            std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
            let why = replaceable_file(&link, 0).unwrap();
            assert_eq!(why.why, format!("{} belongs to uid 65534", link.display()));
            assert!(why.fix.contains("chown -h root"), "{why:?}");
        }
    }
}
