//! Reactions, replies and threads in the store writer and the services, in process (no
//! NATS): reactions aggregate on their target (count and users, in history), bounded per
//! user and per message; what the rules refuse when stored is a void marker; the gateway's
//! check refuses with the right codes and answers resends with the stored seq; a delete or
//! retention removes the reaction records; a reply joins its root's thread (a reply to a
//! reply too), the root counts it, the thread pages and counts unread replies per reader.

mod common;

use chatmesh_protocol::message::{Change, Message};
use chatmesh_protocol::reactions::{MAX_KEYS_PER_MESSAGE, MAX_PER_USER};
use chatmesh_protocol::service::*;
use chatmesh_protocol::ErrorCode;
use chatmesh_workers::model::keys;
use chatmesh_workers::retention::{Retention, RetentionConfig};
use chatmesh_workers::store::{Direction, KvStore};
use chatmesh_workers::writer::{store_batch, Delivery};
use common::{code, create, payload, users, Local};

/// Message `seq` of room `r` from `from`: a reaction, a removal, or a reply when asked.
fn d(seq: u64, from: &str, body: &str, change: Option<Change>) -> Delivery {
    let mut p = payload(&format!("m{seq}"), from, body);
    p.ts = seq * 10;
    match change {
        Some(Change::Edit(t)) => p.edit_of = Some(t),
        Some(Change::Delete(t)) => p.delete_of = Some(t),
        Some(Change::React(t)) => p.react_to = Some(t),
        Some(Change::Unreact(t)) => p.unreact_to = Some(t),
        None => {}
    }
    Delivery {
        seq,
        message: Some(("r".to_owned(), p)),
    }
}

fn reply(seq: u64, from: &str, to: u64) -> Delivery {
    let mut p = payload(&format!("m{seq}"), from, &format!("reply {seq}"));
    p.ts = seq * 10;
    p.reply_to = Some(to);
    Delivery {
        seq,
        message: Some(("r".to_owned(), p)),
    }
}

async fn store(l: &Local, cp: &mut u64, batch: Vec<Delivery>) {
    store_batch(&l.model, &l.caches, 0, cp, batch)
        .await
        .unwrap();
}

async fn history(l: &Local) -> Vec<Message> {
    let req = HistoryRequest {
        room: "r".into(),
        before: None,
        after: None,
        limit: 100,
    };
    l.service.history(req).await.unwrap().messages
}

fn at(msgs: &[Message], seq: u64) -> &Message {
    msgs.iter().find(|m| m.seq == seq).expect("seq in history")
}

/// (key, count, users) of message `seq`'s reactions.
fn agg(msgs: &[Message], seq: u64) -> Vec<(String, u64, Vec<String>)> {
    at(msgs, seq)
        .reactions
        .iter()
        .map(|r| (r.key.clone(), r.count, r.users.clone()))
        .collect()
}

