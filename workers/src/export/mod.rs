//! Moving one room between deployments or backends: `export` writes the room's record,
//! topic, stats, members and messages as JSON Lines (one object per line, oldest message first,
//! streamed page by page), `import` reads them back into a store. Meant for a stopped worker:
//! the embedded store refuses a second opener, so a running worker's store is never touched.
//!
//! The output is deterministic (fields in a fixed order, members by name, messages by seq),
//! so exporting an imported room again gives the same bytes. Messages keep their seq and
//! `prev`: imported into another deployment, the target stream must already be past the
//! room's last seq (see docs/STORAGE.md), or the store writer skips new messages as old.
//! Import writes the room record and stats last, so an interrupted import can be run again.
//!
//! Files are not moved: a message line keeps what the message says about its files
//! (`attachments`), but the files' records and bytes stay in the source's object storage,
//! so their downloads answer 404 in the target (docs/FILES.md).

use std::io::{BufRead, Read, Write};

use chatmesh_protocol::service::{Role, RoomKind};
use serde::{Deserialize, Serialize};

use crate::model::{keys, records, Model, RoomMeta, RoomStats, StoredMessage, UserReactions};
use crate::store::{Direction, KvStore, StoreError, WriteBatch};

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

/// What a DM holds: its two users, as members.
const DM_MEMBERS: &str = "a DM holds exactly the two users its id is made of, as members";

/// Whether `user` with `role` may be the next member of a room of `meta`, after `members`:
/// a DM's are its two users, whose names its id is made of, as members; another room has no
/// owner but the one its record names. Checked line by line, before anything is written.
fn check_member(
    room: &str,
    meta: Option<&RoomMeta>,
    members: &std::collections::HashMap<String, Role>,
    user: &str,
    role: Role,
) -> Result<(), String> {
    if members.contains_key(user) {
        return Err(format!("{user} is listed twice"));
    }
    let Some(meta) = meta else {
        // A room without a record has no owner, and nobody grants admin without one: a
        // file must not make someone the owner of a name for whoever creates it later.
        if role != Role::Member {
            return Err(format!(
                "{user} has a role above member in a room without a record"
            ));
        }
        return Ok(());
    };
    if meta.kind == RoomKind::Dm {
        let pair = members
            .keys()
            .next()
            .is_none_or(|other| crate::model::dm_room(other, user) == room);
        if role != Role::Member || members.len() >= 2 || !pair {
            return Err(DM_MEMBERS.into());
        }
        return Ok(());
    }
    if role == Role::Owner && meta.owner.as_deref() != Some(user) {
        return Err(format!(
            "{user} has the owner's role, but the room's owner is {:?}",
            meta.owner
        ));
    }
    Ok(())
}

/// The next line of `input` without its end, `None` at the end; a line longer than
/// [`MAX_LINE_BYTES`] is an error.
fn next_line<R: BufRead>(input: &mut R, no: u64) -> Result<Option<String>, ExportError> {
    let mut buf = Vec::new();
    let read = Read::take(&mut *input, MAX_LINE_BYTES + 1).read_until(b'\n', &mut buf)?;
    if read == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if read as u64 > MAX_LINE_BYTES {
        return Err(ExportError::Format {
            line: no,
            detail: format!("longer than {MAX_LINE_BYTES} bytes"),
        });
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|e| ExportError::Format {
            line: no,
            detail: e.to_string(),
        })
}

