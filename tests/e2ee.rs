//! The server's half of end-to-end encrypted rooms against a real mesh, with opaque bytes
//! for MLS messages (the MLS side is `e2ee/tests`): a room of kind `e2ee` relays only MLS
//! messages and keeps them intact (live, history, resume, dedupe) until one is deleted
//! (then its ciphertext goes everywhere; the group's own messages stay), commits are ordered one
//! epoch at a time (stale, future and racing commits refused, a resend answered with its
//! seq, nothing stored twice), and the key-package directory (identity keys, signed devices,
//! claim-once packages, the last-resort one, limits, the claim throttle).

mod common;

use std::collections::HashSet;

use anyhow::Result;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chatmesh_protocol::e2ee::{device_statement, Mls, MlsKind};
use chatmesh_protocol::service::RoomKind;
use chatmesh_workers::store::{Direction, KvStore};
use chatmesh_workers::{open_store, WorkerConfig};
use common::page as page_of;
use common::*;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn mls(kind: MlsKind, epoch: u64, data: &[u8]) -> Value {
    json!(Mls {
        kind,
        epoch,
        data: b64(data),
        file: None,
    })
}

/// A `send` frame with `mls`, as JSON.
fn send_mls(room: &str, id: &str, m: Value) -> Value {
    json!({"type": "send", "room": room, "id": id, "body": "", "mls": m})
}

