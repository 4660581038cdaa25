//! Moving one room between deployments or backends: `export` writes the room's record,
//! topic, stats, members and messages as JSON Lines (one object per line, oldest message first,
//! streamed page by page), `import` reads them back into a store. Meant for a stopped worker:
//! the embedded store refuses a second opener, so a running worker's store is never touched.
//!
//! The output is deterministic (fields in a fixed order, members by name, messages by seq),
//! so exporting an imported room again gives the same bytes. Messages keep their seq and
//! `prev`: imported into another deployment, the target stream must already be past the
//! room's last seq (see docs/STORAGE.md), or the store writer skips new messages as old.
//! Import reads and checks the whole file before it writes anything, and writes the room
//! record and stats last, so an interrupted import can be run again (`import`).
//!
//! Files are not moved: a message line keeps what the message says about its files
//! (`attachments`), but the files' records and bytes stay in the source's object storage,
//! so their downloads answer 404 in the target (docs/FILES.md).

use std::io::Write;

use chatmesh_protocol::service::Role;
use serde::{Deserialize, Serialize};

use crate::model::{keys, records, Model, RoomMeta, RoomStats, StoredMessage, UserReactions};
use crate::store::{Direction, KvStore, StoreError};

mod import;

pub use import::import_room;

/// Version of the line format, in the first line.
pub const FORMAT: u32 = 1;
const PAGE: usize = 1_000;
/// The longest line import reads (a message with its edits, far above what a gateway
/// takes): a file of one endless line must not take the importer's memory.
pub const MAX_LINE_BYTES: u64 = 128 * 1024 * 1024;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// First line: the room, its record (none for a room that only has messages) and stats.
    Room {
        format: u32,
        room: String,
        meta: Option<RoomMeta>,
        stats: RoomStats,
        /// Absent when the room has none (and in exports made before topics existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    },
    Member {
        user: String,
        role: Role,
    },
    /// A message as stored: its current version (an edited one with its edits, a deleted
    /// one as a tombstone without body). `attachments` says what the message says about its
    /// files; the files themselves (their records and bytes) are not exported.
    Message {
        seq: u64,
        #[serde(flatten)]
        message: Box<StoredMessage>,
    },
    /// One user's reactions on message `seq` (after the messages; the aggregate is on the
    /// message). Thread records are rebuilt from the messages' `thread_root`.
    Reactions {
        seq: u64,
        user: String,
        #[serde(flatten)]
        reactions: UserReactions,
    },
}

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("no room {0} in this store")]
    NoSuchRoom(String),
    #[error("room {0} already exists in the target store; import refuses to merge")]
    RoomExists(String),
    #[error("room {0} is being deleted in the target store; finish that first (DELETE /v1/admin/rooms/{0})")]
    RoomBeingDeleted(String),
    #[error("line {line}: {detail}")]
    Format { line: u64, detail: String },
}

/// What an export or import moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    pub members: u64,
    pub messages: u64,
}

fn write_line<W: Write>(out: &mut W, line: &Line) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes `room` to `out`; calls `progress(messages so far)` every `every` messages.
pub async fn export_room<W: Write>(
    model: &Model,
    room: &str,
    out: &mut W,
    every: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<Moved, ExportError> {
    let meta = model.room(room).await?;
    let stats = model.stats(room).await?;
    if meta.is_none() && stats.count == 0 {
        return Err(ExportError::NoSuchRoom(room.to_owned()));
    }
    let head = Line::Room {
        format: FORMAT,
        room: room.to_owned(),
        meta,
        stats,
        topic: model.topic(room).await?,
    };
    write_line(out, &head)?;
    let mut moved = Moved::default();
    let prefix = keys::member(room, "");
    let mut range = prefix.clone()..keys::prefix_end(&prefix);
    loop {
        let page = model
            .store()
            .scan(range.clone(), Direction::Forward, PAGE)
            .await?;
        for (k, v) in &page {
            let user = keys::second_name(k).unwrap_or_default().to_owned();
            let role: Role = records::decode(k, v)?;
            write_line(out, &Line::Member { user, role })?;
            moved.members += 1;
        }
        match page.last() {
            Some((last, _)) if page.len() == PAGE => {
                range.start = last.clone();
                range.start.push(0);
            }
            _ => break,
        }
    }
    // Keys run newest first: read backwards from the room's end for oldest first.
    let mut range = keys::messages_of(room);
    loop {
        let page = model
            .store()
            .scan(range.clone(), Direction::Reverse, PAGE)
            .await?;
        for (k, v) in &page {
            let seq = keys::seq_of_message(k).unwrap_or_default();
            let m: StoredMessage = records::decode(k, v)?;
            let line = Line::Message {
                seq,
                message: Box::new(m),
            };
            write_line(out, &line)?;
            moved.messages += 1;
            if every > 0 && moved.messages % every == 0 {
                progress(moved.messages);
            }
        }
        match page.last() {
            Some((last, _)) if page.len() == PAGE => range.end = last.clone(),
            _ => break,
        }
    }
    let mut range = keys::reactions_all(room);
    loop {
        let page = model
            .store()
            .scan(range.clone(), Direction::Forward, PAGE)
            .await?;
        for (k, v) in &page {
            let Some((seq, user)) = keys::seq_and_user_of_reactions(room, k) else {
                continue;
            };
            let line = Line::Reactions {
                seq,
                user: user.to_owned(),
                reactions: records::decode(k, v)?,
            };
            write_line(out, &line)?;
        }
        match page.last() {
            Some((last, _)) if page.len() == PAGE => {
                range.start = last.clone();
                range.start.push(0);
            }
            _ => break,
        }
    }
    out.flush()?;
    progress(moved.messages);
    Ok(moved)
}
