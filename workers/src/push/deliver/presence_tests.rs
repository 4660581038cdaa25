//! The deliverer's presence checks against a real nats-server whose presence reads the test
//! answers itself: one room's read that hangs holds up no other room's.

use std::time::Duration;

use chatmesh_protocol::subjects::PRESENCE_BUCKET;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::claim_tests::deliverer;
use super::*;

/// Less than the presence read's own timeout (2 s): a check that waits out a hung read of
/// another room takes longer than this.
const PROMPT: Duration = Duration::from_secs(1);

/// Answers the batch direct gets of the presence bucket on `nats` (no such stream exists
/// there, so nats-server answers none): those of room `slow` never (each is reported on the
/// channel), any other at once, with an answer that reads as nobody online.
async fn responder(nats: async_nats::Client) -> mpsc::UnboundedReceiver<()> {
    let subject = format!("$JS.API.DIRECT.GET.KV_{PRESENCE_BUCKET}");
    let mut requests = nats.subscribe(subject).await.expect("subscribe");
    nats.flush().await.expect("flush");
    let (seen, slow) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(req) = requests.next().await {
            let filter = format!("$KV.{PRESENCE_BUCKET}.slow.*");
            if String::from_utf8_lossy(&req.payload).contains(&filter) {
                let _ = seen.send(());
            } else if let Some(reply) = req.reply {
                let _ = nats.publish(reply, "no entries".into()).await;
            }
        }
    });
    slow
}

/// While one room's presence read hangs (its NATS answer never comes), another room's check
/// answers at once; and the checks of the hung room wait for that one read, not a read each.
/// Before, one lock was held across every read: each check waited for the hung read's
/// timeout.
#[tokio::test]
async fn a_hung_presence_read_holds_up_no_other_rooms_check() {
    let server = natsd::NatsServer::start_temp().await.expect("nats-server");
    let nats = async_nats::connect(server.url()).await.expect("connect");
    let mut slow = responder(nats.clone()).await;
    let dir = tempfile::tempdir().expect("dir");
    let d = Arc::new(deliverer(dir.path(), nats).await);

    let first = tokio::spawn({
        let d = d.clone();
        async move { d.online("slow").await }
    });
    tokio::time::timeout(Duration::from_secs(10), slow.recv())
        .await
        .expect("the slow room's read was sent")
        .expect("responder");
    let second = tokio::spawn({
        let d = d.clone();
        async move { d.online("slow").await }
    });

    let fast = tokio::time::timeout(PROMPT, d.online("fast")).await;
    assert!(
        fast.is_ok(),
        "another room's check waited for the hung read"
    );

    for check in [first, second] {
        let online = tokio::time::timeout(Duration::from_secs(10), check)
            .await
            .expect("the hung read times out")
            .expect("task");
        assert!(online.is_empty(), "a failed read counts nobody online");
    }
    assert!(
        slow.try_recv().is_err(),
        "one read served both checks of the slow room"
    );
}