/// Reads one export from `input` into the store; refuses a room the store already has. The
/// file is checked as it would have been made, before anything of it is written: names
/// valid, a DM room holding the two users its id is made of (and nobody else), no owner of
/// another room but the one its record names, messages from valid names in an unbroken
/// chain.
pub async fn import_room<R: BufRead>(
    model: &Model,
    mut input: R,
    every: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(String, Moved), ExportError> {
    // Members so far (they come before messages): mentions are recorded for them only.
    let mut members = std::collections::HashMap::new();
    let bad = |line: u64, detail: String| ExportError::Format { line, detail };
    let first = next_line(&mut input, 1)?.ok_or_else(|| bad(1, "empty input".into()))?;
    let (room, meta, stats, topic) =
        match serde_json::from_str(&first).map_err(|e| bad(1, e.to_string()))? {
            Line::Room {
                format: FORMAT,
                room,
                meta,
                stats,
                topic,
            } => (room, meta, stats, topic),
            Line::Room { format, .. } => return Err(bad(1, format!("unknown format {format}"))),
            _ => return Err(bad(1, "the first line must be the room".into())),
        };
    chatmesh_protocol::validate_name("room", &room).map_err(|e| bad(1, e.to_string()))?;
    let topic = match topic {
        Some(text) => {
            chatmesh_protocol::text::clean_topic(&text).map_err(|e| bad(1, e.to_string()))?
        }
        None => None,
    };
    if model.room(&room).await?.is_some() || model.stats(&room).await?.count > 0 {
        return Err(ExportError::RoomExists(room));
    }
    let dm = room.starts_with(crate::model::DM_PREFIX);
    let agree = match &meta {
        Some(meta) => dm == (meta.kind == RoomKind::Dm) && !(dm && meta.owner.is_some()),
        None => !dm,
    };
    if !agree {
        return Err(bad(1, "a DM's id, kind and owner do not agree".into()));
    }
    let mut moved = Moved::default();
    let mut batch = WriteBatch::new();
    let mut last: Option<(u64, u64)> = None;
    let mut no = 1;
    while let Some(text) = next_line(&mut input, no + 1)? {
        no += 1;
        let line = serde_json::from_str(&text).map_err(|e| bad(no, e.to_string()))?;
        // Members come first: a DM's two are all there before anything else is (or could
        // be, a page later) written.
        if dm && members.len() != 2 && !matches!(line, Line::Member { .. }) {
            return Err(bad(no, DM_MEMBERS.into()));
        }
        match line {
            Line::Member { user, role } => {
                chatmesh_protocol::validate_name("user", &user)
                    .map_err(|e| bad(no, e.to_string()))?;
                check_member(&room, meta.as_ref(), &members, &user, role)
                    .map_err(|detail| bad(no, detail))?;
                members.insert(user.clone(), role);
                Model::put_member(&mut batch, &room, &user, role);
                moved.members += 1;
            }
            Line::Message { seq, message: m } => {
                chatmesh_protocol::validate_name("user", &m.from)
                    .map_err(|e| bad(no, e.to_string()))?;
                if let Some((last_seq, last_n)) = last {
                    if m.prev != last_seq || m.n <= last_n {
                        return Err(bad(no, format!("seq {seq} does not continue the chain")));
                    }
                }
                last = Some((seq, m.n));
                let is_member = |u: &str| members.contains_key(u);
                Model::put_mentions_of(&mut batch, &room, seq, &m.from, &m.mentions, is_member);
                if let Some(root) = m.thread_root {
                    Model::put_reply(&mut batch, &room, root, seq, &m.from);
                }
                Model::put_message(&mut batch, &room, seq, &m);
                moved.messages += 1;
                if every > 0 && moved.messages % every == 0 {
                    progress(moved.messages);
                }
            }
            Line::Reactions {
                seq,
                user,
                reactions,
            } => {
                chatmesh_protocol::validate_name("user", &user)
                    .map_err(|e| bad(no, e.to_string()))?;
                Model::put_user_reactions(&mut batch, &room, seq, &user, &reactions);
            }
            Line::Room { .. } => return Err(bad(no, "a second room line".into())),
        }
        if batch.len() >= PAGE {
            model.write(std::mem::take(&mut batch)).await?;
        }
    }
    if last.is_some_and(|(seq, _)| seq != stats.last_seq) {
        return Err(bad(0, "the last message is not the room's last_seq".into()));
    }
    if dm && members.len() != 2 {
        return Err(bad(0, DM_MEMBERS.into()));
    }
    // Record and stats last: until they exist the import may be run again.
    batch.barrier();
    if let Some(meta) = &meta {
        Model::put_room(&mut batch, &room, meta);
    }
    if let Some(topic) = &topic {
        Model::put_topic(&mut batch, &room, Some(topic));
    }
    Model::put_stats(&mut batch, &room, &stats);
    model.write(batch).await?;
    progress(moved.messages);
    Ok((room, moved))
}
