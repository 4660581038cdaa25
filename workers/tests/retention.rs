//! Retention on a real (fjall) store: max messages and max age, globally and per room, in
//! bounded steps; the remaining messages keep their `prev`, so a resume from a deleted seq
//! is answered with a first message whose `prev` is above the cursor (the gateway's `gap`).

mod common;

use std::collections::BTreeMap;

use chatmesh_protocol::mentions::Mentions;
use chatmesh_protocol::message::Payload;
use chatmesh_protocol::service::{HistoryRequest, RoomKind};
use chatmesh_workers::model::{HistoryQuery, Model, RoomMeta};
use chatmesh_workers::retention::{Retention, RetentionConfig, RoomRetention};
use chatmesh_workers::store::WriteBatch;
use chatmesh_workers::writer::{store_batch, Delivery};
use common::Local;

const DAY_MS: u64 = 86_400_000;
const NOW: u64 = 1_800_000_000_000;

/// Stores `n` messages in each room, round robin, message i stamped `NOW - (n - i) minutes`;
/// every even seq mentions `@room`.
async fn fill(l: &Local, rooms: &[&str], n: u64) -> BTreeMap<String, Vec<u64>> {
    let mut cp = 0;
    let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let total = n * rooms.len() as u64;
    let batch: Vec<Delivery> = (1..=total)
        .map(|seq| {
            let room = rooms[(seq % rooms.len() as u64) as usize];
            seqs.entry(room.to_owned()).or_default().push(seq);
            let ts = NOW - (total - seq) * 60_000;
            let p = Payload {
                id: format!("m{seq}"),
                from: "ann".into(),
                ts,
                body: "b".into(),
                attachments: Vec::new(),
                mentions: Mentions {
                    users: Vec::new(),
                    room: seq % 2 == 0,
                },
                ..Default::default()
            };
            Delivery {
                seq,
                message: Some((room.to_owned(), p)),
            }
        })
        .collect();
    for chunk in batch.chunks(500) {
        store_batch(&l.model, &l.caches, 0, &mut cp, chunk.to_vec())
            .await
            .unwrap();
    }
    seqs
}

/// Message `seq` of room `r` from ann at `ts`, an edit of `edit_of` if given.
fn ann_in_r(seq: u64, ts: u64, body: &str, edit_of: Option<u64>) -> Delivery {
    Delivery {
        seq,
        message: Some((
            "r".to_owned(),
            Payload {
                id: format!("m{seq}"),
                from: "ann".into(),
                ts,
                body: body.into(),
                edit_of,
                ..Default::default()
            },
        )),
    }
}

async fn stored(l: &Local, room: &str) -> Vec<(u64, u64)> {
    let q = HistoryQuery {
        before: None,
        after: Some(0),
        limit: 100_000,
    };
    let (msgs, _) = l.model.history(room, q).await.unwrap();
    msgs.iter().map(|m| (m.seq, m.prev)).collect()
}

async fn run_to_end(r: &mut Retention) -> u64 {
    let mut deleted = 0;
    for _ in 0..10_000 {
        let s = r.step(NOW).await.unwrap();
        deleted += s.deleted;
        if s.wrapped && s.deleted == 0 {
            return deleted;
        }
    }
    panic!("retention never settled");
}

