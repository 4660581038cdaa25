//! The SDK against a real embedded mesh (nats-server child, worker, fjall store, gateway),
//! through `chatmesh_client`: devices publish to the directory, a room's creator adds a user
//! by claimed KeyPackages, both read each other's messages from history, and a commit that
//! loses its epoch to the other's is refused `conflict` by the gateway and made again; three
//! members talk, one offline across two epochs catches up, one removed cannot read on, a
//! resent ciphertext is stored once, a deleted message is skipped by the catch-up and the
//! next one reads, and no plaintext is on the bus, in the stream, in the store or in any file
//! of the data directory.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chatmesh::{Config, Mesh, MeshOptions};
use chatmesh_client::{Client, ErrorCode, Http, RoomKind};
use chatmesh_e2ee::{
    catch_up, claim, commit, create_group, mls_message, publish, send_text, verify_members, Change,
    Device, Event, MlsKind, RoomTransport,
};

const ROOM: &str = "secret";

async fn mesh(dir: &std::path::Path) -> Mesh {
    // One test registers 170 users from 127.0.0.1.
    Mesh::start(MeshOptions::local(dir.join("mesh"), Config::for_tests()))
        .await
        .expect("mesh starts")
}

async fn user(base: &str, name: &str) -> Result<Client> {
    Http::new(base)?.register(name, "password-1").await?;
    let client = Client::builder(base)
        .login(name, "password-1")
        .request_timeout(Duration::from_secs(20))
        .connect()
        .await?;
    Ok(client)
}

/// Catches up from history until `want` holds for the events so far (history may trail
/// an ack by a moment), within 10 s.
async fn until(
    device: &mut Device,
    client: &Client,
    want: impl Fn(&[Event]) -> bool,
) -> Result<Vec<Event>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = Vec::new();
    loop {
        events.extend(catch_up(device, client, ROOM).await?);
        if want(&events) {
            return Ok(events);
        }
        anyhow::ensure!(Instant::now() < deadline, "not within 10 s: {events:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// ann (in the room's group) adds bob's device to it; bob joins by the welcome.
async fn ann_adds_bob(
    ann: &Client,
    ann_dev: &mut Device,
    bob: &Client,
    bob_dev: &mut Device,
) -> Result<chatmesh_e2ee::Committed> {
    let packages = claim(ann_dev, &ann.http(), ROOM, &["bob"]).await?;
    let added = commit(ann_dev, ann, ROOM, &Change::Add(packages)).await?;
    let epoch = added.epoch;
    until(bob_dev, bob, |e| {
        e.iter()
            .any(|e| matches!(e, Event::Joined { epoch: at, .. } if *at == epoch))
    })
    .await
    .context("bob joins by the welcome")?;
    Ok(added)
}

/// A mesh with ann and bob, each with a device that published 5 KeyPackages, in the e2ee
/// room `ROOM` and its group: ann created both and added bob (the commit that did).
async fn ann_and_bob(
    dir: &std::path::Path,
) -> Result<(
    Mesh,
    Client,
    Device,
    Client,
    Device,
    chatmesh_e2ee::Committed,
)> {
    let mesh = mesh(dir).await;
    let base = mesh.url();
    let ann = user(&base, "ann").await?;
    let bob = user(&base, "bob").await?;
    ann.http().create_room(ROOM, RoomKind::E2ee).await?;
    ann.http().add_member(ROOM, "bob", false).await?;
    ann.join(ROOM).await?;
    bob.join(ROOM).await?;
    let mut ann_dev = Device::create(dir.join("ann"), "ann", "laptop", None)?;
    let mut bob_dev = Device::create(dir.join("bob"), "bob", "phone", None)?;
    publish(&mut ann_dev, &ann.http(), 5).await?;
    publish(&mut bob_dev, &bob.http(), 5).await?;
    create_group(&mut ann_dev, &ann.http(), ROOM).await?;
    let added = ann_adds_bob(&ann, &mut ann_dev, &bob, &mut bob_dev).await?;
    Ok((mesh, ann, ann_dev, bob, bob_dev, added))
}

fn text(events: &[Event], want: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Text { text, .. } if text == want))
}

