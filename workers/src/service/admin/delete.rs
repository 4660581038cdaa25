//! Deleting a room online, one bounded step per request (the gateway repeats the request
//! until `done`). The first step removes the room's record, directory entry and topic and
//! writes a marker (`W`, `crate::model::admin`) that says how far the deletion got, so
//! that a repeat goes on where the last step stopped (on any worker, after any restart) and
//! nobody creates the name again meanwhile (`room_create` answers `conflict`). Then, in
//! order:
//! 1. members, [`MEMBERS_PAGE`] per step: member records, their mirrors, the members' read
//!    and thread cursors; each is told as for a removal (`chat.mem.<room>`: gateways send
//!    `membership {role: null}` and `left`, and stop the member's sends);
//! 2. the stream: the room's subject is purged from stream `CHAT` (resume and the live
//!    path find nothing of it any more);
//! 3. messages in the store, [`MESSAGES_PAGE`] per step, with their mention, reply and
//!    file-reference records and their search documents; then the room's reaction and
//!    thread records (one range each);
//! 4. files, [`super::delete_files::FILES_PAGE`] per step: bytes and thumbnails in object
//!    storage, records, then the room's and its uploaders' byte counters, so that a name
//!    created again has none of the old room's files or quota use;
//! 5. read cursors of former members: a scan of every cursor of the store,
//!    [`CURSORS_PAGE`] keys per step (cursors are keyed by user, so this is the one phase
//!    whose cost grows with the store, not the room);
//! 6. the room's stats, the caches, the marker: the name is free.
//!
//! A message a gateway accepted in the instant before its sender was told (phase 1) may be
//! stored after phase 3 read the room (or acked after phase 2, and stored by a lagging
//! store writer later still: phase 6 waits until the store holds what the stream has of
//! the room), and an upload that began before the deletion may write its record after
//! phase 4: phase 6 looks again and goes back to phase 3 if it finds either.

use chatmesh_protocol::admin::{DeleteProgress, DeleteRoomRequest};
use chatmesh_protocol::message::now_ms;
use chatmesh_protocol::subjects::in_subject;
use chatmesh_protocol::ApiError;
use tracing::{info, warn};

use super::{valid, Act, Service};
use crate::model::admin::{deleting, DeletePhase, RoomDeletion};
use crate::model::{keys, records, Model, StoredMessage};
use crate::service::{LOCK_FILES, LOCK_ROOM};
use crate::store::{Direction, KvStore, WriteBatch};

/// Members removed per step.
pub const MEMBERS_PAGE: usize = 500;
/// Messages deleted per step.
pub const MESSAGES_PAGE: usize = 1_000;
/// Cursor keys looked at per step.
pub const CURSORS_PAGE: usize = 5_000;

impl Service {
    /// One step of deleting `room`.
    pub(super) async fn delete_room_step(
        &self,
        req: DeleteRoomRequest,
    ) -> Result<DeleteProgress, ApiError> {
        valid("room", &req.room)?;
        let act = Act {
            caller: &req.caller,
            action: "delete_room",
            target: &req.room,
        };
        // Recorded when it starts, when it is done, and when a step fails.
        let record = |r: &Result<(bool, DeleteProgress), ApiError>| match r {
            Ok((true, p)) => Some(format!("started; next: {}", p.phase)),
            Ok((false, p)) if p.done => Some(format!(
                "done: {} members, {} messages, {} cursors",
                p.members, p.messages, p.cursors
            )),
            Ok(_) => None,
            Err(_) => Some(String::new()),
        };
        self.as_admin(act, record, || {
            self.delete_step(&req.room, &req.caller.actor)
        })
        .await
        .map(|(_, progress)| progress)
    }

