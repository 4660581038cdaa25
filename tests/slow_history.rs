//! A client that asks for much and reads little holds a bounded part of its gateway: its
//! session's replies wait on the bytes already queued for it, and its requests wait with
//! them. One test per file: it reads a process-wide counter.

mod common;

use anyhow::Result;
use common::*;

/// A client that asks for many big history pages (512 KiB each) and does not read them is
/// read from only while the gateway holds a few MiB of its replies: its session stops
/// reading requests, instead of queueing up to 1,024 half-MiB pages (512 MiB) for it. Once it
/// reads, every reply arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_big_history_pages_holds_a_few_mib() -> Result<()> {
    const ASKED: usize = 120;
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "big", "public").await?;
    let mut writer = Client::login(&mesh.ws_url(), &ann).await?;
    let body = "y".repeat(15 * 1024);
    for i in 0..40 {
        writer.post("big", &format!("m{i}"), &body).await?;
    }

    let mut slow = Client::login(&mesh.ws_url(), &ann).await?;
    let before = api.metric("chatmesh_frames_in_total").await?;
    for _ in 0..ASKED {
        slow.send(frame::history("big")).await?;
    }
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let read = api.metric("chatmesh_frames_in_total").await? - before;
    eprintln!("{read} history requests read");
    // Eight pages queued and what the sockets' buffers hold: 17 here; all 120 before.
    assert!(
        read < 40.0,
        "{read} of {ASKED} history requests read while their replies were not"
    );

    let mut pages = 0;
    while pages < ASKED {
        if slow.next().await?.frame_type() == FrameType::History {
            pages += 1;
        }
    }
    mesh.stop().await
}
