//! The storage conformance suite: every `KvStore` backend must pass each check. Backend test
//! files (`store_fjall.rs`, `store_tikv.rs`) instantiate all of it with
//! `conformance_suite!(fresh)` ([`suite`]), each test on a fresh, empty store.

#![allow(dead_code)]

pub mod chat;
pub mod edges;
#[macro_use]
pub mod suite;

use std::sync::Arc;

use chatmesh_workers::store::{Direction, KvStore, WriteBatch};

pub fn k(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub fn keys(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

pub async fn put_all<S: KvStore>(s: &S, names: &[&str]) {
    let mut b = WriteBatch::new();
    for n in names {
        b.put(k(n), format!("v-{n}").into_bytes());
    }
    s.write(b).await.unwrap();
}

/// get/put/overwrite/delete of single keys, and ops applied in batch order.
pub async fn point_ops<S: KvStore>(s: &S) {
    assert_eq!(s.get(b"a").await.unwrap(), None);
    put_all(s, &["a"]).await;
    assert_eq!(s.get(b"a").await.unwrap(), Some(b"v-a".to_vec()));
    let mut b = WriteBatch::new();
    b.put(k("a"), k("new"));
    b.put(k("empty"), Vec::new());
    s.write(b).await.unwrap();
    assert_eq!(s.get(b"a").await.unwrap(), Some(k("new")));
    assert_eq!(s.get(b"empty").await.unwrap(), Some(Vec::new()));
    let mut b = WriteBatch::new();
    b.delete(k("a"));
    b.delete(k("never-existed"));
    b.put(k("x"), k("1"));
    b.delete(k("x"));
    b.delete(k("y"));
    b.put(k("y"), k("2"));
    s.write(b).await.unwrap();
    assert_eq!(s.get(b"a").await.unwrap(), None);
    assert_eq!(s.get(b"x").await.unwrap(), None);
    assert_eq!(s.get(b"y").await.unwrap(), Some(k("2")));
    s.write(WriteBatch::new()).await.unwrap();
}

/// Scans: half-open bounds, both directions, limits, empty and inverted ranges, binary keys.
pub async fn scans<S: KvStore>(s: &S) {
    put_all(s, &["b", "c", "d", "e", "f"]).await;
    let fwd = s
        .scan(k("c")..k("f"), Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(keys(&fwd), ["c", "d", "e"]);
    assert_eq!(fwd[0].1, b"v-c");
    let rev = s
        .scan(k("c")..k("f"), Direction::Reverse, 10)
        .await
        .unwrap();
    assert_eq!(keys(&rev), ["e", "d", "c"]);
    let lim = s.scan(k("a")..k("z"), Direction::Forward, 2).await.unwrap();
    assert_eq!(keys(&lim), ["b", "c"]);
    let lim = s.scan(k("a")..k("z"), Direction::Reverse, 2).await.unwrap();
    assert_eq!(keys(&lim), ["f", "e"]);
    for dir in [Direction::Forward, Direction::Reverse] {
        assert!(s.scan(k("c")..k("c"), dir, 10).await.unwrap().is_empty());
        assert!(s.scan(k("f")..k("c"), dir, 10).await.unwrap().is_empty());
        assert!(s.scan(k("a")..k("z"), dir, 0).await.unwrap().is_empty());
        assert!(s.scan(k("g")..k("z"), dir, 10).await.unwrap().is_empty());
        assert!(s.scan(k("a")..k("b"), dir, 10).await.unwrap().is_empty());
        let one = s.scan(k("d")..k("d\0"), dir, 10).await.unwrap();
        assert_eq!(keys(&one), ["d"]);
    }
    // Binary keys compare as unsigned bytes.
    let bin = [
        vec![1u8, 0],
        vec![1, 0, 0],
        vec![1, 0x7f],
        vec![1, 0x80],
        vec![1, 0xff, 0xff],
    ];
    let mut b = WriteBatch::new();
    for key in bin.iter().rev() {
        b.put(key.clone(), Vec::new());
    }
    s.write(b).await.unwrap();
    let all = s
        .scan(vec![1]..vec![2], Direction::Forward, 100)
        .await
        .unwrap();
    let got: Vec<Vec<u8>> = all.into_iter().map(|(k, _)| k).collect();
    assert_eq!(got, bin);
}

/// A batch of 50,000 puts lands whole; large scans (past any inline limit) see all of it.
pub async fn large_batches<S: KvStore>(s: &S) {
    let mut b = WriteBatch::new();
    for i in 0..50_000u32 {
        let mut key = b"big/".to_vec();
        key.extend_from_slice(&i.to_be_bytes());
        b.put(key, i.to_le_bytes().to_vec());
    }
    s.write(b).await.unwrap();
    let all = s
        .scan(k("big/")..k("big0"), Direction::Forward, 100_000)
        .await
        .unwrap();
    assert_eq!(all.len(), 50_000);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    let rev = s
        .scan(k("big/")..k("big0"), Direction::Reverse, 1_000)
        .await
        .unwrap();
    assert_eq!(rev.len(), 1_000);
    assert_eq!(rev[0].1, 49_999u32.to_le_bytes());
}

/// delete_range removes exactly the half-open range, across many chunks, and counts.
pub async fn delete_ranges<S: KvStore>(s: &S) {
    put_all(s, &["a", "b", "c", "d"]).await;
    assert_eq!(s.delete_range(k("b")..k("d")).await.unwrap(), 2);
    let left = s
        .scan(k("a")..k("z"), Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(keys(&left), ["a", "d"]);
    assert_eq!(s.delete_range(k("b")..k("d")).await.unwrap(), 0);
    assert_eq!(s.delete_range(k("d")..k("a")).await.unwrap(), 0);
    let mut b = WriteBatch::new();
    for i in 0..10_000u32 {
        b.put(format!("n/{i:05}").into_bytes(), Vec::new());
    }
    s.write(b).await.unwrap();
    assert_eq!(
        s.delete_range(k("n/00100")..k("n/09900")).await.unwrap(),
        9_800
    );
    let rest = s
        .scan(k("n/")..k("n0"), Direction::Forward, 1_000)
        .await
        .unwrap();
    assert_eq!(rest.len(), 200);
    assert_eq!(s.get(b"n/00099").await.unwrap(), Some(Vec::new()));
    assert_eq!(s.get(b"n/09900").await.unwrap(), Some(Vec::new()));
}

/// Many tasks writing batches at once all land; a reader never sees half a batch.
pub async fn concurrent_writers<S: KvStore + 'static>(s: Arc<S>) {
    let reader = {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                // Each batch writes p/<t>/<i>/a and p/<t>/<i>/b together.
                let seen = s
                    .scan(k("p/")..k("p0"), Direction::Forward, 100_000)
                    .await
                    .unwrap();
                let a = seen.iter().filter(|(k, _)| k.ends_with(b"/a")).count();
                let b = seen.len() - a;
                assert_eq!(a, b, "saw half of a batch");
                tokio::task::yield_now().await;
            }
        })
    };
    let mut writers = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..100 {
                let mut b = WriteBatch::new();
                b.put(format!("p/{t}/{i:03}/a").into_bytes(), Vec::new());
                b.put(format!("p/{t}/{i:03}/b").into_bytes(), Vec::new());
                s.write(b).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    reader.await.unwrap();
    let all = s
        .scan(k("p/")..k("p0"), Direction::Forward, 100_000)
        .await
        .unwrap();
    assert_eq!(all.len(), 8 * 100 * 2);
}