    /// Runs one step; answers whether it started the deletion, and the progress. It holds
    /// the room's lock and its files' (the files phase needs both) together: taken one after
    /// the other, a room whose two stripes are one (one in 1,024) waited for itself for good,
    /// and two deletions whose stripes crossed waited for each other.
    pub(crate) async fn delete_step(
        &self,
        room: &str,
        actor: &str,
    ) -> Result<(bool, DeleteProgress), ApiError> {
        let _guards = self
            .inner
            .locks
            .lock_two((LOCK_ROOM, room), (LOCK_FILES, room))
            .await?;
        let (started, mut state) = match self.model().deletion(room).await? {
            Some(state) => (false, state),
            None => (true, self.start_deletion(room, actor).await?),
        };
        let mut done = false;
        match state.phase {
            DeletePhase::Members => self.delete_members(room, &mut state).await?,
            DeletePhase::Stream => {
                self.purge_stream(room).await?;
                state.phase = DeletePhase::Messages;
            }
            DeletePhase::Messages => self.delete_messages(room, &mut state).await?,
            DeletePhase::Files => self.delete_files(room, &mut state).await?,
            DeletePhase::Cursors => self.delete_cursors(room, &mut state).await?,
            DeletePhase::Finish => done = self.finish_deletion(room, &mut state).await?,
        }
        if !done {
            let mut batch = WriteBatch::new();
            Model::put_deletion(&mut batch, room, &state);
            self.model().write(batch).await?;
        }
        let progress = DeleteProgress {
            room: room.to_owned(),
            phase: if done { "done" } else { state.phase.name() }.to_owned(),
            done,
            members: state.members,
            messages: state.messages,
            cursors: state.cursors,
        };
        Ok((started, progress))
    }

    /// Removes the room's record (so it is gone for everyone at once) and writes the marker.
    async fn start_deletion(&self, room: &str, actor: &str) -> Result<RoomDeletion, ApiError> {
        if self.model().room(room).await?.is_none() {
            return Err(ApiError::not_found("no such room"));
        }
        let state = RoomDeletion {
            by: actor.to_owned(),
            ts: now_ms(),
            phase: DeletePhase::Members,
            resume: Vec::new(),
            members: 0,
            messages: 0,
            cursors: 0,
        };
        let mut batch = WriteBatch::new();
        batch.delete(keys::room(room));
        batch.delete(keys::public(room));
        batch.delete(keys::topic(room));
        batch.delete(keys::room_name(room));
        Model::delete_mls_group(&mut batch, room);
        Model::put_deletion(&mut batch, room, &state);
        self.model().write(batch).await?;
        self.model().delete_mls_nexts(room).await?;
        self.caches().room_deleted(room).await;
        info!(room, by = actor, "room deletion started");
        Ok(state)
    }

    async fn delete_members(&self, room: &str, state: &mut RoomDeletion) -> Result<(), ApiError> {
        let members = self.model().members(room, MEMBERS_PAGE).await?;
        let mut batch = WriteBatch::new();
        for (user, _) in &members {
            Model::delete_member(&mut batch, room, user);
            batch.delete(keys::cursor(user, room));
            Model::delete_dm_closed(&mut batch, user, room);
            let mut threads = keys::thread_cursor(user, room, 0);
            threads.truncate(threads.len() - 8);
            let end = keys::prefix_end(&threads);
            self.model().store().delete_range(threads..end).await?;
        }
        self.model().write(batch).await?;
        for (user, _) in &members {
            self.member_changed(room, user, None).await;
        }
        state.members += members.len() as u64;
        if members.len() < MEMBERS_PAGE {
            state.phase = DeletePhase::Stream;
        }
        Ok(())
    }

    /// Purges the room's subject from the stream (nothing to do without one: in-process).
    async fn purge_stream(&self, room: &str) -> Result<(), ApiError> {
        let Some(tail) = self.inner.tail.get() else {
            return Ok(());
        };
        let subject = in_subject(tail.partitions, room);
        let Some((_, stream)) = tail.streams.of_room(room) else {
            return Ok(());
        };
        match stream.purge().filter(subject).await {
            Ok(r) => {
                info!(room, purged = r.purged, "room purged from the stream");
                Ok(())
            }
            Err(e) => {
                warn!(room, error = %chatmesh_protocol::error::Chain(&e), "could not purge a deleted room from the stream");
                Err(ApiError::unavailable(
                    "the stream did not answer; repeat the deletion",
                ))
            }
        }
    }

