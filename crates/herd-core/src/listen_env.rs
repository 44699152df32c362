//! The socket-activation environment (`sd_listen_fds(3)`): `LISTEN_FDS`, `LISTEN_PID` and
//! `LISTEN_FDNAMES`, checked as pure functions, for the worker library that reads them and the
//! supervisor that names its sockets.

/// The first inherited fd, as in systemd's `SD_LISTEN_FDS_START`.
pub const LISTEN_FDS_START: i32 = 3;

/// The most inherited fds accepted.
pub const MAX_LISTEN_FDS: usize = 65536;

/// Names longer than this are rejected, as systemd does.
const MAX_NAME_LEN: usize = 255;

/// Validates `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` for the process `own_pid`.
///
/// Returns `Ok(None)` when the variables are absent or meant for another process (a
/// `LISTEN_PID` that is not ours means "no sockets", as libsystemd decides), otherwise one name
/// per fd, starting at fd 3. Fds without a name in `LISTEN_FDNAMES` are called `unknown`, as in
/// systemd. The error says what is wrong with the environment.
pub fn parse_listen_env(
    fds: Option<&str>,
    pid: Option<&str>,
    names: Option<&str>,
    own_pid: u32,
) -> Result<Option<Vec<String>>, String> {
    let (fds, pid) = match (fds, pid) {
        (Some(fds), Some(pid)) => (fds, pid),
        _ => return Ok(None),
    };
    let pid: u32 = parse_number(pid).ok_or_else(|| {
        format!("LISTEN_PID={pid:?} is not a process id (expected a positive decimal number)")
    })?;
    if pid == 0 {
        return Err("LISTEN_PID=0 is not a process id".to_string());
    }
    if pid != own_pid {
        return Ok(None);
    }
    let count: usize = parse_number(fds)
        .ok_or_else(|| format!("LISTEN_FDS={fds:?} is not a count (expected a decimal number)"))?;
    // Refused before anything is allocated per fd: a hostile LISTEN_FDS must not be able to
    // exhaust memory (found by fuzzing).
    if count > MAX_LISTEN_FDS {
        return Err(format!(
            "LISTEN_FDS={count} is more than the {MAX_LISTEN_FDS} sockets a process accepts"
        ));
    }
    let names: Vec<String> = match names {
        None => vec!["unknown".to_string(); count],
        Some(names) if count == 0 && names.is_empty() => Vec::new(),
        Some(names) => names.split(':').map(str::to_string).collect(),
    };
    if names.len() != count {
        let has = match names.len() {
            1 => "1 name".to_string(),
            n => format!("{n} names"),
        };
        return Err(format!("LISTEN_FDNAMES has {has} but LISTEN_FDS={count}"));
    }
    for name in &names {
        validate_name(name).map_err(|why| format!("LISTEN_FDNAMES: {why}"))?;
    }
    Ok(Some(names))
}

/// `(LISTEN_PID, LISTEN_FDS)` when the variables pass at least one fd to a process other than
/// `own_pid`: the fds are then not this process's to adopt, though it may hold them (a wrapper
/// that ran it without `exec` passed them on). `None` otherwise, malformed variables included
/// ([`parse_listen_env`] says what is wrong with those).
pub fn passed_to_another(
    fds: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Option<(u32, usize)> {
    let pid: u32 = parse_number(pid?)?;
    let count: usize = parse_number(fds?)?;
    if pid == 0 || pid == own_pid || count == 0 {
        return None;
    }
    Some((pid, count))
}

/// Checks a socket name the way systemd's `fdname_is_valid()` does: 1 to 255 printable ASCII
/// characters, no `:`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a socket name cannot be empty".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("socket name {name:?} is longer than 255 bytes"));
    }
    if let Some(c) = name.chars().find(|c| !(' '..='~').contains(c) || *c == ':') {
        return Err(format!(
            "socket name {name:?} contains {c:?} (allowed: printable ASCII except ':')"
        ));
    }
    Ok(())
}

/// A plain decimal number: digits only, no sign, no spaces (stricter than `str::parse`).
fn parse_number<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fds_passed_to_another_process() {
        assert_eq!(passed_to_another(Some("2"), Some("77"), 5), Some((77, 2)));
        assert_eq!(passed_to_another(Some("2"), Some("5"), 5), None, "ours");
        assert_eq!(passed_to_another(Some("0"), Some("77"), 5), None, "none");
        assert_eq!(passed_to_another(None, Some("77"), 5), None);
        assert_eq!(passed_to_another(Some("2"), None, 5), None);
        assert_eq!(passed_to_another(Some("x"), Some("77"), 5), None);
        assert_eq!(passed_to_another(Some("2"), Some("0"), 5), None);
    }

    fn names(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn absent_or_foreign_means_no_sockets() {
        assert_eq!(parse_listen_env(None, None, None, 7).unwrap(), None);
        assert_eq!(parse_listen_env(Some("1"), None, None, 7).unwrap(), None);
        assert_eq!(
            parse_listen_env(Some("1"), Some("8"), None, 7).unwrap(),
            None
        );
    }

    #[test]
    fn names_match_counts() {
        assert_eq!(
            parse_listen_env(Some("2"), Some("7"), Some("http:admin"), 7).unwrap(),
            names(&["http", "admin"])
        );
        assert_eq!(
            parse_listen_env(Some("1"), Some("7"), None, 7).unwrap(),
            names(&["unknown"])
        );
        assert_eq!(
            parse_listen_env(Some("0"), Some("7"), Some(""), 7).unwrap(),
            names(&[])
        );
    }

    #[test]
    fn malformed_values_are_errors() {
        for (fds, pid, fdnames) in [
            ("x", "7", None),
            ("-1", "7", None),
            (" 1", "7", None),
            ("1", "seven", None),
            ("1", "0", None),
            ("2", "7", Some("a")),
            ("1", "7", Some("a:b")),
            ("1", "7", Some("")),
            ("1", "7", Some("a\tb")),
            // Found by fuzzing: a huge count must be refused, not allocated for.
            ("200000121", "7", None),
            ("65537", "7", None),
        ] {
            assert!(
                parse_listen_env(Some(fds), Some(pid), fdnames, 7).is_err(),
                "{fds} {pid} {fdnames:?}"
            );
        }
    }
}
