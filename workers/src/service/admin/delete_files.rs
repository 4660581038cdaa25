//! The files phase of a room's deletion (`super::delete`): the room's files go with it,
//! bytes and thumbnails first, then their records, references and detached marks, a page
//! per step; after the last page the room's byte counters (its own and each uploader's in
//! it). Before this phase a name created again found the old room's files (readable and
//! attachable by their ids) and its quota use.

use chatmesh_protocol::ApiError;
use tracing::warn;

use super::Service;
use crate::model::admin::{DeletePhase, RoomDeletion};
use crate::model::keys;
use crate::store::{Direction, KvStore, WriteBatch};

/// Files deleted per step (two object deletes each).
pub const FILES_PAGE: usize = 100;

impl Service {
    /// One page of the room's files; the counters and the next phase after the last. The
    /// caller holds the room's files lock (with the room's: `delete_step`).
    pub(super) async fn delete_files(
        &self,
        room: &str,
        state: &mut RoomDeletion,
    ) -> Result<(), ApiError> {
        let pairs = self
            .model()
            .store()
            .scan(keys::files_of(room), Direction::Forward, FILES_PAGE)
            .await?;
        let mut batch = WriteBatch::new();
        for (k, _) in &pairs {
            let Some((_, id)) = keys::room_and_file(k) else {
                // Not a key this code writes: it goes, or the last step would find it for ever.
                batch.delete(k.clone());
                continue;
            };
            self.delete_objects(room, id).await?;
            self.model().delete_file(&mut batch, room, id).await?;
        }
        if pairs.len() < FILES_PAGE {
            let store = self.model().store();
            store.delete_range(keys::user_file_bytes_of(room)).await?;
            batch.delete(keys::room_file_bytes(room));
            state.phase = DeletePhase::Cursors;
            state.resume = Vec::new();
        }
        self.model().write(batch).await?;
        Ok(())
    }

    /// Deletes a file's bytes and thumbnail (nothing to do where files are off: a worker
    /// without a store cannot reach them, and without their records nothing names them).
    async fn delete_objects(&self, room: &str, id: &str) -> Result<(), ApiError> {
        let Ok(handle) = self.files() else {
            return Ok(());
        };
        let store = &handle.files.store;
        for path in [store.object(room, id), store.thumbnail(room, id)] {
            if let Err(e) = store.delete(&path).await {
                warn!(room, id, error = %chatmesh_protocol::error::Chain(&e), "could not delete a deleted room's file");
                return Err(ApiError::unavailable(
                    "file storage did not answer; repeat the deletion",
                ));
            }
        }
        Ok(())
    }
}
