//! Shares per key: how many of a bounded thing (an upload slot, a replay slot) each user
//! holds at once, taken and given back with a guard. Keys holding none are not kept.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts per key.
#[derive(Debug)]
pub struct Counts<K: Hash + Eq> {
    map: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq> Default for Counts<K> {
    fn default() -> Self {
        Self {
            map: Arc::default(),
        }
    }
}

/// One of a key's count, given back on drop.
#[derive(Debug)]
pub struct Counted<K: Hash + Eq> {
    key: K,
    map: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq + Clone> Counts<K> {
    /// One more for `key`, unless it holds `max` already.
    pub fn take(&self, key: &K, max: usize) -> Option<Counted<K>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(key.clone()).or_insert(0);
        if *n >= max {
            if *n == 0 {
                map.remove(key);
            }
            return None;
        }
        *n += 1;
        Some(Counted {
            key: key.clone(),
            map: self.map.clone(),
        })
    }
}

impl<K: Hash + Eq> Drop for Counted<K> {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_max_and_gets_them_back() {
        let counts = Counts::default();
        let a1 = counts.take(&"ann", 2).unwrap();
        let _a2 = counts.take(&"ann", 2).unwrap();
        assert!(counts.take(&"ann", 2).is_none());
        let b = counts.take(&"bob", 2).unwrap();
        drop(a1);
        assert!(counts.take(&"ann", 2).is_some());
        drop(b);
        assert!(!counts.map.lock().unwrap().contains_key("bob"));
    }
}
