//! A `status` reply of 4096 workers is written without copying the status or building its
//! JSON tree: the allocations it makes are counted by an allocator of this test binary's own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use herd_cli::control::protocol::Response;

#[path = "fixtures/status.rs"]
mod fixture;
use fixture::status;

/// The system allocator, counting the allocations of the thread that asks for them.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged; the count is a
// const-initialised thread local, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[test]
fn a_status_reply_allocates_a_few_times_per_worker_not_per_member() {
    const WORKERS: usize = 4096;
    let response = Response::ok(status(WORKERS));
    let before = ALLOCATIONS.with(Cell::get);
    let line = response.to_line();
    let allocations = ALLOCATIONS.with(Cell::get) - before;
    assert!(line.len() > 200 * WORKERS, "{} bytes", line.len());
    // A copy of the status allocates each worker's strings again, and a JSON tree each of
    // its members: 20 and more per worker. Sorting a worker's member names takes one.
    assert!(
        allocations < 2 * WORKERS,
        "{allocations} allocations for {WORKERS} workers"
    );
}