/// A global max_messages keeps the newest N of every room, deleting at most
/// `deletes_per_step` per step; the kept messages' prev chain is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_messages_keeps_the_newest_in_bounded_steps() {
    let l = Local::new().await;
    let seqs = fill(&l, &["a", "b", "c"], 1_000).await;
    let before: Vec<(u64, u64)> = stored(&l, "a").await;
    let mentions = |room: &'static str| {
        let model = l.model.clone();
        async move { model.mentions_after(room, "bob", 0, 100_000).await.unwrap() }
    };
    let even = |s: &[u64]| s.iter().filter(|s| *s % 2 == 0).count() as u64;
    assert_eq!(mentions("a").await, even(&seqs["a"]));
    let cfg = RetentionConfig {
        max_messages: 100,
        deletes_per_step: 250,
        ..RetentionConfig::default()
    };
    let mut r = Retention::new(l.model.clone(), Some(l.caches.clone()), cfg);
    let first = r.step(NOW).await.unwrap();
    assert_eq!(
        first.deleted, 250,
        "one step deletes at most deletes_per_step"
    );
    assert_eq!(run_to_end(&mut r).await + 250, 3 * 900);
    for room in ["a", "b", "c"] {
        let left = stored(&l, room).await;
        assert_eq!(left.len(), 100);
        assert_eq!(
            left.iter().map(|m| m.0).collect::<Vec<_>>(),
            seqs[room][900..]
        );
        assert_eq!(
            l.model.stats(room).await.unwrap().count,
            1_000,
            "positions stay valid"
        );
    }
    assert_eq!(
        stored(&l, "a").await,
        before[900..],
        "seq and prev of kept messages unchanged"
    );
    for room in ["a", "b", "c"] {
        assert_eq!(
            mentions(room).await,
            even(&seqs[room][900..]),
            "the mention records of deleted messages went with them"
        );
    }
}

/// Max age deletes what is older, oldest first; a per-room override wins over the global
/// value, and 0 in an override means "keep everything".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_with_per_room_overrides() {
    let l = Local::new().await;
    fill(&l, &["old", "keep", "short"], 600).await;
    // 1,800 messages one minute apart: the newest 10 hours are younger than 600 minutes.
    let mut rooms = BTreeMap::new();
    rooms.insert(
        "keep".to_owned(),
        RoomRetention {
            max_age_secs: Some(0),
            max_messages: None,
        },
    );
    rooms.insert(
        "short".to_owned(),
        RoomRetention {
            max_age_secs: None,
            max_messages: Some(10),
        },
    );
    let cfg = RetentionConfig {
        max_age_secs: 600 * 60,
        rooms,
        ..RetentionConfig::default()
    };
    let mut r = Retention::new(l.model.clone(), None, cfg);
    run_to_end(&mut r).await;
    let old = stored(&l, "old").await;
    assert_eq!(
        old.len(),
        201,
        "the last 600 minutes (both ends kept) of 1,800"
    );
    assert_eq!(stored(&l, "keep").await.len(), 600);
    assert_eq!(
        stored(&l, "short").await.len(),
        10,
        "max age and max messages both apply"
    );
    let l2 = Local::new().await;
    fill(&l2, &["x"], 10).await;
    let cfg = RetentionConfig {
        max_age_secs: 30 * DAY_MS / 1_000,
        ..RetentionConfig::default()
    };
    assert_eq!(
        run_to_end(&mut Retention::new(l2.model.clone(), None, cfg)).await,
        0
    );
}

/// A resume from a deleted seq: the history service returns the first kept message, whose
/// `prev` is above the cursor, which is what makes the gateway send `gap`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_into_a_deleted_range_reveals_the_gap() {
    let l = Local::new().await;
    let seqs = fill(&l, &["room-1", "room-2"], 300).await;
    let cfg = RetentionConfig {
        max_messages: 50,
        ..RetentionConfig::default()
    };
    run_to_end(&mut Retention::new(
        l.model.clone(),
        Some(l.caches.clone()),
        cfg,
    ))
    .await;
    let mut b = WriteBatch::new();
    let meta = RoomMeta {
        kind: RoomKind::Public,
        owner: Some("ann".into()),
        created: 1,
    };
    Model::put_room(&mut b, "room-1", &meta);
    l.model.write(b).await.unwrap();
    let cursor = seqs["room-1"][10];
    let req = HistoryRequest {
        room: "room-1".into(),
        before: None,
        after: Some(cursor),
        limit: 20,
    };
    let page = l.service.history(req).await.unwrap();
    let first = &page.messages[0];
    assert_eq!(first.seq, seqs["room-1"][250]);
    assert_eq!(
        first.prev, seqs["room-1"][249],
        "prev points into the deleted range"
    );
    assert!(
        first.prev > cursor,
        "prev above the cursor: the client is told about the gap"
    );
}

