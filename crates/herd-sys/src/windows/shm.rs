//! Shared memory passed like a socket: an unnamed, pagefile-backed file mapping, and mapping
//! it; the Windows side of the Unix `shm` module.
//!
//! herd creates the mapping with [`create`] and hands it to each worker with
//! [`handle::duplicate_into`](super::handle::duplicate_into); the worker claims the value
//! ([`handle::claim`](super::handle::claim)) and maps it with [`Mapping::new`]. Having no
//! name, no other process can open it.

use std::io;
use std::mem;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64};

use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, VirtualQuery, FILE_MAP_READ,
    FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS, PAGE_READWRITE,
};

/// Creates an unnamed shared memory object of `size` bytes, zero-filled, backed by the
/// pagefile (`CreateFileMappingW(INVALID_HANDLE_VALUE, PAGE_READWRITE)`); the handle is not
/// inheritable. A size of 0 is refused.
pub fn create(size: u64) -> io::Result<OwnedHandle> {
    if size == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "shared memory cannot be empty",
        ));
    }
    // SAFETY: a pagefile-backed mapping (no file), no security attributes (not inheritable),
    // no name; the result is a fresh handle or null.
    let raw = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            ptr::null(),
            PAGE_READWRITE,
            (size >> 32) as u32,
            size as u32,
            ptr::null(),
        )
    };
    if raw.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(raw) })
}

/// A shared, read-write view of a whole file mapping; unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the view is plain shared memory; all access through it goes through atomics or raw
// pointers whose use the caller is responsible for.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps all of `mapping` shared and read-write (`MapViewOfFile`). Its length is the
    /// object's size rounded up to whole pages (`VirtualQuery`): Windows does not tell a
    /// mapping's exact size.
    pub fn new(mapping: BorrowedHandle<'_>) -> io::Result<Mapping> {
        // SAFETY: a fresh view of a mapping handle we borrow; the system picks the address.
        let view = unsafe {
            MapViewOfFile(
                mapping.as_raw_handle(),
                FILE_MAP_READ | FILE_MAP_WRITE,
                0,
                0,
                0,
            )
        };
        if view.Value.is_null() {
            return Err(io::Error::last_os_error());
        }
        // Owned from here, so that an error below unmaps it.
        let mut mapped = Mapping {
            ptr: view.Value.cast(),
            len: 0,
        };
        // SAFETY: the structure is plain integers and pointers, for which all-zero is valid.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { mem::zeroed() };
        let size = mem::size_of::<MEMORY_BASIC_INFORMATION>();
        // SAFETY: VirtualQuery reads the address space at the view we own into `info`.
        if unsafe { VirtualQuery(mapped.ptr.cast(), &mut info, size) } == 0 {
            return Err(io::Error::last_os_error());
        }
        mapped.len = info.RegionSize;
        Ok(mapped)
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never: empty objects are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its first byte. Other processes write to it concurrently: use atomics, or a lock of
    /// your own, for anything they share.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The `index`-th 64-bit word as an atomic, or `None` past the end.
    pub fn atomic_u64(&self, index: usize) -> Option<&AtomicU64> {
        let offset = index.checked_mul(8)?;
        if offset.checked_add(8)? > self.len {
            return None;
        }
        // SAFETY: in bounds (checked), 8-aligned (the view is page-aligned), valid for the
        // view's lifetime, which the reference borrows; AtomicU64 has u64's layout.
        Some(unsafe { &*(self.ptr.add(offset) as *const AtomicU64) })
    }

    /// The `index`-th 32-bit word as an atomic, or `None` past the end.
    pub fn atomic_u32(&self, index: usize) -> Option<&AtomicU32> {
        let offset = index.checked_mul(4)?;
        if offset.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: as for atomic_u64, with 4-byte alignment.
        Some(unsafe { &*(self.ptr.add(offset) as *const AtomicU32) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let view = MEMORY_MAPPED_VIEW_ADDRESS {
            Value: self.ptr.cast(),
        };
        // SAFETY: unmapping exactly the view new() mapped; no reference outlives self.
        unsafe { UnmapViewOfFile(view) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::windows::io::AsHandle;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_views_of_one_mapping_share_their_words() {
        let memory = create(4096).unwrap();
        let a = Mapping::new(memory.as_handle()).unwrap();
        let b = Mapping::new(memory.as_handle()).unwrap();
        a.atomic_u64(1).unwrap().fetch_add(5, Ordering::SeqCst);
        assert_eq!(b.atomic_u64(1).unwrap().load(Ordering::SeqCst), 5);
        assert_eq!(a.len(), 4096);
        assert!(a.atomic_u64(512).is_none());
        assert!(a.atomic_u32(1023).is_some());
    }

    #[test]
    fn empty_shared_memory_is_refused() {
        assert_eq!(create(0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
