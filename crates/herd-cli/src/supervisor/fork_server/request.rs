//! The fork-server protocol's messages (docs/fork-server.md): a request is NUL-terminated byte
//! strings (the version, the argument count and arguments, the variable count and
//! `KEY=VALUE` variables); a reply is `pid N` or `error MESSAGE`.

/// The first string of every request.
pub const VERSION: &[u8] = b"herd-fork 1";

/// The request that asks for a worker running `argv` with `env` (whole `KEY=VALUE` entries,
/// `LISTEN_PID` left out: the worker sets its own).
pub fn encode_request<'a>(
    argv: impl ExactSizeIterator<Item = &'a [u8]>,
    env: impl Iterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let env: Vec<&[u8]> = env.filter(|e| !e.starts_with(b"LISTEN_PID=")).collect();
    let mut out = Vec::new();
    let mut put = |s: &[u8]| {
        out.extend_from_slice(s);
        out.push(0);
    };
    put(VERSION);
    put(argv.len().to_string().as_bytes());
    argv.for_each(&mut put);
    put(env.len().to_string().as_bytes());
    env.into_iter().for_each(put);
    out
}

/// A fork server's answer to a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// The worker's pid.
    Forked(u32),
    /// Why it could not fork one (its words, or why the reply made no sense).
    Refused(String),
}

/// Reads a reply; anything but `pid N` (N > 1) or `error ...` is refused with what it was.
/// An error's control characters are spaces.
pub fn parse_reply(reply: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\n', '\0']);
    if let Some(pid) = text.strip_prefix("pid ") {
        if let Ok(pid) = pid.parse::<u32>() {
            if pid > 1 {
                return Reply::Forked(pid);
            }
        }
    }
    match text.strip_prefix("error ") {
        // One line, as the protocol says: a line break or escape sequence of its own would
        // read as another line of herd's log, or paint the terminal.
        Some(why) => Reply::Refused(
            why.chars()
                .take(300)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        ),
        None => Reply::Refused(format!(
            "it answered {:?}, neither 'pid N' nor 'error ...'",
            text.chars().take(80).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_nul_terminated_strings_without_listen_pid() {
        let argv: Vec<&[u8]> = vec![b"python3", b"app.py"];
        let env: Vec<&[u8]> = vec![b"A=1", b"LISTEN_PID=7", b"B=\xff"];
        let request = encode_request(argv.into_iter(), env.into_iter());
        assert_eq!(
            request,
            b"herd-fork 1\x002\x00python3\x00app.py\x002\x00A=1\x00B=\xff\x00".to_vec()
        );
    }

    #[test]
    fn a_reply_is_a_pid_or_an_error() {
        assert_eq!(parse_reply(b"pid 1234"), Reply::Forked(1234));
        assert_eq!(parse_reply(b"pid 1234\n"), Reply::Forked(1234));
        assert_eq!(
            parse_reply(b"error fork failed: ENOMEM"),
            Reply::Refused("fork failed: ENOMEM".to_string())
        );
        assert_eq!(
            parse_reply(b"error no\n2026-12-02T10:00:00Z  INFO fine \x1b[31m\n"),
            Reply::Refused("no 2026-12-02T10:00:00Z  INFO fine  [31m".to_string())
        );
        for bad in [&b"pid 0"[..], b"pid 1", b"pid -3", b"pid x", b"", b"hello"] {
            assert!(
                matches!(parse_reply(bad), Reply::Refused(ref why) if why.contains("neither")),
                "{bad:?}"
            );
        }
    }
}
