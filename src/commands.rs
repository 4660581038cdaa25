//! The long-running commands of the `chatmesh` binary: `up` (the embedded mesh), `gateway`
//! and `worker`. Each runs until SIGINT/SIGTERM and then drains.

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
    println!("chatmesh is up");
    println!("  web client:  {}/", mesh.url());
    println!("  WebSocket:   {}", mesh.ws_url());
    println!(
        "  NATS:        {} (closed: keys in {})",
        mesh.nats.url(),
        data.join("creds").display()
    );
    println!("  data:        {}", data.display());
    println!("Press Ctrl-C to stop.");
    signal::shutdown().await;
    println!("draining…");
    mesh.stop().await?;
    println!("stopped");
    Ok(())
}

pub async fn gateway(config: Config) -> anyhow::Result<()> {
    check(&config, Role::Gateway)?;
    let nats = crate::nats::connect(&config.mesh, BusRole::Gateway, "chatmesh-gateway").await?;
    // The stream is the workers' to create and configure (a gateway's key may not): until a
    // worker has made it, /readyz says so.
    let gw = GatewayHandle::start(&config, nats.clone()).await?;
    tracing::info!(addr = %gw.addr, "gateway listening");
    signal::shutdown().await;
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
    ensure_stream(&config, &nats).await?;
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
    let w = WorkerHandle::with_store(&config, nats.clone(), store);
    tracing::info!(standby = config.worker.standby, "worker running");
    w.run_until(&mut shutdown).await?;
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
