//! The handle limit on Windows: fixed by the system, with nothing to raise.

/// The most handles herd may hold: Windows' fixed per-process limit (2^24).
pub fn handle_limit() -> u64 {
    herd_sys::windows::process::MAX_HANDLES
}