/// Two users in an e2ee room of a real mesh: add by claimed KeyPackages, messages both
/// ways, the directory's records verify, and two commits for one epoch end in one group.
#[tokio::test]
async fn two_users_one_group_through_a_real_mesh() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_mesh, ann, mut ann_dev, bob, mut bob_dev, added) = ann_and_bob(dir.path()).await?;
    assert_eq!((added.epoch, added.attempts), (1, 1));

    send_text(&mut ann_dev, &ann, ROOM, "hello bob").await?;
    until(&mut bob_dev, &bob, |e| text(e, "hello bob")).await?;
    send_text(&mut bob_dev, &bob, ROOM, "hello ann").await?;
    until(&mut ann_dev, &ann, |e| text(e, "hello ann")).await?;
    verify_members(&mut bob_dev, &bob.http(), ROOM).await?;

    // bob's commit for epoch 1 is stored first; ann's for the same epoch gets `conflict`,
    // and she catches up and commits again on epoch 2
    let staged = bob_dev.stage_self_update(ROOM)?;
    let seq = RoomTransport::send_mls(&bob, ROOM, &staged.commit).await?;
    bob_dev.confirm_commit(ROOM, seq)?;
    let won = commit(&mut ann_dev, &ann, ROOM, &Change::SelfUpdate).await?;
    assert_eq!((won.epoch, won.attempts), (3, 2), "{won:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while bob_dev.epoch(ROOM) != Some(3) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "bob stays at {:?}",
            bob_dev.epoch(ROOM)
        );
        catch_up(&mut bob_dev, &bob, ROOM).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send_text(&mut bob_dev, &bob, ROOM, "one group").await?;
    until(&mut ann_dev, &ann, |e| text(e, "one group")).await?;
    Ok(())
}

/// A message deleted before a member caught up is skipped by its catch-up (the tombstone
/// has no ciphertext), and the sender's next message still decrypts: the member's ratchet
/// steps over the generation it never saw.
#[tokio::test]
async fn a_deleted_message_is_skipped_and_the_next_one_reads() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_mesh, ann, mut ann_dev, bob, mut bob_dev, _) = ann_and_bob(dir.path()).await?;

    let gone = send_text(&mut ann_dev, &ann, ROOM, "sent by mistake").await?;
    send_text(&mut ann_dev, &ann, ROOM, "and this one stays").await?;
    ann.delete(ROOM, gone).await?;
    // The deletion is reported with the seq it removed, by whom the server says.
    let deleted = |events: &[Event]| {
        events
            .iter()
            .any(|e| matches!(e, Event::Deleted { seq, by } if *seq == gone && by == "ann"))
    };
    let events = until(&mut bob_dev, &bob, |e| {
        text(e, "and this one stays") && deleted(e)
    })
    .await?;
    assert!(!text(&events, "sent by mistake"), "{events:?}");
    send_text(&mut bob_dev, &bob, ROOM, "read you").await?;
    until(&mut ann_dev, &ann, |e| text(e, "read you")).await?;
    Ok(())
}

/// Three users, each with a device that published 3 KeyPackages; the first creates `room`
/// (kind `e2ee`) and adds the other two.
async fn three_in(
    dir: &std::path::Path,
    base: &str,
    room: &str,
    names: [(&str, &str); 3],
) -> Result<[(Client, Device); 3]> {
    let mut out = Vec::with_capacity(3);
    for (name, device) in names {
        let client = user(base, name).await?;
        let mut dev = Device::create(dir.join(name), name, device, None)?;
        publish(&mut dev, &client.http(), 3).await?;
        out.push((client, dev));
    }
    let creator = out[0].0.http();
    creator.create_room(room, RoomKind::E2ee).await?;
    for (name, _) in &names[1..] {
        creator.add_member(room, name, false).await?;
    }
    out.try_into()
        .map_err(|_| anyhow::anyhow!("three users, three devices"))
}