    async fn delete_messages(&self, room: &str, state: &mut RoomDeletion) -> Result<(), ApiError> {
        let pairs = self
            .model()
            .store()
            .scan(keys::messages_of(room), Direction::Forward, MESSAGES_PAGE)
            .await?;
        let mut batch = WriteBatch::new();
        let mut gone = Vec::with_capacity(pairs.len());
        for (k, v) in &pairs {
            let m: StoredMessage = records::decode(k, v)?;
            if let Some(seq) = keys::seq_of_message(k) {
                Model::delete_mentions(&mut batch, room, seq, &m.mentions);
                if let Some(root) = m.thread_root {
                    Model::delete_reply(&mut batch, room, root, seq);
                }
                for file in &m.attachments {
                    batch.delete(keys::file_ref(room, &file.id, seq));
                }
                gone.push((room.to_owned(), seq));
            }
            batch.delete(k.clone());
        }
        self.model().write(batch).await?;
        if let Some(search) = self.inner.search.get() {
            if let Err(e) = search.remove(gone).await {
                warn!(room, error = %chatmesh_protocol::error::Chain(&e), "could not remove a deleted room's messages from the search index");
                return Err(ApiError::unavailable(
                    "the search index did not answer; repeat the deletion",
                ));
            }
        }
        state.messages += pairs.len() as u64;
        if pairs.len() < MESSAGES_PAGE {
            let store = self.model().store();
            store.delete_range(keys::reactions_all(room)).await?;
            store.delete_range(keys::replies_all(room)).await?;
            state.phase = DeletePhase::Files;
            state.resume = Vec::new();
        }
        Ok(())
    }

    async fn delete_cursors(&self, room: &str, state: &mut RoomDeletion) -> Result<(), ApiError> {
        let all = keys::cursors_of("");
        // Every cursor of every user: from the tag byte on.
        let all = all.start[..1].to_vec()..keys::prefix_end(&all.start[..1]);
        let start = if state.resume.is_empty() {
            all.start
        } else {
            state.resume.clone()
        };
        let pairs = self
            .model()
            .store()
            .scan(start..all.end, Direction::Forward, CURSORS_PAGE)
            .await?;
        let mut batch = WriteBatch::new();
        for (k, _) in &pairs {
            if keys::second_name(k) == Some(room) {
                batch.delete(k.clone());
                state.cursors += 1;
            }
        }
        self.model().write(batch).await?;
        match pairs.last() {
            Some((last, _)) if pairs.len() == CURSORS_PAGE => {
                let mut next = last.clone();
                next.push(0);
                state.resume = next;
            }
            _ => {
                state.phase = DeletePhase::Finish;
                state.resume = Vec::new();
            }
        }
        Ok(())
    }

