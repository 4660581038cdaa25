//! The chat model on top of a backend: history paging both ways with an intact `prev` chain,
//! idempotent redelivery through the store writer, a large writer batch, members and the
//! mirror index, read cursors.

use chatmesh_protocol::message::{Message, Payload};
use chatmesh_protocol::service::Role;
use chatmesh_workers::cache::Caches;
use chatmesh_workers::model::{Cursor, HistoryQuery, Model};
use chatmesh_workers::store::{Direction, KvStore, Store, WriteBatch};
use chatmesh_workers::writer::{store_batch, Delivery};
use chatmesh_workers::WorkerConfig;

const ROOMS: [&str; 3] = ["alpha", "beta", "gamma-1"];

fn delivery(seq: u64, room: &str) -> Delivery {
    Delivery {
        seq,
        message: Some((
            room.to_owned(),
            Payload {
                id: format!("{room}-{seq}"),
                from: "ann".into(),
                ts: 1_700_000_000_000 + seq,
                body: format!("body {seq}"),
                attachments: Vec::new(),
                mentions: Default::default(),
                ..Default::default()
            },
        )),
    }
}

/// Stores seqs `from..=to` of partition 0 (rooms round robin) in batches of `per_batch`.
async fn deliver(
    model: &Model,
    caches: &Caches,
    cp: &mut u64,
    from: u64,
    to: u64,
    per_batch: usize,
) {
    let all: Vec<Delivery> = (from..=to)
        .map(|seq| delivery(seq, ROOMS[(seq % 3) as usize]))
        .collect();
    for chunk in all.chunks(per_batch) {
        store_batch(model, caches, 0, cp, chunk.to_vec())
            .await
            .unwrap();
    }
}

fn seqs_of(room: &str, to: u64) -> Vec<u64> {
    (1..=to)
        .filter(|s| ROOMS[(s % 3) as usize] == room)
        .collect()
}

fn check_chain(msgs: &[Message]) {
    for w in msgs.windows(2) {
        assert_eq!(w[1].prev, w[0].seq, "prev chain broken at {}", w[1].seq);
    }
}

fn q(before: Option<u64>, after: Option<u64>, limit: usize) -> HistoryQuery {
    HistoryQuery {
        before,
        after,
        limit,
    }
}

/// 2,000 messages over three rooms: paging back with `before` and forward with `after` both
/// return every message once, in order, with an intact `prev` chain.
pub async fn history_paging(s: Store) {
    let model = Model::new(s);
    let caches = Caches::new(WorkerConfig::default().cache_sizes());
    let mut cp = 0;
    deliver(&model, &caches, &mut cp, 1, 2_000, 100).await;
    assert_eq!(model.checkpoint(0).await.unwrap(), 2_000);
    for room in ROOMS {
        let want = seqs_of(room, 2_000);
        let mut back: Vec<Message> = Vec::new();
        let mut before = None;
        loop {
            let (page, more) = model.history(room, q(before, None, 37)).await.unwrap();
            before = page.first().map(|m| m.seq);
            back.splice(0..0, page);
            if !more {
                break;
            }
        }
        let mut fwd: Vec<Message> = Vec::new();
        let mut after = Some(0);
        loop {
            let (page, more) = model.history(room, q(None, after, 37)).await.unwrap();
            after = page.last().map(|m| m.seq);
            fwd.extend(page);
            if !more {
                break;
            }
        }
        assert_eq!(
            back.iter().map(|m| m.seq).collect::<Vec<_>>(),
            want,
            "{room} back"
        );
        assert_eq!(back, fwd, "{room}: both directions agree");
        assert_eq!(fwd[0].prev, 0);
        check_chain(&fwd);
        let (mid, _) = model
            .history(room, q(Some(want[20]), Some(want[9]), 100))
            .await
            .unwrap();
        assert_eq!(mid.iter().map(|m| m.seq).collect::<Vec<_>>(), want[10..20]);
        let latest = model.latest(room, 5).await.unwrap();
        assert_eq!(latest.last().map(|m| m.seq), want.last().copied());
        assert_eq!(model.stats(room).await.unwrap().count, want.len() as u64);
    }
    assert!(model
        .history("nobody", q(None, Some(0), 10))
        .await
        .unwrap()
        .0
        .is_empty());
}