/// The error code and message answering a request; anything else fails.
#[track_caller]
fn refusal(f: &ServerFrame) -> (ErrorCode, String) {
    match f {
        ServerFrame::Error { code, message, .. } => (*code, message.to_string()),
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn add(api: &Api, token: &str, room: &str, user: &str) -> Result<()> {
    let path = format!("/v1/rooms/{room}/members");
    let (s, v) = api
        .call(
            "POST",
            &path,
            Some(token),
            Some(json!({"user": user, "role": "member"})),
        )
        .await?;
    anyhow::ensure!(s == 204, "add {user}: {s} {v}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_e2ee_room_relays_mls_and_orders_commits_one_epoch_at_a_time() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let eve = api.user("eve").await?;
    api.room(&ann, "sec", "e2ee").await?;
    api.room(&ann, "open", "public").await?;
    add(&api, &ann, "sec", "bob").await?;
    let (s, v) = api.call("GET", "/v1/rooms", Some(&ann), None).await?;
    let listing = http_rooms(&v).unwrap_or_default();
    assert!(
        listing
            .iter()
            .any(|r| r.room == "sec" && r.kind == RoomKind::E2ee),
        "{s} {v}"
    );

    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    let mut e = Client::login(&mesh.ws_url(), &eve).await?;
    a.join("sec").await?;
    b.join("sec").await?;
    a.join("open").await?;

    // Only MLS in an e2ee room, no MLS elsewhere; members only.
    let f = a.request(frame::send("sec", "p1", "plain text")).await?;
    assert_eq!(refusal(&f).0, ErrorCode::BadRequest);
    let f = a
        .request_json(send_mls("open", "m0", mls(MlsKind::App, 0, b"x")))
        .await?;
    assert_eq!(refusal(&f).0, ErrorCode::BadRequest);
    let f = e.request(frame::join("sec")).await?;
    assert_eq!(refusal(&f).0, ErrorCode::Forbidden);
    let f = e
        .request_json(send_mls("sec", "e1", mls(MlsKind::App, 0, b"x")))
        .await?;
    assert_eq!(refusal(&f).0, ErrorCode::Forbidden);
    // A body beside mls, an edit of an MLS message, oversize and non-base64 data.
    let mut both = send_mls("sec", "m1", mls(MlsKind::App, 0, b"x"));
    both["body"] = json!("leak");
    assert_eq!(
        refusal(&a.request_json(both).await?).0,
        ErrorCode::BadRequest
    );
    let mut edit = send_mls("sec", "m1", mls(MlsKind::App, 0, b"x"));
    edit["edit_of"] = json!(1);
    assert_eq!(
        refusal(&a.request_json(edit).await?).0,
        ErrorCode::BadRequest
    );
    let huge = json!({"kind": "app", "epoch": 0, "data": "A".repeat(61 * 1024)});
    let f = a.request_json(send_mls("sec", "m1", huge)).await?;
    assert_eq!(refusal(&f).0, ErrorCode::TooLarge);
    let bad = json!({"kind": "app", "epoch": 0, "data": "not base64!"});
    let f = a.request_json(send_mls("sec", "m1", bad)).await?;
    assert_eq!(refusal(&f).0, ErrorCode::BadRequest);

    // An application message, then the commit that ends epoch 0, then its welcome.
    let app = acked(
        &a.request_json(send_mls("sec", "m1", mls(MlsKind::App, 0, b"c1")))
            .await?,
    );
    let c0 = acked(
        &a.request_json(send_mls("sec", "c0", mls(MlsKind::Commit, 0, b"k0")))
            .await?,
    );
    let w1 = acked(
        &a.request_json(send_mls("sec", "w1", mls(MlsKind::Welcome, 1, b"w")))
            .await?,
    );
    // A resend of the commit with its id is answered with its seq, stored once, whether the
    // worker has stored it yet or not.
    let again = a
        .request_json(send_mls("sec", "c0", mls(MlsKind::Commit, 0, b"k0")))
        .await?;
    assert_eq!(acked(&again).seq, c0.seq);
    // Bob's commit for the epoch that just ended: refused, stale.
    let f = b
        .request_json(send_mls("sec", "b0", mls(MlsKind::Commit, 0, b"kb")))
        .await?;
    let (code, msg) = refusal(&f);
    assert_eq!(code, ErrorCode::Conflict);
    assert!(msg.contains("stale epoch"), "{msg}");
    // A commit for an epoch the room has not reached.
    let f = b
        .request_json(send_mls("sec", "b9", mls(MlsKind::Commit, 9, b"kb")))
        .await?;
    let (code, msg) = refusal(&f);
    assert_eq!(code, ErrorCode::Conflict);
    assert!(msg.contains("future epoch"), "{msg}");
    // The last epoch a u64 holds, from the author of the stored commit: refused the same,
    // with no arithmetic overflow on the way.
    let f = a
        .request_json(send_mls("sec", "c0", mls(MlsKind::Commit, u64::MAX, b"k0")))
        .await?;
    let (code, msg) = refusal(&f);
    assert_eq!(code, ErrorCode::Conflict);
    assert!(msg.contains("future epoch"), "{msg}");

    // Two commits for epoch 1 at once: exactly one is stored, the other is refused.
    let sent_a = send_mls("sec", "c1a", mls(MlsKind::Commit, 1, b"ka"));
    let sent_b = send_mls("sec", "c1b", mls(MlsKind::Commit, 1, b"kb"));
    let (fa, fb) = tokio::join!(a.request_json(sent_a), b.request_json(sent_b));
    let (fa, fb) = (fa?, fb?);
    let won: Vec<&ServerFrame> = [&fa, &fb]
        .into_iter()
        .filter(|f| matches!(f, ServerFrame::Ack { .. }))
        .collect();
    assert_eq!(won.len(), 1, "exactly one commit wins: {fa:?} {fb:?}");
    let lost = if matches!(fa, ServerFrame::Ack { .. }) {
        &fb
    } else {
        &fa
    };
    assert_eq!(refusal(lost).0, ErrorCode::Conflict);
    let winner = acked(won[0]);

    // Everyone sees the same order, with the MLS part intact, live and in history.
    let live = b.messages("sec", 4).await?;
    let seqs: Vec<u64> = live.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [app.seq, c0.seq, w1.seq, winner.seq]);
    assert!(live.iter().all(|m| m.body.is_empty()));
    let kinds: Vec<(MlsKind, u64)> = live
        .iter()
        .map(|m| m.mls.as_ref().map(|x| (x.kind, x.epoch)).expect("mls"))
        .collect();
    assert_eq!(
        kinds,
        [
            (MlsKind::App, 0),
            (MlsKind::Commit, 0),
            (MlsKind::Welcome, 1),
            (MlsKind::Commit, 1)
        ]
    );
    assert_eq!(
        live[1].mls.as_ref().map(|m| m.data.clone()),
        Some(b64(b"k0"))
    );
    let (_, v) = api
        .call("GET", "/v1/rooms/sec/messages?limit=100", Some(&bob), None)
        .await?;
    let page = http_page(&v);
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        seqs
    );
    assert_eq!(page.messages[1].mls, live[1].mls);
    assert!(page.messages.iter().all(|m| !m.void));
    let ws_page = page_of(&b.request(frame::history("sec")).await?);
    assert_eq!(ws_page.messages, page.messages);
    // A resume from the first message replays the rest, MLS included.
    let mut late = Client::login(&mesh.ws_url(), &bob).await?;
    late.request(frame::join_since("sec", app.seq)).await?;
    let replayed = late.messages("sec", 3).await?;
    assert_eq!(replayed, live[1..].to_vec());

    // The room is at epoch 2 once the worker has stored both commits.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let f = a
            .request_json(send_mls("sec", "probe", mls(MlsKind::Commit, 1, b"late")))
            .await?;
        let (code, msg) = refusal(&f);
        assert_eq!(code, ErrorCode::Conflict);
        if msg.contains("the room is at epoch 2") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{msg}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A welcome is taken only from the member whose commit started the welcome's epoch: a
/// room member who built a group of their own under the room's id (with a KeyPackage it
/// claimed) cannot draw a new member into it first. The commit may be the room's latest or
/// an earlier one (a member may commit between a commit's ack and its welcome); a welcome
/// for an epoch no commit started is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_is_taken_only_from_the_sender_of_its_commit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let mal = api.user("mal").await?;
    api.room(&ann, "sec", "e2ee").await?;
    add(&api, &ann, "sec", "mal").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut m = Client::login(&mesh.ws_url(), &mal).await?;
    a.join("sec").await?;
    m.join("sec").await?;
    let welcome = |epoch: u64| mls(MlsKind::Welcome, epoch, b"w");

    // ann's commit starts epoch 1: mal's welcome to it is refused, ann's is taken.
    acked(
        &a.request_json(send_mls("sec", "c0", mls(MlsKind::Commit, 0, b"k0")))
            .await?,
    );
    let f = m.request_json(send_mls("sec", "mw1", welcome(1))).await?;
    let (code, msg) = refusal(&f);
    assert_eq!(code, ErrorCode::Forbidden, "{msg}");
    assert!(msg.contains("whose commit started it"), "{msg}");
    acked(&a.request_json(send_mls("sec", "aw1", welcome(1))).await?);

    // mal's commit starts epoch 2. ann's welcome to epoch 1 still goes (its commit is
    // found before the latest); to epoch 2 only mal's.
    acked(
        &m.request_json(send_mls("sec", "c1", mls(MlsKind::Commit, 1, b"k1")))
            .await?,
    );
    acked(&m.request_json(send_mls("sec", "mw2", welcome(2))).await?);
    acked(&a.request_json(send_mls("sec", "aw1b", welcome(1))).await?);
    let f = a.request_json(send_mls("sec", "aw2", welcome(2))).await?;
    assert_eq!(refusal(&f).0, ErrorCode::Forbidden);
    let f = m.request_json(send_mls("sec", "mw1b", welcome(1))).await?;
    assert_eq!(refusal(&f).0, ErrorCode::Forbidden);

    // No commit starts epoch 0, and none has started epoch 3 (after the wait for one).
    let f = a.request_json(send_mls("sec", "w0", welcome(0))).await?;
    assert_eq!(refusal(&f).0, ErrorCode::Conflict);
    let f = m.request_json(send_mls("sec", "w3", welcome(3))).await?;
    let (code, msg) = refusal(&f);
    assert_eq!(code, ErrorCode::Conflict);
    assert!(msg.contains("future epoch"), "{msg}");
    mesh.stop().await
}

/// The group's own messages (commits, proposals, welcomes) cost the worker a check each (a
/// commit's file of up to 8 MiB read and parsed, a welcome's commit looked for), so each
/// counts against the sender's request budget, and commits and proposals against a narrower
/// one of their own (`mls_check_burst`; a welcome follows a commit that paid): past either
/// they are answered `rate_limited` before any worker is asked, while application messages
/// go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_messages_count_against_the_request_budget() -> Result<()> {
    // The request budget of six, which the room's creation and the join draw on too.
    let mut config = fast_config();
    config.gateway.api_per_user_per_minute = 1;
    config.gateway.api_user_burst = 6;
    let spent = spend_handshakes(config).await?;
    let checked = spent.checked();
    assert!((1..5).contains(&checked), "{:?}", spent.codes);
    assert!(
        spent.message.contains("over your request rate"),
        "{}",
        spent.message
    );
    assert_eq!(spent.welcome, Some(ErrorCode::RateLimited), "a welcome too");
    // Their own budget of four, the request budget left as it is.
    let mut config = fast_config();
    config.gateway.mls_checks_per_minute = 1;
    config.gateway.mls_check_burst = 4;
    let spent = spend_handshakes(config).await?;
    let checked = spent.checked();
    assert_eq!(checked, 3, "{:?}", spent.codes);
    assert!(
        spent.message.contains("too many commits"),
        "{}",
        spent.message
    );
    assert_eq!(spent.welcome, None, "a welcome is not held to it");
    Ok(())
}