    /// The last step: unless a late message or file appeared, drops stats, caches and the
    /// marker. A message acked after the stream was purged (its send passed the gateway's
    /// check before the deletion began) is first waited for in the store: a store writer
    /// further behind than the deletion took stored it after the marker went, and whoever
    /// created the name next found it in the new room's history. The room's subject is then
    /// purged again, so the stream keeps nothing of it either.
    async fn finish_deletion(
        &self,
        room: &str,
        state: &mut RoomDeletion,
    ) -> Result<bool, ApiError> {
        if let Some(tail) = self.inner.tail.get() {
            tail.caught_up(room, None, 0)
                .await
                .map_err(|e| {
                    match e.code {
                chatmesh_protocol::ErrorCode::Unavailable => ApiError::unavailable(
                    "the room's store is catching up with its last messages; repeat the deletion",
                ),
                _ => e,
            }
                })?;
        }
        let store = self.model().store();
        for late in [keys::messages_of(room), keys::files_of(room)] {
            if !store.scan(late, Direction::Forward, 1).await?.is_empty() {
                state.phase = DeletePhase::Messages;
                return Ok(false);
            }
        }
        self.purge_stream(room).await?;
        // Moderation records: at most `max_bans_per_room` bans, the mutes of members, and
        // when members were removed by others (at most one per user ever added).
        store.delete_range(keys::bans_after(room, None)).await?;
        store.delete_range(keys::mutes_of(room)).await?;
        store.delete_range(keys::removals_of(room)).await?;
        let mut batch = WriteBatch::new();
        batch.delete(keys::ban_count(room));
        batch.delete(keys::stats(room));
        // Again: a topic or name set by a request that checked the room just before the
        // first step is not left for whoever creates the name next.
        batch.delete(keys::topic(room));
        batch.delete(keys::room_name(room));
        batch.delete(deleting(room));
        self.model().write(batch).await?;
        self.caches().room_deleted(room).await;
        info!(
            room,
            members = state.members,
            messages = state.messages,
            "room deleted"
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chatmesh_protocol::service::{CreateRoomRequest, DmRequest, RoomKind};
    use chatmesh_protocol::ErrorCode;

    use super::super::super::locks::KeyLocks;
    use super::*;
    use crate::cache::Caches;
    use crate::model::UserRecord;
    use crate::WorkerConfig;

    async fn service(dir: &std::path::Path) -> Service {
        let cfg = WorkerConfig {
            data_dir: dir.to_path_buf(),
            ..WorkerConfig::default()
        };
        let model = Model::new(crate::open_store(&cfg).await.expect("store"));
        let mut batch = WriteBatch::new();
        for user in ["alice", "bob"] {
            let rec = UserRecord {
                hash: String::new(),
                created: 1,
                gen: 0,
                display_name: None,
                disabled: false,
                invitations_only: false,
            };
            Model::put_user(&mut batch, user, &rec);
        }
        model.write(batch).await.expect("users");
        Service::new(model, Arc::new(Caches::new(cfg.cache_sizes())), &cfg, None).expect("service")
    }

    /// Steps until done, each within 10 s (a step that waits for a lock for ever fails).
    async fn delete(svc: &Service, room: &str) {
        for _ in 0..20 {
            let step = tokio::time::timeout(Duration::from_secs(10), svc.delete_step(room, "root"));
            let (_, progress) = step
                .await
                .unwrap_or_else(|_| panic!("a deletion step of {room} never returned"))
                .expect("step");
            if progress.done {
                return;
            }
        }
        panic!("the deletion of {room} did not finish in 20 steps");
    }

    /// Two rooms whose room and files lock stripes cross (one room's room stripe is the
    /// other's files stripe, and the other way round), deleted at once: each files phase took
    /// its files stripe under its room stripe, so each waited for the other's for good
    /// (holding both rooms' locks and two service permits).
    #[tokio::test]
    async fn deleting_two_rooms_whose_locks_cross_finishes() {
        let dir = tempfile::tempdir().expect("dir");
        let svc = service(dir.path()).await;
        let a = "r0".to_owned();
        let b = (1..1_000_000)
            .map(|i| format!("r{i}"))
            .find(|b| {
                KeyLocks::stripe(LOCK_ROOM, &a, "") == KeyLocks::stripe(LOCK_FILES, b, "")
                    && KeyLocks::stripe(LOCK_ROOM, b, "") == KeyLocks::stripe(LOCK_FILES, &a, "")
            })
            .expect("a room whose stripes cross r0's");
        for room in [&a, &b] {
            let req = CreateRoomRequest {
                room: room.clone(),
                kind: RoomKind::Public,
                actor: "alice".into(),
            };
            svc.room_create(req).await.expect("created");
            for _ in 0..10 {
                let (_, progress) = svc.delete_step(room, "root").await.expect("step");
                if progress.phase == DeletePhase::Files.name() {
                    break;
                }
            }
        }
        // a's step waits for a's room stripe, held here; b's takes its own and then waits
        // for its files stripe, the same one, behind a's (tokio's mutexes are fair); then
        // a's goes first, and each held what the other waited for.
        let held = svc.inner.locks.lock_unbounded(LOCK_ROOM, &a, "").await;
        let step = |room: &String| {
            let (svc, room) = (svc.clone(), room.clone());
            tokio::spawn(async move { svc.delete_step(&room, "root").await.map(|_| ()) })
        };
        let first = step(&a);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = step(&b);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
        let both = futures::future::join(first, second);
        let (one, two) = tokio::time::timeout(Duration::from_secs(10), both)
            .await
            .expect("the two files phases waited for each other");
        for step in [one, two] {
            step.expect("task").expect("step");
        }
        delete(&svc, &a).await;
        delete(&svc, &b).await;
        assert!(svc.model().room(&b).await.expect("read").is_none());
    }

    /// A DM asked for while an admin deletes it is refused until the deletion is done (it
    /// was made again at once, and then emptied under its users); a topic set meanwhile
    /// goes with the room.
    #[tokio::test]
    async fn a_dm_being_deleted_is_not_made_again() {
        let dir = tempfile::tempdir().expect("dir");
        let svc = service(dir.path()).await;
        let ask = || DmRequest {
            a: "alice".into(),
            b: "bob".into(),
        };
        let room = svc.dm(ask()).await.expect("dm").room;
        let (started, _) = svc.delete_step(&room, "root").await.expect("first step");
        assert!(started);
        let refused = svc
            .dm(ask())
            .await
            .expect_err("made again during its deletion");
        assert_eq!(refused.code, ErrorCode::Conflict, "{refused:?}");
        let mut batch = WriteBatch::new();
        Model::put_topic(&mut batch, &room, Some("left behind"));
        svc.model().write(batch).await.expect("topic");
        delete(&svc, &room).await;
        assert_eq!(svc.model().topic(&room).await.expect("read"), None);
        let again = svc.dm(ask()).await.expect("made again after its deletion");
        assert_eq!(again.room, room);
    }
}
