//! File-descriptor hygiene: close-on-exec flags and ownership of inherited fds.

use std::io;
use std::os::unix::io::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Sets or clears `FD_CLOEXEC` on `fd` (`fcntl(F_GETFD/F_SETFD)`).
pub fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on a borrowed, open fd with integer arguments only.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let wanted = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    if wanted != flags {
        // SAFETY: as above.
        if unsafe { libc::fcntl(raw, libc::F_SETFD, wanted) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits until one of `fds` is readable or at its end (`poll(POLLIN)`), or until `timeout`
/// (`None`: as long as it takes; at most `i32::MAX` ms); whether one is. An interrupted wait
/// counts as none readable yet.
pub fn wait_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<std::time::Duration>,
) -> io::Result<bool> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    // SAFETY: `polls` holds `polls.len()` pollfds we own, for borrowed open fds.
    let n = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, ms) };
    if n < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::Interrupted => Ok(false),
            _ => Err(error),
        };
    }
    Ok(n > 0)
}

/// Whether the other end of `fd` is gone (`poll` at once: `POLLHUP` or `POLLERR`): a terminal
/// hung up (its window or session closed), a pipe or socket whose writer closed (data may
/// still be there to read). `POLLNVAL` is not taken for it: Darwin's `poll` gives it for
/// `/dev/tty`, which it cannot poll.
pub fn hung_up(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own, for a borrowed open fd, no waiting.
    let n = unsafe { libc::poll(&mut poll, 1, 0) };
    if n < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::Interrupted => Ok(false),
            _ => Err(error),
        };
    }
    Ok(poll.revents & (libc::POLLHUP | libc::POLLERR) != 0)
}

/// Whether `FD_CLOEXEC` is set on `fd`.
pub fn is_cloexec(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: fcntl(F_GETFD) on a borrowed, open fd.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::FD_CLOEXEC != 0)
}

/// `O_PATH` where the system has it; macOS has none.
#[cfg(not(target_vendor = "apple"))]
const O_PATH: libc::c_int = libc::O_PATH;
#[cfg(target_vendor = "apple")]
const O_PATH: libc::c_int = 0;

/// How the open file description behind `fd` was opened, as a message says it: `None` for
/// reading and writing (`O_RDWR`), as a shared mapping for writing needs; else
/// `Some("read-only")`, `Some("write-only")` or `Some("as a path only (O_PATH)")`.
pub fn not_read_write(fd: BorrowedFd<'_>) -> io::Result<Option<&'static str>> {
    // SAFETY: fcntl(F_GETFL) on a borrowed, open fd.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & O_PATH != 0 {
        return Ok(Some("as a path only (O_PATH)"));
    }
    Ok(match flags & libc::O_ACCMODE {
        libc::O_RDWR => None,
        libc::O_WRONLY => Some("write-only"),
        _ => Some("read-only"),
    })
}

/// Whether `O_NONBLOCK` is set on the open file description behind `fd`.
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: fcntl(F_GETFL) on a borrowed, open fd.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// Sets `O_NONBLOCK` on the open file description behind `fd`.
///
/// The flag is shared by every process holding a copy of the description (all workers of a
/// herd socket), which is why herd sets it once, before any worker starts.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on a borrowed, open fd with integer arguments only.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The fd numbers [`claim_inherited`] has handed out in this process, sorted. A number stays
/// here for the life of the process, also after its `OwnedFd` closed it: a later fd that the
/// process opens at the same number is owned by whoever opened it, never by a second claim.
static CLAIMED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// Takes ownership of an fd number this process inherited (through `LISTEN_FDS`, or from the
/// previous image of a re-executed herd), after checking that it is open
/// (`fcntl(F_GETFD)`), and marks it close-on-exec so that it does not leak further.
///
/// Each number can be claimed once per process: a second claim of the same number fails with
/// `EBUSY` (even after the first `OwnedFd` was dropped), a number that is not open with
/// `EBADF`, and the standard streams 0, 1 and 2 (owned by the standard library) with `EINVAL`.
/// Claim only numbers the process inherited: an fd it opened itself already has an owner.
pub fn claim_inherited(raw: RawFd) -> io::Result<OwnedFd> {
    if raw <= 2 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // The lock is held until the fd is owned, so that two threads cannot both claim it.
    let mut claimed = CLAIMED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let at = match claimed.binary_search(&raw) {
        Ok(_) => return Err(io::Error::from_raw_os_error(libc::EBUSY)),
        Err(at) => at,
    };
    // SAFETY: fcntl(F_GETFD) only queries the fd table.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    claimed.insert(at, raw);
    drop(claimed);
    // SAFETY: `raw` is open (checked above) and this is the only `OwnedFd` that will ever be
    // made of it here: CLAIMED, under its lock, records every number this function handed out,
    // for good, so a second claim (of the same inherited fd, or of a later fd reusing the
    // number) is refused, and it is never one of the standard streams, which std owns. The
    // numbers passed in are the ones the process inherited across `execve` (LISTEN_FDS, the
    // re-exec state): at exec nothing in the new image owns them, and herd's crates take
    // them only through this function (herd and herd-cli forbid `unsafe`, so they cannot
    // `from_raw_fd` them).
    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
    set_cloexec(owned.as_fd(), true)?;
    Ok(owned)
}