/// What [`spend_handshakes`] was answered.
struct Spent {
    /// The stale commits' answers: `conflict` while checked, `rate_limited` once a budget
    /// is spent.
    codes: Vec<ErrorCode>,
    /// The message of the last commit's refusal (which must be `rate_limited`).
    message: String,
    /// The welcome's refusal (`None`: acked).
    welcome: Option<ErrorCode>,
}

impl Spent {
    /// How many stale commits a worker checked before a budget was spent.
    fn checked(&self) -> usize {
        self.codes
            .iter()
            .take_while(|c| **c == ErrorCode::Conflict)
            .count()
    }
}

/// In a new e2ee room on a mesh with `config`, ann sends a commit (acked: the room moves to
/// epoch 1), six more for epoch 0 (refused `conflict` while a worker checks them), one
/// more (which must be `rate_limited`), the welcome of her first commit, and an application
/// message (which must be acked).
async fn spend_handshakes(config: chatmesh::Config) -> Result<Spent> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "sec", "e2ee").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("sec").await?;
    acked(
        &a.request_json(send_mls("sec", "c0", mls(MlsKind::Commit, 0, b"k")))
            .await?,
    );
    let mut codes = Vec::new();
    for i in 0..6 {
        let f = a
            .request_json(send_mls(
                "sec",
                &format!("c{}", i + 1),
                mls(MlsKind::Commit, 0, b"k"),
            ))
            .await?;
        codes.push(refusal(&f).0);
    }
    let checked = codes
        .iter()
        .take_while(|c| **c == ErrorCode::Conflict)
        .count();
    assert!(
        codes[checked..]
            .iter()
            .all(|c| *c == ErrorCode::RateLimited),
        "{codes:?}"
    );
    let f = a
        .request_json(send_mls("sec", "c9", mls(MlsKind::Commit, 1, b"k")))
        .await?;
    let (code, message) = refusal(&f);
    assert_eq!(code, ErrorCode::RateLimited, "{message}");
    let welcome = match a
        .request_json(send_mls("sec", "w1", mls(MlsKind::Welcome, 1, b"w")))
        .await?
    {
        ServerFrame::Ack { .. } => None,
        other => Some(refusal(&other).0),
    };
    acked(
        &a.request_json(send_mls("sec", "m", mls(MlsKind::App, 1, b"c")))
            .await?,
    );
    mesh.stop().await?;
    Ok(Spent {
        codes,
        message,
        welcome,
    })
}

