//! tokio types for the inherited sockets (feature `tokio`).
//!
//! tokio drives sockets in non-blocking mode. `O_NONBLOCK` lives on the *open file
//! description*, which every worker sharing the socket shares: if this worker set it, its
//! blocking siblings' `accept()` would start failing with `EAGAIN`. So these methods never set
//! it: they refuse a blocking socket, and herd sets the flag once, for every worker, when the
//! socket is bound with `nonblocking` (`herd run -b http=:8080,nonblocking`).
//!
//! A refused socket (blocking, or taken outside a runtime) stays in place: the worker can
//! still take it another way, e.g. as a [`BalancedListener`](crate::balanced::BalancedListener)
//! or a plain `std` listener.

use std::os::unix::io::{AsFd, BorrowedFd};

use crate::error::{Error, ErrorKind, Result};
use crate::sockets::Want;
use crate::Sockets;

impl Sockets {
    /// Takes the listening TCP socket named `name` as a tokio listener. Call it inside a tokio
    /// runtime; the socket must be non-blocking (bound with `nonblocking`). On error the
    /// socket stays in place.
    pub fn take_tokio_tcp_listener(
        &mut self,
        name: &str,
    ) -> Result<Option<tokio::net::TcpListener>> {
        self.take_with(name, Want::TcpListener, |name, fd| {
            let std = std::net::TcpListener::from(prepare(name, fd)?);
            register(name, || tokio::net::TcpListener::from_std(std))
        })
    }

    /// Takes the UDP socket named `name` as a tokio socket (non-blocking, inside a runtime).
    /// On error the socket stays in place.
    pub fn take_tokio_udp_socket(&mut self, name: &str) -> Result<Option<tokio::net::UdpSocket>> {
        self.take_with(name, Want::UdpSocket, |name, fd| {
            let std = std::net::UdpSocket::from(prepare(name, fd)?);
            register(name, || tokio::net::UdpSocket::from_std(std))
        })
    }

    /// Takes the listening Unix socket named `name` as a tokio listener (non-blocking, inside
    /// a runtime). On error the socket stays in place.
    pub fn take_tokio_unix_listener(
        &mut self,
        name: &str,
    ) -> Result<Option<tokio::net::UnixListener>> {
        self.take_with(name, Want::UnixListener, |name, fd| {
            let std = std::os::unix::net::UnixListener::from(prepare(name, fd)?);
            register(name, || tokio::net::UnixListener::from_std(std))
        })
    }
}

/// Checks that the socket is non-blocking and that a runtime is there to register it with
/// (tokio's `from_std` would panic without one), then duplicates it: if the registration
/// fails, only the duplicate is closed. A runtime without IO is caught by [`register`].
fn prepare(name: &str, fd: BorrowedFd<'_>) -> Result<std::os::unix::io::OwnedFd> {
    require_nonblocking(name, &fd)?;
    // Checked first so that the common mistake (no runtime at all) needs no caught panic.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(no_runtime(name));
    }
    fd.try_clone_to_owned()
        .map_err(|e| Error::io(format!("cannot duplicate socket {name:?}"), e))
}

/// Registers the duplicate with the current runtime's IO driver. tokio's `from_std` panics
/// instead of failing when the runtime was built without `enable_io()`, and tokio offers no
/// way to ask a handle whether it has one, so that panic is caught (the duplicate, moved into
/// `from_std`, is closed as it unwinds) and becomes [`ErrorKind::NoRuntime`]. A program built
/// with `panic = "abort"` cannot catch it: there, only take tokio types inside a runtime with
/// IO enabled. tokio's panic message still reaches the panic hook (stderr by default).
fn register<T>(name: &str, from_std: impl FnOnce() -> std::io::Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(from_std)) {
        Ok(registered) => {
            registered.map_err(|e| Error::io("cannot register the socket with tokio", e))
        }
        Err(_) => Err(no_runtime(name)),
    }
}