/// Makes sure fds 0, 1 and 2 are open, opening `/dev/null` on any that is closed, so that a
/// file herd opens later can never land on a standard stream number.
pub fn ensure_std_fds_open() -> io::Result<()> {
    for raw in 0..3 {
        // SAFETY: fcntl(F_GETFD) only queries the fd table.
        if unsafe { libc::fcntl(raw, libc::F_GETFD) } >= 0 {
            continue;
        }
        // SAFETY: a constant NUL-terminated path; the lowest free fd is `raw` because all lower
        // standard fds are open, and we deliberately leave it open (no CLOEXEC) for good.
        let got = unsafe { libc::open(b"/dev/null\0".as_ptr().cast(), libc::O_RDWR) };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether fd 1 was closed when the process started (`herd --help 1>&-`): output asked for
/// there would be lost without a word, since Rust's runtime puts `/dev/null` on a closed
/// standard fd before `main` (as [`ensure_std_fds_open`] would after). Read before that, from
/// `.init_array`, on Linux with the `stdout-at-start` feature (herd's binary: a library's
/// users get nothing run before their `main`); elsewhere `false`.
pub fn stdout_closed_at_start() -> bool {
    STDOUT_CLOSED_AT_START.load(Ordering::Relaxed)
}

static STDOUT_CLOSED_AT_START: AtomicBool = AtomicBool::new(false);

/// Run by the C runtime before `main`, and so before Rust's runtime reopens closed standard
/// fds (the way std itself reads its arguments on Linux).
#[cfg(all(
    feature = "stdout-at-start",
    any(target_os = "linux", target_os = "android")
))]
#[used]
#[link_section = ".init_array"]
static CHECK_STDOUT_AT_START: extern "C" fn() = check_stdout_at_start;

#[cfg(all(
    feature = "stdout-at-start",
    any(target_os = "linux", target_os = "android")
))]
extern "C" fn check_stdout_at_start() {
    // SAFETY: fcntl(F_GETFD) only queries the fd table; it allocates nothing and needs no
    // runtime.
    if unsafe { libc::fcntl(1, libc::F_GETFD) } < 0 {
        STDOUT_CLOSED_AT_START.store(true, Ordering::Relaxed);
    }
}

