//! Regions (issue 17, docs/REGIONS.md): two regions on loopback (`ops/mesh up --regions 2`:
//! one NATS node and one gateway each, joined into a supercluster; the worker in `eu`, the
//! primary). One room homed in each region, each sent to through its home region and read
//! through the other, so live delivery crosses regions both ways. Then `us` is cut off (its
//! processes killed) and healed; the readers in `us` fail over to `eu`'s gateway meanwhile
//! (the harness tries the other region's entry, as a client or a global load balancer does),
//! and so does a Rust SDK client given eu's gateway as its fallback.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::common::{frame, FrameType};
use crate::launcher::MeshProc;
use crate::run::{self, Run};
use crate::{history_until, missing_from, ws, RATE};

/// A send to a cut region's room is refused once its stream has had no responder for 2 s
/// (`gateway/src/publish.rs`), well before the publish deadline (15 s by default).
const REFUSED_WITHIN: Duration = Duration::from_secs(6);

/// While `us` is cut: rooms homed in `eu` keep taking sends with nothing lost; a send to a
/// room homed in `us` is refused with `unavailable` within seconds (never acked, never a
/// silent drop); the
/// `us` room's history stays readable in `eu` (read-only). After the heal: both rooms' runs
/// end clean (every acked message delivered once, in order, to receivers in the other
/// region) and both histories hold every acked message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_region_loses_nothing_and_the_other_keeps_going() -> Result<()> {
    let mesh = MeshProc::up_regions("127.62.0", 2, &[]).await?;
    let (eu, us) = (mesh.region_entry(1), mesh.region_entry(2));
    let a = Run::start_across(&eu, &us, "eu~cut", 2, 1, RATE).await?;
    let b = Run::start_across(&us, &eu, "us~cut", 2, 1, RATE).await?;
    a.wait_acked(40, Duration::from_secs(30)).await?;
    b.wait_acked(40, Duration::from_secs(30)).await?;
    // A room created with `"home": "here"` lives in the creating gateway's region.
    let api = crate::common::Api::at(&us);
    let new = serde_json::json!({"room": "made-here", "kind": "public", "home": "here"});
    let (status, made) = api
        .call("POST", "/v1/rooms", Some(&a.tokens[0].1), Some(new))
        .await?;
    assert_eq!(
        (status, made["room"].as_str()),
        (201, Some("us~made-here")),
        "{made}"
    );
    let far = serde_json::json!({"room": "x", "kind": "public", "home": "ap"});
    let (status, _) = api
        .call("POST", "/v1/rooms", Some(&a.tokens[0].1), Some(far))
        .await?;
    assert_eq!(status, 400, "a home region the deployment does not have");

    // An SDK client on us's gateway with eu's as its fallback, reading eu~cut.
    let (sdk_user, _) = a.tokens[0].clone();
    let mut sdk = chatmesh_client::Client::builder(&us)
        .fallback(&eu)
        .login(&sdk_user, "correct horse")
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .connect()
        .await?;
    let mut events = sdk.events().expect("the events of a new client");
    sdk.join("eu~cut").await?;
    // (when, seq) of each eu~cut message; seq 0 marks a reconnect.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Instant, u64)>::new()));
    let collector = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let seq = match event {
                    chatmesh_client::Event::Message(m) => m.seq,
                    chatmesh_client::Event::Reconnected => 0,
                    _ => continue,
                };
                seen.lock()
                    .expect("not poisoned")
                    .push((Instant::now(), seq));
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let cut_at = Instant::now();
    mesh.cut("us").await?;
    let before = a.acked();
    // A member of us~cut on eu's gateway: joined (its last seq from the local mirror), but a
    // send is refused.
    let (user, token) = b.tokens.last().cloned().expect("a receiver");
    let mut s = ws::session(&eu, &user, &token, "us~cut", 0).await?;
    ws::send(&mut s, frame::send("us~cut", "during-cut", "x"), "cut").await?;
    let sent_at = Instant::now();
    let refused = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let f = ws::next_frame(&mut s).await?;
            match f.frame_type() {
                FrameType::Error => return Ok::<_, anyhow::Error>(format!("{f:?}")),
                FrameType::Ack => bail!("a send to a cut region's room was acked: {f:?}"),
                _ => continue,
            }
        }
    })
    .await??;
    let refused_after = sent_at.elapsed();
    assert!(refused.contains("Unavailable"), "{refused}");
    assert!(
        refused_after < REFUSED_WITHIN,
        "a send to the cut region's room was refused only after {refused_after:?}"
    );
    // The SDK client failed over to eu's gateway (it reconnected) and goes on from where
    // it was: the first message after its reconnect.
    let resumed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let after_reconnect = {
                let seen = seen.lock().expect("not poisoned");
                let reconnect = seen.iter().position(|(t, s)| *t > cut_at && *s == 0);
                reconnect.and_then(|i| seen[i..].iter().find(|(_, s)| *s > 0).map(|(t, _)| *t))
            };
            if let Some(t) = after_reconnect {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    println!(
        "regions: the SDK client failed over to eu; its first eu~cut message after reconnecting {:.1?} after the cut",
        resumed - cut_at
    );
    let history = run::history(&eu, &token, "us~cut").await?;
    println!(
        "regions: us cut; its room read-only from eu ({} messages in history), a send refused after {refused_after:.1?}: {refused}",
        history.len()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = a.acked() - before;
    assert!(
        during >= 20,
        "eu~cut took {during} acked sends while us was cut"
    );
    mesh.heal("us").await?;
    println!(
        "regions: us healed {:.1?} after the cut; eu~cut acked {during} sends meanwhile",
        cut_at.elapsed()
    );

    let after = b.acked();
    b.wait_acked(after + 20, Duration::from_secs(60)).await?;
    let (acked_a, acked_b) = (a.acked_map(), b.acked_map());
    sdk.close().await;
    collector.await?;
    let seqs: Vec<u64> = seen
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|(_, s)| *s)
        .filter(|s| *s > 0)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "the SDK client's eu~cut seqs: {seqs:?}"
    );
    let (first, last) = (seqs[0], seqs[seqs.len() - 1]);
    let missed: Vec<u64> = acked_a
        .iter()
        .map(|(seq, _, _)| *seq)
        .filter(|s| (first..=last).contains(s) && seqs.binary_search(s).is_err())
        .collect();
    assert!(
        missed.is_empty(),
        "acked eu~cut messages the SDK client never got: {missed:?}"
    );
    let token_a = a.tokens[0].1.clone();
    let token_b = b.tokens[0].1.clone();
    let (va, vb) = (a.finish().await?, b.finish().await?);
    println!("regions: eu~cut {va:?}");
    println!("regions: us~cut {vb:?}");
    va.assert_clean();
    vb.assert_clean();
    // eu~cut's readers were in us: they failed over to eu's gateway when us was cut, at once
    // rather than after the heal.
    assert!(va.reconnects > 0, "eu~cut's readers never reconnected");
    assert!(
        va.max_reconnect < Duration::from_secs(5),
        "failing over to eu took {:?}",
        va.max_reconnect
    );
    for (room, token, acked, last) in [
        ("eu~cut", &token_a, &acked_a, va.last_seq),
        ("us~cut", &token_b, &acked_b, vb.last_seq),
    ] {
        let hist = history_until(&eu, token, room, last).await?;
        let mut prev = 0;
        for (seq, p, _, _) in &hist {
            assert_eq!(*p, prev, "{room}: history chain broken at {seq}");
            prev = *seq;
        }
        let missing = missing_from(acked, &hist);
        assert!(missing.is_empty(), "{room}: acked but missing: {missing:?}");
        println!("regions: {room} history of {} messages intact", hist.len());
    }
    Ok(())
}
