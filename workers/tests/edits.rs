//! Edits and deletes in the store writer and the services, in process (no NATS): an edit
//! rewrites its target's body and is listed in its versions; a delete leaves a tombstone
//! (body, earlier versions, the edits' bodies and the file references gone from the store)
//! and detaches the files whose last carrying message it took;
//! a change the rules refuse when stored becomes a void marker that keeps the `prev` chain;
//! the gateway's check answers a resent change with the stored seq.

mod common;

use chatmesh_protocol::files::Attachment;
use chatmesh_protocol::message::{Change, Edited, Message};
use chatmesh_protocol::service::*;
use chatmesh_protocol::ErrorCode;
use chatmesh_workers::store::{Direction, KvStore};
use chatmesh_workers::writer::{store_batch, Delivery};
use common::{code, create, payload, users, Local};

/// One delivery: message `seq` of room `r` from `from`, maybe a change.
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

/// A room `r` owned by ann, with bob an admin and carl a member.
async fn room() -> Local {
    let l = Local::new().await;
    users(&l, &["ann", "bob", "carl"]).await;
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

/// An edit replaces the body in history (served from the recent page, which the edit
/// refreshes), marks it edited, and lists every version; the chain holds edits too.
#[tokio::test]
async fn edits_show_the_latest_body_and_every_version() {
    let l = room().await;
    let mut cp = 0;
    store(&l, &mut cp, vec![d(1, "ann", "v0", None)]).await;
    assert_eq!(
        at(&history(&l).await, 1).body,
        "v0",
        "page loaded before the edit"
    );
    store(&l, &mut cp, vec![d(2, "ann", "v1", Some(Change::Edit(1)))]).await;
    // Same batch: the target and its edit.
    store(
        &l,
        &mut cp,
        vec![
            d(3, "carl", "c0", None),
            d(4, "carl", "c1", Some(Change::Edit(3))),
            d(5, "ann", "v2", Some(Change::Edit(1))),
        ],
    )
    .await;
    let h = history(&l).await;
    assert_eq!(
        h.iter().map(|m| m.prev).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    let m1 = at(&h, 1);
    assert_eq!(m1.body, "v2");
    assert_eq!(m1.edited, Some(Edited { seq: 5, ts: 50 }));
    assert_eq!(at(&h, 3).body, "c1");
    assert_eq!(at(&h, 2).edit_of, Some(1));
    assert_eq!(at(&h, 2).body, "v1", "an edit keeps its own body");
    let versions = l
        .service
        .edits(EditsRequest {
            room: "r".into(),
            seq: 1,
        })
        .await
        .unwrap()
        .versions;
    let bodies: Vec<(u64, &str)> = versions.iter().map(|v| (v.seq, v.body.as_str())).collect();
    assert_eq!(bodies, [(1, "v0"), (2, "v1"), (5, "v2")]);
}

/// Changes the rules refuse when stored (whatever a gateway checked) are void markers: they
/// keep their seq and `prev`, carry no body, and change nothing.
#[tokio::test]
async fn refused_changes_are_void_markers() {
    let l = room().await;
    let mut cp = 0;
    store(
        &l,
        &mut cp,
        vec![
            d(1, "ann", "mine", None),
            d(2, "bob", "hijack", Some(Change::Edit(1))), // not the author
            d(3, "carl", "", Some(Change::Delete(1))),    // a plain member
            d(4, "ann", "x", Some(Change::Edit(99))),     // no such message
            d(5, "ann", "x", Some(Change::Edit(2))),      // an edit is not editable
            d(6, "bob", "", Some(Change::Delete(1))),     // an admin: allowed
            d(7, "ann", "late", Some(Change::Edit(1))),   // target deleted
        ],
    )
    .await;
    let h = history(&l).await;
    assert_eq!(
        h.iter()
            .map(|m| (m.seq, m.prev, m.void))
            .collect::<Vec<_>>(),
        [
            (1, 0, false),
            (2, 1, true),
            (3, 2, true),
            (4, 3, true),
            (5, 4, true),
            (6, 5, false),
            (7, 6, true)
        ]
    );
    assert!(h.iter().filter(|m| m.void).all(|m| m.body.is_empty()));
    let m1 = at(&h, 1);
    assert!(
        m1.deleted && m1.body.is_empty() && m1.edited.is_none(),
        "{m1:?}"
    );
}

/// An edit refused when stored (here: its target deleted first, the edit's race lost) is
/// erased from the stream with the delete's target: its body is the text its author meant
/// to put in place of the deleted one, and the stream's files kept it for a gap fill to read.
/// A refused delete carries no text and is not erased.
#[tokio::test]
async fn a_refused_edit_is_erased_from_the_stream_too() {
    let l = room().await;
    let mut cp = 0;
    let batch = vec![
        d(1, "ann", "mine", None),
        d(2, "bob", "", Some(Change::Delete(1))),
        d(3, "ann", "late words", Some(Change::Edit(1))),
        d(4, "carl", "", Some(Change::Delete(1))),
    ];
    let mut erased = store_batch(&l.model, &l.caches, 0, &mut cp, batch)
        .await
        .unwrap();
    erased.sort();
    assert_eq!(erased, [("r".to_owned(), 1), ("r".to_owned(), 3)]);
    let h = history(&l).await;
    assert!(at(&h, 3).void && at(&h, 3).body.is_empty());
}

/// A delete erases the body, the versions, the edits' bodies and the file references from
/// the store itself, not only from what history shows.
#[tokio::test]
async fn deletes_erase_bodies_and_file_references() {
    let l = room().await;
    let mut cp = 0;
    let mut first = d(1, "ann", "secret-0", None);
    let file = Attachment {
        id: "f0123456789abcdef0123456789abcdef".into(),
        name: "secret.txt".into(),
        size: 3,
        content_type: "text/plain".into(),
        width: None,
        height: None,
    };
    if let Some((_, p)) = first.message.as_mut() {
        p.attachments = vec![file.clone()];
    }
    store(&l, &mut cp, vec![first]).await;
    assert_eq!(l.model.last_file_ref("r", &file.id).await.unwrap(), Some(1));
    store(
        &l,
        &mut cp,
        vec![
            d(2, "ann", "secret-1", Some(Change::Edit(1))),
            d(3, "ann", "kept", None),
        ],
    )
    .await;
    store(&l, &mut cp, vec![d(4, "ann", "", Some(Change::Delete(1)))]).await;
    assert_eq!(l.model.last_file_ref("r", &file.id).await.unwrap(), None);
    let h = history(&l).await;
    assert!(at(&h, 1).deleted && at(&h, 1).attachments.is_empty());
    assert_eq!(at(&h, 2).body, "", "the edit's body went with the message");
    assert_eq!(at(&h, 3).body, "kept");
    let e = l
        .service
        .edits(EditsRequest {
            room: "r".into(),
            seq: 1,
        })
        .await;
    assert_eq!(code(e), ErrorCode::NotFound);
    let everything = l
        .store
        .scan(Vec::new()..vec![0xff; 8], Direction::Forward, 100_000)
        .await
        .unwrap();
    for (k, v) in &everything {
        let text = String::from_utf8_lossy(v);
        assert!(
            !text.contains("secret"),
            "{}: {text}",
            String::from_utf8_lossy(k)
        );
    }
}

/// The gateway's check: the rules of the store writer, and a resend of a stored change
/// (same user and client id) answered with its seq and ts even once its target is deleted.
#[tokio::test]
async fn the_check_applies_the_rules_and_finds_resends() {
    let l = room().await;
    let mut cp = 0;
    store(&l, &mut cp, vec![d(1, "carl", "hi", None)]).await;
    let check = |user: &str, id: &str, change: Change| {
        l.service.change_check(ChangeCheckRequest {
            room: "r".into(),
            user: user.into(),
            id: id.into(),
            change,
            key: String::new(),
        })
    };
    assert_eq!(
        code(check("ann", "x", Change::Edit(1)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        check("ann", "x", Change::Delete(1)).await.unwrap(),
        ChangeCheck::Allowed,
        "the owner deletes"
    );
    assert_eq!(
        code(check("carl", "x", Change::Edit(7)).await),
        ErrorCode::NotFound
    );
    store(
        &l,
        &mut cp,
        vec![d(2, "carl", "hi!", Some(Change::Edit(1)))],
    )
    .await;
    store(&l, &mut cp, vec![d(3, "bob", "", Some(Change::Delete(1)))]).await;
    assert_eq!(
        check("carl", "m2", Change::Edit(1)).await.unwrap(),
        ChangeCheck::Duplicate { seq: 2, ts: 20 }
    );
    assert_eq!(
        check("bob", "m3", Change::Delete(1)).await.unwrap(),
        ChangeCheck::Duplicate { seq: 3, ts: 30 }
    );
    assert_eq!(
        code(check("carl", "new", Change::Edit(1)).await),
        ErrorCode::NotFound,
        "a deleted message is gone"
    );
    assert_eq!(
        code(check("carl", "new", Change::Delete(2)).await),
        ErrorCode::BadRequest
    );
}

/// The check refuses a change by someone who is no longer a member (the gateway's cached
/// access may be older than the removal), as for any send; a resend of a change stored
/// before the removal is still a duplicate. Before, carl's edit of his own message was
/// allowed after he was removed.
#[tokio::test]
async fn the_check_refuses_a_change_by_a_former_member() {
    let l = room().await;
    let mut cp = 0;
    store(
        &l,
        &mut cp,
        vec![
            d(1, "carl", "hi", None),
            d(2, "carl", "hi!", Some(Change::Edit(1))),
        ],
    )
    .await;
    let remove = RemoveMemberRequest {
        room: "r".into(),
        user: "carl".into(),
        actor: "ann".into(),
    };
    l.service.member_remove(remove).await.unwrap();
    let check = |id: &str, change: Change| {
        l.service.change_check(ChangeCheckRequest {
            room: "r".into(),
            user: "carl".into(),
            id: id.into(),
            change,
            key: String::new(),
        })
    };
    assert_eq!(
        code(check("new", Change::Edit(1)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(check("new", Change::Delete(1)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        check("m2", Change::Edit(1)).await.unwrap(),
        ChangeCheck::Duplicate { seq: 2, ts: 20 }
    );
}

/// Message `seq` of room `r` from ann carrying file `id`.
fn with_file(seq: u64, id: &str) -> Delivery {
    let mut m = d(seq, "ann", "", None);
    if let Some((_, p)) = m.message.as_mut() {
        p.attachments = vec![Attachment {
            id: id.into(),
            name: format!("{id}.txt"),
            size: 3,
            content_type: "text/plain".into(),
            width: None,
            height: None,
        }];
    }
    m
}

async fn detached(l: &Local, id: &str) -> bool {
    l.model.file_detached("r", id).await.unwrap()
}

/// A delete detaches a file (it answers 404 and cannot be attached again) only when it takes
/// the file's last carrying message: not while an older stored message carries it, nor when
/// a new message of the delete's own batch does; a message and its delete in one batch do.
#[tokio::test]
async fn a_delete_detaches_a_file_only_with_its_last_carrying_message() {
    let l = room().await;
    let mut cp = 0;
    let detached = |id| detached(&l, id);
    store(&l, &mut cp, vec![with_file(1, "fa"), with_file(2, "fa")]).await;
    store(&l, &mut cp, vec![with_file(3, "fb")]).await;

    store(&l, &mut cp, vec![d(4, "ann", "", Some(Change::Delete(1)))]).await;
    assert!(!detached("fa").await, "message 2 still carries it");
    let sent_again = vec![d(5, "ann", "", Some(Change::Delete(3))), with_file(6, "fb")];
    store(&l, &mut cp, sent_again).await;
    assert!(
        !detached("fb").await,
        "message 6 of the same batch carries it"
    );

    store(&l, &mut cp, vec![d(7, "ann", "", Some(Change::Delete(2)))]).await;
    assert!(detached("fa").await);
    let at_once = vec![with_file(8, "fc"), d(9, "ann", "", Some(Change::Delete(8)))];
    store(&l, &mut cp, at_once).await;
    assert!(detached("fc").await);
}

/// The late-resend check reads at most its byte budget of stored messages (here: ann's
/// copy lies past 30 KiB of others' large ones, found with a budget of 64 KiB, not with one
/// of 24 KiB), and lets the runtime's other tasks run between its pages: the embedded store
/// reads on the calling thread, and 10,000 of the largest messages took a runtime thread
/// for seconds (before, the ticker below was never polled during the look).
#[tokio::test(flavor = "current_thread")]
async fn a_late_resend_check_is_bounded_in_bytes_and_yields() {
    let l = room().await;
    let mut cp = 0;
    let big = "x".repeat(10 * 1024);
    let mut batch: Vec<Delivery> = (1..=3).map(|seq| d(seq, "bob", &big, None)).collect();
    batch.push(d(4, "ann", "mine", None));
    batch.extend((5..=505).map(|seq| d(seq, "carl", "short", None)));
    store(&l, &mut cp, batch).await;
    let found = |max_bytes: usize| l.model.sent_after("r", "ann", "m4", 0, (10_000, max_bytes));
    assert_eq!(found(64 * 1024).await.unwrap(), Some((4, 40)));
    assert_eq!(found(24 * 1024).await.unwrap(), None, "past the budget");

    let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ticker = {
        let polls = polls.clone();
        tokio::spawn(async move {
            loop {
                polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    // Not there: every page (100 messages) of the 505 is read.
    let none = l
        .model
        .sent_after("r", "ann", "zz", 0, (10_000, usize::MAX));
    assert_eq!(none.await.unwrap(), None);
    let polled = polls.load(std::sync::atomic::Ordering::Relaxed);
    ticker.abort();
    assert!(polled >= 4, "the ticker ran {polled} times during the look");
}
