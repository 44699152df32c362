//! Conditions said once: a watcher logs a condition (a socket file removed, a shared socket's
//! option changed) the first time it sees it, and again only after it has seen it gone.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::Hash;

/// The keys whose condition holds and was said.
#[derive(Debug)]
pub struct SaidOnce<K>(HashSet<K>);

impl<K> Default for SaidOnce<K> {
    fn default() -> Self {
        SaidOnce(HashSet::new())
    }
}

impl<K: Eq + Hash> SaidOnce<K> {
    /// Whether `key`'s condition, which `holds` now or not, newly holds: to be said.
    pub fn newly<Q>(&mut self, key: &Q, holds: bool) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if !holds {
            self.0.remove(key);
            return false;
        }
        !self.0.contains(key) && self.0.insert(key.to_owned())
    }
}