/// Marks every fd above 2 close-on-exec, so that fds this process inherited by accident (from a
/// careless parent shell or service manager) can never leak into the workers it starts.
///
/// Uses `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)` on Linux 5.11+, else walks `/dev/fd`.
pub fn cloexec_all_above_stdio() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing; it only sets flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    let dir = std::fs::read_dir("/dev/fd")?;
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for raw in fds {
        // SAFETY: we only set a flag; an fd that closed meanwhile (the directory's own) fails
        // with EBADF, which is ignored.
        unsafe {
            let flags = libc::fcntl(raw, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(raw, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// Opens `/dev/null` read-write, close-on-exec.
pub fn open_dev_null() -> io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    Ok(OwnedFd::from(file))
}

/// The caller's word that, while [`exec_with_listen_fds`] runs, no other thread of this process
/// opens, closes, duplicates or uses an fd other than the standard streams 0, 1 and 2.
///
/// The function rearranges the fd table in place: it puts sockets at numbers that other code
/// may hold as `OwnedFd`s (set aside and put back, but replaced meanwhile), and `dup2`s onto
/// numbers it found free, which a concurrent `open` could take in between. That is sound only
/// while no other thread touches those fds, which no check can see; this type puts the
/// condition in the function's signature, and the promise at the call site. A process whose
/// only other threads write to stderr (a log writer) qualifies; one running a thread pool
/// that opens files or sockets does not.
#[derive(Debug)]
pub struct NoOtherThreadUsesFds(());

impl NoOtherThreadUsesFds {
    /// Makes the promise: see the type's documentation for what it holds the caller to.
    pub fn promise() -> NoOtherThreadUsesFds {
        NoOtherThreadUsesFds(())
    }
}

/// Runs `exec` with `fds` moved to 3, 4, ... in order, close-on-exec cleared, for a process
/// that is about to become a program taking them through `LISTEN_FDS` (`exec` should be an
/// `execve`, such as `std::os::unix::process::CommandExt::exec`). Returns `exec`'s error if it
/// returns, or why the fds could not be placed.
///
/// An fd already open at one of those numbers and not among `fds` is in the way. If it is
/// close-on-exec, the program would not get it anyway (herd marks every fd it inherited
/// close-on-exec at start-up, so a shell's fd 10 is one), so it is set aside: duplicated
/// above the range, replaced by the socket, and put back if `exec` returns. An fd in the way
/// that is *not* close-on-exec is meant for the program: the call refuses, and changes
/// nothing. If `exec` returns (it failed), every number in the range holds again what it held
/// before, and the sockets placed there are closed.
///
/// The fd table is rearranged in place, which is sound only while no other thread opens or
/// uses fds (see [`NoOtherThreadUsesFds`], the caller's promise); `exec` should do nothing but
/// exec.
pub fn exec_with_listen_fds(
    fds: Vec<OwnedFd>,
    _sole: NoOtherThreadUsesFds,
    exec: impl FnOnce() -> io::Error,
) -> io::Error {
    let first_free = match RawFd::try_from(fds.len())
        .ok()
        .and_then(|n| n.checked_add(3))
    {
        Some(first_free) => first_free,
        None => return io::Error::from_raw_os_error(libc::EMFILE),
    };
    // The sockets go above the range first, so that placing one never overwrites another.
    let mut moved = Vec::with_capacity(fds.len());
    for fd in &fds {
        match dup_above(fd.as_raw_fd(), first_free) {
            Ok(copy) => moved.push(copy),
            Err(e) => return e,
        }
    }
    drop(fds);
    // Whatever else is open in the range is set aside.
    let mut saved: Vec<(RawFd, OwnedFd)> = Vec::new();
    for target in 3..first_free {
        // SAFETY: fcntl(F_GETFD) only queries the fd table.
        let flags = unsafe { libc::fcntl(target, libc::F_GETFD) };
        if flags < 0 {
            continue;
        }
        if flags & libc::FD_CLOEXEC == 0 {
            return io::Error::new(
                io::ErrorKind::Other,
                format!(
                    "fd {target} is open for the program (not close-on-exec), and the sockets \
                     need fds 3 to {}: close it first",
                    first_free - 1
                ),
            );
        }
        match dup_above(target, first_free) {
            Ok(copy) => saved.push((target, copy)),
            Err(e) => return e,
        }
    }
    let mut placed = 0;
    let mut error = None;
    for (i, fd) in moved.iter().enumerate() {
        // SAFETY: the target is free or holds an fd set aside above (it is put back by
        // `restore`); dup2 leaves FD_CLOEXEC clear on the new fd, as inheritance wants.
        if unsafe { libc::dup2(fd.as_raw_fd(), 3 + i as RawFd) } < 0 {
            error = Some(io::Error::last_os_error());
            break;
        }
        placed += 1;
    }
    let error = match error {
        Some(error) => error,
        None => exec(),
    };
    restore(3..3 + placed as RawFd, &saved);
    error
}

/// Duplicates `fd` to the lowest free number at or above `min`, close-on-exec
/// (`F_DUPFD_CLOEXEC`).
fn dup_above(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on an open fd returns a fresh fd that we own at once.
    let raw = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is fresh and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Undoes [`exec_with_listen_fds`]'s placement: the sockets at `placed` are closed, and the
/// fds set aside go back to their numbers, close-on-exec as they were.
fn restore(placed: std::ops::Range<RawFd>, saved: &[(RawFd, OwnedFd)]) {
    for target in placed {
        if saved.iter().all(|(t, _)| *t != target) {
            // SAFETY: `target` holds a socket this call placed, owned by nobody.
            unsafe { libc::close(target) };
        }
    }
    for (target, copy) in saved {
        // SAFETY: `target` holds either its original fd or a socket we placed, owned by
        // nobody; dup2 puts the original back (atomically closing the socket).
        if unsafe { libc::dup2(copy.as_raw_fd(), *target) } >= 0 {
            // SAFETY: the fd at `target` is the one its owner had; only its flag changes.
            let _ = set_cloexec(unsafe { BorrowedFd::borrow_raw(*target) }, true);
        }
    }
}

/// An anonymous file for handing data across `execve`: a `memfd` on Linux (not close-on-exec
/// only once the caller says so), elsewhere a temporary file unlinked at once.
pub fn anonymous_file(name: &str) -> io::Result<std::fs::File> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let cname = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in memfd name"))?;
        // SAFETY: memfd_create reads a NUL-terminated name and returns a fresh fd we own.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if raw >= 0 {
            // SAFETY: `raw` is fresh and owned by nobody else.
            return Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) }));
        }
    }
    let path = std::env::temp_dir().join(format!("{name}.{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// Registers `fd` with the current tokio runtime's reactor for readability (`epoll_ctl`),
/// holding it until the returned `AsyncFd` is dropped; read it through a borrow
/// (`socket2::SockRef::from(async_fd.get_ref())`). Must be called within a tokio runtime.
#[cfg(feature = "tokio")]
pub fn register_readable(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns `fd`, an `OwnedFd`, which keeps the same open fd (and
    // `as_raw_fd` returns it, always the same) until it is dropped with the `AsyncFd`: for the
    // whole registration, as `register_with_interest` requires.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

#[cfg(test)]
pub(crate) mod tests;

/// Closes `fd`, a descriptor someone else may have prepared, without keeping this thread
/// waiting: on a thread of its own (`herd-closer`, started at the first call), never here
/// (where no thread can start, it waits until one can). Closing the last descriptor of a file can wait: a TCP socket with
/// `SO_LINGER` and unsent data waits until its peer reads them or the linger time (any
/// length) has passed, and so does a Unix socket whose queue holds such a socket; any close of
/// a FUSE file asks its daemon to flush it, and waits for good for one that never answers. A
/// local user who could reach herd's abstract notify socket (`--user`), or its control socket
/// opened to others (`--control-allow-uid`), stopped herd's event loop for an hour so by
/// sending it one such socket. Only the closing thread waits then, and not for long: on Linux
/// a close that takes longer than 100 ms is interrupted (a signal to the closing thread ends
/// the kernel's linger wait; the socket's data is then sent, or not, as after any close), and
/// one that still waits after a second (a hung filesystem's wait, which no signal ends) is
/// left to its thread while a new one closes the fds queued after it, up to 8 threads left
/// so at once. Before, the fds sent after such a socket stayed open behind it: 25,300 copies
/// of one fd, sent in 100 datagrams after it, took herd to its open-file limit of 20,000 for
/// the hour the linger lasted, and every worker start failed. Sockets are not made to close
/// abortively (`SO_LINGER` 0) instead: one may be shared, a worker's listener sent with
/// `FDSTORE=1`, whose connections would all end in a reset.
pub fn close_in_background(fd: OwnedFd) {
    closer::close_later(fd);
}

/// How many of herd's closing threads ([`close_in_background`]) are left to a close, or the
/// release of a file a notify sender attached, that still waits after a second: a hung
/// filesystem's wait, which no signal ends. Until it ends, an `execve` of this process waits
/// with it (the kernel ends every other thread first), so a re-exec should not be tried.
pub fn closes_left_waiting() -> usize {
    closer::left_waiting()
}

/// Waits at most `within` until herd's closing threads ([`close_in_background`], and the
/// takings of notify datagrams) are idle: nothing queued, under way or left waiting. An
/// `execve` waits for every other thread to end, and one in a hung filesystem's wait never
/// does: a re-exec is tried only once this is `Ok`.
pub fn wait_closing_idle(within: std::time::Duration) -> Result<(), ClosingBusy> {
    closer::wait_idle(within)
}

/// Starts the closing threads' watcher, and a closing thread for jobs queued, where they could
/// not start before (no thread could: the pids limit or `RLIMIT_NPROC` reached). Their own
/// retries need a job to come, or the watcher to run: herd's loop calls this now and then, so
/// that a queue no new job reaches (a notify socket's, full) is taken again once threads can
/// start. Cheap when nothing waits.
pub fn retry_closing_threads() {
    closer::retry();
}

/// The threads that close what others may have prepared.
mod access;
mod closer;
pub use access::stdout_read_only;
pub use closer::Busy as ClosingBusy;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use closer::{run_later, Job};
