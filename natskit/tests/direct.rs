//! The helpers against a real nats-server: batch direct gets both ways, TTL expiry and
//! compare-and-set writes.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use natskit::{direct_batch, put_ttl, Batch, Expect};

const T: Duration = Duration::from_secs(5);

/// `Next` reads one subject's messages in order from a sequence; `Last` reads the latest of
/// each matching subject; a compare-and-set write lands once; a TTL'd key expires.
#[tokio::test]
async fn batches_cas_and_ttl() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let nats = server.connect().await.unwrap();
    let js = jetstream::new(nats.clone());
    js.create_key_value(kv::Config {
        bucket: "B".into(),
        history: 1,
        limit_markers: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await
    .unwrap();
    let put = |k: &str, v: &str, e| {
        put_ttl(
            &js,
            format!("$KV.B.{k}"),
            v.to_owned().into(),
            Duration::from_secs(60),
            e,
        )
    };
    let s1 = put("r.a", "1", Expect::LastSeq(0)).await.unwrap();
    assert!(
        put("r.a", "x", Expect::LastSeq(0)).await.is_err(),
        "create refuses an existing key"
    );
    let s2 = put("r.a", "2", Expect::LastSeq(s1)).await.unwrap();
    put("r.b", "3", Expect::LastSeq(0)).await.unwrap();
    put("s.c", "4", Expect::LastSeq(0)).await.unwrap();

    let last = direct_batch(
        &nats,
        "KV_B",
        Batch::Last {
            filter: "$KV.B.r.*",
            batch: 10,
        },
        T,
    )
    .await
    .unwrap();
    let mut got: Vec<_> = last
        .iter()
        .map(|e| (e.subject.as_str(), &e.payload[..]))
        .collect();
    got.sort();
    assert_eq!(got, [("$KV.B.r.a", &b"2"[..]), ("$KV.B.r.b", &b"3"[..])]);
    assert_eq!(
        last.iter()
            .find(|e| e.subject.ends_with("r.a"))
            .map(|e| e.seq),
        Some(s2)
    );

    let next = direct_batch(
        &nats,
        "KV_B",
        Batch::Next {
            subject: "$KV.B.s.c",
            from: 1,
            batch: 10,
        },
        T,
    )
    .await
    .unwrap();
    assert_eq!(next.len(), 1);
    assert!(direct_batch(
        &nats,
        "KV_B",
        Batch::Next {
            subject: "$KV.B.none",
            from: 1,
            batch: 10
        },
        T
    )
    .await
    .unwrap()
    .is_empty());

    put_ttl(
        &js,
        "$KV.B.t".into(),
        "short".into(),
        Duration::from_secs(1),
        Expect::LastSeq(0),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = direct_batch(
            &nats,
            "KV_B",
            Batch::Last {
                filter: "$KV.B.t",
                batch: 1,
            },
            T,
        )
        .await
        .unwrap();
        if now.iter().all(|e| e.payload.is_empty()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "TTL never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
