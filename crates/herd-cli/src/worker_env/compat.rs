//! Other supervisors' ways of passing sockets, which herd speaks too with `--compat`, so that
//! servers written for them run unchanged: einhorn's `EINHORN_FD_*` and Server::Starter's
//! `SERVER_STARTER_PORT`. The fds are the same ones `LISTEN_FDS` counts (3, 4, ...).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::spec::SocketKind;

/// What the conventions describe to workers.
#[derive(Clone, Debug, Default)]
pub struct Passed {
    /// Each socket's kind and address as herd shows them, in fd order from 3.
    pub sockets: Vec<(SocketKind, String)>,
    /// Where einhorn's acknowledgements go (`EINHORN_SOCK_PATH`), if herd listens for them.
    pub einhorn_sock: Option<PathBuf>,
}

/// A convention `--compat` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compat {
    /// einhorn's: `EINHORN_FD_COUNT`, `EINHORN_FD_0..n`, `EINHORN_FDS`, `EINHORN_MASTER_PID`.
    Einhorn,
    /// Server::Starter's `start_server`: `SERVER_STARTER_PORT` (`host:port=fd;...`).
    ServerStarter,
}

/// Every convention, as `--compat` names them.
const KNOWN: [(&str, Compat); 2] = [
    ("einhorn", Compat::Einhorn),
    ("server-starter", Compat::ServerStarter),
];

/// The convention named `text`, or an error that lists the known ones.
pub fn parse_compat(text: &str) -> Result<Compat, String> {
    KNOWN
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, compat)| *compat)
        .ok_or_else(|| {
            let known: Vec<&str> = KNOWN.iter().map(|(name, _)| *name).collect();
            format!("unknown convention '{text}'; known: {}", known.join(", "))
        })
}

/// The name `--compat` gives `compat`.
pub fn name(compat: Compat) -> &'static str {
    KNOWN
        .iter()
        .find(|(_, known)| *known == compat)
        .map_or("", |(name, _)| *name)
}

/// Whether a convention in `compat` sets the variable `name` for the workers.
pub fn sets(compat: &[Compat], name: &str) -> bool {
    let einhorn = matches!(
        name,
        "EINHORN_FD_COUNT" | "EINHORN_FDS" | "EINHORN_MASTER_PID" | "EINHORN_SOCK_PATH"
    ) || name
        .strip_prefix("EINHORN_FD_")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (einhorn && compat.contains(&Compat::Einhorn))
        || (name == "SERVER_STARTER_PORT" && compat.contains(&Compat::ServerStarter))
}

/// The variables of the conventions in `compat` for workers that get `passed` from herd,
/// whose pid is `herd_pid`. Shared memory (`--shm`) is not a socket: the conventions leave it
/// out.
pub fn compat_env(compat: &[Compat], passed: &Passed, herd_pid: u32) -> Vec<(OsString, OsString)> {
    let fds: Vec<(i32, &(SocketKind, String))> = passed
        .sockets
        .iter()
        .enumerate()
        .filter(|(_, (kind, _))| *kind != SocketKind::Shm)
        .map(|(i, socket)| (herd::LISTEN_FDS_START + i as i32, socket))
        .collect();
    let mut env: Vec<(String, String)> = Vec::new();
    if compat.contains(&Compat::Einhorn) {
        env.push(("EINHORN_FD_COUNT".into(), fds.len().to_string()));
        for (i, (fd, _)) in fds.iter().enumerate() {
            env.push((format!("EINHORN_FD_{i}"), fd.to_string()));
        }
        let all: Vec<String> = fds.iter().map(|(fd, _)| fd.to_string()).collect();
        env.push(("EINHORN_FDS".into(), all.join(" ")));
        // einhorn's workers check that this is their parent: herd is.
        env.push(("EINHORN_MASTER_PID".into(), herd_pid.to_string()));
    }
    let mut env: Vec<(OsString, OsString)> = env
        .into_iter()
        .map(|(key, value)| (key.into(), value.into()))
        .collect();
    if let (true, Some(path)) = (compat.contains(&Compat::Einhorn), &passed.einhorn_sock) {
        env.push(("EINHORN_SOCK_PATH".into(), path.clone().into()));
    }
    if compat.contains(&Compat::ServerStarter) {
        let ports: Vec<String> = fds
            .iter()
            .map(|(fd, (_, address))| format!("{}={fd}", server_starter_address(address)))
            .collect();
        env.push(("SERVER_STARTER_PORT".into(), ports.join(";").into()));
    }
    env
}

/// `address` as `start_server` writes it: `HOST:PORT`, `[V6]:PORT`, only `PORT` for every
/// interface (its `--port PORT`), and a Unix socket's path.
fn server_starter_address(address: &str) -> &str {
    let address = address.strip_prefix("udp://").unwrap_or(address);
    if let Some(path) = address.strip_prefix("unix:") {
        return path;
    }
    match address.rsplit_once(':') {
        Some(("0.0.0.0" | "[::]", port)) => port,
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(compat: &[Compat], sockets: &[(SocketKind, &str)]) -> Vec<String> {
        let passed = Passed {
            sockets: sockets.iter().map(|(k, a)| (*k, a.to_string())).collect(),
            einhorn_sock: Some("/run/herd/web.7.einhorn".into()),
        };
        compat_env(compat, &passed, 42)
            .into_iter()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect()
    }

    #[test]
    fn einhorn_counts_the_sockets_and_names_herd_as_the_master() {
        let sockets = [
            (SocketKind::Tcp, "127.0.0.1:8080"),
            (SocketKind::Unix, "unix:/run/a.sock"),
            (SocketKind::Shm, "shm:4096"),
        ];
        assert_eq!(
            env(&[Compat::Einhorn], &sockets),
            [
                "EINHORN_FD_COUNT=2",
                "EINHORN_FD_0=3",
                "EINHORN_FD_1=4",
                "EINHORN_FDS=3 4",
                "EINHORN_MASTER_PID=42",
                "EINHORN_SOCK_PATH=/run/herd/web.7.einhorn"
            ]
        );
    }

    #[test]
    fn server_starter_port_is_written_as_start_server_writes_it() {
        let sockets = [
            (SocketKind::Tcp, "127.0.0.1:8080"),
            (SocketKind::Tcp, "[::]:80"),
            (SocketKind::Tcp, "0.0.0.0:81"),
            (SocketKind::Tcp, "[::1]:82"),
            (SocketKind::Udp, "udp://127.0.0.1:53"),
            (SocketKind::Unix, "unix:/run/app.sock"),
        ];
        assert_eq!(
            env(&[Compat::ServerStarter], &sockets),
            [
                "SERVER_STARTER_PORT=127.0.0.1:8080=3;80=4;81=5;[::1]:82=6;127.0.0.1:53=7;\
              /run/app.sock=8"
            ]
        );
    }

    #[test]
    fn no_convention_sets_nothing_and_both_set_both() {
        let sockets = [(SocketKind::Tcp, "127.0.0.1:8080")];
        assert!(env(&[], &sockets).is_empty());
        let both = env(&[Compat::ServerStarter, Compat::Einhorn], &sockets);
        assert!(both.contains(&"SERVER_STARTER_PORT=127.0.0.1:8080=3".to_string()));
        assert!(both.contains(&"EINHORN_FD_0=3".to_string()));
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones() {
        assert_eq!(parse_compat("einhorn"), Ok(Compat::Einhorn));
        assert_eq!(parse_compat("server-starter"), Ok(Compat::ServerStarter));
        assert_eq!(
            parse_compat("inetd"),
            Err("unknown convention 'inetd'; known: einhorn, server-starter".to_string())
        );
    }
}
