//! `--shm NAME=SIZE` on Windows: herd creates each segment once, an unnamed file mapping
//! (herd-sys `windows::shm::create`), keeps it for its whole life (so its content survives
//! restarts and upgrades), and lets every worker inherit it at spawn, named in `HERD_SHM`
//! (`herd::windows::spawn_with`, `herd::shm`).

use std::os::windows::io::{AsHandle, OwnedHandle};

use anyhow::Context;
use herd::windows::Inherited;

use crate::spec::ShmSpec;

/// herd's shared memory segments, by name.
#[derive(Debug, Default)]
pub struct SharedMemories(Vec<(String, OwnedHandle)>);

impl SharedMemories {
    /// Creates a zero-filled segment for each spec.
    pub fn create(specs: &[ShmSpec]) -> anyhow::Result<SharedMemories> {
        let mut memories = Vec::with_capacity(specs.len());
        for spec in specs {
            let handle = herd_sys::windows::shm::create(spec.size).with_context(|| {
                format!(
                    "cannot create the shared memory --shm {}={}",
                    spec.name, spec.size
                )
            })?;
            memories.push((spec.name.clone(), handle));
        }
        Ok(SharedMemories(memories))
    }

    /// What a worker inherits of them: pass it (with the worker's stop event) to
    /// `herd::windows::spawn_with`.
    pub fn inherited(&self) -> Vec<Inherited<'_>> {
        self.0
            .iter()
            .map(|(name, handle)| Inherited::SharedMemory(name, handle.as_handle()))
            .collect()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_segment_is_inherited_by_its_name_and_not_inheritable_meanwhile() {
        let specs: Vec<ShmSpec> = ["counter=8", "cache=64K"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let memories = SharedMemories::create(&specs).unwrap();
        assert_eq!(memories.len(), 2);
        let names: Vec<&str> = memories
            .inherited()
            .iter()
            .map(|i| match i {
                Inherited::SharedMemory(name, handle) => {
                    let inheritable = herd_sys::windows::handle::is_inheritable(*handle);
                    assert!(!inheritable.unwrap(), "only during a worker's spawn");
                    *name
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["counter", "cache"]);
        assert!(SharedMemories::default().inherited().is_empty());
    }
}