fn no_runtime(name: &str) -> Error {
    Error::new(
        ErrorKind::NoRuntime,
        format!(
            "socket {name:?} can only be taken as a tokio type inside a tokio runtime with IO \
             enabled: call this from async code, or after entering the runtime \
             (Runtime::enter), and build the runtime with enable_io() or enable_all()"
        ),
    )
}

fn require_nonblocking(name: &str, socket: &impl AsFd) -> Result<()> {
    let nonblocking = herd_sys::fd::is_nonblocking(socket.as_fd())
        .map_err(|e| Error::io(format!("cannot inspect socket {name:?}"), e))?;
    if nonblocking {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Blocking,
        format!(
            "socket {name:?} is blocking, and tokio needs a non-blocking one; herd will not make it \
             non-blocking here, since O_NONBLOCK is shared by every worker on the socket and \
             would break the blocking ones: bind it with `nonblocking` \
             (herd run -b {name}=ADDRESS,nonblocking)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};
    use std::os::unix::net::UnixListener;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap()
    }

    #[test]
    fn refuses_blocking_sockets() {
        let rt = runtime();
        let _guard = rt.enter();
        let mut sockets = Sockets::from_named(vec![(
            "http".to_string(),
            TcpListener::bind("127.0.0.1:0").unwrap().into(),
        )]);
        let err = sockets.take_tokio_tcp_listener("http").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Blocking);
        assert!(err.to_string().contains("nonblocking"), "{err}");

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut sockets = Sockets::from_named(vec![("http".to_string(), listener.into())]);
        assert!(sockets.take_tokio_tcp_listener("http").unwrap().is_some());
        assert!(sockets.take_tokio_tcp_listener("http").unwrap().is_none());
    }

    /// A refused socket stays in place, with its fd open, for the worker to fall back on.
    #[test]
    fn a_refused_socket_stays_in_place() {
        let scratch = crate::scratch::Scratch::new("herd-tokio-test");
        let dir = scratch.path();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp_addr = tcp.local_addr().unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let unix = UnixListener::bind(dir).unwrap();
        let mut sockets = Sockets::from_named(vec![
            ("tcp".to_string(), tcp.into()),
            ("udp".to_string(), udp.into()),
            ("unix".to_string(), unix.into()),
        ]);
        {
            let rt = runtime();
            let _guard = rt.enter();
            let kind = |r: Result<()>| r.unwrap_err().kind();
            for _ in 0..2 {
                let tcp = sockets.take_tokio_tcp_listener("tcp").map(drop);
                assert_eq!(kind(tcp), ErrorKind::Blocking);
                let udp = sockets.take_tokio_udp_socket("udp").map(drop);
                assert_eq!(kind(udp), ErrorKind::Blocking);
                let unix = sockets.take_tokio_unix_listener("unix").map(drop);
                assert_eq!(kind(unix), ErrorKind::Blocking);
            }
        }
        // Outside a runtime: refused, not a panic, and still in place.
        let tcp = sockets.take_tcp_listener("tcp").unwrap().unwrap();
        tcp.set_nonblocking(true).unwrap();
        let mut sockets2 = Sockets::from_named(vec![("tcp".to_string(), tcp.into())]);
        let err = sockets2.take_tokio_tcp_listener("tcp").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoRuntime);
        assert!(err.to_string().contains("inside a tokio runtime"), "{err}");
        // Inside a runtime built without IO: refused too (tokio would panic), still in place.
        let no_io = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        {
            let _guard = no_io.enter();
            let err = sockets2.take_tokio_tcp_listener("tcp").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NoRuntime);
            assert!(err.to_string().contains("enable_io"), "{err}");
        }
        let rt = runtime();
        let _guard = rt.enter();
        let tcp = sockets2.take_tokio_tcp_listener("tcp").unwrap().unwrap();
        assert_eq!(tcp.local_addr().unwrap(), tcp_addr);
        // The blocking ones fall back to std.
        assert!(sockets.take_udp_socket("udp").unwrap().is_some());
        assert!(sockets.take_unix_listener("unix").unwrap().is_some());
    }
}
