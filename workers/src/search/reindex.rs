//! Rooms brought in by `chatmesh import` into the search index. Import writes a room's
//! messages to the store only (the index is the worker's, where its config says, and the
//! index learns of messages from the stream, which an imported room's are not in), and
//! marks the room (`R` key, [`Model::put_reindex`]). The worker that owns the room's
//! partition finds the mark within [`EVERY`], indexes the room's stored messages a page at a
//! time, commits, and only then deletes the mark: a crash before that indexes the room again
//! (each document replaces its own).

use std::sync::Arc;
use std::time::Duration;

use chatmesh_protocol::error::Chain;
use metrics::counter;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Indexes, SearchError};
use crate::model::Model;
use crate::store::{StoreError, WriteBatch};

/// How often the marks are looked for.
pub const EVERY: Duration = Duration::from_secs(10);
/// Messages read and indexed at a time.
const PAGE: usize = 500;
/// Marks read at a time.
const ROOMS: usize = 100;

/// Whether this worker owns a room now (the worker's ownership of partitions).
pub type Owns = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Indexes the marked rooms this worker owns, every [`EVERY`], until `stop`.
pub async fn run(model: Model, search: Indexes, owns: Owns, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        if let Err(e) = sweep(&model, &search, &owns, &stop).await {
            counter!(crate::metrics::SEARCH_ERRORS).increment(1);
            warn!(error = %Chain(&e), "indexing imported rooms failed; trying again later");
        }
    }
}

/// One look at the marks: each room this worker owns is indexed and unmarked.
pub async fn sweep(
    model: &Model,
    search: &Indexes,
    owns: &Owns,
    stop: &CancellationToken,
) -> Result<(), SearchError> {
    for room in model.rooms_to_reindex(ROOMS).await? {
        if stop.is_cancelled() {
            return Ok(());
        }
        if !owns(&room) {
            continue;
        }
        match index_room(model, search, &room).await {
            Ok(messages) => info!(room, messages, "indexed an imported room for search"),
            // A record that cannot be read (written by another version, damaged) holds up
            // its own room, which stays marked, not every room after it.
            Err(e @ SearchError::Store(StoreError::Corrupt { .. })) => {
                counter!(crate::metrics::SEARCH_ERRORS).increment(1);
                warn!(room, error = %Chain(&e), "an imported room has a record that cannot be read: not indexed");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Indexes `room`'s stored messages, commits, then unmarks it; how many it indexed.
async fn index_room(model: &Model, search: &Indexes, room: &str) -> Result<usize, SearchError> {
    let mut below = u64::MAX;
    let mut messages = 0usize;
    loop {
        let page = model.stored_below(room, below, PAGE).await?;
        let Some(&(oldest, _)) = page.last() else {
            break;
        };
        let full = page.len() == PAGE;
        messages += page.len();
        search.put(room, page).await?;
        if !full {
            break;
        }
        below = oldest;
    }
    // Committed before the mark goes: a crash in between indexes the room again.
    search.commit().await?;
    let mut batch = WriteBatch::new();
    Model::delete_reindex(&mut batch, room);
    model.write(batch).await?;
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::keys;
    use crate::search::SearchConfig;
    use crate::WorkerConfig;

    /// An imported room with a message record that cannot be read stays marked and is
    /// skipped; the marked rooms after it are indexed all the same (before, every look
    /// failed at it, and no room after it was ever searchable).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_room_it_cannot_read_holds_up_no_other_room() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = WorkerConfig {
            data_dir: dir.path().join("store"),
            ..WorkerConfig::default()
        };
        let model = Model::new(crate::open_store(&cfg).await.expect("store"));
        let search = Indexes::new(&dir.path().join("search"), 1, &SearchConfig::default());
        let mut batch = WriteBatch::new();
        batch.put(keys::message("a", 1), b"junk".to_vec());
        Model::put_reindex(&mut batch, "a");
        Model::put_reindex(&mut batch, "b");
        model.write(batch).await.expect("write");
        let owns: Owns = Arc::new(|_: &str| true);
        sweep(&model, &search, &owns, &CancellationToken::new())
            .await
            .expect("a look at the marks");
        let left = model.rooms_to_reindex(ROOMS).await.expect("marks");
        assert_eq!(left, ["a"], "b indexed and unmarked, a still marked");
    }
}