/// A crash after some batches: a new writer (fresh caches) redelivered from an older
/// checkpoint stores every message once, byte for byte as before, and goes on.
pub async fn redelivery(s: Store) {
    let model = Model::new(s.clone());
    let mut cp = 0;
    deliver(
        &model,
        &Caches::new(WorkerConfig::default().cache_sizes()),
        &mut cp,
        1,
        300,
        64,
    )
    .await;
    let msgs = chatmesh_workers::model::keys::messages_of("alpha");
    let before = s
        .scan(msgs.clone(), Direction::Forward, 10_000)
        .await
        .unwrap();
    // The process died: caches are gone, and JetStream redelivers from an older point.
    let caches = Caches::new(WorkerConfig::default().cache_sizes());
    let mut old = 100;
    deliver(&model, &caches, &mut old, 101, 400, 50).await;
    let after = s.scan(msgs, Direction::Forward, 10_000).await.unwrap();
    assert_eq!(
        after[after.len() - before.len()..],
        before[..],
        "rewrite changed nothing"
    );
    for room in ROOMS {
        let (all, _) = model.history(room, q(None, Some(0), 10_000)).await.unwrap();
        assert_eq!(
            all.iter().map(|m| m.seq).collect::<Vec<_>>(),
            seqs_of(room, 400)
        );
        check_chain(&all);
        let n: Vec<u64> = all.iter().map(|m| m.seq).collect();
        assert_eq!(n.len() as u64, model.stats(room).await.unwrap().count);
    }
}

/// One writer batch of 5,000 messages (15,000+ keys with stats) lands whole.
pub async fn large_writer_batch(s: Store) {
    let model = Model::new(s);
    let caches = Caches::new(WorkerConfig::default().cache_sizes());
    let mut cp = 0;
    deliver(&model, &caches, &mut cp, 1, 5_000, 5_000).await;
    let (all, more) = model
        .history("beta", q(None, Some(0), 10_000))
        .await
        .unwrap();
    assert!(!more);
    assert_eq!(all.len(), seqs_of("beta", 5_000).len());
    check_chain(&all);
}

/// Members and the rooms-of-a-user mirror move together; cursors are per (user, room).
pub async fn members_and_cursors(s: Store) {
    let model = Model::new(s);
    let mut b = WriteBatch::new();
    for i in 0..300 {
        Model::put_member(&mut b, "big", &format!("u{i:03}"), Role::Member);
    }
    for i in 0..50 {
        Model::put_member(&mut b, &format!("room-{i:02}"), "ann", Role::Owner);
    }
    model.write(b).await.unwrap();
    let members = model.members("big", 1_000).await.unwrap();
    assert_eq!(members.len(), 300);
    assert_eq!(members[0], ("u000".to_owned(), Role::Member));
    assert_eq!(model.members("big", 10).await.unwrap().len(), 10);
    let rooms = model.rooms_of("ann", 1_000).await.unwrap();
    assert_eq!(rooms.len(), 50);
    assert_eq!(
        model.role("room-07", "ann").await.unwrap(),
        Some(Role::Owner)
    );
    let mut b = WriteBatch::new();
    Model::delete_member(&mut b, "room-07", "ann");
    model.write(b).await.unwrap();
    assert_eq!(model.role("room-07", "ann").await.unwrap(), None);
    assert_eq!(model.rooms_of("ann", 1_000).await.unwrap().len(), 49);
    assert!(model.members("room-07", 10).await.unwrap().is_empty());
    let mut b = WriteBatch::new();
    for (i, room) in ["a", "b", "c"].into_iter().enumerate() {
        let c = Cursor {
            seq: 10 * i as u64,
            n: i as u64,
            quiet: 0,
            exact: true,
        };
        Model::put_cursor(&mut b, "ann", room, &c);
    }
    Model::put_cursor(
        &mut b,
        "bob",
        "a",
        &Cursor {
            seq: 99,
            n: 9,
            quiet: 0,
            exact: false,
        },
    );
    model.write(b).await.unwrap();
    let cursors = model.cursors_of("ann", 10).await.unwrap();
    assert_eq!(
        cursors.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(
        model.cursor("bob", "a").await.unwrap().map(|c| c.seq),
        Some(99)
    );
    assert_eq!(model.cursor("bob", "b").await.unwrap(), None);
}
