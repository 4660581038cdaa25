//! Reactions (issue 18, item 2) over a real mesh: each is a message of the room's order
//! (its own seq, acked, fanned out live, replayed once on resume), checked before it is
//! published, aggregated by the worker on its target (count and users, in history and in a
//! replay from the store), bounded per user and per message, and gone with a deleted target.

mod common;

use anyhow::Result;
use chatmesh_protocol::reactions::{MAX_KEYS_PER_MESSAGE, MAX_PER_USER};
use chatmesh_workers::model::keys;
use chatmesh_workers::store::{Direction, KvStore};
use chatmesh_workers::{open_store, WorkerConfig};
use common::*;

/// (key, count, users) of message `seq` in `h`.
fn agg(h: &[Message], seq: u64) -> Vec<(String, u64, Vec<String>)> {
    h.iter()
        .find(|m| m.seq == seq)
        .expect("in history")
        .reactions
        .iter()
        .map(|r| (r.key.clone(), r.count, r.users.clone()))
        .collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn refused(c: &mut Client, f: ClientFrame) -> Result<Option<ErrorCode>> {
    Ok(error_code(&c.request(f).await?))
}

/// A reaction reaches the other members live and adds up on its target in history (HTTP
/// and WebSocket) and in a replay from the store; a resend with its id is the same
/// message; a member away meanwhile gets each reaction and removal once on resume; what the
/// rules refuse never enters the room's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_reach_members_history_and_resume() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob, cat, dan) = (
        api.user("ann").await?,
        api.user("bob").await?,
        api.user("cat").await?,
        api.user("dan").await?,
    );
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    let mut c = Client::login(&mesh.ws_url(), &cat).await?;
    for x in [&mut a, &mut b, &mut c] {
        x.join("hall").await?;
    }
    let first = a.post("hall", "m1", "lunch?").await?;
    for x in [&mut a, &mut b, &mut c] {
        x.messages("hall", 1).await?;
    }
    let up = acked(
        &b.request(frame::react("hall", "r1", first.seq, "👍", false))
            .await?,
    );
    let live = a.messages("hall", 1).await?.remove(0);
    assert_eq!(
        (live.seq, live.prev, live.react_to, live.body.as_str()),
        (up.seq, first.seq, Some(first.seq), "👍")
    );
    let again = acked(
        &b.request(frame::react("hall", "r1", first.seq, "👍", false))
            .await?,
    );
    assert_eq!(
        (again.seq, again.ts),
        (up.seq, up.ts),
        "dedupe by client id"
    );
    acked(
        &c.request(frame::react("hall", "c1", first.seq, "👍", false))
            .await?,
    );
    acked(
        &c.request(frame::react("hall", "c2", first.seq, "🎉", false))
            .await?,
    );

    // Refused before publishing.
    let r = |id: &str, seq: u64, key: &str, un: bool| frame::react("hall", id, seq, key, un);
    assert_eq!(
        refused(&mut b, r("x1", first.seq, "👍", false)).await?,
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        refused(&mut b, r("x2", first.seq, "🎉", true)).await?,
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        refused(&mut b, r("x3", 999, "👍", false)).await?,
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        refused(&mut b, r("x4", up.seq, "👍", false)).await?,
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        refused(&mut b, r("x5", first.seq, "a b", false)).await?,
        Some(ErrorCode::BadRequest)
    );
    let mut d = Client::login(&mesh.ws_url(), &dan).await?;
    assert_eq!(
        refused(&mut d, r("x6", first.seq, "👍", false)).await?,
        Some(ErrorCode::Forbidden)
    );

    let (s, v) = api
        .call("GET", "/v1/rooms/hall/messages", Some(&dan), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    let h = http_page(&v).messages;
    assert_chain(&h, 0);
    assert_eq!(
        agg(&h, first.seq),
        [
            ("👍".into(), 2, names(&["bob", "cat"])),
            ("🎉".into(), 1, names(&["cat"]))
        ]
    );
    assert_eq!(h.len(), 4, "refused reactions are not in the order");

    // bob is away while cat takes one off and ann adds one: on resume, each once.
    let seen = h.last().map_or(0, |m| m.seq);
    b.close().await;
    let off = acked(
        &c.request(frame::react("hall", "c3", first.seq, "🎉", true))
            .await?,
    );
    let on = acked(
        &a.request(frame::react("hall", "a1", first.seq, "👀", false))
            .await?,
    );
    let end = a.post("hall", "end", "end").await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    b.request(frame::join_since("hall", seen)).await?;
    let got = b.messages("hall", 3).await?;
    assert_chain(&got, seen);
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [off.seq, on.seq, end.seq]);
    assert_eq!(got[0].unreact_to, Some(first.seq));

    // A replay from the store carries the aggregate too.
    let mut late = Client::login(&mesh.ws_url(), &dan).await?;
    late.request(frame::join_since("hall", 0)).await?;
    let replayed = late.messages("hall", end.seq as usize).await?;
    assert_eq!(
        agg(&replayed, first.seq),
        [
            ("👍".into(), 2, names(&["bob", "cat"])),
            ("👀".into(), 1, names(&["ann"]))
        ]
    );
    mesh.stop().await
}