/// A message of an e2ee room is deleted like any other (by its author, a room admin or the
/// owner: a moderator can take down a ciphertext it cannot read), with a plain `delete_of`
/// that carries no `mls`; the tombstone keeps no ciphertext in history, the store or the
/// stream. The group's own messages (commits, welcomes) cannot be deleted: members catching
/// up need them. Edits and reactions stay refused there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_message_of_an_e2ee_room_loses_its_ciphertext() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let cat = api.user("cat").await?;
    api.room(&ann, "sec", "e2ee").await?;
    add(&api, &ann, "sec", "bob").await?;
    add(&api, &ann, "sec", "cat").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    let mut c = Client::login(&mesh.ws_url(), &cat).await?;
    for x in [&mut a, &mut b, &mut c] {
        x.join("sec").await?;
    }
    let (gone1, gone2, kept) = (
        b"bobs-first-ciphertext".as_slice(),
        b"bobs-second-ciphertext".as_slice(),
        b"anns-kept-ciphertext".as_slice(),
    );
    let first = acked(
        &b.request_json(send_mls("sec", "b1", mls(MlsKind::App, 0, gone1)))
            .await?,
    );
    let second = acked(
        &b.request_json(send_mls("sec", "b2", mls(MlsKind::App, 0, gone2)))
            .await?,
    );
    let anns = acked(
        &a.request_json(send_mls("sec", "a1", mls(MlsKind::App, 0, kept)))
            .await?,
    );
    let commit = acked(
        &a.request_json(send_mls("sec", "c0", mls(MlsKind::Commit, 0, b"k0")))
            .await?,
    );

    // A member deletes only its own; the author and the owner (a moderator) may.
    let f = c.request(frame::delete("sec", "c1", anns.seq)).await?;
    assert_eq!(refusal(&f).0, ErrorCode::Forbidden);
    acked(&b.request(frame::delete("sec", "b3", first.seq)).await?);
    let by_owner = acked(&a.request(frame::delete("sec", "a2", second.seq)).await?);
    let live = c
        .wait_for(|f| matches!(f, ServerFrame::Message(m) if m.seq == by_owner.seq))
        .await?;
    assert!(
        matches!(&live, ServerFrame::Message(m) if m.delete_of == Some(second.seq) && m.mls.is_none()),
        "{live:?}"
    );
    // The group's state is not a message to delete.
    let f = a.request(frame::delete("sec", "a3", commit.seq)).await?;
    let (code, msg) = refusal(&f);
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(msg.contains("MLS"), "{msg}");
    // A delete carries no mls; edits and reactions are still refused in an e2ee room.
    let mut with_mls = send_mls("sec", "a4", mls(MlsKind::App, 0, b"x"));
    with_mls["delete_of"] = json!(anns.seq);
    assert_eq!(
        refusal(&a.request_json(with_mls).await?).0,
        ErrorCode::BadRequest
    );
    let f = a
        .request(frame::edit("sec", "a5", anns.seq, "plain"))
        .await?;
    assert_eq!(refusal(&f).0, ErrorCode::BadRequest);
    let f = b
        .request(frame::react("sec", "b4", anns.seq, "👍", false))
        .await?;
    assert_eq!(refusal(&f).0, ErrorCode::BadRequest);

    // History: tombstones without their ciphertext; the rest intact.
    let (_, v) = api
        .call("GET", "/v1/rooms/sec/messages?limit=100", Some(&cat), None)
        .await?;
    let h = http_page(&v).messages;
    let at = |seq: u64| h.iter().find(|m| m.seq == seq).expect("in history");
    for seq in [first.seq, second.seq] {
        assert!(at(seq).deleted && at(seq).mls.is_none(), "{:?}", at(seq));
    }
    assert_eq!(
        at(anns.seq).mls.as_ref().map(|m| m.data.clone()),
        Some(b64(kept))
    );
    assert_eq!(
        at(commit.seq).mls.as_ref().map(|m| m.kind),
        Some(MlsKind::Commit)
    );

    // Gone from the stream's files and the store as well.
    api.metric_at_least("chatmesh_worker_erased_total", 2.0)
        .await?;
    mesh.stop().await?;
    let holds = |bytes: &[u8], what: &str| bytes.windows(what.len()).any(|w| w == what.as_bytes());
    let mut kept_found = false;
    for file in files_under(&dir.path().join("nats")) {
        let bytes = std::fs::read(&file)?;
        for gone in [gone1, gone2] {
            let shown = file.display();
            assert!(
                !holds(&bytes, &b64(gone)),
                "a deleted ciphertext in {shown}"
            );
        }
        kept_found |= holds(&bytes, &b64(kept));
    }
    assert!(
        kept_found,
        "the stream's files hold the ciphertext that was not deleted"
    );
    let cfg = WorkerConfig {
        data_dir: dir.path().join("store"),
        ..WorkerConfig::default()
    };
    let store = open_store(&cfg).await?;
    let all = store
        .scan(Vec::new()..vec![0xff; 8], Direction::Forward, 1_000_000)
        .await?;
    assert!(
        all.iter().any(|(_, v)| holds(v, &b64(kept))),
        "the scan reads the store"
    );
    for (k, v) in &all {
        for gone in [gone1, gone2] {
            assert!(!holds(v, &b64(gone)), "{}", String::from_utf8_lossy(k));
        }
    }
    Ok(())
}