/// The room's group as the server tracks it, once at `epoch` (the worker stores a commit a
/// moment after its ack), within 10 s.
async fn group_at(client: &Client, room: &str, epoch: u64) -> Result<chatmesh_e2ee::RoomGroup> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let group = client.http().e2ee_group(room).await?;
        if group.epoch == epoch || Instant::now() > deadline {
            return Ok(group);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The refusal code of `sent`, which must have been refused.
fn refused<T: std::fmt::Debug>(sent: chatmesh_client::Result<T>) -> Result<ErrorCode> {
    match sent {
        Ok(v) => anyhow::bail!("accepted: {v:?}"),
        Err(e) => e.code().with_context(|| format!("not a refusal: {e}")),
    }
}

/// A member of the room who is not in its MLS group cannot stall the group: its creator
/// handed the group to the server, which checks every commit before ordering it. Junk, a
/// well-formed commit of another group under the room's id, and a member's real commit sent
/// by someone else are refused, and so is junk sent for the next epoch just before a real
/// commit starts it; the room's epoch stays where it was and the group goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_no_member_could_make_are_refused_and_the_group_goes_on() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = mesh(dir.path()).await;
    let base = mesh.url();
    let [(ann, mut ann_dev), (bob, mut bob_dev), (mal, mut mal_dev)] = three_in(
        dir.path(),
        &base,
        ROOM,
        [("ann", "laptop"), ("bob", "phone"), ("mal", "box")],
    )
    .await?;

    // Only the creator hands the group over, once, before the first commit.
    create_group(&mut ann_dev, &ann.http(), ROOM).await?;
    let body = ann_dev.group_body(ROOM)?;
    ann.http().e2ee_put_group(ROOM, &body).await?; // the same group again: a retry
    assert_eq!(
        refused(bob.http().e2ee_put_group(ROOM, &body).await)?,
        ErrorCode::Forbidden
    );
    mal_dev.create_group(ROOM)?; // a group of mal's own, under the room's id
    let other = mal_dev.group_body(ROOM)?;
    assert_eq!(
        refused(ann.http().e2ee_put_group(ROOM, &other).await)?,
        ErrorCode::Forbidden,
        "another creator's group"
    );
    let group = ann.http().e2ee_group(ROOM).await?;
    assert!(group.checked);
    assert_eq!(
        (group.epoch, group.members),
        (0, vec!["ann/laptop".to_owned()])
    );

    ann_adds_bob(&ann, &mut ann_dev, &bob, &mut bob_dev).await?;

    // 1. junk for the room's epoch
    let junk = mls_message(MlsKind::Commit, 1, b"no MLS message at all");
    assert_eq!(
        refused(mal.send_mls(ROOM, junk).await)?,
        ErrorCode::BadRequest
    );
    // 2. a well-formed commit for epoch 1 of mal's own group with the room's id
    let staged = mal_dev.stage_self_update(ROOM)?;
    mal_dev.confirm_commit(ROOM, 0)?;
    let forged = mal_dev.stage_self_update(ROOM)?;
    assert_eq!((staged.commit.epoch, forged.commit.epoch), (0, 1));
    assert_eq!(
        refused(mal.send_mls(ROOM, forged.commit).await)?,
        ErrorCode::Forbidden
    );
    // 3. bob's real commit, sent by mal
    let bobs = bob_dev.stage_self_update(ROOM)?;
    bob_dev.abort_commit(ROOM)?;
    assert_eq!(
        refused(mal.send_mls(ROOM, bobs.commit).await)?,
        ErrorCode::Forbidden
    );
    // 4. a proposal alone (the members would queue it; the server could not check the
    // commits that then carry it by reference)
    let proposal = mls_message(MlsKind::Proposal, 1, b"any proposal");
    assert_eq!(
        refused(mal.send_mls(ROOM, proposal).await)?,
        ErrorCode::BadRequest
    );
    let group = ann.http().e2ee_group(ROOM).await?;
    assert_eq!(group.epoch, 1, "no refused commit moved the room on");
    assert_eq!(group.members, ["ann/laptop", "bob/phone"]);

    // The group goes on: bob's own commit is taken at once, ann follows, both read.
    // 5. Junk for the epoch bob's commit starts, sent just before it: the gateway waits for
    // the room to reach that epoch and the worker checks it then.
    let early = mls_message(MlsKind::Commit, 2, b"junk for the next epoch");
    let (early, done) = tokio::join!(mal.send_mls(ROOM, early), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        commit(&mut bob_dev, &bob, ROOM, &Change::SelfUpdate).await
    });
    let done = done?;
    assert_eq!((done.epoch, done.attempts), (2, 1));
    assert_eq!(
        refused(early)?,
        ErrorCode::BadRequest,
        "checked at its epoch"
    );
    send_text(&mut bob_dev, &bob, ROOM, "still one group").await?;
    until(&mut ann_dev, &ann, |e| text(e, "still one group")).await?;
    assert_eq!(ann_dev.epoch(ROOM), Some(2));
    let done = commit(
        &mut ann_dev,
        &ann,
        ROOM,
        &Change::Remove(vec!["bob".into()]),
    )
    .await?;
    assert_eq!(done.epoch, 3);
    let group = group_at(&ann, ROOM, 3).await?;
    assert_eq!(
        (group.epoch, group.members),
        (3, vec!["ann/laptop".to_owned()])
    );
    assert_eq!(
        refused(ann.http().e2ee_put_group(ROOM, &body).await)?,
        ErrorCode::Conflict,
        "a group on record is not replaced"
    );
    Ok(())
}

