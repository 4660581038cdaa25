//! Reverse range scans built from forward scans only, for backends whose own reverse scan
//! cannot be trusted (tikv-client 0.4: raw reverse scans across regions are broken, #512).
//!
//! Keys of a range `[start, end)` all share the common prefix `P` of `start` and `end`; the
//! 16 bytes after `P` are read as a big-endian `u128`, which orders keys like the bytes do.
//! The scan walks windows `[lo, hi)` of that number line down from `end`: a window is read
//! with one forward scan; a window that holds fewer keys than asked is taken whole and the next
//! one is twice as wide (galloping over sparse stretches), a full one is halved until it is
//! not. With the chat model's message keys (`u64::MAX - seq` after the room prefix) this
//! gallops over seqs, so "the N messages after seq X" costs O(log distance) forward scans.
//! Work is bounded: [`MAX_WINDOWS`] windows, and a window that cannot be split any more is
//! read page by page up to [`MAX_KEYS_IN_ONE_WINDOW`] keys.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;

use super::{KvPair, StoreError};

/// Windows read before giving up (doubling from 1/4096 of the range reaches it in 12).
pub const MAX_WINDOWS: usize = 1_000;
/// Keys one unsplittable window may hold.
pub const MAX_KEYS_IN_ONE_WINDOW: usize = 1_000_000;
/// Smallest forward scan limit used per window.
const PAGE: usize = 256;

/// A backend's trustworthy forward scan (results in `range`, ascending, at most `limit`).
pub trait ForwardScan: Sync {
    fn forward(
        &self,
        range: Range<Vec<u8>>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<KvPair>, StoreError>> + Send;
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn project(tail: &[u8]) -> u128 {
    let mut buf = [0u8; 16];
    let n = tail.len().min(16);
    buf[..n].copy_from_slice(&tail[..n]);
    u128::from_be_bytes(buf)
}

fn key_at(prefix: &[u8], x: u128) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&x.to_be_bytes());
    k
}

/// The last `limit` pairs of `range`, in descending key order.
pub async fn reverse<S: ForwardScan>(
    s: &S,
    range: Range<Vec<u8>>,
    limit: usize,
) -> Result<Vec<KvPair>, StoreError> {
    let mut out: Vec<KvPair> = Vec::new();
    if range.start >= range.end || limit == 0 {
        return Ok(out);
    }
    let plen = common_prefix(&range.start, &range.end);
    let prefix = &range.start[..plen];
    let floor = project(&range.start[plen..]);
    let mut hi = project(&range.end[plen..]);
    let mut hi_key = range.end.clone();
    let mut step = ((hi - floor) >> 12).max(1);
    for _ in 0..MAX_WINDOWS {
        let need = limit - out.len();
        if need == 0 || hi_key <= range.start {
            return Ok(out);
        }
        let lo = hi.saturating_sub(step).max(floor);
        let lo_key = if lo == floor {
            range.start.clone()
        } else {
            key_at(prefix, lo)
        };
        let ask = need.max(PAGE);
        let got = s.forward(lo_key.clone()..hi_key.clone(), ask).await?;
        if got.len() < ask {
            out.extend(got.into_iter().rev().take(need));
            hi = lo;
            hi_key = lo_key;
            step = step.saturating_mul(2);
        } else if hi - lo > 1 {
            step = (hi - lo) / 2;
        } else {
            out.extend(last_of_window(s, lo_key..hi_key, got, need).await?);
            return Ok(out);
        }
    }
    Err(StoreError::ScanGaveUp(format!(
        "not finished within {MAX_WINDOWS} windows"
    )))
}

