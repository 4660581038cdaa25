//! `import`: one export file into a store. The file is read twice: the first pass checks
//! every line as the room would have been made, writing nothing; the second writes it, page
//! by page, the room record and stats last. So a file refused anywhere, even on its last
//! line, leaves nothing behind (a partial room's members would be members of whatever room
//! someone creates under that name later), and an import interrupted while writing can be
//! run again. The room is marked for the search index, which its worker fills from the
//! store (`crate::search::reindex`).
//!
//! What is checked: names; a DM holding exactly the two users its id is made of; no owner
//! but the one the record names; messages in an unbroken chain (each `prev` below its seq and
//! the previous message's seq, positions `n` increasing); deleted messages as the store
//! leaves them (no body, original, files, mentions or reactions; their edits' bodies erased; their
//! delete marker in the file); and stats that agree with the last message and stay within
//! what seqs allow (a made-up `count` or `last_seq` would make the store writer skip the
//! room's new messages as old or overflow its counters).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read, Seek, SeekFrom};

use chatmesh_protocol::service::{Role, RoomKind};

use super::{ExportError, Line, Moved, FORMAT, MAX_LINE_BYTES, PAGE};
use crate::model::{Model, RoomMeta, RoomStats, StoredMessage};
use crate::store::WriteBatch;

/// Above any seq a stream gives (JetStream's are far below): stats past it could overflow
/// the writer's counters.
const MAX_SEQ: u64 = 1 << 62;

/// What a DM holds: its two users, as members.
const DM_MEMBERS: &str = "a DM holds exactly the two users its id is made of, as members";

