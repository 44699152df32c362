//! Steering an `SO_REUSEPORT` group: which of its listening sockets gets each new connection.
//!
//! Without a program the kernel hashes each connection's addresses onto one of the group's
//! sockets. [`steer`] attaches a classic BPF program (`SO_ATTACH_REUSEPORT_CBPF`, no privilege
//! needed) that picks a random socket among a chosen set instead, so that a socket can be
//! taken out of rotation (its queue drains, nothing new arrives) without being closed, which
//! would reset the connections waiting in it.
//!
//! The program returns an *index into the group*: sockets are numbered in the order they
//! started listening, and closing one moves the last socket into its place. The caller owns
//! every socket of the group and never closes one while it steers, so the numbering is the
//! order in which it called `listen`.

use std::io;
use std::os::unix::io::{AsRawFd, BorrowedFd};

/// The most sockets [`steer`] can choose among (a classic BPF program has at most 4096
/// instructions; the program takes two per target plus three).
pub const MAX_TARGETS: usize = 2046;

/// One classic BPF instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instruction {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const LD_RANDOM: Instruction = Instruction {
    code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
    jt: 0,
    jf: 0,
    k: (libc::SKF_AD_OFF + libc::SKF_AD_RANDOM) as u32,
};

fn modulo(n: u32) -> Instruction {
    Instruction {
        code: (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: n,
    }
}

fn ret_k(k: u32) -> Instruction {
    Instruction {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The program that sends each connection to a uniformly random one of `targets` (indices
/// into the group): a random number modulo the count, then a table from position to index.
/// `None` when `targets` is empty or longer than [`MAX_TARGETS`].
pub fn program(targets: &[u32]) -> Option<Vec<Instruction>> {
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return None;
    }
    let contiguous = targets.iter().enumerate().all(|(i, &t)| t == i as u32);
    let mut insns = vec![LD_RANDOM, modulo(targets.len() as u32)];
    if contiguous {
        insns.push(Instruction {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        });
        return Some(insns);
    }
    for (position, &target) in targets.iter().enumerate() {
        // If A == position, fall through to "return target", else skip it.
        insns.push(Instruction {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: position as u32,
        });
        insns.push(ret_k(target));
    }
    insns.push(ret_k(targets[0]));
    Some(insns)
}

/// Makes `socket`'s reuseport group send each new connection to a random one of `targets`
/// (indices into the group, see the module docs). Replaces any program attached before.
pub fn steer(socket: BorrowedFd<'_>, targets: &[u32]) -> io::Result<()> {
    let insns = program(targets).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a reuseport group can be steered among 1 to {MAX_TARGETS} sockets, not {}",
                targets.len()
            ),
        )
    })?;
    let mut filter: Vec<libc::sock_filter> = insns
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `filter`, which outlives the call; the kernel copies the
    // program and checks it before using it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::io::{AsFd, FromRawFd, OwnedFd};

    #[test]
    fn programs_have_the_expected_shape() {
        assert_eq!(program(&[]), None);
        assert_eq!(program(&[0, 1, 2]).map(|p| p.len()), Some(3));
        assert_eq!(program(&[0, 2]).map(|p| p.len()), Some(2 + 4 + 1));
        assert!(program(&vec![0; MAX_TARGETS]).is_some());
        assert_eq!(program(&vec![0; MAX_TARGETS + 1]), None);
        let longest = program(&vec![1; MAX_TARGETS]).map(|p| p.len());
        assert_eq!(longest, Some(4095));
    }

    fn reuseport_listener(port: u16) -> TcpListener {
        // SAFETY: plain socket calls on a socket this test owns.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0);
            let owned = OwnedFd::from_raw_fd(fd);
            let one: libc::c_int = 1;
            let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let on = (&one as *const libc::c_int).cast();
            assert_eq!(
                libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, on, size),
                0
            );
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_port = port.to_be();
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let sa = (&addr as *const libc::sockaddr_in).cast();
            assert_eq!(libc::bind(fd, sa, len), 0);
            assert_eq!(libc::listen(fd, 128), 0);
            TcpListener::from(owned)
        }
    }

    /// How many of `n` connections each listener has waiting.
    fn spread(listeners: &[TcpListener], n: usize) -> Vec<u32> {
        let addr = listeners[0].local_addr().unwrap();
        let clients: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // The last handshake step may still be on its way: wait until every one is queued.
        for _ in 0..1000 {
            let counts: Vec<u32> = listeners
                .iter()
                .map(|l| crate::socket::accept_queue(l.as_fd()).unwrap().unwrap().0)
                .collect();
            if counts.iter().sum::<u32>() as usize == n {
                drop(clients);
                return counts;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("{n} connections never all reached the accept queues");
    }

    #[test]
    fn steering_keeps_connections_off_the_sockets_left_out() {
        let first = reuseport_listener(0);
        let port = first.local_addr().unwrap().port();
        let listeners = vec![first, reuseport_listener(port), reuseport_listener(port)];
        steer(listeners[0].as_fd(), &[0, 2]).unwrap();
        let counts = spread(&listeners, 60);
        assert_eq!(counts[1], 0, "{counts:?}");
        assert!(counts[0] > 5 && counts[2] > 5, "{counts:?}");
        // Steering again replaces the program.
        for l in &listeners {
            while l.set_nonblocking(true).is_ok() && l.accept().is_ok() {}
        }
        steer(listeners[2].as_fd(), &[1]).unwrap();
        assert_eq!(spread(&listeners, 20), vec![0, 20, 0]);
    }
}
