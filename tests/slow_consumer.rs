//! A member that stops reading never stalls its room: it is closed with 1013 once its
//! bounded queue is full, while the others keep receiving; it then resumes with `since`
//! and gets every message exactly once.

mod common;

use std::collections::BTreeSet;

use anyhow::Result;
use common::*;

/// Slow consumer: 1013 for it, no stall for the room, exact resume afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_with_1013_and_resumes() -> Result<()> {
    const N: usize = 1500;
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.limits.outbound_queue = 64;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let (ann, bob, cat) = (
        api.user("ann").await?,
        api.user("bob").await?,
        api.user("cat").await?,
    );
    api.room(&ann, "busy", "public").await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    let mut fast = Client::login(&mesh.ws_url(), &bob).await?;
    let mut slow = Client::login(&mesh.ws_url(), &cat).await?;
    fast.join("busy").await?;
    slow.join("busy").await?;

    let body = "x".repeat(12 * 1024);
    let send = tokio::spawn(async move {
        // Paced by acks, so only the member that stops reading falls behind.
        for i in 0..N {
            let ack = sender
                .request(frame::send("busy", &format!("m{i}"), &body))
                .await?;
            anyhow::ensure!(ack.frame_type() == FrameType::Ack, "{ack:?}");
        }
        anyhow::Ok(sender)
    });
    // The fast member gets everything while the slow one reads nothing.
    let got = fast.messages("busy", N).await?;
    assert_chain(&got, 0);
    let _sender = send.await??;

    // Now the slow member reads: what was queued, then the close.
    assert_eq!(slow.ended().await, Ended::Closed(1013));
    let before: Vec<Message> = slow
        .backlog
        .drain(..)
        .filter_map(|f| match f {
            ServerFrame::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    assert!(before.len() < N, "the slow member was cut off early");
    let held = if before.is_empty() {
        0
    } else {
        assert_chain(&before, 0)
    };

    let mut again = Client::login(&mesh.ws_url(), &cat).await?;
    again.request(frame::join_since("busy", held)).await?;
    let rest = again.messages("busy", N - before.len()).await?;
    assert_chain(&rest, held);
    let seqs: BTreeSet<_> = before.iter().chain(&rest).map(|m| m.seq).collect();
    assert_eq!(seqs.len(), N, "every message exactly once");
    mesh.stop().await
}
