//! Boundary cases of the KV contract, and the two tikv-client 0.4 pitfalls as explicit cases:
//! a forward scan whose end lies beyond the last key and that finds fewer keys than `limit`
//! must return only in-range keys, and scans of an empty range must end (and be empty).

use std::sync::Arc;
use std::time::Duration;

use chatmesh_workers::store::{Direction, KvPair, KvStore, Store, WriteBatch};

use super::{k, keys, put_all};

const DIRS: [Direction; 2] = [Direction::Forward, Direction::Reverse];

async fn scan(s: &Store, range: std::ops::Range<Vec<u8>>, dir: Direction, n: usize) -> Vec<KvPair> {
    tokio::time::timeout(Duration::from_secs(20), s.scan(range.clone(), dir, n))
        .await
        .unwrap_or_else(|_| panic!("scan {range:?} {dir:?} {n} did not end"))
        .unwrap()
}

fn raw_keys(pairs: &[KvPair]) -> Vec<Vec<u8>> {
    pairs.iter().map(|(k, _)| k.clone()).collect()
}

/// Inclusive start, exclusive end, adjacent keys, 0x00 and 0xFF bytes, limits 0 and 1.
pub async fn boundaries(s: &Store) {
    let all: Vec<Vec<u8>> = vec![
        vec![1],
        vec![1, 0],
        vec![1, 0, 0],
        b"m".to_vec(),
        b"m\x00".to_vec(),
        b"m\xff".to_vec(),
        vec![0xfe],
        vec![0xfe, 0xff, 0xff],
    ];
    let mut b = WriteBatch::new();
    for key in &all {
        b.put(key.clone(), key.clone());
    }
    s.write(b).await.unwrap();
    let everything = vec![1]..vec![0xff];
    assert_eq!(
        raw_keys(&scan(s, everything.clone(), Direction::Forward, 100).await),
        all
    );
    let mut rev = all.clone();
    rev.reverse();
    assert_eq!(
        raw_keys(&scan(s, everything.clone(), Direction::Reverse, 100).await),
        rev
    );
    assert_eq!(
        raw_keys(&scan(s, everything.clone(), Direction::Forward, 1).await),
        [vec![1]]
    );
    assert_eq!(
        raw_keys(&scan(s, everything.clone(), Direction::Reverse, 1).await),
        [vec![0xfe, 0xff, 0xff]]
    );
    for dir in DIRS {
        // Start is inclusive, end exclusive, even for keys one byte apart.
        let one = scan(s, b"m".to_vec()..b"m\x00".to_vec(), dir, 10).await;
        assert_eq!(raw_keys(&one), [b"m".to_vec()]);
        let two = scan(s, b"m\x00".to_vec()..b"m\xff\x00".to_vec(), dir, 10).await;
        assert_eq!(two.len(), 2, "{dir:?}");
        assert!(scan(s, b"m\x00\x00".to_vec()..b"m\xff".to_vec(), dir, 10)
            .await
            .is_empty());
        assert!(scan(s, vec![1, 0]..vec![1, 0], dir, 10).await.is_empty());
        assert!(scan(s, vec![1, 0, 0]..vec![1, 0], dir, 10).await.is_empty());
        assert!(scan(s, everything.clone(), dir, 0).await.is_empty());
        let head = scan(s, vec![1]..vec![1, 0, 0, 0], dir, 10).await;
        assert_eq!(head.len(), 3, "{dir:?}");
        assert_eq!(head[0].1, head[0].0, "values come with their keys");
    }
    assert_eq!(s.get(&[1, 0, 0, 0]).await.unwrap(), None);
    assert_eq!(s.get(&[0xfe, 0xff]).await.unwrap(), None);
    assert_eq!(s.get(&[0xfe]).await.unwrap(), Some(vec![0xfe]));
}

/// tikv-client 0.4 pitfall 1: a forward scan whose end lies beyond the last key, finding
/// fewer keys than `limit`, must return only the keys of its range (a wrapped-around scan
/// returns keys from the start of the keyspace).
pub async fn forward_scan_past_the_last_key(s: &Store) {
    put_all(s, &["low/1", "low/2", "low/3", "q/1", "q/2", "q/3"]).await;
    let past = vec![0xff; 8];
    for limit in [1, 2, 3, 4, 100, 10_000] {
        let got = scan(s, k("q/")..past.clone(), Direction::Forward, limit).await;
        let want: Vec<&str> = ["q/1", "q/2", "q/3"].into_iter().take(limit).collect();
        assert_eq!(keys(&got), want, "limit {limit}");
    }
    for dir in DIRS {
        assert!(scan(s, k("q/4")..past.clone(), dir, 100).await.is_empty());
        let tail = scan(s, k("q/2")..past.clone(), dir, 100).await;
        assert_eq!(tail.len(), 2, "{dir:?}");
    }
}

