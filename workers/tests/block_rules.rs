//! Blocks in process (no NATS): blocking and unblocking, the list by pages, the bound per
//! user, and what a block does to DMs (no new DM with the blocker, no sends in the DM the
//! two share) and nothing more (the blocker still opens it; other users are not affected).

mod common;

use chatmesh_protocol::blocks::{
    BlockQuery, BlocksRequest, SetBlockRequest, MAX_BLOCKS, MAX_BLOCKS_PAGE,
};
use chatmesh_protocol::service::{DmRequest, RoomUserRequest};
use chatmesh_protocol::ErrorCode;
use chatmesh_workers::model::records::BlockRecord;
use chatmesh_workers::model::Model;
use chatmesh_workers::store::WriteBatch;
use common::{code, users, Local};

fn set(user: &str, other: &str, blocked: bool) -> SetBlockRequest {
    SetBlockRequest {
        user: user.into(),
        other: other.into(),
        blocked,
    }
}

fn page(user: &str, after: Option<&str>, limit: u32) -> BlocksRequest {
    BlocksRequest {
        user: user.into(),
        after: after.map(str::to_owned),
        limit,
    }
}

async fn blocked(l: &Local, user: &str, other: &str) -> bool {
    let q = BlockQuery {
        user: user.into(),
        other: other.into(),
    };
    l.service.block_get(q).await.unwrap().blocked
}

/// Blocking is per (user, other) and one-way; twice is once; unblocking what is not blocked
/// is `not_found`; unknown users and oneself are refused; the list pages by name.
#[tokio::test]
async fn blocks_are_set_listed_and_lifted() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann", "bob", "cat", "dan"]).await;
    for other in ["dan", "bob", "cat"] {
        s.block_set(set("ann", other, true)).await.unwrap();
    }
    s.block_set(set("ann", "bob", true)).await.unwrap();
    assert!(blocked(&l, "ann", "bob").await && !blocked(&l, "bob", "ann").await);
    assert_eq!(
        code(s.block_set(set("ann", "nobody", true)).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(s.block_set(set("ann", "ann", true)).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(s.block_set(set("bob", "ann", false)).await),
        ErrorCode::NotFound
    );

    let first = s.blocks_list(page("ann", None, 2)).await.unwrap();
    let names: Vec<&str> = first.blocks.iter().map(|b| b.user.as_str()).collect();
    assert_eq!((names, first.more), (vec!["bob", "cat"], true));
    assert!(first.blocks.iter().all(|b| b.ts > 0));
    let rest = s.blocks_list(page("ann", Some("cat"), 2)).await.unwrap();
    let names: Vec<&str> = rest.blocks.iter().map(|b| b.user.as_str()).collect();
    assert_eq!((names, rest.more), (vec!["dan"], false));
    for limit in [0, MAX_BLOCKS_PAGE + 1] {
        assert_eq!(
            code(s.blocks_list(page("ann", None, limit)).await),
            ErrorCode::BadRequest
        );
    }

    s.block_set(set("ann", "bob", false)).await.unwrap();
    assert!(!blocked(&l, "ann", "bob").await);
    let left = s.blocks_list(page("ann", None, 10)).await.unwrap();
    assert_eq!(left.blocks.len(), 2);
}

/// A user blocks at most `MAX_BLOCKS` others (`conflict` beyond, whether the name has an
/// account or not); unblocking one makes room.
#[tokio::test]
async fn a_user_blocks_a_bounded_number_of_others() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann", "bob"]).await;
    // The bound counts records, so they are written directly (no accounts needed for them).
    let mut batch = WriteBatch::new();
    for n in 0..MAX_BLOCKS {
        Model::put_block(
            &mut batch,
            "ann",
            &format!("u{n:04}"),
            &BlockRecord { ts: 1 },
        );
    }
    l.model.write(batch).await.unwrap();
    let e = s.block_set(set("ann", "bob", true)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("unblock one first"), "{}", e.message);
    // A full list answers the same for a name without an account: it tells no one which
    // names exist.
    let e = s.block_set(set("ann", "nobody", true)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "{}", e.message);
    s.block_set(set("ann", "u0000", false)).await.unwrap();
    s.block_set(set("ann", "bob", true)).await.unwrap();
}

/// A blocked user opens no DM with the blocker and cannot send in the one they share
/// (its access says `blocked`; it still reads); the blocker still opens the DM; an unblock
/// undoes both; a third user is not affected.
#[tokio::test]
async fn a_block_closes_dms_to_the_blocked_user() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann", "bob", "cat"]).await;
    let dm = |a: &str, b: &str| DmRequest {
        a: a.into(),
        b: b.into(),
    };
    let room = s.dm(dm("bob", "ann")).await.unwrap().room;
    let access = |user: &str| RoomUserRequest {
        room: room.clone(),
        user: user.into(),
    };
    assert!(!s.access(access("bob")).await.unwrap().blocked);

    s.block_set(set("ann", "bob", true)).await.unwrap();
    let e = s.dm(dm("bob", "ann")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    let bob = s.access(access("bob")).await.unwrap();
    assert!(bob.blocked && bob.can_read(), "{bob:?}");
    assert!(!s.access(access("ann")).await.unwrap().blocked);
    assert_eq!(s.dm(dm("ann", "bob")).await.unwrap().room, room);
    s.dm(dm("cat", "ann")).await.unwrap();

    s.block_set(set("ann", "bob", false)).await.unwrap();
    assert!(!s.access(access("bob")).await.unwrap().blocked);
    assert_eq!(s.dm(dm("bob", "ann")).await.unwrap().room, room);
}