/// Retention racing the store writer: an edit of the oldest message, stored while retention
/// deletes that message, never brings it back. (The writer read its target before the delete
/// and wrote the edited target after it: a message below deleted ones, outside the kept
/// suffix, for ever.) Many rounds, the two started at shifted moments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_racing_retention_never_brings_its_target_back() {
    const ROUNDS: u64 = 200;
    let l = Local::new().await;
    fill(&l, &["a"], 100).await;
    let cfg = RetentionConfig {
        max_messages: 100,
        ..RetentionConfig::default()
    };
    let mut r = Retention::new(l.model.clone(), Some(l.caches.clone()), cfg);
    let mut cp = 100u64;
    let plain = |seq: u64| Delivery {
        seq,
        message: Some((
            "a".to_owned(),
            common::payload(&format!("m{seq}"), "ann", "b"),
        )),
    };
    for round in 0..ROUNDS {
        let seq = cp + 1;
        store_batch(
            &l.model,
            &l.caches,
            0,
            &mut cp,
            vec![plain(seq), plain(seq + 1)],
        )
        .await
        .unwrap();
        // The two oldest are now beyond max_messages: retention deletes them whatever comes.
        let target = stored(&l, "a").await[0].0;
        let mut edit = common::payload(&format!("e{round}"), "ann", "edited");
        edit.edit_of = Some(target);
        let batch = vec![Delivery {
            seq: cp + 1,
            message: Some(("a".to_owned(), edit)),
        }];
        let (model, caches) = (l.model.clone(), l.caches.clone());
        let writer = tokio::spawn(async move {
            for _ in 0..round % 5 {
                tokio::task::yield_now().await;
            }
            store_batch(&model, &caches, 0, &mut cp, batch)
                .await
                .unwrap();
            cp
        });
        let trim = tokio::spawn(async move {
            for _ in 0..round % 3 {
                tokio::task::yield_now().await;
            }
            r.step(NOW).await.unwrap();
            r
        });
        cp = writer.await.unwrap();
        r = trim.await.unwrap();
        let left = stored(&l, "a").await;
        assert!(
            left.iter().all(|m| m.0 != target),
            "round {round}: message {target} was deleted by retention and written back by \
             the edit (kept: {:?}..)",
            &left[..3]
        );
        assert!(
            left.windows(2).all(|w| w[1].1 == w[0].0),
            "round {round}: the kept messages are a suffix of the room"
        );
    }
}

/// A worker trims only the rooms of the partitions it owns: another worker's store writer is
/// writing the others, outside this one's gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_rooms_this_worker_owns_are_trimmed() {
    let l = Local::new().await;
    fill(&l, &["mine", "theirs"], 50).await;
    let cfg = RetentionConfig {
        max_messages: 10,
        ..RetentionConfig::default()
    };
    let owns: chatmesh_workers::files::Owns = std::sync::Arc::new(|room: &str| room == "mine");
    let mut r = Retention::new(l.model.clone(), Some(l.caches.clone()), cfg).only_owned(owns);
    assert_eq!(run_to_end(&mut r).await, 40);
    assert_eq!(stored(&l, "mine").await.len(), 10);
    assert_eq!(
        stored(&l, "theirs").await.len(),
        50,
        "not this worker's room"
    );
}

/// A room whose stats record cannot be read (written by another version, damaged) is
/// skipped: the rooms after it in key order are trimmed all the same. Before, every step
/// failed at that room, and no room after it was ever trimmed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_it_cannot_read_holds_up_no_other_room() {
    let l = Local::new().await;
    fill(&l, &["a", "b", "c"], 200).await;
    let mut batch = WriteBatch::new();
    batch.put(chatmesh_workers::model::keys::stats("a"), b"junk".to_vec());
    l.model.write(batch).await.unwrap();
    let cfg = RetentionConfig {
        max_messages: 100,
        deletes_per_step: 50,
        ..RetentionConfig::default()
    };
    let mut r = Retention::new(l.model.clone(), Some(l.caches.clone()), cfg);
    assert_eq!(run_to_end(&mut r).await, 2 * 100);
    assert_eq!(stored(&l, "a").await.len(), 200, "left as it is");
    for room in ["b", "c"] {
        assert_eq!(stored(&l, room).await.len(), 100, "{room} trimmed");
    }
}

