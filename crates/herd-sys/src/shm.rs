//! Shared memory passed like a socket: an anonymous, size-sealed memory object, and mapping it.

use std::io;
use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub use crate::region::Region;

/// Creates an anonymous shared memory object of `size` bytes, zero-filled, close-on-exec.
///
/// On Linux it is a `memfd` sealed against growing and shrinking (`F_SEAL_GROW`,
/// `F_SEAL_SHRINK`, `F_SEAL_SEAL`), so no worker can truncate it under the others' feet;
/// elsewhere a `shm_open` object unlinked at once.
pub fn create(name: &str, size: u64) -> io::Result<OwnedFd> {
    let fd = open_anonymous(name)?;
    let len = libc::off_t::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "shared memory too large"))?;
    // SAFETY: ftruncate on an fd we own.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let seals = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        // SAFETY: fcntl(F_ADD_SEALS) on a memfd we own, with integer flags.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn open_anonymous(name: &str) -> io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a memfd name"))?;
    // SAFETY: memfd_create reads a NUL-terminated name and returns a fresh fd.
    let raw =
        unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is fresh and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn open_anonymous(name: &str) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(format!("/herd-{}-{}", std::process::id(), name))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a shm name"))?;
    // SAFETY: shm_open/shm_unlink read a NUL-terminated name; the fd is fresh.
    let raw = unsafe {
        libc::shm_open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    unsafe { libc::shm_unlink(path.as_ptr()) };
    // SAFETY: `raw` is fresh and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    crate::fd::set_cloexec(std::os::unix::io::AsFd::as_fd(&fd), true)?;
    Ok(fd)
}

/// The size of the object behind `fd` (`fstat`), and whether it is a regular file (a memfd or
/// a shared memory object is; a socket is not).
pub fn size_of(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    // SAFETY: stat is plain integers, for which all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into the stat buffer we own.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFREG {
        Ok(Some(st.st_size as u64))
    } else {
        Ok(None)
    }
}

/// The seal that keeps a shared, writable mapping of `fd` from being made, if it has one
/// (`fcntl(F_GET_SEALS)`): `Some("F_SEAL_WRITE")` or `Some("F_SEAL_FUTURE_WRITE")`, whatever
/// the mode it was opened with; `None` for a memfd without, or a file that takes no seals.
/// Only Linux seals; elsewhere always `None`.
pub fn write_seal(fd: BorrowedFd<'_>) -> io::Result<Option<&'static str>> {
    imp::write_seal(fd)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::io;
    use std::os::unix::io::{AsRawFd, BorrowedFd};

    pub fn write_seal(fd: BorrowedFd<'_>) -> io::Result<Option<&'static str>> {
        // SAFETY: fcntl(F_GET_SEALS) on a borrowed, open fd, with no argument.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 {
            let error = io::Error::last_os_error();
            // EINVAL: not a file that takes seals (a tmpfs file, a shm_open object).
            return match error.raw_os_error() {
                Some(libc::EINVAL) => Ok(None),
                _ => Err(error),
            };
        }
        Ok(if seals & libc::F_SEAL_WRITE != 0 {
            Some("F_SEAL_WRITE")
        } else if seals & libc::F_SEAL_FUTURE_WRITE != 0 {
            Some("F_SEAL_FUTURE_WRITE")
        } else {
            None
        })
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::io;
    use std::os::unix::io::BorrowedFd;

    pub fn write_seal(_fd: BorrowedFd<'_>) -> io::Result<Option<&'static str>> {
        Ok(None)
    }
}

/// A shared, read-write mapping of a whole memory object, seen as a [`Region`]; unmapped on
/// drop.
#[derive(Debug)]
pub struct Mapping(Region);

impl std::ops::Deref for Mapping {
    type Target = Region;

    fn deref(&self) -> &Region {
        &self.0
    }
}

impl Mapping {
    /// Maps all of `fd` shared and read-write (`mmap(MAP_SHARED)`).
    pub fn new(fd: BorrowedFd<'_>) -> io::Result<Mapping> {
        let len = size_of(fd)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "not a shared memory object")
        })?;
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too large to map"))?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the shared memory is empty",
            ));
        }
        // SAFETY: a fresh shared mapping of an fd we borrow; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel mapped `len` bytes at `ptr`, page-aligned; they stay mapped until
        // this Mapping, which owns the region, is dropped.
        Ok(Mapping(unsafe { Region::new(ptr.cast(), len) }))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped; no reference outlives self.
        unsafe { libc::munmap(self.0.as_ptr().cast(), self.0.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::io::AsFd;
    use std::sync::atomic::Ordering;

    #[test]
    fn sealed_shared_memory_is_shared_and_cannot_shrink() {
        let fd = create("herd-test", 4096).unwrap();
        let a = Mapping::new(fd.as_fd()).unwrap();
        let b = Mapping::new(fd.as_fd()).unwrap();
        a.atomic_u64(1).unwrap().fetch_add(5, Ordering::SeqCst);
        assert_eq!(b.atomic_u64(1).unwrap().load(Ordering::SeqCst), 5);
        assert!(a.atomic_u64(512).is_none());
        assert_eq!(size_of(fd.as_fd()).unwrap(), Some(4096));
        #[cfg(target_os = "linux")]
        assert!(
            // SAFETY: ftruncate on an fd we own; it must fail on the sealed memfd.
            unsafe { libc::ftruncate(fd.as_raw_fd(), 0) } < 0,
            "sealed against shrinking"
        );
        assert_eq!(
            write_seal(fd.as_fd()).unwrap(),
            None,
            "herd's own seals allow writing"
        );
    }

    /// A memfd sealed against writing passed herd's check (it is open read-write) and failed
    /// at each worker's mapping (EPERM).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_seal_against_writing_is_named() {
        for (seal, name) in [
            (libc::F_SEAL_WRITE, "F_SEAL_WRITE"),
            (libc::F_SEAL_FUTURE_WRITE, "F_SEAL_FUTURE_WRITE"),
        ] {
            let fd = open_anonymous("herd-test-sealed").unwrap();
            // SAFETY: ftruncate and fcntl(F_ADD_SEALS) on a memfd we own, with integers.
            unsafe {
                assert_eq!(libc::ftruncate(fd.as_raw_fd(), 4096), 0);
                assert_eq!(libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seal), 0);
            }
            assert_eq!(write_seal(fd.as_fd()).unwrap(), Some(name));
            assert!(
                Mapping::new(fd.as_fd()).is_err(),
                "{name}: cannot be mapped"
            );
        }
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(write_seal(file.as_fd()).unwrap(), None, "takes no seals");
    }
}