/// `PUT /v1/e2ee/identity` with `key` (base64): status and body.
async fn put_identity(api: &Api, token: &str, key: impl Into<Value>) -> Result<(u16, Value)> {
    let body = json!({ "key": key.into() });
    api.call("PUT", "/v1/e2ee/identity", Some(token), Some(body))
        .await
}

/// `PUT /v1/e2ee/devices/{device}` with a device record: status and body.
async fn put_device(api: &Api, token: &str, device: &str, record: Value) -> Result<(u16, Value)> {
    let path = format!("/v1/e2ee/devices/{device}");
    api.call("PUT", &path, Some(token), Some(record)).await
}

/// `POST /v1/e2ee/devices/{device}/key-packages` with `body`: status and body.
async fn post_packages(api: &Api, token: &str, device: &str, body: Value) -> Result<(u16, Value)> {
    let path = format!("/v1/e2ee/devices/{device}/key-packages");
    api.call("POST", &path, Some(token), Some(body)).await
}

/// An identity key and a device record signed by it.
struct Keys {
    identity: SigningKey,
}

impl Keys {
    fn new(seed: u8) -> Self {
        Self {
            identity: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    fn public(&self) -> String {
        b64(self.identity.verifying_key().as_bytes())
    }

    fn device(&self, user: &str, device: &str, signature_key: &[u8]) -> Value {
        let sig = self
            .identity
            .sign(&device_statement(user, device, signature_key));
        json!({"signature_key": b64(signature_key), "signature": b64(&sig.to_bytes())})
    }
}

/// A user of an external token issuer has no account record here, and sets an identity key
/// and devices as any other; others find them in the directory once the key is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_an_account_record_uses_the_directory() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    // As an external issuer's token reaches the worker: a name with no account record.
    let secret = mesh.config.gateway.jwt_secret.clone();
    let ext = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "ext", "iss": "chatmesh", "iat": 1000, "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?;
    let (s, v) = api
        .call("GET", "/v1/e2ee/users/ext", Some(&ann), None)
        .await?;
    assert_eq!(s, 404, "nothing to find yet: {v}");
    let keys = Keys::new(7);
    let (s, v) = put_identity(&api, &ext, keys.public()).await?;
    assert_eq!(s, 200, "{v}");
    let (s, v) = put_device(&api, &ext, "phone", keys.device("ext", "phone", b"sig-key")).await?;
    assert!(s == 200 || s == 201, "{s} {v}");
    let (s, v) = api
        .call("GET", "/v1/e2ee/users/ext", Some(&ann), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["identity"], json!(keys.public()));
    assert_eq!(v["devices"][0]["device"], "phone", "{v}");
    mesh.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_package_directory_hands_out_each_package_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.key_claims_per_minute = 60;
    config.gateway.key_claim_burst = 40;
    config.gateway.key_claims_per_target_per_hour = 20;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let carl = api.user("carl").await?;
    let keys = Keys::new(7);

    // A device before the identity key; a key that is not Ed25519; then the key, once.
    let (s, _) = put_device(&api, &ann, "phone", keys.device("ann", "phone", b"sk")).await?;
    assert_eq!(s, 409);
    let (s, _) = put_identity(&api, &ann, b64(b"short")).await?;
    assert_eq!(s, 400);
    let (s, v) = put_identity(&api, &ann, keys.public()).await?;
    assert_eq!((s, v["key"].as_str()), (200, Some(keys.public().as_str())));
    let (s, _) = put_identity(&api, &ann, keys.public()).await?;
    assert_eq!(s, 200, "the same key again");
    let other = Keys::new(8);
    let (s, v) = put_identity(&api, &ann, other.public()).await?;
    assert_eq!((s, http_error(&v)), (409, Some(ErrorCode::Conflict)));

    // A device signed by another key, or for another device id, is refused.
    let forged = other.device("ann", "phone", b"sk");
    let (s, _) = put_device(&api, &ann, "phone", forged).await?;
    assert_eq!(s, 400);
    let moved = keys.device("ann", "laptop", b"sk");
    let (s, _) = put_device(&api, &ann, "phone", moved).await?;
    assert_eq!(s, 400);
    let (s, _) = put_device(&api, &ann, "bad.id", keys.device("ann", "bad.id", b"sk")).await?;
    assert_eq!(s, 400);
    let (s, v) = put_device(&api, &ann, "phone", keys.device("ann", "phone", b"sk")).await?;
    assert_eq!(s, 200, "{v}");

    // Packages: claimed oldest first, once each, then the last-resort one (kept).
    let packages: Vec<String> = (0..30u8).map(|i| b64(&[i; 200])).collect();
    let body = json!({"key_packages": packages, "last_resort": b64(&[99; 200])});
    let (s, v) = post_packages(&api, &ann, "phone", body).await?;
    assert_eq!(
        (s, v["key_packages"].as_u64(), v["last_resort"].as_bool()),
        (200, Some(30), Some(true))
    );
    let (s, v) = api
        .call("GET", "/v1/e2ee/users/ann", Some(&bob), None)
        .await?;
    assert_eq!(s, 200);
    assert_eq!(v["identity"].as_str(), Some(keys.public().as_str()));
    assert_eq!(v["devices"][0]["device"], "phone");
    assert_eq!(v["devices"][0]["key_packages"], 30);

    // Bob and Carl claim at once, 20 each: 30 distinct packages, then the last resort.
    let claim = |token: String| {
        let api = Api::new(&mesh);
        async move {
            let mut got = Vec::new();
            for _ in 0..20 {
                let (s, v) = api
                    .call("POST", "/v1/e2ee/users/ann/claim", Some(&token), None)
                    .await?;
                anyhow::ensure!(s == 200, "claim: {s} {v}");
                let kp = &v["key_packages"][0];
                got.push((
                    kp["key_package"].as_str().unwrap_or_default().to_owned(),
                    kp["last_resort"].as_bool().unwrap_or_default(),
                ));
            }
            anyhow::Ok(got)
        }
    };
    let (got_b, got_c) = tokio::join!(claim(bob.clone()), claim(carl.clone()));
    let got: Vec<(String, bool)> = got_b?.into_iter().chain(got_c?).collect();
    let once: HashSet<&String> = got
        .iter()
        .filter(|(_, last)| !last)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(once.len(), 30, "every package handed out once");
    assert_eq!(
        got.iter().filter(|(_, last)| !last).count(),
        30,
        "and no one twice"
    );
    assert!(got
        .iter()
        .filter(|(_, last)| *last)
        .all(|(k, _)| *k == b64(&[99; 200])));
    let (_, v) = api
        .call("GET", "/v1/e2ee/users/ann", Some(&bob), None)
        .await?;
    assert_eq!(v["devices"][0]["key_packages"], 0);
    assert_eq!(v["devices"][0]["last_resort"], true);

    // Bob has claimed ann's packages 20 times, his share of one user's in an hour: the
    // next claim of ann's is throttled, though his own 40 a minute are not used up.
    let (s, v) = api
        .call("POST", "/v1/e2ee/users/ann/claim", Some(&bob), None)
        .await?;
    assert_eq!(s, 429, "claims of one user are throttled per caller: {v}");
    // Another caller's claims of ann's are its own (the per-caller limit over all users is
    // the throttle's unit test).
    let dave = api.user("dave").await?;
    let (s, v) = api
        .call("POST", "/v1/e2ee/users/ann/claim", Some(&dave), None)
        .await?;
    assert_eq!(s, 200, "{v}");

    // Bounds: too many packages at once, one too big, a user with no device, unknown users.
    let many: Vec<String> = (0..101).map(|_| b64(&[1; 8])).collect();
    let (s, _) = post_packages(&api, &ann, "phone", json!({"key_packages": many})).await?;
    assert_eq!(s, 400);
    let big = json!({"key_packages": [b64(&vec![1; 16 * 1024 + 1])]});
    let (s, _) = post_packages(&api, &ann, "phone", big).await?;
    assert_eq!(s, 413);
    let (s, _) = post_packages(&api, &ann, "tablet", json!({"key_packages": [b64(b"kp")]})).await?;
    assert_eq!(s, 404, "packages of a device not registered");
    let (s, _) = api
        .call("POST", "/v1/e2ee/users/carl/claim", Some(&ann), None)
        .await?;
    assert_eq!(s, 404, "carl has no device");
    let (s, _) = api
        .call("GET", "/v1/e2ee/users/nobody", Some(&ann), None)
        .await?;
    assert_eq!(s, 404);
    let (s, _) = api.call("GET", "/v1/e2ee/users/ann", None, None).await?;
    assert_eq!(s, 401);

    // A device re-keyed drops the packages made with the old key; a removed device is gone.
    let body = json!({"key_packages": [b64(b"old")]});
    post_packages(&api, &ann, "phone", body).await?;
    let (s, v) = put_device(&api, &ann, "phone", keys.device("ann", "phone", b"sk2")).await?;
    assert_eq!(
        (s, v["key_packages"].as_u64(), v["last_resort"].as_bool()),
        (200, Some(0), Some(false))
    );
    let (s, _) = api
        .call("DELETE", "/v1/e2ee/devices/phone", Some(&ann), None)
        .await?;
    assert_eq!(s, 204);
    let (_, v) = api
        .call("GET", "/v1/e2ee/users/ann", Some(&ann), None)
        .await?;
    assert_eq!(v["devices"], json!([]));
    let (s, _) = api
        .call("DELETE", "/v1/e2ee/devices/phone", Some(&ann), None)
        .await?;
    assert_eq!(s, 404);

    // At most 16 devices.
    for i in 0..16 {
        let d = format!("d{i}");
        let (s, v) = put_device(&api, &carl, &d, keys.device("carl", &d, b"k")).await?;
        if i == 0 {
            assert_eq!(s, 409, "carl has no identity key yet: {v}");
            put_identity(&api, &carl, keys.public()).await?;
            let (s, _) = put_device(&api, &carl, &d, keys.device("carl", &d, b"k")).await?;
            assert_eq!(s, 200);
        } else {
            assert_eq!(s, 200, "{v}");
        }
    }
    let (s, _) = put_device(&api, &carl, "d16", keys.device("carl", "d16", b"k")).await?;
    assert_eq!(s, 409);
    Ok(())
}

/// `POST /v1/e2ee/users/{user}/claim{query}` by `token`: status and body.
async fn claim_of(api: &Api, token: &str, user: &str, query: &str) -> Result<(u16, Value)> {
    let path = format!("/v1/e2ee/users/{user}/claim{query}");
    api.call("POST", &path, Some(token), None).await
}

/// `POST /v1/rooms` by `token`: status and body.
async fn create_room(api: &Api, token: &str, room: &str, kind: &str) -> Result<(u16, Value)> {
    let body = json!({ "room": room, "kind": kind });
    api.call("POST", "/v1/rooms", Some(token), Some(body)).await
}

/// A user who takes adds by invitation only (`PUT /v1/users/me/adds`) has its KeyPackages
/// claimed only for an `e2ee` room that the caller and the user are both members of
/// (`POST /v1/e2ee/users/{user}/claim?room=`): accounts it never let in cannot drain them.
/// A user who keeps the default (`anyone`) is claimed as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_of_a_user_who_takes_invitations_need_a_shared_e2ee_room() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let dora = api.user("dora").await?;
    let mal = api.user("mal").await?;
    let keys = Keys::new(9);
    assert_eq!(put_identity(&api, &dora, keys.public()).await?.0, 200);
    let record = keys.device("dora", "phone", b"sk");
    assert_eq!(put_device(&api, &dora, "phone", record).await?.0, 200);
    let packages: Vec<String> = (0..5u8).map(|i| b64(&[i; 64])).collect();
    let body = json!({"key_packages": packages});
    assert_eq!(post_packages(&api, &dora, "phone", body).await?.0, 200);
    let adds = |adds: &'static str| {
        let body = json!({ "adds": adds });
        api.call("PUT", "/v1/users/me/adds", Some(&dora), Some(body))
    };
    assert_eq!(adds("invitations").await?.0, 200);
    let claim = |token, query| claim_of(&api, token, "dora", query);
    let room = |token, room, kind| create_room(&api, token, room, kind);

    // Without a room: refused.
    let (s, v) = claim(&mal, "").await?;
    assert_eq!(
        (s, http_error(&v)),
        (403, Some(ErrorCode::Forbidden)),
        "{v}"
    );
    // ann's e2ee room: dora is only invited, then a member once she accepts.
    assert_eq!(room(&ann, "vault", "e2ee").await?.0, 201);
    let body = json!({"user": "dora", "role": "member"});
    let (s, v) = api
        .call("POST", "/v1/rooms/vault/members", Some(&ann), Some(body))
        .await?;
    assert_eq!(s, 202, "invited: {v}");
    let (s, v) = claim(&ann, "?room=vault").await?;
    assert_eq!(s, 403, "dora is not a member yet: {v}");
    let (s, v) = api
        .call("POST", "/v1/users/me/invitations/vault", Some(&dora), None)
        .await?;
    assert!(s < 300, "accepted: {s} {v}");
    let (s, v) = claim(&ann, "?room=vault").await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["key_packages"][0]["key_package"], json!(b64(&[0; 64])));
    // Not for a room the caller is not in, one dora is not in, or one that is not e2ee.
    let (s, _) = claim(&mal, "?room=vault").await?;
    assert_eq!(s, 403, "mal is not in vault");
    assert_eq!(room(&mal, "den", "e2ee").await?.0, 201);
    let (s, _) = claim(&mal, "?room=den").await?;
    assert_eq!(s, 403, "dora is not in den");
    assert_eq!(room(&ann, "plain", "private").await?.0, 201);
    let (s, _) = claim(&ann, "?room=plain").await?;
    assert_eq!(s, 400, "not an e2ee room");
    // Back to `anyone`: claimed without a room, as before (the next package).
    assert_eq!(adds("anyone").await?.0, 200);
    let (s, v) = claim(&mal, "").await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["key_packages"][0]["key_package"], json!(b64(&[1; 64])));
    Ok(())
}

