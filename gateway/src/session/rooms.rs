//! A session's per-room state, keyed by room name: a sorted `Vec` sized to what it holds.
//!
//! Most sessions are in one or a few rooms; a `HashMap` allocates at least four buckets and
//! a control block for them (~250 B with one entry), kept for the session's whole life.
//! Lookups are a binary search; joins and leaves, which are rare, shift the vector.

use std::sync::Arc;

#[derive(Debug)]
pub struct RoomMap<V> {
    entries: Vec<(Arc<str>, V)>,
}

impl<V> Default for RoomMap<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<V> RoomMap<V> {
    fn find(&self, room: &str) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|(name, _)| (**name).cmp(room))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn contains_key(&self, room: &str) -> bool {
        self.find(room).is_ok()
    }

    pub fn get(&self, room: &str) -> Option<&V> {
        self.find(room).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, room: &str) -> Option<&mut V> {
        self.find(room).ok().map(|i| &mut self.entries[i].1)
    }

    /// Inserts or replaces; grows by a quarter at a time (at least one entry).
    pub fn insert(&mut self, room: Arc<str>, value: V) {
        match self.find(&room) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => {
                if self.entries.len() == self.entries.capacity() {
                    self.entries.reserve_exact((self.entries.len() / 4).max(1));
                }
                self.entries.insert(i, (room, value));
            }
        }
    }

    pub fn remove(&mut self, room: &str) -> Option<V> {
        let i = self.find(room).ok()?;
        let (_, value) = self.entries.remove(i);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        Some(value)
    }

    /// Keeps only the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        self.entries.retain(|(_, v)| keep(v));
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.entries.iter().map(|(name, _)| name)
    }

    pub fn clear(&mut self) {
        self.entries = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map_and_stays_small() {
        let mut m = RoomMap::default();
        for (i, name) in ["b", "a", "c"].into_iter().enumerate() {
            m.insert(Arc::from(name), i);
        }
        m.insert(Arc::from("a"), 9);
        assert_eq!(m.len(), 3);
        assert_eq!(m.get("a"), Some(&9));
        assert_eq!(m.get("b"), Some(&0));
        assert!(m.contains_key("c") && !m.contains_key("d"));
        let keys: Vec<&str> = m.keys().map(|k| &**k).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        if let Some(v) = m.get_mut("c") {
            *v = 7;
        }
        assert_eq!(m.remove("c"), Some(7));
        assert_eq!(m.remove("c"), None);
        assert_eq!(m.len(), 2);

        let mut one = RoomMap::default();
        one.insert(Arc::from("r"), 1u64);
        assert_eq!(one.entries.capacity(), 1, "one room, one slot");
        one.remove("r");
        assert_eq!(one.entries.capacity(), 0);
    }
}
