//! # herd: the worker side
//!
//! [herd](https://example.invalid/herd) binds listening sockets once and runs N worker processes
//! that inherit them. Every worker blocks in `accept()` on the *same* socket, so they share one
//! kernel accept queue and whichever worker is idle takes the next client. The supervisor is
//! never in the data path.
//!
//! ```text
//!                 clients
//!                    |
//!        [ one listening socket, one accept queue ]   <- bound once by `herd run`
//!           /        |         |          \
//!      worker 0   worker 1   worker 2   worker 3      <- each blocks in accept()
//! ```
//!
//! Sockets arrive through the systemd socket-activation protocol: fds 3, 4, ... with
//! `LISTEN_FDS` (how many), `LISTEN_FDNAMES` (their names, `:`-separated) and `LISTEN_PID` (the
//! pid they are meant for). This crate reads that protocol, so a worker written with it also
//! runs under systemd, and any server that speaks it runs under herd.
//!
//! ## Taking sockets
//!
//! ```no_run
//! use std::io::Write;
//!
//! let mut sockets = herd::Sockets::from_env()?;
//! let listener = sockets
//!     .take_tcp_listener("http")?
//!     .expect("run me under `herd run -b http=127.0.0.1:8080 -- ...`");
//! herd::notify::ready()?;
//! for stream in listener.incoming() {
//!     stream?.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello\n")?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Each socket can be taken once; the kind is checked (a UDP socket is not handed out as a TCP
//! listener). [`worker_slot`] tells which of the N workers this process is.
//!
//! ## tokio
//!
//! With the `tokio` feature, `Sockets::take_tokio_tcp_listener` (and `_udp_socket`,
//! `_unix_listener`) return tokio types. They require a socket herd made non-blocking
//! (`herd run -b http=:8080,nonblocking`) and refuse a blocking one, because `O_NONBLOCK` is
//! shared by every worker on the socket: setting it in one worker would make its blocking
//! siblings' `accept()` fail with `EAGAIN`. A refused socket (wrong kind, wrong mode, no
//! runtime) stays in place, so a worker can fall back: try
//! `take_balanced_tcp_listener` first and `take_tokio_tcp_listener` if the socket is
//! non-blocking, say.
//!
//! Async workers balance badly on a shared socket: with tokio's own accept, one of 4 workers
//! took 62% of the connections and another 3% at 2000 new connections/s
//! (`docs/benchmarks.md`). Two remedies: run plain tokio workers under `herd run --balance
//! reuseport` (a socket and queue per worker, 25/25/25/25 at full speed), or use
//! [`balanced::BalancedListener`] (`Sockets::take_balanced_tcp_listener`, on a *blocking*
//! shared socket), which accepts in a thread that blocks in `accept()` only while the worker
//! waits for a connection. The kernel then hands connections to idle workers in turn:
//! 25/25/25/25, and no client waits behind a busy worker while another is idle.
//!
//! ## Fetching sockets from a running herd
//!
//! A program that starts on its own can take the sockets of a running herd over its control
//! socket ([`Sockets::from_control`], or [`fetch::fetch`] to also register as an attached
//! worker). This is what `herd attach` does for programs in any language. `fetch::attach`
//! registers too, and from then on [`stop_requested`] is set when that herd asks this process
//! to stop: on Unix it returns herd's stop signal, which is caught from then on; on Windows
//! herd's answer carries a stop event copied into the process. On Windows the control channel
//! is a named pipe, and herd duplicates the sockets for the asking process.
//!
//! ## Shared memory
//!
//! Workers share nothing unless they choose to. `herd run --shm counter=4096` passes a sealed
//! shared memory object like a socket; [`shm`] maps it:
//!
//! ```no_run
//! use std::sync::atomic::Ordering;
//!
//! let memory = herd::shm("counter")?;
//! let hits = memory.atomic_u64(0).expect("at least 8 bytes");
//! let n = hits.fetch_add(1, Ordering::SeqCst) + 1; // counted across every worker
//! # Ok::<(), herd::Error>(())
//! ```
//!
//! ## In-process prefork
//!
//! [`prefork`] is the classic model inside one Rust program: bind, then fork N children that
//! share the sockets, supervised (restarts with backoff, graceful stop, scaling by signal).
//!
//! ## Windows
//!
//! On Windows the same [`Sockets`] API reads the sockets herd duplicated for the worker
//! (`WSADuplicateSocketW`) from its stdin, in the documented [`share`] format; the parent side
//! is [`windows::spawn`]. [`notify`] writes to the named pipe herd gives in `NOTIFY_SOCKET`,
//! [`shm`] maps the file mapping the worker inherited, and [`stop_requested`] is herd's stop
//! event (Windows has no SIGTERM); [`Sockets::from_control`] fetches the sockets from a
//! running herd's control pipe. Unix sockets, signals and prefork are Unix-only.
//!
//! ## Notifications
//!
//! [`notify`] sends `READY=1`, `STOPPING=1` and `STATUS=` to `NOTIFY_SOCKET` when it is set, and
//! does nothing otherwise.
//!
//! ## Graceful stop
//!
//! herd asks a worker to stop with SIGTERM on Unix (`--stop-signal`) and with an event on
//! Windows; [`stop_requested`] is that request on both, and [`StopRequest::accept`] takes
//! connections until it comes, so a worker finishes the request in hand and exits:
//!
//! ```no_run
//! # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! # fn serve(_: std::net::TcpStream) {}
//! if let Some(stop) = herd::stop_requested()? {
//!     while let Some(stream) = stop.accept(&listener)? {
//!         serve(stream);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! On Unix the first call catches SIGTERM for the whole process (see [`stop_requested`]).
#![deny(missing_docs)]
// Every unsafe call lives in herd-sys, behind a safe API.
#![forbid(unsafe_code)]
// libc re-exports `core::ffi::c_int` and friends (stable since 1.64), which clippy's MSRV lint
// mistakes for a use of them; libc itself supports 1.63, which the rustc 1.63 build checks.
#![allow(clippy::incompatible_msrv)]

