//! Shared memory herd passed to this worker (`herd run --shm NAME=SIZE`), mapped: the same
//! type on Unix (a sealed memfd) and on Windows (an unnamed file mapping).

#[cfg(unix)]
use herd_sys::shm::Mapping;
#[cfg(windows)]
use herd_sys::windows::shm::Mapping;
#[cfg(unix)]
use std::os::unix::io::{AsFd, OwnedFd as Owned};
#[cfg(windows)]
use std::os::windows::io::{AsHandle, OwnedHandle as Owned};

use crate::error::{Error, Result};

/// Shared memory mapped read-write, shared with every worker (and kept by herd across
/// restarts and upgrades). Other processes write to it concurrently: share data through the
/// atomic accessors, or a lock of your own.
///
/// On Windows its length is rounded up to whole pages (Windows does not tell a mapping's exact
/// size); the memory past the size herd was given reads as zeros.
#[derive(Debug)]
pub struct SharedMemory {
    mapping: Mapping,
    _owner: Owned,
}

impl SharedMemory {
    /// Maps the shared memory object `owner`, which it keeps open.
    #[cfg(unix)]
    pub(crate) fn map(owner: Owned) -> Result<SharedMemory> {
        let mapping = Mapping::new(owner.as_fd())
            .map_err(|e| Error::io("cannot map the shared memory", e))?;
        Ok(SharedMemory {
            mapping,
            _owner: owner,
        })
    }

    /// Maps the file mapping `owner`, which it keeps open.
    #[cfg(windows)]
    pub(crate) fn map(owner: Owned) -> Result<SharedMemory> {
        let mapping = Mapping::new(owner.as_handle())
            .map_err(|e| Error::io("cannot map the shared memory", e))?;
        Ok(SharedMemory {
            mapping,
            _owner: owner,
        })
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.mapping.len()
    }

    /// Whether it is empty (never: herd refuses empty segments).
    pub fn is_empty(&self) -> bool {
        self.mapping.is_empty()
    }

    /// The `index`-th 64-bit word, as an atomic shared by all workers; `None` past the end.
    pub fn atomic_u64(&self, index: usize) -> Option<&std::sync::atomic::AtomicU64> {
        self.mapping.atomic_u64(index)
    }

    /// The `index`-th 32-bit word, as an atomic shared by all workers; `None` past the end.
    pub fn atomic_u32(&self, index: usize) -> Option<&std::sync::atomic::AtomicU32> {
        self.mapping.atomic_u32(index)
    }

    /// The first byte, for layouts of your own (synchronise access yourself).
    pub fn as_ptr(&self) -> *mut u8 {
        self.mapping.as_ptr()
    }
}
