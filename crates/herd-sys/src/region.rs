//! Shared memory mapped into this process, seen as words: what every platform's `Mapping`
//! (`shm`, `windows::shm`) gives through `Deref`, and unmaps on drop.

use std::sync::atomic::{AtomicU32, AtomicU64};

/// `len` bytes of page-aligned shared memory at `ptr`, valid as long as the mapping that owns
/// it.
#[derive(Debug)]
pub struct Region {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the region is plain shared memory; all access through it goes through atomics or
// raw pointers whose use the caller is responsible for.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// The region of `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr` is page-aligned and valid for reads and writes of `len` bytes until the owner of
    /// this region unmaps it, which it does only when the region is gone.
    pub(crate) unsafe fn new(ptr: *mut u8, len: usize) -> Region {
        Region { ptr, len }
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
        // SAFETY: in bounds (checked), 8-aligned (the region is page-aligned), valid for the
        // region's lifetime (`new`'s contract), which the reference borrows; AtomicU64 has
        // u64's layout.
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