mod error;
#[cfg(unix)]
pub mod fetch;
#[cfg(windows)]
#[path = "fetch_windows.rs"]
pub mod fetch;
#[cfg(any(windows, test))]
mod handle_env;
mod json;
pub mod notify;
#[cfg(windows)]
#[doc(hidden)]
pub mod pipe;
#[cfg(unix)]
pub mod prefork;
#[doc(hidden)]
pub mod protocol;
#[cfg(all(test, unix))]
mod scratch;
pub mod share;
mod shared_memory;
#[cfg(windows)]
mod shm_windows;
#[cfg(unix)]
mod sockets;
#[cfg(windows)]
mod sockets_windows;
mod stop;
#[cfg(all(unix, feature = "tokio"))]
mod tokio_sockets;
#[cfg(unix)]
pub mod trust;

#[cfg(all(unix, feature = "tokio"))]
pub mod balanced;
#[cfg(windows)]
pub mod windows;

pub use error::{Error, ErrorKind, Result};
/// The first inherited fd, as in systemd's `SD_LISTEN_FDS_START`.
pub use herd_core::LISTEN_FDS_START;
pub use shared_memory::SharedMemory;
#[cfg(windows)]
pub use shm_windows::shm;
#[cfg(unix)]
pub use sockets::{shm, Sockets};
#[cfg(windows)]
pub use sockets_windows::Sockets;
pub use stop::{stop_requested, StopRequest};

/// This worker's slot under herd (`HERD_WORKER`): 0 to N-1, stable across restarts. `None` when
/// not started by `herd run`.
pub fn worker_slot() -> Option<usize> {
    std::env::var("HERD_WORKER").ok()?.parse().ok()
}
