//! Push service origins that take requests and never answer, however many (an attacker's
//! endpoints on many hosts, or many ports of one host), together hold a bounded part of the
//! shared request slots: pushes to a push service that answers go on meanwhile.

use std::time::Duration;

use anyhow::{ensure, Result};

use super::common::{start_mesh, Api, Client, WAIT};
use super::receiver::{Receiver, Subscription};
use super::{club, push_config, register, COLLAPSE_MS, GRACE_MS};

/// Origins that never answer, each its own local push service (its own port).
const HANGING: usize = 6;
/// Users with targets on them; two of each user's targets are asked at once, so together
/// they would have ten requests in flight, more than `concurrency`.
const STALLED: [&str; 5] = ["bob", "cat", "eve", "fay", "gus"];

/// Requests the hanging push services have taken so far.
fn asked(hanging: &[Receiver], names: &[(usize, String)]) -> usize {
    names
        .iter()
        .map(|(i, name)| hanging[*i].received(name).len())
        .sum()
}

/// Six push service origins that take every request and never answer hold at most a quarter
/// of the request slots together (two of `concurrency` 8), not a share each, so a user of a
/// push service that answered before is pushed at once. Before, each origin held up to its
/// own share (two), and four of them held all eight slots for the whole request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_hanging_push_services_together_hold_a_quarter_of_the_slots() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = push_config();
    config.push.concurrency = 8;
    // Well past the bound on dan's push below, so waiting for a held request shows.
    config.push.request_timeout_ms = 10_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let mut hanging = Vec::new();
    for _ in 0..HANGING {
        hanging.push(Receiver::start().await?);
    }
    let push = Receiver::start().await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    // Each user's two targets on two different hanging origins.
    let mut names = Vec::new();
    for (u, user) in STALLED.iter().enumerate() {
        let token = api.user(user).await?;
        for t in 0..2 {
            let (i, name) = ((2 * u + t) % HANGING, format!("{user}{t}"));
            hanging[i].hold(&name, Some(Duration::from_secs(60)));
            register(&api, &token, &Subscription::new(hanging[i].endpoint(&name))).await?;
            names.push((i, name));
        }
    }
    let dan = api.user("dan").await?;
    register(&api, &dan, &Subscription::new(push.endpoint("dan"))).await?;
    club(&api, &ann, "down", &STALLED).await?;
    club(&api, &ann, "fine", &["dan"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("down").await?;
    sender.join("fine").await?;
    // Dan's push service answers once: known to answer from then on.
    sender.post("fine", "m1", "hello dan").await?;
    push.wait_delivered("dan", 1, WAIT).await?;

    sender.post("down", "d1", "anyone?").await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while asked(&hanging, &names) < 2 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the hanging push services were never asked"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let sent = tokio::time::Instant::now();
    sender.post("fine", "m2", "hello again").await?;
    push.wait_delivered("dan", 2, WAIT).await?;
    let took = sent.elapsed();
    let window = Duration::from_millis(COLLAPSE_MS + GRACE_MS);
    assert!(
        took < window + Duration::from_secs(3),
        "dan's push took {took:?} behind {HANGING} hanging push services"
    );
    let held = asked(&hanging, &names);
    assert!(held <= 2, "requests held by the hanging services: {held}");
    // The others wait for the unproven slots, and the notifier says so: each of the six
    // origins' shares (two) has room for its own pushes, so eight wait there.
    api.metric_reaches("chatmesh_push_unproven_waiting", 8.0)
        .await?;
    mesh.stop().await
}
