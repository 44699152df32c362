//! Who holds an address that a `--bind` found in use (`EADDRINUSE`), read from `/proc`
//! (Linux; elsewhere nobody is found), so the error names the processes to stop. The usual
//! case is not another server: it is what a killed herd's workers left running (children they
//! forked, which inherited the sockets and keep them open: `PR_SET_PDEATHSIG` ends the workers
//! with herd, but not their children).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// At most this many holders are named; the rest are counted.
const NAMED: usize = 3;

/// One process that holds a socket bound to the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
    /// Whether it runs with a herd worker's environment (`HERD_WORKER`): started by a herd.
    pub from_herd: bool,
}

/// The processes that hold a socket bound to `addr` (listening, for TCP), as far as herd may
/// read them (its own user's, or everyone's as root).
pub fn holders(addr: SocketAddr, udp: bool) -> Vec<Holder> {
    let tables: [&str; 2] = if udp {
        ["/proc/net/udp", "/proc/net/udp6"]
    } else {
        ["/proc/net/tcp", "/proc/net/tcp6"]
    };
    let inodes: HashSet<u64> = tables
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .flat_map(|table| inodes_bound_to(&table, addr, udp))
        .collect();
    holding(&inodes)
}

/// The processes other than herd that hold one of the sockets `inodes`, as far as herd may
/// read them.
fn holding(inodes: &HashSet<u64>) -> Vec<Holder> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = own_pid();
    let mut found: Vec<Holder> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| Some(pid) != own && holds(pid, inodes))
        .map(|pid| Holder {
            pid,
            name: std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim_end().to_string())
                .unwrap_or_else(|_| "?".to_string()),
            from_herd: std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| {
                    env.split(|&b| b == 0)
                        .any(|v| v.starts_with(b"HERD_WORKER="))
                })
                .unwrap_or(false),
        })
        .collect();
    found.sort_by_key(|h| h.pid);
    found
}

/// The processes other than herd and its ancestors (systemd, which passed it sockets) that
/// still hold one of herd's sockets as it stops (`sockets`: each address, with the inodes of
/// the sockets herd closed there): what an attached command or a worker left in a session of
/// its own, keeping the port in use. By address, each with its holders.
pub fn still_held<'a>(
    sockets: impl Iterator<Item = (&'a str, &'a [u64])>,
) -> Vec<(&'a str, Vec<Holder>)> {
    let sockets: Vec<(&str, &[u64])> = sockets.filter(|(_, inodes)| !inodes.is_empty()).collect();
    if sockets.is_empty() {
        return Vec::new();
    }
    let ancestors = ancestors();
    sockets
        .into_iter()
        .filter_map(|(address, inodes)| {
            let mut held = holding(&inodes.iter().copied().collect());
            held.retain(|h| !ancestors.contains(&h.pid));
            (!held.is_empty()).then_some((address, held))
        })
        .collect()
}

/// The inode of socket `fd` (`/proc/self/fd/N` names it `socket:[INODE]`), Linux.
pub fn socket_inode_of(fd: std::os::unix::io::BorrowedFd<'_>) -> Option<u64> {
    use std::os::unix::io::AsRawFd;
    socket_inode_at(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_ref())
}

/// The inode of the socket the `/proc/PID/fd/N` link at `link` names, if it names one.
pub fn socket_inode_at(link: &std::path::Path) -> Option<u64> {
    socket_inode(std::fs::read_link(link).ok()?.to_str()?)
}

/// herd's pid as `/proc` names it (another pid namespace's `/proc` names it otherwise, or not
/// at all).
fn own_pid() -> Option<u32> {
    std::fs::read_link("/proc/self")
        .ok()?
        .to_str()?
        .parse()
        .ok()
}

/// herd's ancestors' pids as `/proc` names them, from `/proc/PID/stat` (its parent's, and so
/// on to 1).
fn ancestors() -> Vec<u32> {
    let mut found = vec![1];
    let Some(mut pid) = own_pid() else {
        return found;
    };
    while let Some(parent) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let fields = herd_sys::process::parse_stat_fields(&stat, &[4])?;
            fields.first()?.parse::<u32>().ok()
        })
        .filter(|&parent| parent > 1 && !found.contains(&parent))
    {
        found.push(parent);
        pid = parent;
    }
    found
}