/// A user puts at most MAX_PER_USER reactions on a message, a message holds at most
/// MAX_KEYS_PER_MESSAGE keys (`forbidden` beyond, a key already there still fine); a
/// deleted message loses its reactions (history and store) and takes no more (`not_found`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_are_bounded_and_go_with_their_message() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob, cat) = (
        api.user("ann").await?,
        api.user("bob").await?,
        api.user("cat").await?,
    );
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    let mut c = Client::login(&mesh.ws_url(), &cat).await?;
    for x in [&mut a, &mut b, &mut c] {
        x.join("hall").await?;
    }
    let m = a.post("hall", "m1", "vote").await?;
    let react = |id: String, key: String| frame::react("hall", &id, m.seq, &key, false);
    for i in 0..MAX_PER_USER {
        acked(&a.request(react(format!("a{i}"), format!("a{i}"))).await?);
    }
    let over = a.request(react("a-over".into(), "x".into())).await?;
    assert_eq!(error_code(&over), Some(ErrorCode::Forbidden), "{over:?}");
    // bob fills the message; a removal makes room for one of his own again.
    let rest = MAX_KEYS_PER_MESSAGE - MAX_PER_USER;
    for i in 0..rest {
        acked(&b.request(react(format!("b{i}"), format!("b{i}"))).await?);
    }
    acked(
        &b.request(frame::react("hall", "b-un", m.seq, "b0", true))
            .await?,
    );
    acked(&b.request(react("b-re".into(), "b0".into())).await?);
    let (s, v) = api
        .call("GET", "/v1/rooms/hall/messages", Some(&bob), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    let h = http_page(&v).messages;
    assert_eq!(agg(&h, m.seq).len(), MAX_KEYS_PER_MESSAGE);
    let full = c.request(react("c-new".into(), "new".into())).await?;
    assert_eq!(error_code(&full), Some(ErrorCode::Forbidden), "{full:?}");
    acked(&c.request(react("c-a0".into(), "a0".into())).await?);

    acked(&a.request(frame::delete("hall", "del", m.seq)).await?);
    let refused = c.request(react("c-late".into(), "a1".into())).await?;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::NotFound),
        "{refused:?}"
    );
    let h = page(&c.request(frame::history("hall")).await?).messages;
    let tomb = h.iter().find(|x| x.seq == m.seq).expect("tombstone");
    assert!(tomb.deleted && tomb.reactions.is_empty(), "{tomb:?}");
    mesh.stop().await?;

    let cfg = WorkerConfig {
        data_dir: dir.path().join("store"),
        ..WorkerConfig::default()
    };
    let store = open_store(&cfg).await?;
    let left = store
        .scan(keys::reactions_all("hall"), Direction::Forward, 1_000)
        .await?;
    assert!(
        left.is_empty(),
        "reaction records of a deleted message: {left:?}"
    );
    Ok(())
}
