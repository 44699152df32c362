//! Windows: the shared memory herd let this worker inherit, named in `HERD_SHM`.

use std::os::windows::io::AsHandle;
use std::sync::Mutex;

use herd_sys::windows::handle;

use crate::error::{Error, ErrorKind, Result};
use crate::handle_env::{parse_list, SHM};
use crate::shared_memory::SharedMemory;

/// A name with its handle value, `None` once taken.
type Entry = (String, Option<u64>);

/// `HERD_SHM`'s entries once read (the variable is then removed).
static INHERITED: Mutex<Option<Vec<Entry>>> = Mutex::new(None);

/// Maps the shared memory named `name` that herd passed to this process
/// (`herd run --shm NAME=SIZE`). Each name can be taken once per process.
pub fn shm(name: &str) -> Result<SharedMemory> {
    let mut inherited = INHERITED.lock().unwrap_or_else(|p| p.into_inner());
    if inherited.is_none() {
        *inherited = Some(read_env()?);
    }
    let entries = inherited.get_or_insert_with(Vec::new);
    let known = || {
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        names.join(", ")
    };
    let entry = entries.iter().position(|(n, _)| n == name).ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no shared memory is named {name:?} (herd run --shm {name}=SIZE gives it; \
                 given: {})",
                known()
            ),
        )
    })?;
    let value = entries[entry].1.take().ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("the shared memory {name:?} was already taken"),
        )
    })?;
    let owned = handle::claim(value).map_err(|e| {
        Error::io(
            format!("{SHM}: {name}={value} is not a handle this process inherited"),
            e,
        )
    })?;
    // The worker's own children must not inherit it.
    let _ = handle::set_inheritable(owned.as_handle(), false);
    SharedMemory::map(owned)
}

fn read_env() -> Result<Vec<Entry>> {
    let text = match std::env::var(SHM) {
        Ok(text) => text,
        Err(std::env::VarError::NotPresent) => return Ok(Vec::new()),
        Err(std::env::VarError::NotUnicode(_)) => String::from("?"),
    };
    let entries = parse_list(&text).map_err(|e| Error::new(ErrorKind::InvalidEnvironment, e))?;
    std::env::remove_var(SHM);
    Ok(entries
        .into_iter()
        .map(|(name, value)| (name, Some(value)))
        .collect())
}
