//! Balanced accept for async workers (feature `tokio`).
//!
//! Async workers balance badly on a shared socket. Every worker's epoll is woken by a new
//! connection and the first to run takes it, often with several more (tokio accepts until
//! `EAGAIN`). With `EPOLLEXCLUSIVE` the kernel wakes the same idle process nearly every time.
//! Blocking `accept()` balances well. Each sleeping caller queues at the *tail* of the
//! socket's wait queue and the kernel wakes the head, so idle workers take turns.
//!
//! [`BalancedListener`] gives a tokio worker that behaviour. A dedicated thread blocks in
//! `accept()` on the (blocking) shared socket, but only while the worker is waiting in
//! [`BalancedListener::accept`]. A worker whose runtime is busy does not compete for new
//! connections, and the idle ones take them in turn. Each connection costs one hand-off
//! between threads (a few microseconds).
//!
//! ```text
//! herd run -w 4 -b http=127.0.0.1:8080 -- my-tokio-worker     # no `nonblocking`
//! ```
//!
//! ```no_run
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let mut sockets = herd::Sockets::from_env()?;
//! let mut listener = sockets.take_balanced_tcp_listener("http")?.expect("a socket named http");
//! herd::notify::ready()?;
//! loop {
//!     let (stream, _peer) = listener.accept().await?;
//!     tokio::spawn(async move { /* serve `stream` */ drop(stream) });
//! }
//! # }
//! ```
//!
//! Stopping without losing a connection: call [`BalancedListener::close`]. It interrupts the
//! accept thread with `SIGURG` (a handler without `SA_RESTART` is installed for it, so the
//! blocked `accept()` returns `EINTR`). It also returns any connection the thread accepted
//! that [`accept`](BalancedListener::accept) did not take yet. Serve those, then exit; every
//! other connection stays in the shared queue for the other workers.
//!
//! Limits: the `SIGURG` handler is process-wide, so a program that uses `SIGURG` itself should
//! not use this listener. `close` (and `Drop`) blocks until the accept thread has exited,
//! typically a few hundred microseconds; after 2 s it gives up and leaves the thread detached.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use herd_sys::process::Signal;
use tokio::sync::mpsc as async_mpsc;

use crate::error::{Error, ErrorKind, Result};
use crate::sockets::Want;
use crate::Sockets;

type Accepted = io::Result<(TcpStream, SocketAddr)>;

/// A TCP listener for tokio that accepts only while the worker waits for a connection, so
/// workers sharing one socket take turns. See the [module documentation](self).
#[derive(Debug)]
pub struct BalancedListener {
    /// One message per wanted connection; dropping it stops the thread once it is idle.
    demand: Option<mpsc::Sender<()>>,
    accepted: async_mpsc::UnboundedReceiver<Accepted>,
    /// A demand was sent and its connection not received yet (`accept` was cancelled).
    waiting: bool,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl BalancedListener {
    /// Wraps a *blocking* listening socket; refuses a non-blocking one (`O_NONBLOCK` is shared
    /// by every worker on the socket, so this will not change it). Needs no runtime.
    pub fn new(listener: TcpListener) -> Result<Self> {
        let nonblocking = herd_sys::fd::is_nonblocking(listener.as_fd())
            .map_err(|e| Error::io("cannot inspect the listening socket", e))?;
        if nonblocking {
            return Err(Error::new(
                ErrorKind::NonBlocking,
                "the socket is non-blocking, and balanced accept needs a blocking one: bind it \
                 without `nonblocking` (herd run -b NAME=ADDRESS)",
            ));
        }
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the listening socket's address", e))?;
        herd_sys::process::catch(Signal::URG)
            .map_err(|e| Error::io("cannot install the SIGURG handler", e))?;
        let (demand, demands) = mpsc::channel();
        let (deliver, accepted) = async_mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("herd-accept".to_string())
            .spawn(move || accept_loop(&listener, &demands, &deliver, &thread_stop))
            .map_err(|e| Error::io("cannot start the accept thread", e))?;
        Ok(BalancedListener {
            demand: Some(demand),
            accepted,
            waiting: false,
            stop,
            thread: Some(thread),
            local_addr,
        })
    }

    /// The next connection and its peer's address. Cancel-safe: a connection accepted for a
    /// cancelled call is returned by the next one. Call it inside a tokio runtime with IO
    /// enabled; in one without, the connection is closed and an error returned.
    pub async fn accept(&mut self) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
        if !self.waiting {
            let demand = self.demand.as_ref().ok_or_else(closed)?;
            demand.send(()).map_err(|_| closed())?;
            self.waiting = true;
        }
        let result = self.accepted.recv().await.ok_or_else(closed)?;
        self.waiting = false;
        let (stream, peer) = result?;
        // tokio panics instead of failing in a runtime built without IO: see tokio_sockets.
        let registered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokio::net::TcpStream::from_std(stream)
        }));
        match registered {
            Ok(stream) => Ok((stream?, peer)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::Other,
                "a tokio runtime with IO enabled is needed (build it with enable_io())",
            )),
        }
    }

    /// The listening socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and returns the connections accepted but not yet taken by
    /// [`accept`](Self::accept) (at most one), as blocking std streams, so none is lost.
    pub fn close(mut self) -> Vec<(TcpStream, SocketAddr)> {
        self.stop_thread();
        let mut left = Vec::new();
        while let Ok(result) = self.accepted.try_recv() {
            if let Ok((stream, peer)) = result {
                let _ = stream.set_nonblocking(false);
                left.push((stream, peer));
            }
        }
        left
    }

    /// Interrupts the accept thread until it has finished (at most about 2 s).
    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.demand = None;
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while !thread.is_finished() && Instant::now() < deadline {
            // Repeated, because a signal that lands just before `accept()` is entered is missed.
            let _ = herd_sys::process::signal_thread(&thread, Signal::URG);
            std::thread::sleep(Duration::from_micros(200));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

impl Drop for BalancedListener {
    /// Stops the accept thread; a connection it accepted and nobody took is closed (use
    /// [`close`](BalancedListener::close) to keep it).
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the balanced listener is closed",
    )
}

