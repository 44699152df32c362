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

/// The control pipe of the herd `--takeover given` names: a pipe path (`\\.\pipe\...`)
/// as it is, else the default pipe of the herd named `given` run by the user `user_sid`.
pub fn takeover_pipe(given: &str, user_sid: &str) -> Result<String, String> {
    if given.starts_with(r"\\") {
        return pipe_path(given).map_err(|e| e.replace("--control", "--takeover"));
    }
    if given.is_empty() || given.contains(['\\', '/', ':', '\0']) {
        return Err(format!(
            "--takeover {given:?}: give the name of a running herd (its --name) or its control \
             pipe {PIPE_PREFIX}..."
        ));
    }
    resolve(None, None, given, user_sid)
}

/// Where a herd taking over ends: at the old herd's pipe `old`. A `--control` naming another
/// pipe is a usage error (as on Unix).
pub fn takeover_control(old: &str, control: Option<&str>) -> Result<(), String> {
    match control.map(pipe_path).transpose()? {
        Some(asked) if !asked.eq_ignore_ascii_case(old) => Err(format!(
            "--takeover ends at the old herd's control pipe {old}, not at --control {asked}; \
             drop --control (or pass the same pipe)"
        )),
        _ => Ok(()),
    }
}

/// The pipe a herd taking over from the herd at `old` serves until that herd is gone:
/// `OLD.takeover.PID`, with this herd's pid.
pub fn takeover_meanwhile(old: &str, herd_pid: u32) -> Result<String, String> {
    let path = format!("{old}.takeover.{herd_pid}");
    if path.chars().count() > MAX_PIPE_PATH {
        return Err(format!(
            "the takeover pipe {path} is longer than {MAX_PIPE_PATH} characters: take over by \
             a shorter pipe"
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
    fn a_takeover_names_a_herd_or_its_pipe_and_ends_there() {
        assert_eq!(
            takeover_pipe("web", SID).unwrap(),
            r"\\.\pipe\herd\S-1-5-21-1-2-3-1000\web"
        );
        assert_eq!(
            takeover_pipe(r"\\.\pipe\mine", SID).unwrap(),
            r"\\.\pipe\mine"
        );
        for bad in ["", "a/b", "c:x", r"\\server\pipe\x"] {
            let e = takeover_pipe(bad, SID).unwrap_err();
            assert!(e.starts_with("--takeover"), "{bad}: {e}");
        }
        let old = r"\\.\pipe\herd\S\web";
        assert!(takeover_control(old, None).is_ok());
        assert!(takeover_control(old, Some(r"\\.\PIPE\herd\S\web")).is_ok());
        let e = takeover_control(old, Some("other")).unwrap_err();
        assert!(e.contains(r"not at --control \\.\pipe\other"), "{e}");
        assert_eq!(
            takeover_meanwhile(old, 42).unwrap(),
            r"\\.\pipe\herd\S\web.takeover.42"
        );
        assert!(takeover_meanwhile(&"x".repeat(250), 42).is_err());
    }

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
