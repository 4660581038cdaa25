//! `chatmesh export` / `chatmesh import` as an operator runs them, on real fjall stores: a
//! round trip fjall → file → fjall is byte for byte (exporting the import gives the same
//! file) and the room's record, stats, members and messages are equal; progress goes to
//! stderr; importing over an existing room and exporting a running worker's store are refused.

use std::path::Path;
use std::process::Output;

use anyhow::{ensure, Result};
use chatmesh_protocol::message::Payload;
use chatmesh_protocol::service::{Role, RoomKind};
use chatmesh_workers::cache::Caches;
use chatmesh_workers::model::{HistoryQuery, Model, RoomMeta};
use chatmesh_workers::store::WriteBatch;
use chatmesh_workers::writer::{store_batch, Delivery};
use chatmesh_workers::{open_store, WorkerConfig};

fn cfg(dir: &Path) -> WorkerConfig {
    WorkerConfig {
        data_dir: dir.to_path_buf(),
        ..WorkerConfig::default()
    }
}

fn chatmesh(args: &[&str]) -> Result<Output> {
    Ok(std::process::Command::new(env!("CARGO_BIN_EXE_chatmesh"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()?)
}

/// Two rooms, 2,500 messages (bodies with quotes, newlines, unicode), 300 members.
async fn fill(dir: &Path) -> Result<()> {
    let c = cfg(dir);
    let model = Model::new(open_store(&c).await?);
    let caches = Caches::new(c.cache_sizes());
    let mut b = WriteBatch::new();
    let meta = RoomMeta {
        kind: RoomKind::Private,
        owner: Some("user-000".into()),
        created: 42,
    };
    Model::put_room(&mut b, "lobby", &meta);
    Model::put_topic(&mut b, "lobby", Some("ünïcödé \"topic\""));
    for i in 0..300 {
        let role = if i == 0 { Role::Owner } else { Role::Member };
        Model::put_member(&mut b, "lobby", &format!("user-{i:03}"), role);
    }
    Model::put_member(&mut b, "other", "ann", Role::Owner);
    model.write(b).await?;
    let deliveries: Vec<Delivery> = (1..=2_500u64)
        .map(|seq| {
            let room = if seq % 4 == 0 { "other" } else { "lobby" };
            let body = format!("line \"{seq}\"\nwith ünïcödé ✓ and a \\ backslash");
            let p = Payload {
                id: format!("m{seq}"),
                from: "ann".into(),
                ts: 1_700_000_000_000 + seq,
                mentions: match seq % 10 {
                    0 => chatmesh_protocol::mentions::Mentions::parse("@bob and @room"),
                    _ => Default::default(),
                },
                body,
                attachments: Vec::new(),
                ..Default::default()
            };
            Delivery {
                seq,
                message: Some((room.to_owned(), p)),
            }
        })
        .collect();
    let mut cp = 0;
    for chunk in deliveries.chunks(400) {
        store_batch(&model, &caches, 0, &mut cp, chunk.to_vec()).await?;
    }
    Ok(())
}

async fn snapshot(dir: &Path) -> Result<String> {
    let model = Model::new(open_store(&cfg(dir)).await?);
    let q = HistoryQuery {
        before: None,
        after: Some(0),
        limit: 10_000,
    };
    let msgs = model.history("lobby", q).await?.0;
    Ok(format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        model.room("lobby").await?,
        model.topic("lobby").await?,
        model.stats("lobby").await?,
        model.members("lobby", 10_000).await?,
        msgs
    ))
}

/// fjall → file → fjall → file: both files are identical and the room reads the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_is_byte_for_byte() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (f1, f2) = (tmp.path().join("1.jsonl"), tmp.path().join("2.jsonl"));
    fill(&a).await?;
    let s = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    let out = chatmesh(&[
        "export",
        "--room",
        "lobby",
        "--data",
        &s(&a),
        "--out",
        &s(&f1),
        "--progress-every",
        "500",
    ])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "export failed: {err}");
    ensure!(
        err.contains("exported 500 messages") && err.contains("exported 1500 messages"),
        "{err}"
    );
    ensure!(err.contains("300 members, 1875 messages"), "{err}");
    let out = chatmesh(&["import", "--in", &s(&f1), "--data", &s(&b)])?;
    ensure!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = chatmesh(&[
        "export",
        "--room",
        "lobby",
        "--data",
        &s(&b),
        "--out",
        &s(&f2),
    ])?;
    ensure!(out.status.success(), "second export failed");
    let (one, two) = (std::fs::read(&f1)?, std::fs::read(&f2)?);
    ensure!(one == two, "the files differ");
    ensure!(one.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count() == 1 + 300 + 1_875);
    ensure!(
        snapshot(&a).await? == snapshot(&b).await?,
        "the rooms differ"
    );

    let again = chatmesh(&["import", "--in", &s(&f1), "--data", &s(&b)])?;
    let err = String::from_utf8_lossy(&again.stderr);
    ensure!(
        !again.status.success() && err.contains("already exists"),
        "{err}"
    );
    Ok(())
}

