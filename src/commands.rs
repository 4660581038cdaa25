//! The long-running commands of the `chatmesh` binary: `up` (the embedded mesh), `gateway`,
//! `worker` and `notifier`. Each runs until SIGINT/SIGTERM and then drains.

use std::path::PathBuf;

use anyhow::Context as _;
use chatmesh_protocol::bus::Role as BusRole;

use crate::config::{Config, Role};
use crate::services::{ensure_stream, GatewayHandle, WorkerHandle};
use crate::{signal, Mesh, MeshOptions};

pub async fn up(
    config: Config,
    data: PathBuf,
    listen: String,
    nats_port: Option<u16>,
    nats_threads: usize,
) -> anyhow::Result<()> {
    let opts = MeshOptions {
        nats_tls: None,
        nats_threads: (nats_threads > 0).then_some(nats_threads),
        data_dir: data.clone(),
        listen,
        nats_port,
        config,
    };
    let mesh = Mesh::start(opts).await?;
    // Listening before "up" is printed: a SIGTERM right after it drains (during the start,
    // Ctrl-C still stops the process at once).
    let shutdown = signal::shutdown();
    say(&format!(
        "chatmesh is up\n  web client:  {}/\n  WebSocket:   {}\n  NATS:        {} (closed: keys in {})\n  \
         data:        {}\nPress Ctrl-C to stop.",
        mesh.url(),
        mesh.ws_url(),
        mesh.nats.url(),
        data.join("creds").display(),
        data.display()
    ));
    mesh.run_until(shutdown, || say("draining… (Ctrl-C again stops at once)"))
        .await?;
    say("stopped");
    Ok(())
}

/// A line for the operator on stdout. A closed stdout (the reader of a pipe gone) must not
/// stop the mesh or its drain, so a failed write is ignored (`println!` would panic).
fn say(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

pub async fn gateway(config: Config) -> anyhow::Result<()> {
    check(&config, Role::Gateway)?;
    let nats = crate::nats::connect(&config.mesh, BusRole::Gateway, "chatmesh-gateway").await?;
    // The stream is the workers' to create and configure (a gateway's key may not): until a
    // worker has made it, /readyz says so.
    let gw = GatewayHandle::start(&config, nats.clone()).await?;
    let shutdown = signal::shutdown();
    tracing::info!(addr = %gw.addr, "gateway listening");
    shutdown.await;
    gw.stop().await;
    nats.drain().await?;
    Ok(())
}

pub async fn worker(config: Config) -> anyhow::Result<()> {
    check(&config, Role::Worker)?;
    if let Some(listen) = &config.metrics.listen {
        crate::services::serve_metrics(listen)?;
        tracing::info!(%listen, "serving metrics");
    }
    let nats = crate::nats::connect(&config.mesh, BusRole::Worker, "chatmesh-worker").await?;
    // One signal future for both phases: a SIGTERM while standing by ends the wait.
    let shutdown = signal::shutdown();
    tokio::pin!(shutdown);
    let store = chatmesh_workers::open_store_or_wait(&config.worker, &mut shutdown)
        .await
        .context("opening the store")?;
    let Some(store) = store else {
        nats.drain().await?;
        return Ok(());
    };
    // Only with the store in hand: a standby that made the streams while it waited would
    // make a deleted stream again under the active worker's store (whose checkpoints are
    // the old stream's seqs).
    ensure_stream(&config, &nats).await?;
    let w = WorkerHandle::with_store(&config, nats.clone(), store)?;
    tracing::info!(standby = config.worker.standby, "worker running");
    w.run_until(&mut shutdown).await?;
    nats.drain().await?;
    Ok(())
}

/// What stops `chatmesh notifier` from running with `config`, beyond a worker's problems.
pub fn notifier_problems(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = chatmesh_workers::notifier::refusal(&config.worker)
        .map(str::to_owned)
        .into_iter()
        .collect();
    if !config.push.enabled {
        out.push("push.enabled is false: there is nothing for chatmesh notifier to do".into());
    }
    out
}

pub async fn notifier(config: Config) -> anyhow::Result<()> {
    check(&config, Role::Worker)?;
    let problems = notifier_problems(&config);
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n  "));
    if let Some(listen) = &config.metrics.listen {
        crate::services::serve_metrics(listen)?;
        tracing::info!(%listen, "serving metrics");
    }
    let push = chatmesh_workers::push::Push::open(config.push.clone(), &config.worker.data_dir)
        .context("starting the push notifier")?;
    let store = chatmesh_workers::open_store(&config.worker)
        .await
        .context("opening the store")?;
    let nats = crate::nats::connect(&config.mesh, BusRole::Worker, "chatmesh-notifier").await?;
    chatmesh_workers::notifier::run(
        config.worker.clone(),
        config.mesh.clone(),
        nats.clone(),
        store,
        push,
        signal::shutdown(),
    )
    .await?;
    nats.drain().await?;
    Ok(())
}

fn check(config: &Config, role: Role) -> anyhow::Result<()> {
    let problems = config.problems(role);
    anyhow::ensure!(
        problems.is_empty(),
        "bad configuration:\n  {}",
        problems.join("\n  ")
    );
    Ok(())
}