/// A room whose group was not handed over at creation (an older SDK made it) is checked
/// from the moment its owner hands the group over at the room's epoch: before, `GET .../group`
/// says it is not checked; a member who is not the owner cannot hand it over; after, junk
/// is refused and the members' commits go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_rooms_group_is_handed_over_later_and_checked_from_then_on() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = mesh(dir.path()).await;
    let base = mesh.url();
    let [(ann, mut ann_dev), (bob, mut bob_dev), (mal, _)] = three_in(
        dir.path(),
        &base,
        ROOM,
        [("ann", "laptop"), ("bob", "phone"), ("mal", "box")],
    )
    .await?;
    ann_dev.create_group(ROOM)?; // on the device only
    ann_adds_bob(&ann, &mut ann_dev, &bob, &mut bob_dev).await?;
    let group = group_at(&ann, ROOM, 1).await?;
    assert!(!group.checked && group.members.is_empty(), "{group:?}");

    let body = bob_dev.group_body(ROOM)?;
    assert_eq!(
        refused(bob.http().e2ee_put_group(ROOM, &body).await)?,
        ErrorCode::Forbidden,
        "only the owner hands it over"
    );
    chatmesh_e2ee::hand_over_group(&mut ann_dev, &ann.http(), ROOM).await?;
    let group = ann.http().e2ee_group(ROOM).await?;
    assert!(group.checked);
    assert_eq!(
        (group.epoch, group.members),
        (1, vec!["ann/laptop".to_owned(), "bob/phone".to_owned()])
    );

    let junk = mls_message(MlsKind::Commit, 1, b"no MLS message at all");
    assert_eq!(
        refused(mal.send_mls(ROOM, junk).await)?,
        ErrorCode::BadRequest
    );
    let done = commit(&mut bob_dev, &bob, ROOM, &Change::SelfUpdate).await?;
    assert_eq!((done.epoch, done.attempts), (2, 1));
    assert_eq!(group_at(&ann, ROOM, 2).await?.epoch, 2);
    Ok(())
}

