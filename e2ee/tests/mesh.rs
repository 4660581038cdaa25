//! The SDK against a real embedded mesh (nats-server child, worker, fjall store, gateway),
//! through `chatmesh_client`: devices publish to the directory, a room's creator adds a user
//! by claimed KeyPackages, both read each other's messages from history, and a commit that
//! loses its epoch to the other's is refused `conflict` by the gateway and made again.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chatmesh::{Config, Mesh, MeshOptions};
use chatmesh_client::{Client, Http, RoomKind};
use chatmesh_e2ee::{
    catch_up, claim, commit, publish, send_text, verify_members, Change, Device, Event,
    RoomTransport,
};

const ROOM: &str = "secret";

async fn mesh(dir: &std::path::Path) -> Mesh {
    let mut config = Config::default();
    config.worker.argon2_memory_kib = 64;
    config.worker.argon2_iterations = 1;
    Mesh::start(MeshOptions {
        data_dir: dir.join("mesh"),
        listen: "127.0.0.1:0".into(),
        nats_port: None,
        nats_tls: None,
        nats_threads: None,
        config,
    })
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
    let mesh = mesh(dir.path()).await;
    let base = mesh.url();
    let ann = user(&base, "ann").await?;
    let bob = user(&base, "bob").await?;
    ann.http().create_room(ROOM, RoomKind::E2ee).await?;
    ann.http().add_member(ROOM, "bob", false).await?;
    ann.join(ROOM).await?;
    bob.join(ROOM).await?;

    let mut ann_dev = Device::create(dir.path().join("ann"), "ann", "laptop", None)?;
    let mut bob_dev = Device::create(dir.path().join("bob"), "bob", "phone", None)?;
    publish(&mut ann_dev, &ann.http(), 5).await?;
    publish(&mut bob_dev, &bob.http(), 5).await?;

    ann_dev.create_group(ROOM)?;
    let packages = claim(&mut ann_dev, &ann.http(), &["bob"]).await?;
    let added = commit(&mut ann_dev, &ann, ROOM, &Change::Add(packages)).await?;
    assert_eq!((added.epoch, added.attempts), (1, 1));
    until(&mut bob_dev, &bob, |e| {
        e.iter()
            .any(|e| matches!(e, Event::Joined { epoch: 1, .. }))
    })
    .await
    .context("bob joins by the welcome")?;

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
