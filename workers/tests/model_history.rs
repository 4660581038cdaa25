//! The chat model in process (no NATS): history paging in both directions, idempotent
//! rewrites of messages, read cursors and unread counts.

mod common;

use chatmesh_protocol::service::*;
use chatmesh_protocol::ErrorCode;
use chatmesh_workers::model::HistoryQuery;
use common::{code, create, users, Local};

fn hist(room: &str, before: Option<u64>, after: Option<u64>, limit: u32) -> HistoryRequest {
    HistoryRequest {
        room: room.into(),
        before,
        after,
        limit,
    }
}

/// Paging back with `before` and forward with `after` visits every message once, in order,
/// with `more` true exactly until the end; cache and store answer every query alike.
#[tokio::test]
async fn history_pages_both_ways_with_more() {
    let l = Local::new().await;
    create(&l, "r", RoomKind::Public, "ann").await;
    let mut cp = 0;
    // Room r gets the odd seqs 1..=499, room o the even ones: r's seqs are not contiguous.
    for chunk in (1..=500u64).collect::<Vec<_>>().chunks(64) {
        let msgs: Vec<(u64, &str, &str)> = chunk
            .iter()
            .map(|&s| (s, if s % 2 == 1 { "r" } else { "o" }, "hi"))
            .collect();
        l.deliver(0, &mut cp, &msgs).await;
    }
    let want: Vec<u64> = (1..=499).step_by(2).collect();

    let mut back = Vec::new();
    let mut before = None;
    loop {
        let page = l
            .service
            .history(hist("r", before, None, 40))
            .await
            .unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first");
        for m in &page.messages {
            assert_eq!(m.prev, m.seq.saturating_sub(2), "prev chain of {}", m.seq);
        }
        back.splice(0..0, seqs.iter().copied());
        before = seqs.first().copied();
        if !page.more {
            break;
        }
    }
    assert_eq!(back, want);

    let mut fwd = Vec::new();
    let mut after = Some(0);
    loop {
        let page = l.service.history(hist("r", None, after, 33)).await.unwrap();
        fwd.extend(page.messages.iter().map(|m| m.seq));
        after = fwd.last().copied();
        if !page.more {
            break;
        }
    }
    assert_eq!(fwd, want);

    let win = l
        .service
        .history(hist("r", Some(21), Some(9), 100))
        .await
        .unwrap();
    let seqs: Vec<u64> = win.messages.iter().map(|m| m.seq).collect();
    assert_eq!((seqs, win.more), (vec![11, 13, 15, 17, 19], false));
    assert!(l
        .service
        .history(hist("r", Some(1), None, 5))
        .await
        .unwrap()
        .messages
        .is_empty());

    for (before, after, limit) in [
        (None, None, 100),
        (None, None, 1),
        (Some(499), None, 100),
        (Some(300), None, 7),
        (None, Some(400), 100),
        (None, Some(2), 5),
        (Some(450), Some(380), 10),
    ] {
        let svc = l
            .service
            .history(hist("r", before, after, limit))
            .await
            .unwrap();
        let q = HistoryQuery {
            before,
            after,
            limit: limit as usize,
        };
        let (msgs, more) = l.model.history("r", q).await.unwrap();
        assert_eq!(
            (svc.messages, svc.more),
            (msgs, more),
            "{before:?} {after:?} {limit}"
        );
    }
    assert_eq!(
        code(l.service.history(hist("r", None, None, 0)).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(l.service.history(hist("r", None, None, 101)).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(l.service.history(hist("nope", None, None, 5)).await),
        ErrorCode::NotFound
    );
}

/// Delivering a message again (behind the checkpoint, or with a lost checkpoint) changes
/// nothing, and new messages chain on after the last stored one.
#[tokio::test]
async fn rewriting_messages_is_idempotent() {
    let l = Local::new().await;
    create(&l, "r", RoomKind::Public, "ann").await;
    let mut cp = 0;
    l.deliver(3, &mut cp, &[(1, "r", "a"), (2, "r", "b"), (3, "r", "c")])
        .await;
    let before = l.service.history(hist("r", None, None, 10)).await.unwrap();
    let mut lost = 0; // as if the checkpoint had not been stored
    l.deliver(3, &mut lost, &[(2, "r", "x"), (3, "r", "y")])
        .await;
    l.deliver(3, &mut cp, &[(2, "r", "x"), (3, "r", "y"), (4, "r", "d")])
        .await;
    assert_eq!(cp, 4);
    assert_eq!(l.model.checkpoint(3).await.unwrap(), 4);
    let after = l.service.history(hist("r", None, None, 10)).await.unwrap();
    assert_eq!(after.messages[..3], before.messages[..]);
    assert_eq!(after.messages[3].prev, 3);
    assert_eq!(after.messages[3].body, "d");
    let stats = l.model.stats("r").await.unwrap();
    assert_eq!((stats.last_seq, stats.count), (4, 4));
}

/// Cursors only move forward and unread counts the stored messages above them, also for a
/// cursor set ahead of what is stored.
#[tokio::test]
async fn cursors_move_forward_and_drive_unread() {
    let l = Local::new().await;
    users(&l, &["ann"]).await;
    create(&l, "r", RoomKind::Public, "ann").await;
    let mut cp = 0;
    let msgs: Vec<(u64, &str, &str)> = (1..=10).map(|s| (s * 10, "r", "x")).collect();
    l.deliver(0, &mut cp, &msgs).await;
    let unread = |l: &Local| {
        let svc = l.service.clone();
        async move {
            let list = svc
                .rooms_list(ListRoomsRequest {
                    user: "ann".into(),
                    after: None,
                })
                .await
                .unwrap();
            list.rooms.iter().find(|r| r.room == "r").unwrap().unread
        }
    };
    let set = |seq: u64| SetCursorRequest {
        room: "r".into(),
        user: "ann".into(),
        seq,
    };
    assert_eq!(unread(&l).await, 10);
    l.service.cursor(set(45)).await.unwrap();
    assert_eq!(unread(&l).await, 6);
    l.service.cursor(set(20)).await.unwrap();
    assert_eq!(unread(&l).await, 6, "cursors never move back");
    l.service.cursor(set(100)).await.unwrap();
    assert_eq!(unread(&l).await, 0);
    l.service.cursor(set(150)).await.unwrap();
    l.deliver(
        0,
        &mut cp,
        &[(120, "r", "x"), (150, "r", "x"), (160, "r", "x")],
    )
    .await;
    assert_eq!(unread(&l).await, 1, "only seq 160 is above the cursor");
    assert_eq!(
        code(
            l.service
                .cursor(SetCursorRequest {
                    room: "zz".into(),
                    ..set(1)
                })
                .await
        ),
        ErrorCode::NotFound
    );
}
