//! The notifier killed with SIGKILL mid-batch (`chatmesh up` as a process, restarted on its
//! data dir): messages waiting in a collapse window when it dies are redelivered and pushed
//! once after the restart; a push that was in flight at the push service when it died is not
//! pushed again; what comes next is pushed once.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::json;

use super::common::process::{up, web_client_url, Reap};
use super::common::{Api, Client};
use super::receiver::{Receiver, Subscription};
use super::{club, register, vapid_key};

/// The collapse window of this test: long, so that the kill surely lands inside it.
const COLLAPSE_MS: u64 = 4_000;
/// How long a test waits for a push after a restart (redelivery after `ACK_WAIT_SECS`, then a
/// window).
const AFTER_RESTART: Duration = Duration::from_secs(40);
/// The notifier's ack wait: the least the config allows for this window (window + 2 s, 5 s).
const ACK_WAIT_SECS: u64 = 7;

/// `chatmesh up` with push to the local receiver; returns the child, its reaper and its URL.
async fn start(dir: &std::path::Path) -> Result<(Child, Reap, String)> {
    let mut child = up(dir)
        .env("CHATMESH__PUSH__ENABLED", "true")
        .env("CHATMESH__PUSH__ALLOW_HTTP_LOOPBACK", "true")
        .env("CHATMESH__PUSH__COLLAPSE_MS", COLLAPSE_MS.to_string())
        .env("CHATMESH__PUSH__GRACE_MS", "500")
        .env("CHATMESH__PUSH__ACK_WAIT_SECS", ACK_WAIT_SECS.to_string())
        .stderr(Stdio::null())
        .spawn()?;
    let reap = Reap(child.id());
    let url = web_client_url(&mut child).await?;
    Ok((child, reap, url))
}

async fn kill(mut child: Child, reap: Reap) -> Result<()> {
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()?;
    tokio::task::spawn_blocking(move || child.wait()).await??;
    // Its nats-server is stopped by its watchdog; ended here at once so the restart finds
    // the ports and the store free.
    drop(reap);
    Ok(())
}

async fn sender(url: &str, api: &Api) -> Result<Client> {
    let ann = api.user("ann").await?;
    let ws = format!("{}/v1/ws", url.replacen("http", "ws", 1));
    let mut client = Client::login(&ws, &ann).await?;
    client.join("club").await?;
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_killed_mid_batch_loses_nothing_and_pushes_nothing_twice() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let push = Receiver::start().await?;
    let sub = Subscription::new(push.endpoint("bob"));

    // 1. Killed while three messages wait in bob's window (unacked, no delivery mark).
    let (child, reap, url) = start(dir.path()).await?;
    let api = Api::at(&url);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    register(&api, &bob, &sub).await?;
    club(&api, &ann, "club", &["bob"]).await?;
    let mut client = sender(&url, &api).await?;
    for (id, body) in [("m1", "one"), ("m2", "two"), ("m3", "three")] {
        client.post("club", id, body).await?;
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    ensure!(
        push.received("bob").is_empty(),
        "the window closed before the kill"
    );
    kill(child, reap).await?;

    let (child, reap, url) = start(dir.path()).await?;
    let api = Api::at(&url);
    let got = push.wait_delivered("bob", 1, AFTER_RESTART).await?;
    let key = vapid_key(&api, &api.user("ann").await?).await?;
    let first = sub.open(&got[0], &key, &push.origin())?;
    assert_eq!(
        (first["count"].clone(), first["body"].clone()),
        (json!(3), json!("three")),
        "the three messages of the killed window, in one push"
    );

    // 2. Killed while that push service holds a push (its mark written, its messages not
    //    acked yet): after the restart the redelivered message finds its mark.
    push.hold("bob", Some(Duration::from_secs(60)));
    let mut client = sender(&url, &api).await?;
    client.post("club", "m4", "four").await?;
    push.wait_delivered("bob", 2, Duration::from_millis(COLLAPSE_MS) * 3)
        .await?;
    kill(child, reap).await?;
    push.hold("bob", None);

    let (child, reap, url) = start(dir.path()).await?;
    let api = Api::at(&url);
    // Long enough for the redelivery and a whole window after it.
    tokio::time::sleep(Duration::from_secs(ACK_WAIT_SECS) + Duration::from_millis(COLLAPSE_MS * 2))
        .await;
    assert_eq!(
        push.received("bob").len(),
        2,
        "m4 was pushed once, before the kill"
    );
    let mut client = sender(&url, &api).await?;
    client.post("club", "m5", "five").await?;
    let got = push.wait_delivered("bob", 3, AFTER_RESTART).await?;
    let third = sub.open(&got[2], &key, &push.origin())?;
    assert_eq!(
        (third["count"].clone(), third["body"].clone()),
        (json!(1), json!("five"))
    );
    assert_eq!(got.len(), 3);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let mut child = child;
    tokio::task::spawn_blocking(move || child.wait()).await??;
    drop(reap);
    Ok(())
}
