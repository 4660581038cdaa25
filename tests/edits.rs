//! Edits and deletes (issue 18, part 1) over a real mesh: each is a message of the room's
//! order (its own seq, acked, fanned out live, replayed on resume, in history), checked
//! before it is published, applied by the worker to the message it refers to.

mod common;

use anyhow::Result;
use chatmesh_protocol::service::EditHistory;
use chatmesh_workers::store::{Direction, KvStore};
use chatmesh_workers::{open_store, WorkerConfig};
use common::*;
use serde_json::json;

/// The message frames of `room` that arrive up to and including the one with `body`
/// (`marker`), each seq once: the test fails on a duplicate seq or a broken chain.
async fn until_marker(
    c: &mut Client,
    room: &str,
    since: u64,
    marker: &str,
) -> Result<Vec<Message>> {
    let mut got = Vec::new();
    loop {
        let m = c.messages(room, 1).await?.remove(0);
        let end = m.body == marker;
        got.push(m);
        if end {
            assert_chain(&got, since);
            return Ok(got);
        }
    }
}

/// Waits until the worker erased `want` messages from the stream (the metric of this test's
/// process: nextest runs each test alone).
async fn erased_reaches(api: &Api, want: f64) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, v) = api.call("GET", "/metrics", None, None).await?;
        let text = v.as_str().unwrap_or_default().to_owned();
        let n: f64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("chatmesh_worker_erased_total "))
            .filter_map(|n| n.trim().parse::<f64>().ok())
            .sum();
        if n >= want {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "erased {n} of {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// An edit by its author reaches the other members live, shows in history as the new body
/// with `edited`, and lists both versions; an edit by anyone else is `forbidden`, of an
/// edit `bad_request`, of an unknown seq `not_found`; resending an edit with its id gets
/// the same seq; a member who was away gets the edit exactly once on resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reach_members_history_and_resume() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("hall").await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    b.join("hall").await?;

    let first = a.post("hall", "m1", "helo").await?;
    assert_eq!(b.messages("hall", 1).await?[0].body, "helo");
    let edit = acked(
        &a.request(frame::edit("hall", "e1", first.seq, "hello"))
            .await?,
    );
    assert!(edit.seq > first.seq);
    let live = b.messages("hall", 1).await?.remove(0);
    assert_eq!(
        (live.seq, live.prev, live.edit_of, live.body.as_str()),
        (edit.seq, first.seq, Some(first.seq), "hello")
    );

    // Dedupe by client id: the same edit again is the same message.
    let again = acked(
        &a.request(frame::edit("hall", "e1", first.seq, "hello"))
            .await?,
    );
    assert_eq!((again.seq, again.ts), (edit.seq, edit.ts));

    let refused = b
        .request(frame::edit("hall", "e2", first.seq, "mine now"))
        .await?;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::Forbidden),
        "{refused:?}"
    );
    let refused = a.request(frame::edit("hall", "e3", edit.seq, "x")).await?;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::BadRequest),
        "{refused:?}"
    );
    let refused = a.request(frame::edit("hall", "e4", 999, "x")).await?;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::NotFound),
        "{refused:?}"
    );

    let (s, v) = api
        .call("GET", "/v1/rooms/hall/messages", Some(&bob), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    let h = http_page(&v).messages;
    assert_chain(&h, 0);
    let m1 = h.iter().find(|m| m.seq == first.seq).expect("the message");
    assert_eq!(m1.body, "hello");
    assert_eq!(m1.edited.map(|e| (e.seq, e.ts)), Some((edit.seq, edit.ts)));
    let path = format!("/v1/rooms/hall/messages/{}/edits", first.seq);
    let (s, v) = api.call("GET", &path, Some(&bob), None).await?;
    assert_eq!(s, 200, "{v}");
    let versions: EditHistory = serde_json::from_value(v)?;
    let bodies: Vec<&str> = versions.versions.iter().map(|v| v.body.as_str()).collect();
    assert_eq!(bodies, ["helo", "hello"]);

    // bob is away while ann edits twice and deletes; on resume he gets each change once.
    let seen = edit.seq;
    b.close().await;
    let e2 = acked(
        &a.request(frame::edit("hall", "e5", first.seq, "hello!"))
            .await?,
    );
    let other = a.post("hall", "m2", "oops").await?;
    let del = acked(&a.request(frame::delete("hall", "d1", other.seq)).await?);
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    b.request(frame::join_since("hall", seen)).await?;
    a.post("hall", "end", "end").await?;
    let got = until_marker(&mut b, "hall", seen, "end").await?;
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs[..3], [e2.seq, other.seq, del.seq]);
    assert_eq!(got[0].edit_of, Some(first.seq));
    assert_eq!(got[2].delete_of, Some(other.seq));
    mesh.stop().await
}

