//! `chatmesh notifier`: with `[push] in_worker = false` the worker answers the push
//! operations but sends nothing (and keeps no consumer); a notifier run apart from it, with
//! its own service, caches, consumer and HTTP clients, sends the pushes. Here it shares the
//! worker's embedded store through a handle in this process; a deployment shares a TiKV
//! store between processes (`chatmesh notifier` refuses fjall: `tests/cli.rs`).

use std::time::Duration;

use anyhow::Result;
use chatmesh_workers::push::consumer::IDLE_POLL;
use tokio_util::sync::CancellationToken;

use super::common::{start_mesh, Api, Client, WAIT};
use super::receiver::{Receiver, Subscription};
use super::{club, push_config, push_consumer_exists, register, vapid_key, COLLAPSE_MS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_apart_from_the_worker_sends_the_pushes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let push = Receiver::start().await?;
    let sub = Subscription::new(push.endpoint("bob"));
    let mut config = push_config();
    config.push.in_worker = false;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    register(&api, &bob, &sub).await?;
    club(&api, &ann, "club", &["bob"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    sender.post("club", "m1", "one").await?;
    tokio::time::sleep(IDLE_POLL * 2 + Duration::from_millis(COLLAPSE_MS)).await;
    assert!(push.received("bob").is_empty(), "the worker sends no push");
    assert!(!push_consumer_exists(&mesh).await?, "nor keeps a consumer");

    let cfg = &mesh.config;
    let notifier = chatmesh_workers::push::Push::open(cfg.push.clone(), &cfg.worker.data_dir)?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(chatmesh_workers::notifier::run_beside(
        cfg.worker.clone(),
        cfg.mesh.clone(),
        mesh.worker_nats.clone(),
        mesh.worker.store(),
        notifier,
        stop.clone().cancelled_owned(),
    ));
    sender.post("club", "m2", "two").await?;
    let got = push.wait_delivered("bob", 1, WAIT).await?;
    let key = vapid_key(&api, &ann).await?;
    let opened = sub.open(&got[0], &key, &push.origin())?;
    assert_eq!(opened["body"], "two", "{opened}");
    assert!(push_consumer_exists(&mesh).await?);
    stop.cancel();
    task.await??;
    tokio::time::sleep(Duration::from_millis(COLLAPSE_MS + 500)).await;
    assert_eq!(push.received("bob").len(), 1, "one push, once");
    mesh.stop().await
}
