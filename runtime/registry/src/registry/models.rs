//! The model → providers index: which registered providers offer a model id,
//! kept up to date when a provider's capabilities change (register, replace,
//! restart) or it is removed, so that resolving a bare model id costs one map
//! look-up instead of a snapshot of every provider.
//!
//! Each entry has a process-unique id. A name can be unregistered and
//! registered again while the old entry is still winding down; the old entry's
//! late removal must not erase the new one's models, so a change only applies to
//! the record of the same entry (or replaces an older one).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A fresh entry id.
pub(crate) fn next_entry_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[derive(Default)]
struct Inner {
    /// Model id → names of the providers offering it.
    by_model: HashMap<String, BTreeSet<String>>,
    /// Provider name → (entry id, the model ids indexed for it).
    by_provider: HashMap<String, (u64, Vec<String>)>,
}

/// The index. One `std` lock, held for one map operation, never across an
/// `.await`: reads (one per request naming a bare model id) share it.
#[derive(Default)]
pub(crate) struct ModelIndex {
    inner: RwLock<Inner>,
}

impl ModelIndex {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // Every change below is made of single map operations; a panic cannot
        // leave the maps half-changed, so a poisoned lock is still usable.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Set what entry `id` registered as `name` offers: `Some(models)`, or
    /// `None` once it is removed. `current` is called under the index's lock, so
    /// the last caller always writes the entry's latest state, whatever order
    /// concurrent callers ran in.
    pub(crate) fn refresh(
        &self,
        id: u64,
        name: &str,
        current: impl FnOnce() -> Option<Vec<String>>,
    ) {
        let mut g = self.write();
        let inner = &mut *g;
        let newest = match inner.by_provider.get(name) {
            // Another (newer) entry holds the name: this one's news is stale.
            Some((other, _)) if *other > id => return,
            Some((other, _)) => *other == id,
            None => true,
        };
        let models = current();
        if models.is_none() && !newest {
            return;
        }
        if let Some((_, old)) = inner.by_provider.remove(name) {
            for m in old {
                if let Some(set) = inner.by_model.get_mut(&m) {
                    set.remove(name);
                    if set.is_empty() {
                        inner.by_model.remove(&m);
                    }
                }
            }
        }
        if let Some(mut models) = models {
            models.sort();
            models.dedup();
            for m in &models {
                inner
                    .by_model
                    .entry(m.clone())
                    .or_default()
                    .insert(name.to_string());
            }
            inner.by_provider.insert(name.to_string(), (id, models));
        }
    }

    /// The providers that offer `model`, sorted by name.
    pub(crate) fn providers_of(&self, model: &str) -> Vec<String> {
        self.read()
            .by_model
            .get(model)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn follows_changes_and_ignores_a_stale_entry() {
        let ix = ModelIndex::default();
        ix.refresh(1, "a", || models(&["m1", "m2"]));
        ix.refresh(2, "b", || models(&["m2"]));
        assert_eq!(ix.providers_of("m2"), ["a", "b"]);
        // `a` replaced: its new capabilities replace the old ones.
        ix.refresh(1, "a", || models(&["m3"]));
        assert!(ix.providers_of("m1").is_empty());
        assert_eq!(ix.providers_of("m2"), ["b"]);
        // `a` unregistered and registered again (entry 3) before entry 1's
        // removal lands: the late removal leaves entry 3 alone.
        ix.refresh(3, "a", || models(&["m4"]));
        ix.refresh(1, "a", || None);
        ix.refresh(1, "a", || models(&["m1"]));
        assert_eq!(ix.providers_of("m4"), ["a"]);
        assert!(ix.providers_of("m1").is_empty() && ix.providers_of("m3").is_empty());
        ix.refresh(3, "a", || None);
        assert!(ix.providers_of("m4").is_empty());
        assert!(ix.read().by_model.keys().all(|m| m == "m2"));
    }
}