/// Deletes: by the author and by an admin, not by a plain member (`forbidden`); a deleted
/// message cannot be edited (`not_found`); history and a replay from the store show
/// tombstones; and the body is gone from the store itself (every key scanned), from a room
/// export, and from the JetStream log (its files on disk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_leave_tombstones_and_erase_bodies() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob, cat) = (
        api.user("ann").await?,
        api.user("bob").await?,
        api.user("cat").await?,
    );
    api.room(&ann, "team", "private").await?;
    for (user, role) in [("bob", "admin"), ("cat", "member")] {
        let body = json!({"user": user, "role": role});
        let (s, v) = api
            .call("POST", "/v1/rooms/team/members", Some(&ann), Some(body))
            .await?;
        assert_eq!(s, 204, "{v}");
    }
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    let mut c = Client::login(&mesh.ws_url(), &cat).await?;
    for x in [&mut a, &mut b, &mut c] {
        x.join("team").await?;
    }
    let secret = a.post("team", "a1", "secret-ann").await?;
    a.request(frame::edit("team", "a2", secret.seq, "secret-ann-edited"))
        .await?;
    let cats = c.post("team", "c1", "secret-cat").await?;
    let kept = a.post("team", "a3", "kept").await?;

    let refused = c.request(frame::delete("team", "c2", secret.seq)).await?;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::Forbidden),
        "{refused:?}"
    );
    acked(&c.request(frame::delete("team", "c3", cats.seq)).await?);
    let by_admin = acked(&b.request(frame::delete("team", "b1", secret.seq)).await?);
    let live = a
        .wait_for(|f| matches!(f, ServerFrame::Message(m) if m.seq == by_admin.seq))
        .await?;
    assert!(matches!(live, ServerFrame::Message(m) if m.delete_of == Some(secret.seq)));
    let refused = a
        .request(frame::edit("team", "a4", secret.seq, "back"))
        .await?;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::NotFound),
        "{refused:?}"
    );
    // A resent delete is the same message, though its target is gone now.
    let again = acked(&b.request(frame::delete("team", "b1", secret.seq)).await?);
    assert_eq!(again.seq, by_admin.seq);

    let h = page(&a.request(frame::history("team")).await?).messages;
    assert_chain(&h, 0);
    let at = |seq: u64| h.iter().find(|m| m.seq == seq).expect("in history");
    for seq in [secret.seq, cats.seq] {
        assert!(at(seq).deleted && at(seq).body.is_empty(), "{:?}", at(seq));
    }
    assert_eq!(at(kept.seq).body, "kept");
    assert!(h.iter().all(|m| !m.body.contains("secret")), "{h:?}");
    let path = format!("/v1/rooms/team/messages/{}/edits", secret.seq);
    let (s, _) = api.call("GET", &path, Some(&ann), None).await?;
    assert_eq!(s, 404);

    // A resume from the start is served from the store: tombstones, no bodies.
    let mut late = Client::login(&mesh.ws_url(), &cat).await?;
    late.request(frame::join_since("team", 0)).await?;
    let replayed = late.messages("team", h.len()).await?;
    assert_eq!(replayed, h);
    // The two deleted messages and the edit of one are erased from the stream too.
    erased_reaches(&api, 3.0).await?;
    mesh.stop().await?;
    let holds = |bytes: &[u8], what: &[u8]| bytes.windows(what.len()).any(|w| w == what);
    let mut kept_found = false;
    for file in files_under(&dir.path().join("nats")) {
        let bytes = std::fs::read(&file)?;
        assert!(
            !holds(&bytes, b"secret"),
            "a deleted body in {}",
            file.display()
        );
        kept_found |= holds(&bytes, b"\"kept\"");
    }
    assert!(
        kept_found,
        "the stream's files hold the bodies that were not deleted"
    );

    let cfg = WorkerConfig {
        data_dir: dir.path().join("store"),
        ..WorkerConfig::default()
    };
    let store = open_store(&cfg).await?;
    let all = store
        .scan(Vec::new()..vec![0xff; 8], Direction::Forward, 1_000_000)
        .await?;
    assert!(all.len() > 10, "the scan reads the store");
    for (k, v) in &all {
        let text = String::from_utf8_lossy(v);
        assert!(
            !text.contains("secret"),
            "{}: {text}",
            String::from_utf8_lossy(k)
        );
    }
    let model = chatmesh_workers::model::Model::new(store);
    let mut out = Vec::new();
    chatmesh_workers::export::export_room(&model, "team", &mut out, 0, &mut |_| {}).await?;
    let text = String::from_utf8(out)?;
    assert!(!text.contains("secret"), "{text}");
    assert_eq!(text.matches("\"deleted\":").count(), 2, "{text}");
    Ok(())
}

/// A message edited 20 times with bodies of control characters (60 KB each once
/// JSON-escaped): its 21 versions are over NATS's 1 MiB payload limit. The edit history
/// answers with the newest versions that fit, the current one last, and `more` (before:
/// 500 `internal`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_versions_of_a_long_message_are_cut_to_fit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("hall").await?;
    // A send frame must stay under max_message_bytes (64 KiB) once escaped itself.
    let noise = "\u{1}".repeat(10_000);
    let first = a.post("hall", "m", &format!("0{noise}")).await?;
    let mut seqs = vec![first.seq];
    for i in 1..=20 {
        let f = a
            .request(frame::edit(
                "hall",
                &format!("e{i}"),
                first.seq,
                &format!("{i:02}{noise}"),
            ))
            .await?;
        seqs.push(acked(&f).seq);
    }
    let path = format!("/v1/rooms/hall/messages/{}/edits", first.seq);
    let (s, v) = api.call("GET", &path, Some(&ann), None).await?;
    assert_eq!(s, 200, "{}", v["error"]);
    assert!(v.to_string().len() < 1 << 20, "over 1 MiB");
    let h: EditHistory = serde_json::from_value(v)?;
    assert!(h.more, "cut");
    let kept = h.versions.len();
    assert!((1..21).contains(&kept), "{kept} versions");
    let got: Vec<u64> = h.versions.iter().map(|v| v.seq).collect();
    assert_eq!(got, seqs[21 - kept..], "the newest, oldest first");
    assert_eq!(h.versions.last().map(|v| &v.body[..2]), Some("20"));
    Ok(())
}
