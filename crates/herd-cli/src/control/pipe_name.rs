//! Where a herd's control pipe lives on Windows: the name its server creates and its clients
//! open. Pure, so it is built and tested on every platform.
//!
//! `--control PIPE`, else `$HERD_CONTROL`, else `\\.\pipe\herd\SID\NAME`: per user (the SID
//! of the user herd runs as) and per `--name`, so that two users' herds of the same name do
//! not meet. A `--control` or `$HERD_CONTROL` value is either a full pipe path
//! (`\\.\pipe\...`) or a bare pipe name, which goes under `\\.\pipe\`.

/// The local pipe namespace.
pub const PIPE_PREFIX: &str = r"\\.\pipe\";

/// The longest pipe path Windows accepts (256 characters, the prefix included).
pub const MAX_PIPE_PATH: usize = 256;

/// The control pipe's path: `control` (`--control`), else `env_control` (`$HERD_CONTROL`, an
/// empty one ignored), else herd's default for the user `user_sid` and the herd `name`.
pub fn resolve(
    control: Option<&str>,
    env_control: Option<&str>,
    name: &str,
    user_sid: &str,
) -> Result<String, String> {
    let chosen = control.or_else(|| env_control.filter(|c| !c.is_empty()));
    let path = match chosen {
        Some(given) => pipe_path(given)?,
        None => format!(r"{PIPE_PREFIX}herd\{user_sid}\{name}"),
    };
    if path.chars().count() > MAX_PIPE_PATH {
        return Err(format!(
            "the control pipe {path} is longer than {MAX_PIPE_PATH} characters: pass a shorter \
             --control or set $HERD_CONTROL"
        ));
    }
    Ok(path)
}

/// herd's notify pipe (Windows' `NOTIFY_SOCKET`), beside its control pipe `control` (a path
/// from [`resolve`]): `CONTROL.PID.notify` with herd's own pid, as on Unix, so that two herds
/// of one name (a takeover) each have their own.
pub fn notify_pipe(control: &str, herd_pid: u32) -> Result<String, String> {
    let path = format!("{control}.{herd_pid}.notify");
    if path.chars().count() > MAX_PIPE_PATH {
        return Err(format!(
            "the notify pipe {path} is longer than {MAX_PIPE_PATH} characters: pass a shorter \
             --control or set a shorter $HERD_CONTROL"
        ));
    }
    Ok(path)
}

/// A given pipe: kept if it is a local pipe path, else put under [`PIPE_PREFIX`].
fn pipe_path(given: &str) -> Result<String, String> {
    let lower = given.to_ascii_lowercase();
    let name = if lower.starts_with(PIPE_PREFIX) {
        &given[PIPE_PREFIX.len()..]
    } else if given.starts_with(r"\\") || given.contains('/') || given.contains(':') {
        return Err(format!(
            "--control {given:?}: on Windows the control channel is a local named pipe: \
             give a pipe name or a path {PIPE_PREFIX}NAME"
        ));
    } else {
        given
    };
    if name.is_empty() || name.contains('\0') {
        return Err(format!("--control {given:?} names no pipe"));
    }
    Ok(format!("{PIPE_PREFIX}{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "S-1-5-21-1-2-3-1000";

    #[test]
    fn the_default_is_per_user_and_per_name() {
        assert_eq!(
            resolve(None, None, "web", SID).unwrap(),
            r"\\.\pipe\herd\S-1-5-21-1-2-3-1000\web"
        );
        assert_eq!(
            resolve(None, Some(""), "herd", SID).unwrap(),
            r"\\.\pipe\herd\S-1-5-21-1-2-3-1000\herd"
        );
    }

    #[test]
    fn the_flag_wins_over_the_environment_and_bare_names_go_under_the_pipe_prefix() {
        assert_eq!(
            resolve(Some("mine"), Some("theirs"), "web", SID).unwrap(),
            r"\\.\pipe\mine"
        );
        assert_eq!(
            resolve(None, Some(r"\\.\PIPE\a\b"), "web", SID).unwrap(),
            r"\\.\pipe\a\b"
        );
        assert_eq!(
            resolve(Some(r"\\.\pipe\x"), None, "web", SID).unwrap(),
            r"\\.\pipe\x"
        );
    }

    #[test]
    fn the_notify_pipe_is_beside_the_control_pipe_and_names_herds_pid() {
        let control = resolve(None, None, "web", SID).unwrap();
        assert_eq!(
            notify_pipe(&control, 4242).unwrap(),
            r"\\.\pipe\herd\S-1-5-21-1-2-3-1000\web.4242.notify"
        );
        let widest = format!(".{}.notify", u32::MAX).len();
        let longest = format!(
            "{PIPE_PREFIX}{}",
            "x".repeat(MAX_PIPE_PATH - PIPE_PREFIX.len())
        );
        let control = &longest[..MAX_PIPE_PATH - widest];
        assert!(notify_pipe(control, u32::MAX).is_ok());
        let e = notify_pipe(&longest, 1).unwrap_err();
        assert!(e.contains("pass a shorter --control"), "{e}");
    }

    #[test]
    fn what_is_not_a_local_pipe_is_refused() {
        for bad in [
            r"\\server\pipe\x",
            r"C:\herd\web.sock",
            "/tmp/web.sock",
            r"\\.\pipe\",
            "",
        ] {
            assert!(resolve(Some(bad), None, "web", SID).is_err(), "{bad:?}");
        }
        let long = "x".repeat(MAX_PIPE_PATH);
        assert!(resolve(Some(&long), None, "web", SID).is_err());
    }
}
