//! The `files` scenario: chat at a fixed rate, checked exactly as in `fanout`, while members
//! of the same rooms share files at a fixed rate (open model: upload `i` is due at
//! `warmup + i / rate`, whatever happened to the others) and another member of the room
//! downloads each one and compares its bytes. `upload` latency runs from the due time to the
//! `201` (waiting for one of [`IN_FLIGHT`] slots counts), `download` from the request to the
//! last byte. The chat's `ack` and `deliver` latency in the same report are the messages'
//! latency while uploads run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::engine::Engine;
use crate::setup::Api;
use crate::stats::{Kind, Sample};
use crate::summary::FileTraffic;

/// Uploads (with their download) in progress at once.
pub const IN_FLIGHT: usize = 32;

/// The tokens of the members of each room (uploaders and downloaders take turns).
pub type Members = Vec<Vec<String>>;

#[derive(Default)]
struct Tally {
    uploaded: AtomicU64,
    upload_failed: AtomicU64,
    downloaded: AtomicU64,
    download_failed: AtomicU64,
    mismatched: AtomicU64,
}

/// Runs the file traffic of the measured phase; returns its tally once every upload ended.
pub async fn traffic(
    engine: Arc<Engine>,
    api: Api,
    rooms: Vec<String>,
    members: Members,
    rate: f64,
    file_bytes: usize,
) -> FileTraffic {
    let t0 = engine.started().await;
    let common = &engine.common;
    let (from, to) = (common.warmup.as_secs_f64(), common.duration.as_secs_f64());
    let count = ((to - from).max(0.0) * rate).floor() as u64;
    let usable: Vec<usize> = (0..rooms.len())
        .filter(|&r| members[r].len() >= 2)
        .collect();
    if usable.is_empty() || count == 0 {
        return FileTraffic::default();
    }
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let tally = Arc::new(Tally::default());
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let due_us = t0 + ((from + i as f64 / rate) * 1e6) as u64;
        tokio::time::sleep_until(engine.instant_of(due_us)).await;
        let r = usable[i as usize % usable.len()];
        let n = members[r].len();
        let uploader = members[r][(i as usize / usable.len()) % n].clone();
        let reader = members[r][(i as usize / usable.len() + 1) % n].clone();
        let (engine, api, room, tally, slots) = (
            engine.clone(),
            api.clone(),
            rooms[r].clone(),
            tally.clone(),
            slots.clone(),
        );
        tasks.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let bytes = content(i, file_bytes);
            let name = format!("load-{i}.bin");
            let id = match api.upload(&uploader, &room, &name, bytes.clone()).await {
                Ok(id) => id,
                Err(_) => {
                    tally.upload_failed.fetch_add(1, Ordering::Relaxed);
                    engine.counters.error("upload_failed");
                    return;
                }
            };
            record(
                &engine,
                Kind::Upload,
                crate::clock::now_us().saturating_sub(due_us),
            );
            tally.uploaded.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            match api.download(&reader, &room, &id).await {
                Ok(got) => {
                    record(
                        &engine,
                        Kind::Download,
                        started.elapsed().as_micros() as u64,
                    );
                    tally.downloaded.fetch_add(1, Ordering::Relaxed);
                    if got != bytes {
                        tally.mismatched.fetch_add(1, Ordering::Relaxed);
                        engine.counters.error("download_mismatch");
                    }
                }
                Err(_) => {
                    tally.download_failed.fetch_add(1, Ordering::Relaxed);
                    engine.counters.error("download_failed");
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let uploaded = get(&tally.uploaded);
    FileTraffic {
        scheduled: count,
        uploaded,
        upload_failed: get(&tally.upload_failed),
        downloaded: get(&tally.downloaded),
        download_failed: get(&tally.download_failed),
        mismatched: get(&tally.mismatched),
        file_bytes: file_bytes as u64,
        upload_bytes_per_s: (uploaded * file_bytes as u64) as f64 / (to - from).max(1e-9),
    }
}

fn record(engine: &Engine, kind: Kind, us: u64) {
    if let Ok(mut h) = engine.hists.lock() {
        h.record(Sample { kind, us });
    }
}

/// The bytes of upload `i`: distinct per upload, cheap to make and to compare.
fn content(i: u64, len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = (0..len).map(|j| (j % 251) as u8).collect();
    for (b, x) in out.iter_mut().zip(i.to_le_bytes()) {
        *b = x;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_upload_has_its_own_bytes() {
        let (a, b) = (super::content(1, 64), super::content(2, 64));
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(&a[8..], &b[8..]);
        assert_eq!(super::content(3, 4).len(), 4);
    }
}
