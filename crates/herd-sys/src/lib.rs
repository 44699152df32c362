//! The one place for `unsafe` in herd.
//!
//! Every other crate of the workspace is written in safe Rust on top of this small, narrow API.
//! Each module owns one concept and documents which system calls it makes:
//!
//! - [`spawn`]: start and exec a worker with an *fd plan* (inherited sockets at fds 3, 4, ...),
//!   default signal dispositions, an empty signal mask, and a `LISTEN_PID` equal to the child's
//!   own pid; on Linux with `clone(CLONE_VM | CLONE_VFORK)`, which copies nothing of the
//!   parent's memory, elsewhere with `fork`. Everything is prepared before the child starts;
//!   the child only makes async-signal-safe system calls and never allocates.
//! - [`fd`]: close-on-exec hygiene and taking ownership of fds inherited from a parent (each
//!   number at most once per process, which lets the other crates forbid `unsafe`).
//! - [`fs`]: exchanging two paths atomically (`renameat2(RENAME_EXCHANGE)`, Linux), opening a
//!   file itself (`O_PATH`), whether entries may be created in a directory (`faccessat`).
//! - [`connection`]: whether a stream socket's peer hung up (`poll`), and what it has not read
//!   yet (`SIOCOUTQ`).
//! - [`fdpass`]: sending and receiving fds over Unix sockets (`SCM_RIGHTS`).
//! - [`socket`]: what kind of socket an fd is (`fstat`, `SO_TYPE`, `getsockname`,
//!   `SO_ACCEPTCONN`), and whether a Unix socket is bound to the file at a path (`sock_diag`
//!   netlink and the mount table, Linux).
//! - [`process`]: signals by name, signalling a worker's process group, reaping children,
//!   priorities and resource limits (and whether herd may raise them), the terminal's
//!   foreground group.
//! - [`pidfd`]: holding a process that is not a child (an attached one) by a pidfd: signals
//!   that cannot reach a reused pid, and its exit (Linux).
//! - [`notify`]: sending and receiving `sd_notify` datagrams.
//! - [`reuseport`]: steering an `SO_REUSEPORT` group's connections among its sockets
//!   (Linux).
//! - [`shm`]: sealed anonymous shared memory, and mapping it.
//!
//! On Windows, where there is no fork and socket handles are not reliably inheritable:
//!
//! - [`wsa`]: sharing a socket with another process (`WSADuplicateSocketW` for its pid) and
//!   rebuilding it there (`WSASocketW(FROM_PROTOCOL_INFO)`), and Ctrl-C.
//! - [`windows`]: the supervisor's primitives over owned handles: a kill-on-close Job Object,
//!   secure named pipes, Ctrl-C to a process group, process handles (exit code, CPU time,
//!   memory), handle duplication, and unnamed shared memory. `job` is also at the root
//!   (`herd_sys::job`), where the Windows `herd run` first took it from.
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
// libc re-exports `core::ffi::c_int` and friends (stable since 1.64), which clippy's MSRV lint
// mistakes for a use of them; libc itself supports 1.63, which the rustc 1.63 build checks.
#![allow(clippy::incompatible_msrv)]

#[cfg(unix)]
pub mod connection;
#[cfg(unix)]
pub mod fd;
#[cfg(unix)]
pub mod fdpass;
#[cfg(unix)]
pub mod fs;
#[cfg(windows)]
pub use windows::job;
#[cfg(all(any(test, feature = "test-fuse"), target_os = "linux"))]
#[doc(hidden)]
pub mod hung_fuse;
#[cfg(unix)]
pub mod notify;
#[cfg(unix)]
pub mod pidfd;
#[cfg(unix)]
pub mod process;
pub mod region;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod reuseport;
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
#[path = "reuseport/other.rs"]
pub mod reuseport;
#[cfg(all(test, unix))]
mod scratch;
#[cfg(unix)]
pub mod shm;
#[cfg(unix)]
pub mod socket;
#[cfg(unix)]
pub mod spawn;
#[cfg(windows)]
pub mod windows;
#[cfg(windows)]
pub mod wsa;
