//! herd-sys's Windows primitives, tried on real processes (under Wine on Linux): the test
//! binary re-executes itself to play each child (`roles`).
#![cfg(windows)]

mod console;
mod job;
#[cfg(feature = "tokio")]
mod pipe;
mod priority;
mod process;
mod roles;
mod shm;