/// An edit outlives the message it edited when retention trims the message (the edit's seq
/// is later): its body, the message's later version, goes with the message, since its
/// author can no longer delete it (the target is gone). Before, it stayed in history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edits_of_a_trimmed_message_lose_their_bodies() {
    let l = Local::new().await;
    let mut cp = 0;
    let send = |seq: u64, body: &str, edit_of: Option<u64>| ann_in_r(seq, NOW, body, edit_of);
    let batch = vec![
        send(1, "hello", None),
        send(2, "hello, I live at 1 Main St", Some(1)),
        send(3, "later", None),
    ];
    store_batch(&l.model, &l.caches, 0, &mut cp, batch)
        .await
        .unwrap();
    let cfg = RetentionConfig {
        max_messages: 2,
        ..RetentionConfig::default()
    };
    let mut r = Retention::new(l.model.clone(), Some(l.caches.clone()), cfg);
    assert_eq!(run_to_end(&mut r).await, 1);
    let left = stored(&l, "r").await;
    assert_eq!(left.iter().map(|m| m.0).collect::<Vec<_>>(), [2, 3]);
    let edit = l
        .model
        .message("r", 2)
        .await
        .unwrap()
        .expect("the edit stays");
    assert_eq!(edit.body, "", "the trimmed message's later version is gone");
    let kept = l.model.message("r", 3).await.unwrap().expect("kept");
    assert_eq!(kept.body, "later");
}

/// A reader whose cursor's messages retention has all removed still has its place: one new
/// message is one unread. Bob's cursor (seq 12) was set while the store had stored up to
/// seq 10 only (so it holds no exact position); retention then removed seqs 1-12. Before,
/// his unread count was every message the room ever had (13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_whose_messages_were_trimmed_keeps_its_place() {
    use chatmesh_protocol::service::{
        AddMemberRequest, CreateRoomRequest, ListRoomsRequest, Role, SetCursorRequest,
    };
    let l = Local::new().await;
    common::users(&l, &["ann", "bob"]).await;
    let create = CreateRoomRequest {
        room: "r".into(),
        kind: RoomKind::Private,
        actor: "ann".into(),
    };
    l.service.room_create(create).await.unwrap();
    let add = AddMemberRequest {
        room: "r".into(),
        user: "bob".into(),
        role: Role::Member,
        actor: "ann".into(),
        invited_at: None,
    };
    l.service.member_add(add).await.unwrap();
    let mut cp = 0;
    let send = |seq: u64, ts: u64| ann_in_r(seq, ts, "hello", None);
    let old = NOW - 2 * DAY_MS;
    let first: Vec<Delivery> = (1..=10).map(|seq| send(seq, old)).collect();
    store_batch(&l.model, &l.caches, 0, &mut cp, first)
        .await
        .unwrap();
    let read = SetCursorRequest {
        room: "r".into(),
        user: "bob".into(),
        seq: 12,
    };
    l.service.cursor(read).await.unwrap();
    let later = vec![send(11, old), send(12, old), send(13, NOW)];
    store_batch(&l.model, &l.caches, 0, &mut cp, later)
        .await
        .unwrap();
    let cfg = RetentionConfig {
        max_age_secs: DAY_MS / 1_000,
        ..RetentionConfig::default()
    };
    let mut r = Retention::new(l.model.clone(), Some(l.caches.clone()), cfg);
    assert_eq!(run_to_end(&mut r).await, 12);
    let list = ListRoomsRequest {
        user: "bob".into(),
        after: None,
    };
    let rooms = l.service.rooms_list(list).await.unwrap();
    let room = rooms.rooms.iter().find(|r| r.room == "r").expect("listed");
    assert_eq!(room.unread, 1, "{room:?}");
}