/// Catches up `device` in `room` (any room) until `want` holds, within 10 s.
async fn until_in(
    device: &mut Device,
    client: &Client,
    room: &str,
    want: impl Fn(&[Event]) -> bool,
) -> Result<Vec<Event>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = Vec::new();
    loop {
        events.extend(catch_up(device, client, room).await?);
        if want(&events) {
            return Ok(events);
        }
        anyhow::ensure!(Instant::now() < deadline, "not within 10 s: {events:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where `needle` (or its base64) occurs in `hay`, if anywhere.
fn leaks(hay: &[u8], needles: &[Vec<u8>]) -> Option<String> {
    needles
        .iter()
        .find(|n| hay.windows(n.len()).any(|w| w == n.as_slice()))
        .map(|n| String::from_utf8_lossy(n).into_owned())
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Three members of a real mesh talk; a member offline across two epoch changes catches up;
/// a removed member cannot read what is sent after its removal; a resent ciphertext is
/// stored once; and no plaintext (nor its base64) is anywhere the server can look: on any
/// NATS subject while it happens, in the JetStream stream, in the store, or in any file of
/// the data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_and_the_server_never_sees_plaintext() -> Result<()> {
    use base64::Engine as _;
    use futures::StreamExt as _;

    let dir = tempfile::tempdir()?;
    let mesh = mesh(dir.path()).await;
    let base = mesh.url();
    let room = "vault";

    // Everything on every subject, from before the first message.
    let spy = mesh.nats.connect().await?;
    let mut sub = spy.subscribe(">").await?;
    let (tap, mut tapped) = tokio::sync::mpsc::unbounded_channel();
    let spying = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let _ = tap.send(msg.payload.to_vec());
        }
    });

    let [(ann, mut ann_dev), (bob, mut bob_dev), (carl, mut carl_dev)] = three_in(
        dir.path(),
        &base,
        room,
        [("ann", "laptop"), ("bob", "phone"), ("carl", "tablet")],
    )
    .await?;

    create_group(&mut ann_dev, &ann.http(), room).await?;
    let packages = claim(&mut ann_dev, &ann.http(), room, &["bob", "carl"]).await?;
    let added = commit(&mut ann_dev, &ann, room, &Change::Add(packages)).await?;
    assert_eq!(added.epoch, 1);
    let joined = |e: &[Event]| {
        e.iter()
            .any(|e| matches!(e, Event::Joined { epoch: 1, .. }))
    };
    until_in(&mut bob_dev, &bob, room, joined).await?;
    until_in(&mut carl_dev, &carl, room, joined).await?;

    let mut said: Vec<String> = Vec::new();
    for (dev, client, text) in [
        (&mut ann_dev, &ann, "alpha: the launch code is 0000"),
        (&mut bob_dev, &bob, "bravo: meet at the old mill"),
        (&mut carl_dev, &carl, "charlie: bring the blue folder"),
    ] {
        send_text(dev, client, room, text).await?;
        said.push(text.to_owned());
    }
    for (dev, client) in [
        (&mut ann_dev, &ann),
        (&mut bob_dev, &bob),
        (&mut carl_dev, &carl),
    ] {
        let me = dev.user().to_owned();
        let want: Vec<String> = said
            .iter()
            .filter(|t| !t.starts_with(&me[..1]))
            .cloned()
            .collect();
        until_in(dev, client, room, |e| want.iter().all(|t| text(e, t))).await?;
    }

    // A ciphertext resent with its id is stored once, like any message.
    let sealed = ann_dev.encrypt(room, "delta: resent once")?;
    said.push("delta: resent once".into());
    // What the server should hold instead: this ciphertext, found below where it scans.
    let cipher = vec![sealed.data.clone().into_bytes()];
    let first = ann
        .send_mls_with_id(room, "resend-1", sealed.clone())
        .await?;
    let again = ann.send_mls_with_id(room, "resend-1", sealed).await?;
    assert_eq!(first.seq, again.seq);
    let events = until_in(&mut bob_dev, &bob, room, |e| text(e, "delta: resent once")).await?;
    let copies = events
        .iter()
        .filter(|e| matches!(e, Event::Text { text, .. } if text == "delta: resent once"))
        .count();
    assert_eq!(copies, 1);

    // carl is offline while the group goes through two epochs; then he catches up.
    commit(&mut ann_dev, &ann, room, &Change::SelfUpdate).await?;
    until_in(&mut bob_dev, &bob, room, |_| true).await?;
    let second = commit(&mut bob_dev, &bob, room, &Change::SelfUpdate).await?;
    assert_eq!(second.epoch, 3);
    send_text(&mut ann_dev, &ann, room, "echo: after two epochs").await?;
    said.push("echo: after two epochs".into());
    assert_eq!(carl_dev.epoch(room), Some(1));
    until_in(&mut carl_dev, &carl, room, |e| {
        text(e, "echo: after two epochs")
    })
    .await?;
    assert_eq!(carl_dev.epoch(room), Some(3));

    // ann removes bob from the group (bob stays a member of the room on the server, so he
    // still gets the ciphertext): he learns he was removed and cannot read what follows.
    until_in(&mut ann_dev, &ann, room, |_| true).await?;
    let removed = commit(
        &mut ann_dev,
        &ann,
        room,
        &Change::Remove(vec!["bob".into()]),
    )
    .await?;
    assert_eq!(removed.epoch, 4);
    send_text(&mut ann_dev, &ann, room, "foxtrot: bob must not read this").await?;
    said.push("foxtrot: bob must not read this".into());
    until_in(&mut carl_dev, &carl, room, |e| {
        text(e, "foxtrot: bob must not read this")
    })
    .await?;
    let bob_sees = until_in(&mut bob_dev, &bob, room, |e| {
        e.iter().any(|e| matches!(e, Event::Removed { .. }))
    })
    .await?;
    let later = catch_up(&mut bob_dev, &bob, room).await?;
    assert!(
        !bob_sees
            .iter()
            .chain(&later)
            .any(|e| matches!(e, Event::Text { text, .. } if text.starts_with("foxtrot"))),
        "a removed member read a later message: {later:?}"
    );
    assert!(bob_dev.epoch(room).is_none(), "bob has no group left");

    // Nothing the server saw or keeps holds the plaintext or its base64.
    let b64 = base64::engine::general_purpose::STANDARD;
    let needles: Vec<Vec<u8>> = said
        .iter()
        .flat_map(|t| [t.as_bytes().to_vec(), b64.encode(t).into_bytes()])
        .collect();
    assert!(leaks(b"> alpha: the launch code is 0000 <", &needles).is_some());
    tokio::time::sleep(Duration::from_millis(200)).await;
    spying.abort();
    let mut seen = 0usize;
    while let Ok(payload) = tapped.try_recv() {
        seen += 1;
        assert_eq!(leaks(&payload, &needles), None, "on the bus");
    }
    assert!(seen > 20, "the spy saw the traffic ({seen} messages)");

    let js = async_nats::jetstream::new(spy.clone());
    let mut stream = js.get_stream(chatmesh_protocol::subjects::STREAM).await?;
    let last = stream.info().await?.state.last_sequence;
    let (mut read, mut ciphertexts) = (0, 0);
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            read += 1;
            ciphertexts += usize::from(leaks(&m.payload, &cipher).is_some());
            assert_eq!(
                leaks(&m.payload, &needles),
                None,
                "in the stream at seq {seq}"
            );
        }
    }
    assert_eq!(
        ciphertexts, 1,
        "the resent ciphertext is in the stream once"
    );
    assert!(read >= 8, "the stream holds the room's messages ({read})");

    let worker = mesh.config.worker.clone();
    drop(spy);
    mesh.stop().await?;
    let store = chatmesh_workers::open_store(&worker).await?;
    use chatmesh_workers::store::Direction;
    use chatmesh_workers::KvStore as _;
    let pairs = store
        .scan(vec![0]..vec![0xff; 4], Direction::Forward, 1_000_000)
        .await?;
    assert!(
        pairs.len() > 20,
        "the store was read ({} pairs)",
        pairs.len()
    );
    for (k, v) in &pairs {
        assert_eq!(leaks(v, &needles), None, "in the store under {k:?}");
    }
    assert!(
        pairs.iter().any(|(_, v)| leaks(v, &cipher).is_some()),
        "the store holds the ciphertext"
    );
    drop(store);
    let mut files = Vec::new();
    files_under(&dir.path().join("mesh"), &mut files)?;
    let mut holding = 0;
    for f in &files {
        let bytes = std::fs::read(f)?;
        assert_eq!(leaks(&bytes, &needles), None, "in {}", f.display());
        holding += usize::from(leaks(&bytes, &cipher).is_some());
    }
    assert!(
        holding > 0,
        "a file holds the ciphertext ({} read)",
        files.len()
    );
    Ok(())
}

