//! Every gateway and worker of a deployment needs the same `mesh.partitions`: a process
//! with another count would publish a room's messages on another subject (a second `prev`
//! chain for the room, stored by a store writer of another partition) and ask its services
//! of another partition's worker. The workers record the count in each message stream's
//! metadata; a process configured otherwise refuses to start, and a gateway that finds the
//! record only later (it started before the workers) is not ready.

mod common;

use std::time::Duration;

use anyhow::Result;
use chatmesh::services::GatewayHandle;
use chatmesh_protocol::subjects::{PARTITIONS_KEY, STREAM};
use common::*;

async fn recorded(js: &async_nats::jetstream::Context) -> Result<Option<String>> {
    let info = js.get_stream(STREAM).await?.info().await?.clone();
    Ok(info.config.metadata.get(PARTITIONS_KEY).cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_with_another_partition_count_does_not_serve() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let js = async_nats::jetstream::new(mesh.worker_nats.clone());
    let count = mesh.config.mesh.partitions;
    assert_eq!(recorded(&js).await?, Some(count.to_string()));

    let mut other = mesh.config.clone();
    other.mesh.partitions = count * 2;
    other.gateway.listen = "127.0.0.1:0".into();

    // A gateway with another count does not start, and says why.
    let refused = GatewayHandle::start(&other, mesh.gateway_nats.clone()).await;
    let Err(err) = refused else {
        panic!("a gateway with another partition count started")
    };
    let err = format!("{err:#}");
    assert!(
        err.contains(&format!("mesh.partitions = {count}"))
            && err.contains(&format!("this process has {}", count * 2)),
        "{err}"
    );

    // Nor does a worker: its streams' check refuses before it changes anything.
    let Err(err) = chatmesh_workers::streams::ensure_streams(&js, &other.mesh).await else {
        panic!("the streams were taken for another partition count")
    };
    assert!(
        matches!(err, chatmesh_workers::WorkerError::PartitionsDiffer { .. }),
        "{err}"
    );
    assert_eq!(recorded(&js).await?, Some(count.to_string()));

    // A stream made before the record: a gateway with another count starts (nothing says
    // otherwise yet), and is not ready once the workers have recorded theirs.
    let mut config = js.get_stream(STREAM).await?.info().await?.config.clone();
    config.metadata.remove(PARTITIONS_KEY);
    js.update_stream(&config).await?;
    assert_eq!(recorded(&js).await?, None);
    let early = GatewayHandle::start(&other, mesh.gateway_nats.clone()).await?;
    chatmesh_workers::streams::ensure_streams(&js, &mesh.config.mesh).await?;
    assert_eq!(recorded(&js).await?, Some(count.to_string()));
    let readyz = format!("http://{}/readyz", early.addr);
    let deadline = tokio::time::Instant::now() + WAIT;
    let (status, why) = loop {
        let answer = reqwest::get(&readyz).await?;
        let status = answer.status().as_u16();
        let why = answer.text().await?;
        if status != 200 || tokio::time::Instant::now() > deadline {
            break (status, why);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("mesh.partitions"), "{why}");
    early.stop().await;

    // The mesh configured alike is still ready.
    let ok = reqwest::get(format!("http://{}/readyz", mesh.gateway.addr)).await?;
    assert_eq!(ok.status().as_u16(), 200);
    mesh.stop().await
}