/// `holders` as the end of a sentence: ` by sleep (pid 20197), sleep (pid 20199) and 6 other
/// processes, left running by a herd's workers`, or nothing when none is known.
pub fn describe(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return String::new();
    }
    let named: Vec<String> = holders
        .iter()
        .take(NAMED)
        .map(|h| format!("{} (pid {})", crate::text::escape(&h.name), h.pid))
        .collect();
    let mut text = format!(" by {}", named.join(", "));
    match holders.len().saturating_sub(NAMED) {
        0 => {}
        1 => text.push_str(" and 1 other process"),
        more => text.push_str(&format!(" and {more} other processes")),
    }
    if holders.iter().any(|h| h.from_herd) {
        text.push_str(
            ", left by a herd's workers (a killed herd's workers die with it, but what they \
             started lives on with its sockets)",
        );
    }
    text
}

/// Whether one of `pid`'s fds is a socket in `inodes`.
fn holds(pid: u32, inodes: &HashSet<u64>) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| socket_inode_at(&fd.path()).is_some_and(|inode| inodes.contains(&inode)))
}

/// The inode in a `/proc` fd link's target `socket:[INODE]`.
fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inodes of the sockets in one `/proc/net/{tcp,udp}{,6}` table whose local address
/// conflicts with `addr` (same port; same address, or either unspecified), listening for TCP.
fn inodes_bound_to(table: &str, addr: SocketAddr, udp: bool) -> Vec<u64> {
    // TCP_LISTEN in the `st` column.
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let (ip, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let ip = parse_ip(ip)?;
            let conflicts = port == addr.port()
                && (ip == addr.ip() || ip.is_unspecified() || addr.ip().is_unspecified());
            (conflicts && (udp || *state == LISTEN)).then(|| inode.parse().ok())?
        })
        .collect()
}

/// An address as `/proc/net` writes it: the bytes in memory order, each 32-bit word in hex
/// as the host sees it (little-endian on x86).
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::twice::InUse;

    #[test]
    fn proc_net_addresses_are_read_in_host_order() {
        let v4 = u32::from_ne_bytes([127, 0, 0, 1]);
        assert_eq!(
            parse_ip(&format!("{v4:08X}")),
            Some("127.0.0.1".parse().unwrap())
        );
        let words: String = [
            [0u8, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0xff, 0xff],
            [10, 0, 0, 7],
        ]
        .iter()
        .map(|w| format!("{:08X}", u32::from_ne_bytes(*w)))
        .collect();
        assert_eq!(parse_ip(&words), Some("::ffff:10.0.0.7".parse().unwrap()));
        assert_eq!(parse_ip("zz"), None);
    }

    #[test]
    fn the_holders_of_a_listening_socket_are_found_and_named() {
        // herd's own socket is not its own holder.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(holders(listener.local_addr().unwrap(), false).is_empty());
        // Another process's listener is found.
        let script = "import socket, time\n\
                      s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
                      print(s.getsockname()[1], flush=True)\n\
                      time.sleep(30)\n";
        let mut python = std::process::Command::new("python3")
            .args(["-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(python.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port: u16 = line.trim().parse().unwrap();
        let theirs = SocketAddr::from(([127, 0, 0, 1], port));
        let found = holders(theirs, false);
        let _ = python.kill();
        let _ = python.wait();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].pid, found[0].from_herd), (python.id(), false));
        assert!(
            describe(&found).starts_with(" by python3 (pid "),
            "{found:?}"
        );
        // Nor is a UDP socket on the port a TCP listener.
        assert!(holders(theirs, true).is_empty());
    }

    #[test]
    fn many_holders_are_counted_and_a_herds_are_said_to_be() {
        let holder = |pid, from_herd| Holder {
            pid,
            name: "sleep".to_string(),
            from_herd,
        };
        assert_eq!(describe(&[]), "");
        let text = describe(&[
            holder(1, false),
            holder(2, true),
            holder(3, false),
            holder(4, false),
            holder(5, false),
        ]);
        assert!(
            text.starts_with(" by sleep (pid 1), sleep (pid 2), sleep (pid 3) and 2 other processes, left by a herd's workers"),
            "{text}"
        );
    }

    #[test]
    fn a_holders_name_is_escaped_and_the_verb_counts_them() {
        // Anyone may name a process (`prctl(PR_SET_NAME)`): escape codes are not passed on.
        let evil = Holder {
            pid: 7,
            name: "x\x1b]0;owned\x07".to_string(),
            from_herd: false,
        };
        let text = describe(std::slice::from_ref(&evil));
        assert_eq!(text, " by x\\x1b]0;owned\\x07 (pid 7)");
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let one = InUse(addr, text, 1).to_string();
        assert!(one.ends_with(": stop it or choose another port"), "{one}");
        let two = InUse(addr, describe(&[evil.clone(), evil]), 2).to_string();
        assert!(two.ends_with(": stop them or choose another port"), "{two}");
        let none = InUse(addr, String::new(), 0).to_string();
        assert!(
            none.ends_with(": stop the other server or choose another port"),
            "{none}"
        );
    }
}
