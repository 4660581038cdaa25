//! The per-room stream cap (`stream_max_msgs_per_room`) refuses and never drops (see
//! docs/ARCHITECTURE.md and `workers/src/streams.rs`). A room in steady use never gets to
//! the cap: its store writer trims what it stored of the room from the stream every half cap,
//! keeping the room's last message, so the `prev` chain goes on, once the search index has
//! committed what it trims. (A worker too far behind,
//! where the cap is reached, is the fault test `a_room_outgrowing_the_stream_under_a_starved_worker_loses_nothing`.)

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use futures::TryStreamExt as _;

const CAP: i64 = 40;
const SENT: usize = 150;
/// Half the cap, as often as the writer trims a room.
const HALF: usize = CAP as usize / 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_in_steady_use_is_trimmed_before_its_cap() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.mesh.stream_max_msgs_per_room = CAP;
    // The search index commits long after the sends: each trim waits for the commit that
    // covers it (the last one, before the room goes quiet, trimmed little or nothing).
    config.worker.search.commit_ms = 3_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "busy", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("busy").await?;
    let mut acked = Vec::new();
    for i in 0..SENT {
        acked.push(
            a.post("busy", &format!("m{i}"), &format!("message {i}"))
                .await?,
        );
    }
    // Every message is in history, once, in order, with an unbroken chain.
    let mut history = Vec::new();
    let mut before = None;
    loop {
        let answer = a
            .request(frame::history_before("busy", before, 100))
            .await?;
        let page = page(&answer);
        let first = page.messages.first().map(|m| m.seq);
        history.splice(0..0, page.messages);
        if !page.more {
            break;
        }
        before = first;
    }
    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, acked.iter().map(|k| k.seq).collect::<Vec<_>>());
    assert_chain(&history, 0);

    // The stream holds at most half the cap of the room: the writer trimmed it as it went,
    // the last time at most half a cap before the last message (when the index covered it).
    let js = async_nats::jetstream::new(mesh.worker_nats.clone());
    let stream = js.get_stream(chatmesh_protocol::subjects::STREAM).await?;
    let subject = chatmesh_protocol::subjects::in_subject(mesh.config.mesh.partitions, "busy");
    // The writer's trims wait for the index's commit (3 s here): both are looked for until
    // they are seen (the full-room trims of the burst may bring the count down first).
    let stored_trims = || async {
        let metrics = reqwest::get(format!("http://{}/metrics", mesh.gateway.addr))
            .await?
            .text()
            .await?;
        let trims = metrics
            .lines()
            .find_map(|l| l.strip_prefix(r#"chatmesh_worker_room_trims_total{why="stored"} "#))
            .map_or(Ok(0.0), |n| n.trim().parse::<f64>())?;
        anyhow::Ok(trims)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let (held, trims) = loop {
        let mut info = stream.info_with_subjects(&subject).await?;
        let held = info.try_next().await?.map_or(0, |(_, n)| n);
        let trims = stored_trims().await?;
        if (held <= HALF && trims >= 3.0) || tokio::time::Instant::now() > deadline {
            break (held, trims);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        held <= HALF,
        "{held} of the room's messages in the stream (a cap of {CAP})"
    );
    assert!(held >= 1, "the room's last message stays in the stream");
    assert!(
        trims >= 3.0,
        "{trims} trims for {SENT} messages and a cap of {CAP}"
    );

    // The next message still continues the chain from the last one.
    let next = a.post("busy", "after", "after the trims").await?;
    let answer = a.request(frame::history_before("busy", None, 2)).await?;
    let page = page(&answer);
    assert_eq!(page.messages[1].seq, next.seq);
    assert_eq!(page.messages[1].prev, page.messages[0].seq);
    mesh.stop().await
}