/// The accept thread: one `accept()` per demand, never while stopping.
fn accept_loop(
    listener: &TcpListener,
    demands: &mpsc::Receiver<()>,
    deliver: &async_mpsc::UnboundedSender<Accepted>,
    stop: &AtomicBool,
) {
    while demands.recv().is_ok() {
        let result = loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match herd_sys::socket::accept_once(listener.as_fd()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
                Ok(fd) => {
                    let stream = TcpStream::from(fd);
                    // A peer that already went away has no address: skip it, as accept would.
                    let Ok(peer) = stream.peer_addr() else {
                        continue;
                    };
                    break stream.set_nonblocking(true).map(|()| (stream, peer));
                }
            }
        };
        if deliver.send(result).is_err() {
            return;
        }
    }
}

impl Sockets {
    /// Takes the listening TCP socket named `name` as a [`BalancedListener`]; the socket must
    /// be blocking (bound without `nonblocking`). On error the socket stays in place (a worker
    /// can then take it with [`Sockets::take_tokio_tcp_listener`], say).
    pub fn take_balanced_tcp_listener(&mut self, name: &str) -> Result<Option<BalancedListener>> {
        self.take_with(name, Want::TcpListener, |name, fd| {
            let listener = fd
                .try_clone_to_owned()
                .map_err(|e| Error::io(format!("cannot duplicate socket {name:?}"), e))?;
            BalancedListener::new(TcpListener::from(listener))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_non_blocking_socket_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let err = BalancedListener::new(l).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NonBlocking);
        assert!(err.to_string().contains("without `nonblocking`"), "{err}");
    }

    /// A non-blocking socket refused as a balanced listener stays in place, so the worker can
    /// fall back to tokio's own listener; the balanced listener takes a blocking one once.
    #[test]
    fn a_refused_socket_stays_in_place() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let mut sockets = Sockets::from_named(vec![("http".to_string(), l.into())]);
        for _ in 0..2 {
            let err = sockets.take_balanced_tcp_listener("http").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NonBlocking);
        }
        let rt = runtime();
        let _guard = rt.enter();
        let fallback = sockets.take_tokio_tcp_listener("http").unwrap().unwrap();
        assert_eq!(fallback.local_addr().unwrap(), addr);

        let blocking = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sockets = Sockets::from_named(vec![("http".to_string(), blocking.into())]);
        let l = sockets.take_balanced_tcp_listener("http").unwrap().unwrap();
        assert!(sockets
            .take_balanced_tcp_listener("http")
            .unwrap()
            .is_none());
        assert!(l.close().is_empty());
    }

    #[test]
    fn connections_are_accepted_and_served() {
        let mut l = BalancedListener::new(TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
        let addr = l.local_addr();
        let client = std::thread::spawn(move || {
            let mut replies = Vec::new();
            for _ in 0..3 {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                let mut reply = String::new();
                s.read_to_string(&mut reply).unwrap();
                replies.push(reply);
            }
            replies
        });
        runtime().block_on(async {
            use tokio::io::AsyncWriteExt;
            for _ in 0..3 {
                let (mut stream, peer) = l.accept().await.unwrap();
                assert!(peer.ip().is_loopback());
                stream.write_all(b"hi").await.unwrap();
            }
        });
        assert_eq!(client.join().unwrap(), vec!["hi"; 3]);
    }

    /// In a runtime built without IO, tokio would panic registering the stream: an error.
    #[test]
    fn a_runtime_without_io_is_an_error_not_a_panic() {
        let mut l = BalancedListener::new(TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
        let client = std::net::TcpStream::connect(l.local_addr()).unwrap();
        let no_io = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = no_io.block_on(l.accept()).unwrap_err();
        assert!(err.to_string().contains("enable_io"), "{err}");
        drop(client);
        assert!(l.close().is_empty());
    }

    /// A thread blocked in accept() is interrupted by close(); a connection that raced with it
    /// is either returned by close() or still queued on the shared socket: never lost.
    #[test]
    fn close_interrupts_accept_and_loses_nothing() {
        for _ in 0..20 {
            let socket = TcpListener::bind("127.0.0.1:0").unwrap();
            let sibling = socket.try_clone().unwrap(); // another worker's copy of the socket
            let mut l = BalancedListener::new(socket).unwrap();
            let addr = l.local_addr();
            let rt = runtime();
            // Cancelled while waiting: the thread is (about to be) blocked in accept().
            rt.block_on(async {
                let waited = tokio::time::timeout(Duration::from_millis(5), l.accept()).await;
                assert!(waited.is_err());
            });
            let mut client = std::net::TcpStream::connect(addr).unwrap();
            client.write_all(b"x").unwrap();
            let started = Instant::now();
            let left = l.close();
            assert!(started.elapsed() < Duration::from_secs(1));
            sibling.set_nonblocking(true).unwrap();
            let queued = usize::from(sibling.accept().is_ok());
            assert_eq!(
                left.len() + queued,
                1,
                "returned {} queued {queued}",
                left.len()
            );
        }
    }

    #[test]
    fn close_while_idle_returns_promptly() {
        let l = BalancedListener::new(TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
        let started = Instant::now();
        assert!(l.close().is_empty());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