/// An identity key set with a stolen token is not set for good: once the owner has its
/// account back (a password change revokes the thief's token), the account's password
/// replaces the key, and the thief's device and KeyPackages go with it. A token alone never
/// replaces a key, and a wrong password is refused like a failed login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_key_set_with_a_stolen_token_is_replaced_with_the_password() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let stolen = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let thief = Keys::new(66);
    assert_eq!(put_identity(&api, &stolen, thief.public()).await?.0, 200);
    let evil = thief.device("ann", "evil", b"sk");
    let (s, v) = put_device(&api, &stolen, "evil", evil).await?;
    assert_eq!(s, 200, "{v}");
    let body = json!({"key_packages": [b64(&[1; 200])]});
    assert_eq!(post_packages(&api, &stolen, "evil", body).await?.0, 200);

    let change = json!({"old_password": "correct horse", "new_password": "a new password"});
    let (s, v) = api
        .call("POST", "/v1/auth/password", Some(&stolen), Some(change))
        .await?;
    assert_eq!(s, 200, "{v}");
    let ann = v["token"].as_str().unwrap_or_default().to_owned();
    let mine = Keys::new(67);
    let (s, v) = put_identity(&api, &ann, mine.public()).await?;
    assert_eq!(
        (s, http_error(&v)),
        (409, Some(ErrorCode::Conflict)),
        "a token alone: {v}"
    );
    let replace = |password: &str| json!({"key": mine.public(), "password": password});
    let (s, v) = api
        .call(
            "PUT",
            "/v1/e2ee/identity",
            Some(&ann),
            Some(replace("correct horse")),
        )
        .await?;
    assert_eq!(
        (s, http_error(&v)),
        (403, Some(ErrorCode::Forbidden)),
        "{v}"
    );
    let (s, v) = api
        .call(
            "PUT",
            "/v1/e2ee/identity",
            Some(&ann),
            Some(replace("a new password")),
        )
        .await?;
    assert_eq!(
        (s, v["key"].as_str()),
        (200, Some(mine.public().as_str())),
        "{v}"
    );

    // The thief's device and packages are gone; ann's own device is vouched for by her key.
    let (s, v) = api
        .call("GET", "/v1/e2ee/users/ann", Some(&bob), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["identity"].as_str(), Some(mine.public().as_str()));
    assert_eq!(v["devices"], json!([]), "{v}");
    let (s, v) = api
        .call("POST", "/v1/e2ee/users/ann/claim", Some(&bob), None)
        .await?;
    assert_eq!(s, 404, "nothing of the thief's to claim: {v}");
    let (s, v) = put_device(&api, &ann, "phone", mine.device("ann", "phone", b"sk2")).await?;
    assert_eq!(s, 200, "{v}");
    mesh.stop().await
}
