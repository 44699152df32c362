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

pub use crate::region::Region;

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
pub struct Mapping(Region);

impl std::ops::Deref for Mapping {
    type Target = Region;

    fn deref(&self) -> &Region {
        &self.0
    }
}

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
        let ptr: *mut u8 = view.Value.cast();
        // SAFETY: the system mapped the view at `ptr`, page-aligned; its length is not known
        // yet, so none of it is reachable until it is.
        let mut mapped = Mapping(unsafe { Region::new(ptr, 0) });
        // SAFETY: the structure is plain integers and pointers, for which all-zero is valid.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { mem::zeroed() };
        let size = mem::size_of::<MEMORY_BASIC_INFORMATION>();
        // SAFETY: VirtualQuery reads the address space at the view we own into `info`.
        if unsafe { VirtualQuery(ptr.cast(), &mut info, size) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the view's pages, `RegionSize` bytes from its start, stay mapped until
        // `mapped` is dropped.
        mapped.0 = unsafe { Region::new(ptr, info.RegionSize) };
        Ok(mapped)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let view = MEMORY_MAPPED_VIEW_ADDRESS {
            Value: self.0.as_ptr().cast(),
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