/// A group whose welcome and commit are larger than a message may carry inline (170 members:
/// a commit of about 68,000 base64 characters against 61,440): the SDK uploads them as files
/// of the room, the server relays the references (the file lives as the message's
/// attachment) and reads the commit's file to check it, and the new member downloads the
/// welcome, joins and reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_too_large_to_send_inline_travels_as_a_file() -> Result<()> {
    const MEMBERS: usize = 170;
    let dir = tempfile::tempdir()?;
    let mesh = mesh(dir.path()).await;
    let base = mesh.url();
    let ann = user(&base, "ann").await?;
    let room = "hall";
    ann.http().create_room(room, RoomKind::E2ee).await?;
    let mut ann_dev = Device::create(dir.path().join("ann"), "ann", "laptop", None)?;
    publish(&mut ann_dev, &ann.http(), 2).await?;
    create_group(&mut ann_dev, &ann.http(), room).await?;

    // Members that only publish a device (HTTP); the first also reads (a session).
    let mut names = Vec::new();
    let mut first = None;
    for i in 0..MEMBERS {
        let name = format!("m{i}");
        let http = Http::new(&base)?;
        http.register(&name, "password-1").await?;
        let token = http.login(&name, "password-1").await?.token;
        let http = http.with_token(token);
        ann.http().add_member(room, &name, false).await?;
        let mut dev = Device::create(dir.path().join(&name), &name, "d", None)?;
        publish(&mut dev, &http, 1).await?;
        if i == 0 {
            first = Some(dev);
        }
        names.push(name);
    }
    let users: Vec<&str> = names.iter().map(String::as_str).collect();
    let packages = claim(&mut ann_dev, &ann.http(), room, &users).await?;
    let added = commit(&mut ann_dev, &ann, room, &Change::Add(packages)).await?;
    assert_eq!(added.epoch, 1);

    // The welcome went as a file: its message carries a file reference and the attachment.
    let page = ann.history(room, None, 10).await?;
    let welcome = page
        .messages
        .iter()
        .find(|m| {
            m.mls
                .as_ref()
                .is_some_and(|x| x.kind == chatmesh_client::MlsKind::Welcome)
        })
        .context("the welcome is in history")?;
    let mls = welcome.mls.as_ref().context("mls")?;
    assert!(mls.data.is_empty() && mls.file.is_some(), "{mls:?}");
    // The commit too (170 KeyPackages): the server read it from the file to check it, and
    // again to follow the group.
    let commit_msg = page
        .messages
        .iter()
        .find_map(|m| {
            m.mls
                .as_ref()
                .filter(|x| x.kind == chatmesh_client::MlsKind::Commit)
        })
        .context("the commit is in history")?;
    assert!(commit_msg.file.is_some(), "{commit_msg:?}");
    let group = group_at(&ann, room, 1).await?;
    assert!(group.checked);
    assert_eq!((group.epoch, group.members.len()), (1, MEMBERS + 1));
    assert_eq!(welcome.attachments.len(), 1);
    assert!(
        welcome.attachments[0].size > 61_440 / 4 * 3,
        "{:?}",
        welcome.attachments
    );

    let mut m0 = first.context("m0")?;
    let m0_client = Client::builder(&base)
        .login("m0", "password-1")
        .connect()
        .await?;
    let joined = |e: &[Event]| {
        e.iter()
            .any(|e| matches!(e, Event::Joined { epoch: 1, .. }))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut events = Vec::new();
    while !joined(&events) {
        anyhow::ensure!(Instant::now() < deadline, "m0 never joined: {events:?}");
        events.extend(catch_up(&mut m0, &m0_client, room).await?);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m0.members(room)?.len(), MEMBERS + 1);
    send_text(&mut ann_dev, &ann, room, "welcome, all 170").await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = catch_up(&mut m0, &m0_client, room).await?;
        if text(&seen, "welcome, all 170") {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "m0 never read it");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