/// Reads one export from `input` into the store; refuses a room the store already has (or
/// is deleting). The whole file is checked before anything of it is written (see the module
/// docs); `progress(messages so far)` is called every `every` messages written.
pub async fn import_room<R: BufRead + Seek>(
    model: &Model,
    mut input: R,
    every: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(String, Moved), ExportError> {
    let checked = pass(model, &mut input, None, &mut |_| {}).await?;
    input.seek(SeekFrom::Start(0))?;
    let written = pass(model, &mut input, Some(every), progress).await?;
    if written != checked {
        return Err(ExportError::Format {
            line: 0,
            detail: "the file changed while it was imported".into(),
        });
    }
    Ok(written)
}

/// One pass over the file: checks every line, and writes them when `write` is set (with
/// progress every that many messages).
async fn pass<R: BufRead>(
    model: &Model,
    input: &mut R,
    write: Option<u64>,
    progress: &mut dyn FnMut(u64),
) -> Result<(String, Moved), ExportError> {
    let bad = |line: u64, detail: String| ExportError::Format { line, detail };
    let first = next_line(input, 1)?.ok_or_else(|| bad(1, "empty input".into()))?;
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
    if model.deletion(&room).await?.is_some() {
        return Err(ExportError::RoomBeingDeleted(room));
    }
    let dm = room.starts_with(crate::model::DM_PREFIX);
    let agree = match &meta {
        Some(meta) => dm == (meta.kind == RoomKind::Dm) && !(dm && meta.owner.is_some()),
        None => !dm,
    };
    if !agree {
        return Err(bad(1, "a DM's id, kind and owner do not agree".into()));
    }
    // The checking pass encodes nothing: only the writing pass fills batches.
    let writing = write.is_some();
    let mut seen = Seen::default();
    let mut moved = Moved::default();
    let mut batch = WriteBatch::new();
    let mut no = 1;
    while let Some(text) = next_line(input, no + 1)? {
        no += 1;
        let line = serde_json::from_str(&text).map_err(|e| bad(no, e.to_string()))?;
        // Members come first: a DM's two are all there before anything else is.
        if dm && seen.members.len() != 2 && !matches!(line, Line::Member { .. }) {
            return Err(bad(no, DM_MEMBERS.into()));
        }
        match line {
            Line::Member { user, role } => {
                chatmesh_protocol::validate_name("user", &user)
                    .map_err(|e| bad(no, e.to_string()))?;
                check_member(&room, meta.as_ref(), &seen.members, &user, role)
                    .map_err(|detail| bad(no, detail))?;
                if writing {
                    Model::put_member(&mut batch, &room, &user, role);
                }
                seen.members.insert(user, role);
                moved.members += 1;
            }
            Line::Message { seq, message: m } => {
                chatmesh_protocol::validate_name("user", &m.from)
                    .map_err(|e| bad(no, e.to_string()))?;
                seen.message(seq, &m).map_err(|detail| bad(no, detail))?;
                if writing {
                    let is_member = |u: &str| seen.members.contains_key(u);
                    Model::put_mentions_of(&mut batch, &room, seq, &m.from, &m.mentions, is_member);
                    if let Some(root) = m.thread_root {
                        Model::put_reply(&mut batch, &room, root, seq, &m.from);
                    }
                    Model::put_message(&mut batch, &room, seq, &m);
                }
                moved.messages += 1;
                if let Some(every) = write.filter(|e| *e > 0) {
                    if moved.messages % every == 0 {
                        progress(moved.messages);
                    }
                }
            }
            Line::Reactions {
                seq,
                user,
                reactions,
            } => {
                chatmesh_protocol::validate_name("user", &user)
                    .map_err(|e| bad(no, e.to_string()))?;
                if writing {
                    Model::put_user_reactions(&mut batch, &room, seq, &user, &reactions);
                }
            }
            Line::Room { .. } => return Err(bad(no, "a second room line".into())),
        }
        if batch.len() >= PAGE {
            model.write(std::mem::take(&mut batch)).await?;
        }
    }
    seen.end(&stats).map_err(|detail| bad(0, detail))?;
    if dm && seen.members.len() != 2 {
        return Err(bad(0, DM_MEMBERS.into()));
    }
    if !writing {
        return Ok((room, moved));
    }
    // Record and stats last: until they exist the import may be run again.
    batch.barrier();
    if let Some(meta) = &meta {
        Model::put_room(&mut batch, &room, meta);
    }
    if let Some(topic) = &topic {
        Model::put_topic(&mut batch, &room, Some(topic));
    }
    if moved.messages > 0 {
        // The worker that owns the room indexes them for search (`crate::search::reindex`).
        Model::put_reindex(&mut batch, &room);
    }
    Model::put_stats(&mut batch, &room, &stats);
    model.write(batch).await?;
    progress(moved.messages);
    Ok((room, moved))
}

/// What the lines so far hold, to check the next message and the stats against.
#[derive(Default)]
struct Seen {
    /// Members so far (they come before messages): mentions are recorded for them only.
    members: HashMap<String, Role>,
    /// The seq of the file's first message.
    first: Option<u64>,
    /// The last message: its seq, `n` and `quiet`.
    last: Option<(u64, u64, u64)>,
    /// Delete markers still to come: the marker's seq and the message it deleted.
    markers: HashMap<u64, u64>,
    /// The edits of deleted messages still to come (their bodies are erased).
    erased: HashSet<u64>,
}

impl Seen {
    /// Checks message `seq` against the ones before it, and notes what later ones must be.
    fn message(&mut self, seq: u64, m: &StoredMessage) -> Result<(), String> {
        if seq == 0 || seq > MAX_SEQ {
            return Err(format!("seq {seq} is out of range"));
        }
        if m.prev >= seq {
            return Err(format!("seq {seq} has prev {}, not below it", m.prev));
        }
        if m.n == 0 || m.quiet > m.n {
            return Err(format!("seq {seq} has n {} and quiet {}", m.n, m.quiet));
        }
        if let Some((last_seq, last_n, last_quiet)) = self.last {
            if m.prev != last_seq || m.n <= last_n || m.quiet < last_quiet {
                return Err(format!("seq {seq} does not continue the chain"));
            }
        }
        self.first.get_or_insert(seq);
        self.last = Some((seq, m.n, m.quiet));
        if self.erased.remove(&seq) && !m.body.is_empty() {
            return Err(format!(
                "seq {seq} edits a deleted message but keeps its body"
            ));
        }
        let marker = self.markers.remove(&seq);
        let deletes = m.delete_of.filter(|_| !m.void);
        if marker.is_some() && marker != deletes {
            return Err(format!(
                "seq {seq} is named as a delete marker but deletes {deletes:?}"
            ));
        }
        if let Some(target) = deletes {
            // A target older than the file's first message went with retention.
            let held = self.first.is_some_and(|first| target >= first);
            if held && marker != Some(target) {
                return Err(format!(
                    "seq {seq} deletes {target}, which the file does not hold as deleted"
                ));
            }
        }
        if let Some(d) = &m.deleted {
            let kept = !m.body.is_empty()
                || m.original.is_some()
                || !m.attachments.is_empty()
                || !m.reactions.is_empty()
                || !m.mentions.is_empty()
                || m.mls.is_some();
            if kept {
                return Err(format!("seq {seq} is deleted but keeps what it said"));
            }
            if d.seq <= seq {
                return Err(format!("seq {seq} is deleted by an older seq {}", d.seq));
            }
            self.markers.insert(d.seq, seq);
            self.erased.extend(m.edits.iter().map(|e| e.seq));
        }
        Ok(())
    }

    /// Checks `stats` against the last message and what seqs allow, and that every deleted
    /// message's marker was there.
    fn end(&self, stats: &RoomStats) -> Result<(), String> {
        if let Some((marker, target)) = self.markers.iter().next() {
            return Err(format!(
                "seq {target} is deleted by seq {marker}, which the file does not hold"
            ));
        }
        let within = stats.last_seq <= MAX_SEQ
            && stats.count <= stats.last_seq
            && stats.quiet <= stats.count
            && stats.epoch <= stats.count
            && stats.commit <= stats.last_seq;
        if !within {
            return Err(format!(
                "the room's stats are out of range (a room's count, quiet, epoch and commit \
                 stay within its last_seq): {stats:?}"
            ));
        }
        match self.last {
            Some((seq, n, quiet))
                if (seq, n, quiet) != (stats.last_seq, stats.count, stats.quiet) =>
            {
                Err(format!(
                    "the room's stats (last_seq {}, count {}, quiet {}) do not agree with its \
                     last message (seq {seq}, n {n}, quiet {quiet})",
                    stats.last_seq, stats.count, stats.quiet
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Whether `user` with `role` may be the next member of a room of `meta`, after `members`:
/// a DM's are its two users, whose names its id is made of, as members; another room has no
/// owner but the one its record names.
fn check_member(
    room: &str,
    meta: Option<&RoomMeta>,
    members: &HashMap<String, Role>,
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
