//! tokio types for the inherited sockets (feature `tokio`).
//!
//! tokio drives sockets in non-blocking mode. `O_NONBLOCK` lives on the *open file
//! description*, which every worker sharing the socket shares: if this worker set it, its
//! blocking siblings' `accept()` would start failing with `EAGAIN`. So these methods never set
//! it: they refuse a blocking socket, and herd sets the flag once, for every worker, when the
//! socket is bound with `nonblocking` (`herd run -b http=:8080,nonblocking`).

use std::os::unix::io::AsFd;

use crate::error::{Error, ErrorKind, Result};
use crate::Sockets;

impl Sockets {
    /// Takes the listening TCP socket named `name` as a tokio listener. Call it inside a tokio
    /// runtime; the socket must be non-blocking (bound with `nonblocking`).
    pub fn take_tokio_tcp_listener(
        &mut self,
        name: &str,
    ) -> Result<Option<tokio::net::TcpListener>> {
        match self.take_tcp_listener(name)? {
            None => Ok(None),
            Some(listener) => {
                require_nonblocking(name, &listener)?;
                tokio::net::TcpListener::from_std(listener)
                    .map(Some)
                    .map_err(|e| {
                        Error::io(
                            "cannot register the socket with tokio (inside a runtime?)",
                            e,
                        )
                    })
            }
        }
    }

    /// Takes the UDP socket named `name` as a tokio socket (non-blocking, inside a runtime).
    pub fn take_tokio_udp_socket(&mut self, name: &str) -> Result<Option<tokio::net::UdpSocket>> {
        match self.take_udp_socket(name)? {
            None => Ok(None),
            Some(socket) => {
                require_nonblocking(name, &socket)?;
                tokio::net::UdpSocket::from_std(socket)
                    .map(Some)
                    .map_err(|e| {
                        Error::io(
                            "cannot register the socket with tokio (inside a runtime?)",
                            e,
                        )
                    })
            }
        }
    }

    /// Takes the listening Unix socket named `name` as a tokio listener (non-blocking, inside
    /// a runtime).
    pub fn take_tokio_unix_listener(
        &mut self,
        name: &str,
    ) -> Result<Option<tokio::net::UnixListener>> {
        match self.take_unix_listener(name)? {
            None => Ok(None),
            Some(listener) => {
                require_nonblocking(name, &listener)?;
                tokio::net::UnixListener::from_std(listener)
                    .map(Some)
                    .map_err(|e| {
                        Error::io(
                            "cannot register the socket with tokio (inside a runtime?)",
                            e,
                        )
                    })
            }
        }
    }
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
    use std::net::TcpListener;

    fn sockets_with(listener: TcpListener) -> Sockets {
        Sockets::from_named(vec![("http".to_string(), listener.into())])
    }

    #[test]
    fn refuses_blocking_sockets() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let mut sockets = sockets_with(TcpListener::bind("127.0.0.1:0").unwrap());
        let err = sockets.take_tokio_tcp_listener("http").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Blocking);
        assert!(err.to_string().contains("nonblocking"), "{err}");

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut sockets = sockets_with(listener);
        assert!(sockets.take_tokio_tcp_listener("http").unwrap().is_some());
    }
}