/// The last `need` pairs of a window that cannot be split, descending, reading it page by
/// page from `first` (its first page).
async fn last_of_window<S: ForwardScan>(
    s: &S,
    window: Range<Vec<u8>>,
    first: Vec<KvPair>,
    need: usize,
) -> Result<Vec<KvPair>, StoreError> {
    let mut tail: VecDeque<KvPair> = VecDeque::with_capacity(need + 1);
    let mut page = first;
    let mut seen = 0usize;
    let ask = need.max(PAGE);
    loop {
        let full = page.len() >= ask;
        seen += page.len();
        let mut next = None;
        for pair in page {
            next = Some(pair.0.clone());
            tail.push_back(pair);
            if tail.len() > need {
                tail.pop_front();
            }
        }
        match next {
            Some(mut from) if full => {
                if seen > MAX_KEYS_IN_ONE_WINDOW {
                    return Err(StoreError::ScanGaveUp(format!(
                        "more than {MAX_KEYS_IN_ONE_WINDOW} keys share one window"
                    )));
                }
                from.push(0);
                if from >= window.end {
                    break;
                }
                page = s.forward(from..window.end.clone(), ask).await?;
            }
            _ => break,
        }
    }
    Ok(tail.into_iter().rev().collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Mem(BTreeMap<Vec<u8>, Vec<u8>>, AtomicUsize);

    impl ForwardScan for Mem {
        async fn forward(
            &self,
            range: Range<Vec<u8>>,
            limit: usize,
        ) -> Result<Vec<KvPair>, StoreError> {
            self.1.fetch_add(1, Ordering::Relaxed);
            if range.start >= range.end {
                return Ok(Vec::new());
            }
            Ok(self
                .0
                .range(range)
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    fn naive(m: &Mem, range: Range<Vec<u8>>, limit: usize) -> Vec<KvPair> {
        if range.start >= range.end {
            return Vec::new();
        }
        m.0.range(range)
            .rev()
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn msg_key(seq: u64) -> Vec<u8> {
        let mut k = b"m\x12\x34room\x00".to_vec();
        k.extend_from_slice(&(u64::MAX - seq).to_be_bytes());
        k
    }

    #[tokio::test]
    async fn matches_a_real_reverse_scan_on_sparse_and_dense_keys() {
        let mut map = BTreeMap::new();
        for seq in (1..200_000u64).step_by(37) {
            map.insert(msg_key(seq), seq.to_be_bytes().to_vec());
        }
        // A dense cluster of keys sharing one 16-byte window: longer keys under one prefix.
        for i in 0..3_000u32 {
            let mut k = b"m\x12\x34room\x00dense".to_vec();
            k.extend_from_slice(&[0; 12]);
            k.extend_from_slice(&i.to_be_bytes());
            map.insert(k, Vec::new());
        }
        map.insert(b"a".to_vec(), Vec::new());
        map.insert(b"z".to_vec(), Vec::new());
        let m = Mem(map, AtomicUsize::new(0));
        let mut end = msg_key(1);
        end.push(0);
        let ranges = [
            msg_key(150_000)..end.clone(),
            msg_key(199_999)..msg_key(100),
            b"m".to_vec()..b"n".to_vec(),
            b"m\x12\x34room\x00dense".to_vec()..b"m\x12\x34room\x00densf".to_vec(),
            b"".to_vec()..vec![0xff; 3],
            b"b".to_vec()..b"c".to_vec(),
            msg_key(5)..msg_key(5),
            b"a".to_vec()..b"a\x00".to_vec(),
        ];
        for range in ranges {
            for limit in [0, 1, 2, 7, 100, 255, 256, 257, 5_000, 100_000] {
                let got = reverse(&m, range.clone(), limit).await.unwrap();
                assert_eq!(got, naive(&m, range.clone(), limit), "{range:?} {limit}");
            }
        }
    }

    #[tokio::test]
    async fn a_page_after_an_old_seq_costs_few_scans() {
        let mut map = BTreeMap::new();
        for seq in (1..1_000_000u64).step_by(16) {
            map.insert(msg_key(seq), Vec::new());
        }
        let m = Mem(map, AtomicUsize::new(0));
        let mut end = msg_key(2);
        end.push(0);
        let got = reverse(&m, msg_key(999_999)..end, 100).await.unwrap();
        assert_eq!(got.len(), 100);
        assert!(m.1.load(Ordering::Relaxed) <= 40, "{:?}", m.1);
    }
}
