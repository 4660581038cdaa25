//! Striped async locks that serialise the read-check-write of one key (a user name, a room,
//! a cursor) inside this worker: two `register` requests for the same name cannot both see
//! it free. A lock is never held while taking another, so stripes cannot deadlock.

use chatmesh_protocol::subjects::fnv1a32;
use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 1024;

/// A fixed set of mutexes, picked by key hash.
pub(crate) struct KeyLocks {
    stripes: Box<[Mutex<()>]>,
}

impl KeyLocks {
    pub fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Locks the stripe of `(kind, a, b)`.
    pub async fn lock(&self, kind: u8, a: &str, b: &str) -> MutexGuard<'_, ()> {
        let h = fnv1a32(&[kind]) ^ fnv1a32(a.as_bytes()) ^ fnv1a32(b.as_bytes()).rotate_left(7);
        self.stripes[h as usize % STRIPES].lock().await
    }
}