fn own(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A room `r` owned by ann, with bob an admin and carl a member (dan is no member).
async fn room() -> Local {
    let l = Local::new().await;
    users(&l, &["ann", "bob", "carl", "dan"]).await;
    create(&l, "r", RoomKind::Private, "ann").await;
    for (user, role) in [("bob", Role::Admin), ("carl", Role::Member)] {
        let req = AddMemberRequest {
            room: "r".into(),
            user: user.into(),
            role,
            actor: "ann".into(),
            invited_at: None,
        };
        l.service.member_add(req).await.unwrap();
    }
    l
}

async fn records_of(l: &Local, seq: u64) -> usize {
    l.store
        .scan(keys::reactions_of("r", seq), Direction::Forward, 1000)
        .await
        .unwrap()
        .len()
}

/// Reactions add up on their target in history (served from the recent page, which they
/// refresh), removals take them off, and the reactions themselves keep the chain.
#[tokio::test]
async fn reactions_aggregate_on_their_target() {
    let l = room().await;
    let mut cp = 0;
    store(&l, &mut cp, vec![d(1, "ann", "hi", None)]).await;
    assert!(agg(&history(&l).await, 1).is_empty(), "page loaded first");
    store(
        &l,
        &mut cp,
        vec![
            d(2, "bob", "👍", Some(Change::React(1))),
            d(3, "carl", "👍", Some(Change::React(1))),
            d(4, "carl", "🎉", Some(Change::React(1))),
        ],
    )
    .await;
    let h = history(&l).await;
    assert_eq!(
        agg(&h, 1),
        [
            ("👍".into(), 2, own(&["bob", "carl"])),
            ("🎉".into(), 1, own(&["carl"]))
        ]
    );
    assert_eq!(at(&h, 3).react_to, Some(1));
    assert_eq!(at(&h, 3).body, "👍");
    store(
        &l,
        &mut cp,
        vec![d(5, "bob", "👍", Some(Change::Unreact(1)))],
    )
    .await;
    store(
        &l,
        &mut cp,
        vec![d(6, "carl", "🎉", Some(Change::Unreact(1)))],
    )
    .await;
    let h = history(&l).await;
    assert_eq!(agg(&h, 1), [("👍".into(), 1, own(&["carl"]))]);
    assert_eq!(at(&h, 5).unreact_to, Some(1));
    assert_eq!(
        h.iter().map(|m| m.prev).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    assert!(h.iter().all(|m| !m.void));
}

/// What the rules refuse when stored is a void marker that changes nothing.
#[tokio::test]
async fn refused_reactions_are_void_markers() {
    let l = room().await;
    let mut cp = 0;
    store(
        &l,
        &mut cp,
        vec![
            d(1, "ann", "hi", None),
            d(2, "dan", "👍", Some(Change::React(1))), // not a member
            d(3, "bob", "👍", Some(Change::Unreact(1))), // never reacted
            d(4, "bob", "👍", Some(Change::React(99))), // no such message
            d(5, "bob", "👍", Some(Change::React(1))), // fine
            d(6, "bob", "👍", Some(Change::React(1))), // twice
            d(7, "carl", "x", Some(Change::React(5))), // a reaction gets none
            d(8, "ann", "", Some(Change::Delete(1))),
            d(9, "carl", "👍", Some(Change::React(1))), // deleted target
        ],
    )
    .await;
    let h = history(&l).await;
    let void: Vec<u64> = h.iter().filter(|m| m.void).map(|m| m.seq).collect();
    assert_eq!(void, [2, 3, 4, 6, 7, 9]);
    assert!(at(&h, 1).deleted && at(&h, 1).reactions.is_empty());
    assert_eq!(records_of(&l, 1).await, 0, "a delete takes the records");
}

/// At most MAX_PER_USER keys per user and MAX_KEYS_PER_MESSAGE keys per message, also when
/// the writer decides.
#[tokio::test]
async fn reactions_are_bounded_when_stored() {
    let l = room().await;
    let mut cp = 0;
    let mut batch = vec![d(1, "ann", "hi", None)];
    let mut seq = 1;
    for i in 0..=MAX_PER_USER {
        seq += 1;
        batch.push(d(seq, "bob", &format!("b{i}"), Some(Change::React(1))));
    }
    for i in 0..MAX_PER_USER {
        seq += 1;
        batch.push(d(seq, "carl", &format!("c{i}"), Some(Change::React(1))));
    }
    store(&l, &mut cp, batch).await;
    let h = history(&l).await;
    assert_eq!(at(&h, 1).reactions.len(), MAX_KEYS_PER_MESSAGE);
    let void: Vec<u64> = h.iter().filter(|m| m.void).map(|m| m.seq).collect();
    // bob's 11th; with carl's 10 the message is full.
    assert_eq!(void, [2 + MAX_PER_USER as u64]);
    let check = ChangeCheckRequest {
        room: "r".into(),
        user: "ann".into(),
        id: "a1".into(),
        change: Change::React(1),
        key: "new".into(),
    };
    assert_eq!(
        code(l.service.change_check(check.clone()).await),
        ErrorCode::Forbidden
    );
    let ok = ChangeCheckRequest {
        key: "b0".into(),
        ..check
    };
    assert_eq!(
        l.service.change_check(ok).await.unwrap(),
        ChangeCheck::Allowed,
        "a key already on the message is fine"
    );
}

/// The gateway's check: codes for what is refused, the stored seq for a resend.
#[tokio::test]
async fn the_check_refuses_and_finds_resends() {
    let l = room().await;
    let mut cp = 0;
    store(
        &l,
        &mut cp,
        vec![
            d(1, "ann", "hi", None),
            d(2, "bob", "👍", Some(Change::React(1))),
            d(3, "bob", "👍", Some(Change::Unreact(1))),
            d(4, "ann", "gone", None),
            d(5, "ann", "", Some(Change::Delete(4))),
        ],
    )
    .await;
    let check = |user: &str, id: &str, change: Change, key: &str| {
        l.service.change_check(ChangeCheckRequest {
            room: "r".into(),
            user: user.into(),
            id: id.into(),
            change,
            key: key.into(),
        })
    };
    assert_eq!(
        code(check("dan", "x", Change::React(1), "👍").await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(check("carl", "x", Change::React(4), "👍").await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(check("carl", "x", Change::React(77), "👍").await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(check("carl", "x", Change::React(2), "👍").await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(check("carl", "x", Change::Unreact(1), "👍").await),
        ErrorCode::NotFound
    );
    assert_eq!(
        check("bob", "m2", Change::React(1), "👍").await.unwrap(),
        ChangeCheck::Duplicate { seq: 2, ts: 20 }
    );
    assert_eq!(
        check("bob", "m3", Change::Unreact(1), "👍").await.unwrap(),
        ChangeCheck::Duplicate { seq: 3, ts: 30 }
    );
    assert_eq!(
        check("bob", "new", Change::React(1), "👍").await.unwrap(),
        ChangeCheck::Allowed
    );
}

/// Retention takes the reaction records of what it trims (taken-off ones too) and the
/// thread records of trimmed replies.
#[tokio::test]
async fn retention_removes_reaction_and_thread_records() {
    let l = room().await;
    let mut cp = 0;
    store(
        &l,
        &mut cp,
        vec![
            d(1, "ann", "hi", None),
            d(2, "bob", "👍", Some(Change::React(1))),
            d(3, "carl", "👍", Some(Change::React(1))),
            d(4, "carl", "👍", Some(Change::Unreact(1))),
            reply(5, "bob", 1),
            d(6, "ann", "keep", None),
            d(7, "bob", "👍", Some(Change::React(6))),
        ],
    )
    .await;
    assert_eq!(records_of(&l, 1).await, 2);
    let cfg = RetentionConfig {
        max_messages: 2,
        ..RetentionConfig::default()
    };
    let mut r = Retention::new(l.model.clone(), Some(l.caches.clone()), cfg);
    while r.step(0).await.unwrap().deleted > 0 {}
    assert_eq!(records_of(&l, 1).await, 0);
    assert_eq!(
        records_of(&l, 6).await,
        1,
        "a kept message keeps its reactions"
    );
    let replies = l
        .store
        .scan(keys::replies_all("r"), Direction::Forward, 10)
        .await
        .unwrap();
    assert!(replies.is_empty(), "{replies:?}");
}

async fn thread(l: &Local, user: &str, root: u64, after: Option<u64>, limit: u32) -> ThreadPage {
    l.service
        .thread(ThreadRequest {
            room: "r".into(),
            root,
            user: user.into(),
            after,
            limit,
        })
        .await
        .unwrap()
}

/// A reply joins the thread of its target's root; the root counts its replies; a thread
/// pages like history and counts each reader's unread replies above its thread cursor.
#[tokio::test]
async fn replies_make_threads_with_their_own_paging_and_unread() {
    let l = room().await;
    let mut cp = 0;
    store(
        &l,
        &mut cp,
        vec![
            d(1, "ann", "root", None),
            reply(2, "bob", 1),
            d(3, "carl", "other", None),
            reply(4, "carl", 2), // a reply to a reply: the thread of 1
        ],
    )
    .await;
    store(&l, &mut cp, vec![reply(5, "ann", 1), reply(6, "bob", 4)]).await;
    let h = history(&l).await;
    let t = at(&h, 1).thread.expect("the root's summary");
    assert_eq!((t.count, t.last_seq, t.last_ts), (4, 6, 60));
    assert_eq!(at(&h, 4).reply_to, Some(2));
    assert_eq!(at(&h, 4).thread_root, Some(1));
    assert!(at(&h, 3).thread.is_none());
    let page = thread(&l, "ann", 1, None, 3).await;
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!((seqs, page.more), (vec![2, 4, 5], true));
    assert_eq!(page.root.as_ref().map(|m| m.body.as_str()), Some("root"));
    assert_eq!((page.unread, page.read), (3, 0), "ann's own reply is read");
    let next = thread(&l, "ann", 1, Some(5), 3).await;
    assert_eq!(
        (
            next.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            next.more
        ),
        (vec![6], false)
    );
    let read = ThreadReadRequest {
        room: "r".into(),
        root: 1,
        user: "ann".into(),
        seq: 4,
    };
    l.service.thread_read(read.clone()).await.unwrap();
    l.service
        .thread_read(ThreadReadRequest { seq: 2, ..read })
        .await
        .unwrap();
    let page = thread(&l, "ann", 1, None, 100).await;
    assert_eq!(
        (page.unread, page.read),
        (1, 4),
        "the cursor never moves back"
    );
    assert_eq!(thread(&l, "carl", 1, None, 100).await.unread, 3);
    // The check: the root of a reply's target; bad targets refused.
    let check = |to: u64| {
        l.service.reply_check(ReplyCheckRequest {
            room: "r".into(),
            user: "carl".into(),
            reply_to: to,
        })
    };
    assert_eq!(check(4).await.unwrap().root, 1);
    assert_eq!(check(3).await.unwrap().root, 3);
    assert_eq!(code(check(99).await), ErrorCode::NotFound);
    store(
        &l,
        &mut cp,
        vec![
            d(7, "carl", "👍", Some(Change::React(3))),
            d(8, "carl", "", Some(Change::Delete(3))),
            d(9, "ann", "", Some(Change::Delete(1))),
        ],
    )
    .await;
    assert_eq!(code(check(7).await), ErrorCode::BadRequest);
    assert_eq!(code(check(3).await), ErrorCode::NotFound);
    // A deleted root's thread stays readable, the root a tombstone.
    let page = thread(&l, "carl", 1, None, 100).await;
    assert_eq!(page.messages.len(), 4);
    assert!(page
        .root
        .as_ref()
        .is_some_and(|r| r.deleted && r.thread.is_some()));
    assert_eq!(
        code(
            l.service
                .thread(ThreadRequest {
                    room: "r".into(),
                    root: 4,
                    user: "ann".into(),
                    after: None,
                    limit: 10,
                })
                .await
        ),
        ErrorCode::BadRequest,
        "a reply is no root"
    );
}

async fn unread(l: &Local, user: &str) -> u64 {
    let req = ListRoomsRequest {
        user: user.into(),
        after: None,
    };
    let rooms = l.service.rooms_list(req).await.unwrap().rooms;
    rooms.iter().find(|r| r.room == "r").expect("r").unread
}

/// Reactions are not unread: above a read cursor, only the other messages count.
#[tokio::test]
async fn reactions_do_not_count_as_unread() {
    let l = room().await;
    let mut cp = 0;
    store(
        &l,
        &mut cp,
        vec![
            d(1, "ann", "hi", None),
            d(2, "bob", "👍", Some(Change::React(1))),
            d(3, "ann", "👍", Some(Change::React(1))),
        ],
    )
    .await;
    assert_eq!(unread(&l, "carl").await, 1);
    let read = |seq: u64| SetCursorRequest {
        room: "r".into(),
        user: "carl".into(),
        seq,
    };
    l.service.cursor(read(1)).await.unwrap();
    assert_eq!(unread(&l, "carl").await, 0);
    store(
        &l,
        &mut cp,
        vec![
            d(4, "bob", "👍", Some(Change::Unreact(1))),
            reply(5, "bob", 1),
        ],
    )
    .await;
    assert_eq!(
        unread(&l, "carl").await,
        1,
        "a reply is unread, a removal is not"
    );
    l.service.cursor(read(4)).await.unwrap();
    assert_eq!(unread(&l, "carl").await, 1);
}

/// Export carries the aggregates and the reaction records; import rebuilds the thread
/// records, so the imported room answers the same thread page and reaction checks.
#[tokio::test]
async fn export_and_import_carry_reactions_and_threads() {
    let l = room().await;
    let mut cp = 0;
    store(
        &l,
        &mut cp,
        vec![
            d(1, "ann", "hi", None),
            d(2, "bob", "👍", Some(Change::React(1))),
            reply(3, "carl", 1),
        ],
    )
    .await;
    let mut out = Vec::new();
    chatmesh_workers::export::export_room(&l.model, "r", &mut out, 0, &mut |_| {})
        .await
        .unwrap();
    let l2 = Local::new().await;
    users(&l2, &["ann", "bob", "carl"]).await;
    chatmesh_workers::export::import_room(&l2.model, std::io::Cursor::new(out), 0, &mut |_| {})
        .await
        .unwrap();
    let h = history(&l2).await;
    assert_eq!(agg(&h, 1), [("👍".into(), 1, own(&["bob"]))]);
    let page = thread(&l2, "ann", 1, None, 10).await;
    assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [3]);
    let resend = ChangeCheckRequest {
        room: "r".into(),
        user: "bob".into(),
        id: "m2".into(),
        change: Change::React(1),
        key: "👍".into(),
    };
    assert_eq!(
        l2.service.change_check(resend).await.unwrap(),
        ChangeCheck::Duplicate { seq: 2, ts: 20 }
    );
}

/// A listed user taking a reaction back from a message with more reacting users than a
/// refill reads (1,024) refills the list from the first of them by name: the writer's cost
/// stays bounded however many react (before: every record on the message was read on each
/// such removal, which a few accounts could repeat at will). Here the earliest unlisted
/// reactor sorts after the first 1,024 names, so the list takes the next earliest of those.
#[tokio::test]
async fn a_refill_reads_a_bounded_number_of_reaction_records() {
    let l = room().await;
    let names: Vec<String> = (0..1_100).map(|i| format!("u{i:04}")).collect();
    let mut batch = chatmesh_workers::store::WriteBatch::new();
    for user in names.iter().map(String::as_str).chain(["z-early"]) {
        chatmesh_workers::model::Model::put_member(&mut batch, "r", user, Role::Member);
    }
    l.model.write(batch).await.unwrap();
    let mut cp = 0;
    store(&l, &mut cp, vec![d(1, "ann", "viral", None)]).await;
    // u0000..u0019 are listed; z-early reacts next, then everyone else.
    let order: Vec<&str> = names[..20]
        .iter()
        .map(String::as_str)
        .chain(["z-early"])
        .chain(names[20..].iter().map(String::as_str))
        .collect();
    let reactions: Vec<Delivery> = order
        .iter()
        .enumerate()
        .map(|(i, user)| d(2 + i as u64, user, "👍", Some(Change::React(1))))
        .collect();
    for chunk in reactions.chunks(300) {
        store(&l, &mut cp, chunk.to_vec()).await;
    }
    let first = || async {
        let req = HistoryRequest {
            room: "r".into(),
            before: Some(2),
            after: None,
            limit: 1,
        };
        l.service.history(req).await.unwrap().messages
    };
    let before = agg(&first().await, 1);
    assert_eq!(before[0].1, 1_101);
    assert_eq!(before[0].2, names[..20].to_vec());
    let next = 2 + order.len() as u64;
    store(
        &l,
        &mut cp,
        vec![d(next, "u0005", "👍", Some(Change::Unreact(1)))],
    )
    .await;
    let after = agg(&first().await, 1);
    let mut want: Vec<String> = names[..20]
        .iter()
        .filter(|u| *u != "u0005")
        .cloned()
        .collect();
    want.push("u0020".into());
    assert_eq!((after[0].1, &after[0].2), (1_100, &want));
}