/// tikv-client 0.4 pitfall 2: scans of an empty range end, and find nothing, whatever the
/// limit: above the last key, between two keys, below the first, and on a range deleted
/// a moment ago.
pub async fn empty_ranges_terminate(s: &Store) {
    put_all(s, &["e/1", "e/5"]).await;
    let ranges = [
        k("e/6")..vec![0xff; 4],
        k("e/2")..k("e/4"),
        vec![1]..k("e/0"),
        k("zz")..k("zzz"),
    ];
    for range in ranges {
        for dir in DIRS {
            for limit in [1, 1_000, 100_000] {
                assert!(
                    scan(s, range.clone(), dir, limit).await.is_empty(),
                    "{range:?}"
                );
            }
        }
        let deleted = tokio::time::timeout(Duration::from_secs(20), s.delete_range(range))
            .await
            .expect("delete_range of an empty range did not end")
            .unwrap();
        assert_eq!(deleted, 0);
    }
    assert_eq!(s.delete_range(k("e/")..k("e0")).await.unwrap(), 2);
    for dir in DIRS {
        assert!(scan(s, k("e/")..k("e0"), dir, 10).await.is_empty());
    }
}

/// Paging through 3,000 keys in pages of 100, backwards and forwards, sees each key once.
pub async fn paging_both_ways(s: &Store) {
    let mut b = WriteBatch::new();
    let mut want = Vec::new();
    for i in 0..3_000u64 {
        let mut key = b"pg/".to_vec();
        key.extend_from_slice(&(i * 7919).to_be_bytes());
        b.put(key.clone(), i.to_be_bytes().to_vec());
        want.push(key);
    }
    s.write(b).await.unwrap();
    let (start, end) = (k("pg/"), k("pg0"));
    let mut back = Vec::new();
    let mut hi = end.clone();
    loop {
        let page = scan(s, start.clone()..hi.clone(), Direction::Reverse, 100).await;
        back.extend(raw_keys(&page));
        match page.last() {
            Some((last, _)) if page.len() == 100 => hi = last.clone(),
            _ => break,
        }
    }
    back.reverse();
    assert_eq!(back, want);
    let mut fwd = Vec::new();
    let mut lo = start.clone();
    loop {
        let page = scan(s, lo.clone()..end.clone(), Direction::Forward, 100).await;
        fwd.extend(raw_keys(&page));
        match page.last() {
            Some((last, _)) if page.len() == 100 => {
                lo = last.clone();
                lo.push(0);
            }
            _ => break,
        }
    }
    assert_eq!(fwd, want);
}

/// Writing the same batch again (a redelivery) leaves the store exactly as it was.
pub async fn idempotent_rewrite(s: &Store) {
    let batch = |from: u32, to: u32| {
        let mut b = WriteBatch::new();
        for i in from..to {
            b.put(
                format!("id/{i:04}").into_bytes(),
                format!("v{i}").into_bytes(),
            );
        }
        b.delete(k("id/gone"));
        b
    };
    put_all(s, &["id/gone"]).await;
    s.write(batch(0, 500)).await.unwrap();
    let before = scan(s, k("id/")..k("id0"), Direction::Forward, 10_000).await;
    s.write(batch(0, 500)).await.unwrap();
    s.write(batch(250, 500)).await.unwrap();
    let after = scan(s, k("id/")..k("id0"), Direction::Forward, 10_000).await;
    assert_eq!(before, after);
    assert_eq!(after.len(), 500);
}

/// The stages of a batch land in order: a reader that sees a later stage sees all of the
/// earlier ones (the guarantee the store writer's checkpoint relies on, on every backend).
pub async fn staged_batches(s: Store) {
    let s = Arc::new(s);
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for t in 0..20u32 {
                let mut b = WriteBatch::new();
                for i in 0..300u32 {
                    b.put(format!("st/{t:02}/m/{i:04}").into_bytes(), Vec::new());
                }
                b.barrier();
                b.put(format!("st/{t:02}/z").into_bytes(), Vec::new());
                s.write(b).await.unwrap();
            }
        })
    };
    let mut checks = 0;
    while !writer.is_finished() || checks == 0 {
        checks += 1;
        for t in 0..20u32 {
            if s.get(format!("st/{t:02}/z").as_bytes())
                .await
                .unwrap()
                .is_some()
            {
                let p = format!("st/{t:02}/m/");
                let end = format!("st/{t:02}/n");
                let m = scan(&s, k(&p)..k(&end), Direction::Forward, 1_000).await;
                assert_eq!(m.len(), 300, "stage 2 of batch {t} visible before stage 1");
            }
        }
    }
    writer.await.unwrap();
    let all = scan(&s, k("st/")..k("st0"), Direction::Forward, 100_000).await;
    assert_eq!(all.len(), 20 * 301);
}

/// Writers racing on the same keys: every key ends with one of the written values, and point
/// reads agree with scans.
pub async fn racing_writers(s: Store) {
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for t in 0..4u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let mut b = WriteBatch::new();
                for i in 0..40u32 {
                    b.put(format!("race/{i:02}").into_bytes(), vec![t]);
                }
                s.write(b).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = scan(&s, k("race/")..k("race0"), Direction::Forward, 1_000).await;
    assert_eq!(all.len(), 40);
    for (key, v) in all {
        assert!(v.len() == 1 && v[0] < 4);
        assert_eq!(s.get(&key).await.unwrap(), Some(v));
    }
}