/// A store held by another process (a running worker) is refused with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_is_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    fill(tmp.path()).await?;
    let held = open_store(&cfg(tmp.path())).await?;
    let dir = tmp.path().to_str().unwrap_or_default().to_owned();
    let out = chatmesh(&["export", "--room", "lobby", "--data", &dir])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "export of a locked store succeeded");
    ensure!(
        err.contains("locked by another process (stop the worker first)"),
        "{err}"
    );
    drop(held);
    let out = chatmesh(&["export", "--room", "nobody", "--data", &dir])?;
    ensure!(String::from_utf8_lossy(&out.stderr).contains("no room nobody"));
    Ok(())
}

/// An export file is checked as it would have been made: a DM planted with a third member,
/// or under an id not made of its two users, a DM's id on another kind of room, a second
/// owner, and an owner of a room without a record (a trap for whoever creates the name) are
/// refused, and nothing of them is stored, also when the refusal comes after a page was
/// (600 members, then a second owner: before, the members stayed, members of whatever room
/// was created under that name). So are messages out of order or with a prev not below
/// their seq (a client resuming met a gap it could not fill), a deleted message that keeps
/// its body or whose delete marker is not a delete of it (history served the "deleted"
/// text), and stats that disagree with the last message or pass what seqs allow (a count of
/// u64::MAX overflowed the store writer; a last_seq far ahead made it skip every new
/// message as old).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_export_files_are_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let s = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    let dm = chatmesh_workers::model::dm_room("alice", "bob");
    let room = |name: &str, kind: &str, owner: &str| {
        format!(
            r#"{{"type":"room","format":1,"room":"{name}","meta":{{"kind":"{kind}","owner":{owner},"created":1}},"stats":{{"last_seq":0,"count":0}}}}"#
        )
    };
    let member =
        |user: &str, role: &str| format!(r#"{{"type":"member","user":"{user}","role":"{role}"}}"#);
    let club = |stats: &str| {
        format!(
            r#"{{"type":"room","format":1,"room":"club","meta":{{"kind":"private","owner":"ann","created":1}},"stats":{stats}}}"#
        )
    };
    let msg = |seq: u64, prev: u64, n: u64, rest: &str| {
        format!(
            r#"{{"type":"message","seq":{seq},"prev":{prev},"n":{n},"id":"m{seq}","from":"ann","ts":1{rest}}}"#
        )
    };
    let many: Vec<String> = std::iter::once(club(r#"{"last_seq":0,"count":0}"#))
        .chain(std::iter::once(member("ann", "owner")))
        .chain((0..600).map(|i| member(&format!("mallory-{i:03}"), "member")))
        .chain(std::iter::once(member("eve", "owner")))
        .collect();
    let deleted = |seq: u64| format!(r#","deleted":{{"seq":{seq},"ts":2,"by":"ann","id":"d"}}"#);
    let cases = [
        ("a second owner after a page of members", many, "has the owner's role"),
        (
            "a message below its prev",
            vec![
                club(r#"{"last_seq":50,"count":2}"#),
                member("ann", "owner"),
                msg(100, 0, 1, r#","body":"a""#),
                msg(50, 100, 2, r#","body":"b""#),
            ],
            "has prev 100, not below it",
        ),
        (
            "a delete of a message the file holds as not deleted",
            vec![
                club(r#"{"last_seq":9,"count":2}"#),
                member("ann", "owner"),
                msg(5, 0, 1, r#","body":"secret""#),
                msg(9, 5, 2, r#","body":"","delete_of":5"#),
            ],
            "which the file does not hold as deleted",
        ),
        (
            "a deleted message that keeps its body",
            vec![
                club(r#"{"last_seq":9,"count":2}"#),
                member("ann", "owner"),
                msg(5, 0, 1, &format!(r#","body":"secret"{}"#, deleted(9))),
                msg(9, 5, 2, r#","body":"","delete_of":5"#),
            ],
            "is deleted but keeps what it said",
        ),
        (
            "stats that disagree with the last message",
            vec![
                club(r#"{"last_seq":6,"count":1}"#),
                member("ann", "owner"),
                msg(5, 0, 1, r#","body":"hi""#),
            ],
            "do not agree with its last message",
        ),
        (
            "a count past what seqs allow",
            vec![
                club(r#"{"last_seq":10,"count":18446744073709551615}"#),
                member("ann", "owner"),
            ],
            "stats are out of range",
        ),
        (
            "a last_seq past any stream's",
            vec![
                club(r#"{"last_seq":18446744073709551615,"count":1}"#),
                member("ann", "owner"),
            ],
            "stats are out of range",
        ),
        (
            "a DM with a third member",
            vec![
                room(&dm, "dm", "null"),
                member("alice", "member"),
                member("bob", "member"),
                member("mallory", "member"),
            ],
            "exactly the two users",
        ),
        (
            "a DM of other users",
            vec![
                room(&dm, "dm", "null"),
                member("alice", "member"),
                member("mallory", "member"),
            ],
            "exactly the two users",
        ),
        (
            "a DM id on a private room",
            vec![room(&dm, "private", r#""alice""#), member("alice", "owner")],
            "do not agree",
        ),
        (
            "a second owner",
            vec![
                room("club", "private", r#""ann""#),
                member("ann", "owner"),
                member("mallory", "owner"),
            ],
            "has the owner's role",
        ),
        (
            "an owner of a room without a record",
            vec![
                r#"{"type":"room","format":1,"room":"later","meta":null,"stats":{"last_seq":0,"count":0}}"#.to_owned(),
                member("mallory", "owner"),
            ],
            "above member in a room without a record",
        ),
    ];
    for (what, lines, refusal) in cases {
        let file = tmp.path().join("crafted.jsonl");
        std::fs::write(&file, lines.join("\n") + "\n")?;
        let out = chatmesh(&["import", "--in", &s(&file), "--data", &s(&data)])?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "{what}: imported");
        ensure!(err.contains(refusal), "{what}: {err}");
    }
    let model = Model::new(open_store(&cfg(&data)).await?);
    ensure!(model.room(&dm).await?.is_none(), "the DM was stored");
    ensure!(model.room("club").await?.is_none(), "the room was stored");
    let members = model.members("club", 10).await?;
    ensure!(members.is_empty(), "members were stored: {members:?}");
    let q = HistoryQuery {
        before: None,
        after: Some(0),
        limit: 10,
    };
    let stored = model.history("club", q).await?.0;
    ensure!(stored.is_empty(), "messages were stored: {stored:?}");

    // A consistent file with a deleted message goes in, through stdin; while the room is
    // being deleted in the target store, import waits for that to finish.
    let good = [
        club(r#"{"last_seq":9,"count":3}"#),
        member("ann", "owner"),
        msg(5, 0, 1, &format!(r#","body":""{}"#, deleted(9))),
        msg(7, 5, 2, r#","body":"kept""#),
        msg(9, 7, 3, r#","body":"","delete_of":5"#),
    ]
    .join("\n")
        + "\n";
    let mut b = WriteBatch::new();
    let deletion = serde_json::from_str(
        r#"{"by":"root","ts":1,"phase":"members","members":0,"messages":0,"cursors":0}"#,
    )?;
    Model::put_deletion(&mut b, "club", &deletion);
    model.write(b).await?;
    drop(model);
    let piped = |text: &str| -> Result<Output> {
        use std::io::Write as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chatmesh"))
            .args(["import", "--data", &s(&data)])
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())?;
        Ok(child.wait_with_output()?)
    };
    let out = piped(&good)?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("is being deleted"),
        "{err}"
    );
    let model = Model::new(open_store(&cfg(&data)).await?);
    let mut b = WriteBatch::new();
    b.delete(chatmesh_workers::model::admin::deleting("club"));
    model.write(b).await?;
    drop(model);
    let out = piped(&good)?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{err}");
    ensure!(err.contains("1 members, 3 messages"), "{err}");
    Ok(())
}
