//! One address given to two `--bind`s: found before binding when the two are written alike,
//! else when the second bind fails, so the error says "given twice", not "stop the other
//! server" (the other server would be herd itself).

use std::fmt;
use std::net::SocketAddr;

use super::parse::{Address, BindSpec};
use super::socket_file;

/// An address that is already in use (`EADDRINUSE`): by another program, or by an earlier
/// `--bind` of this herd; with who holds it, when `/proc` tells
/// ([`holders::describe`](super::holders::describe)), and how many they are.
#[derive(Debug)]
pub struct InUse(pub SocketAddr, pub String, pub usize);

impl fmt::Display for InUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stop = match self.2 {
            0 => "the other server",
            1 => "it",
            _ => "them",
        };
        write!(
            f,
            "address {} is already in use{}: stop {stop} or choose another port",
            self.0, self.1
        )
    }
}

impl std::error::Error for InUse {}

/// A usage error: two `--bind`s name the same address.
#[derive(Debug)]
pub struct GivenTwice(String);

impl fmt::Display for GivenTwice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GivenTwice {}

/// Refuses two specs with the same address (port 0 excepted: each gets its own port).
pub fn check(specs: &[BindSpec]) -> Result<(), GivenTwice> {
    for (i, later) in specs.iter().enumerate() {
        let same = |earlier: &&BindSpec| match (&earlier.address, &later.address) {
            (Address::Tcp(a), Address::Tcp(b)) | (Address::Udp(a), Address::Udp(b)) => {
                a == b && a.port != 0
            }
            (Address::UnixPath(a), Address::UnixPath(b)) => a == b,
            (Address::UnixAbstract(a), Address::UnixAbstract(b)) => a == b,
            (Address::SystemdAll, Address::SystemdAll) => true,
            (Address::SystemdNamed(a), Address::SystemdNamed(b)) => a == b,
            _ => false,
        };
        if let Some(earlier) = specs[..i].iter().find(same) {
            return Err(match later.address {
                Address::SystemdAll | Address::SystemdNamed(_) => {
                    adopted_twice(&earlier.text, &later.text)
                }
                _ => given_twice(&earlier.text, &later.text),
            });
        }
    }
    Ok(())
}

/// Explains a failed bind of `spec` whose address an earlier bind of this herd holds:
/// `earlier` lists what was bound so far (spec text, kind, local address).
pub fn explain(
    error: anyhow::Error,
    spec: &BindSpec,
    earlier: &[(String, &'static str, SocketAddr)],
) -> anyhow::Error {
    let Some(InUse(addr, ..)) = error.downcast_ref::<InUse>() else {
        return error;
    };
    let overlaps = |(_, kind, bound): &&(String, &'static str, SocketAddr)| {
        *kind == spec.address.kind()
            && bound.port() == addr.port()
            && (bound.ip() == addr.ip()
                || bound.ip().is_unspecified()
                || addr.ip().is_unspecified())
    };
    match earlier.iter().find(overlaps) {
        Some((text, _, _)) => anyhow::Error::new(given_twice(text, &spec.text)),
        None => error,
    }
}

/// Explains a failed bind of `spec` whose socket file an earlier bind of this herd created:
/// `earlier` lists the files bound so far (spec text, device and inode). The paths were
/// written unlike (`unix:app.sock` and `unix:/srv/app.sock`, or through a symlinked
/// directory), so [`check`] could not tell; the file's identity can.
pub fn explain_file(
    error: anyhow::Error,
    spec: &BindSpec,
    earlier: &[(String, (u64, u64))],
) -> anyhow::Error {
    use std::os::unix::fs::MetadataExt;
    let Some(socket_file::InUse(path)) = error.downcast_ref::<socket_file::InUse>() else {
        return error;
    };
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return error;
    };
    match earlier
        .iter()
        .find(|(_, file)| *file == (meta.dev(), meta.ino()))
    {
        Some((text, _)) => anyhow::Error::new(given_twice(text, &spec.text)),
        None => error,
    }
}

/// A usage error: two sockets (or shared memory segments) end up with one name, e.g. a
/// `--bind systemd` socket named `http` and a `--bind http=...`.
pub fn name_given_twice(name: &str, earlier: &str, later: &str) -> GivenTwice {
    GivenTwice(format!(
        "the name '{name}' is given to two sockets, by {earlier} and by {later}: names must be \
         unique, so that {{fd:NAME}} and LISTEN_FDNAMES mean one socket; rename one \
         (NAME=fd:SYSTEMD_NAME renames a socket passed by systemd)"
    ))
}

fn adopted_twice(earlier: &str, later: &str) -> GivenTwice {
    GivenTwice(format!(
        "--bind '{later}' adopts the same sockets systemd passed as --bind '{earlier}': a \
         passed socket is adopted once; drop one of them"
    ))
}

fn given_twice(earlier: &str, later: &str) -> GivenTwice {
    GivenTwice(format!(
        "--bind '{later}' binds the same address as --bind '{earlier}': the address is given \
         twice; bind it once (one socket has one name, and every worker gets it)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(texts: &[&str]) -> Vec<BindSpec> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn same_address_twice() {
        assert!(check(&specs(&[
            ":8080",
            "udp://:8080",
            "127.0.0.1:0",
            "127.0.0.1:0"
        ]))
        .is_ok());
        let e = check(&specs(&["a=127.0.0.1:8080", "b=127.0.0.1:8080,nodelay"])).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
        assert!(check(&specs(&["unix:/tmp/a", "x=unix:/tmp/a"])).is_err());
        assert!(check(&specs(&["unix:@a", "unix:@a"])).is_err());
        let e = check(&specs(&["systemd", "systemd"])).unwrap_err();
        assert!(e.to_string().contains("adopted once"), "{e}");
        assert!(check(&specs(&["fd:web", "x=fd:web"])).is_err());
        assert!(check(&specs(&["fd:web", "fd:api", "systemd"])).is_ok());
    }

    #[test]
    fn overlapping_binds_are_explained() {
        let spec: BindSpec = "127.0.0.1:8080".parse().unwrap();
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let earlier = vec![(":8080".to_string(), "tcp", "[::]:8080".parse().unwrap())];
        let e = explain(
            anyhow::Error::new(InUse(addr, String::new(), 0)),
            &spec,
            &earlier,
        );
        assert!(e.to_string().contains("given twice"), "{e}");
        assert!(e.downcast_ref::<GivenTwice>().is_some());
        let elsewhere = vec![(":9090".to_string(), "tcp", "[::]:9090".parse().unwrap())];
        let e = explain(
            anyhow::Error::new(InUse(addr, String::new(), 0)),
            &spec,
            &elsewhere,
        );
        assert!(e.to_string().contains("stop the other server"), "{e}");
    }
}
