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
use crate::store::WriteBatch;

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
        let mut below = u64::MAX;
        let mut messages = 0usize;
        loop {
            let page = model.stored_below(&room, below, PAGE).await?;
            let Some(&(oldest, _)) = page.last() else {
                break;
            };
            let full = page.len() == PAGE;
            messages += page.len();
            search.put(&room, page).await?;
            if !full {
                break;
            }
            below = oldest;
        }
        // Committed before the mark goes: a crash in between indexes the room again.
        search.commit().await?;
        let mut batch = WriteBatch::new();
        Model::delete_reindex(&mut batch, &room);
        model.write(batch).await?;
        info!(room, messages, "indexed an imported room for search");
    }
    Ok(())
}
