//! One traffic run against a mesh: users and a room created through the entry point, sender
//! and receiver tasks started, then stopped in order (stop producing, wait for every pending
//! ack, wait until receivers hold every acked seq), and the verdict: lost, duplicated,
//! chain breaks, dedupe conflicts, plus the measured reconnection and no-ack times.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{http_page, Api};
use crate::traffic::{self, lock, Shared, Target};

/// A running traffic run.
pub struct Run {
    pub target: Target,
    pub ledger: Shared,
    pub started: Instant,
    produce: CancellationToken,
    stop: CancellationToken,
    senders: Vec<JoinHandle<()>>,
    receivers: Vec<JoinHandle<()>>,
    pub tokens: Vec<(String, String)>,
}

/// What a run measured.
#[derive(Debug)]
pub struct Verdict {
    pub acked: usize,
    pub sent: u64,
    pub resent: u64,
    pub lost: usize,
    pub duplicated: u64,
    pub chain_breaks: usize,
    pub gaps: u64,
    pub ack_conflicts: u64,
    pub errors: Vec<(String, u64)>,
    pub reconnects: usize,
    pub max_reconnect: Duration,
    pub max_ack_gap: Duration,
    pub last_seq: u64,
}

impl Verdict {
    /// Nothing acked was lost, nothing duplicated, every chain unbroken.
    pub fn assert_clean(&self) {
        assert!(self.acked > 0, "no message was acked: {self:#?}");
        assert_eq!(self.lost, 0, "acked messages lost: {self:#?}");
        assert_eq!(self.duplicated, 0, "duplicates delivered: {self:#?}");
        assert_eq!(self.chain_breaks, 0, "prev chain broken: {self:#?}");
        assert_eq!(self.gaps, 0, "gap frames: {self:#?}");
        assert_eq!(
            self.ack_conflicts, 0,
            "one id acked with two seqs: {self:#?}"
        );
        let fatal: Vec<_> = self
            .errors
            .iter()
            .filter(|(c, _)| c != "unavailable")
            .collect();
        assert!(fatal.is_empty(), "unexpected error frames: {self:#?}");
    }
}

impl Run {
    /// `senders` senders at `per_second` each and `receivers` receivers in room `room`.
    pub async fn start(
        entry: &str,
        room: &str,
        senders: usize,
        receivers: usize,
        per_second: u32,
    ) -> Result<Self> {
        Self::start_across(entry, entry, room, senders, receivers, per_second).await
    }

    /// [`Run::start`] with the senders (and the set-up) on `entry` and the receivers on
    /// `receive_entry` (another region's gateway).
    pub async fn start_across(
        entry: &str,
        receive_entry: &str,
        room: &str,
        senders: usize,
        receivers: usize,
        per_second: u32,
    ) -> Result<Self> {
        let api = Api::at(entry);
        let mut tokens = Vec::new();
        // User names cannot hold a room's home region separator.
        let stem = room.replace('~', "-");
        for i in 0..senders + receivers {
            let name = if i < senders {
                format!("{stem}-s{i}")
            } else {
                format!("{stem}-r{}", i - senders)
            };
            tokens.push((name.clone(), api.user(&name).await?));
        }
        api.room(&tokens[0].1, room, "public").await?;
        let target = Target {
            entry: entry.to_owned(),
            room: room.to_owned(),
            fallback: None,
        };
        let ledger = traffic::ledger(receivers);
        let (produce, stop) = (CancellationToken::new(), CancellationToken::new());
        let mut run = Self {
            target,
            ledger,
            started: Instant::now(),
            produce,
            stop,
            senders: Vec::new(),
            receivers: Vec::new(),
            tokens,
        };
        // Receivers in another region fail over to the senders' region when theirs is cut.
        let receive_at = Target {
            entry: receive_entry.to_owned(),
            room: room.to_owned(),
            fallback: (receive_entry != entry).then(|| entry.to_owned()),
        };
        for (i, (user, token)) in run.tokens[senders..].iter().enumerate() {
            run.receivers.push(tokio::spawn(traffic::receiver(
                receive_at.clone(),
                user.clone(),
                token.clone(),
                i,
                run.ledger.clone(),
                run.stop.clone(),
            )));
        }
        let period = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
        for (user, token) in &run.tokens[..senders] {
            run.senders.push(tokio::spawn(traffic::sender(
                run.target.clone(),
                user.clone(),
                token.clone(),
                period,
                run.ledger.clone(),
                run.produce.clone(),
                run.stop.clone(),
            )));
        }
        Ok(run)
    }

    /// Acks so far.
    pub fn acked(&self) -> usize {
        lock(&self.ledger).acked.len()
    }

    /// Waits until at least `n` messages were acked (bounded by `within`).
    pub async fn wait_acked(&self, n: usize, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while self.acked() < n {
            if Instant::now() > deadline {
                bail!("only {} of {n} acked within {within:?}", self.acked());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Stops sending, waits for acks and deliveries, and judges the run.
    pub async fn finish(mut self) -> Result<Verdict> {
        self.produce.cancel();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        for s in self.senders.drain(..) {
            reraise(tokio::time::timeout_at(deadline, s).await.ok());
        }
        let want: HashSet<u64> = lock(&self.ledger).acked.values().copied().collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let done = lock(&self.ledger)
                .receivers
                .iter()
                .all(|r| want.iter().all(|s| r.messages.contains_key(s)));
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop.cancel();
        for r in self.receivers.drain(..) {
            reraise(tokio::time::timeout(Duration::from_secs(5), r).await.ok());
        }
        Ok(self.verdict())
    }

    fn verdict(&self) -> Verdict {
        let l = lock(&self.ledger);
        let mut lost = 0;
        for ((user, id), seq) in &l.acked {
            for r in &l.receivers {
                if r.messages.get(seq) != Some(&(user.clone(), id.clone())) {
                    lost += 1;
                }
            }
        }
        let mut times = l.ack_times.clone();
        times.sort();
        let max_ack_gap = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        Verdict {
            acked: l.acked.len(),
            sent: l.sent,
            resent: l.resent,
            lost,
            duplicated: l.receivers.iter().map(|r| r.duplicates).sum(),
            chain_breaks: l.receivers.iter().map(|r| r.chain_breaks.len()).sum(),
            gaps: l.receivers.iter().map(|r| r.gaps).sum(),
            ack_conflicts: l.ack_conflicts,
            errors: l.errors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            reconnects: l.reconnects.len(),
            max_reconnect: l.reconnects.iter().max().copied().unwrap_or_default(),
            max_ack_gap,
            last_seq: l.acked.values().max().copied().unwrap_or(0),
        }
    }

    /// Every acked (user, id) → seq, for a later history check.
    pub fn acked_map(&self) -> Vec<(u64, String, String)> {
        let l = lock(&self.ledger);
        let mut v: Vec<_> = l
            .acked
            .iter()
            .map(|((u, i), s)| (*s, u.clone(), i.clone()))
            .collect();
        v.sort();
        v
    }
}

/// A traffic task's panic (a frame that is not protocol v1) fails the test here.
fn reraise(ended: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(e)) = ended {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The room's whole history through `GET /v1/rooms/{room}/messages`, oldest first.
pub async fn history(
    entry: &str,
    token: &str,
    room: &str,
) -> Result<Vec<(u64, u64, String, String)>> {
    let api = Api::at(entry);
    let mut out = Vec::new();
    let mut before = u64::MAX;
    for _ in 0..10_000 {
        let path = format!("/v1/rooms/{room}/messages?before={before}&limit=100");
        let (status, v) = api.call("GET", &path, Some(token), None).await?;
        if status != 200 {
            bail!("history: {status} {v}");
        }
        let page = http_page(&v);
        let Some(first) = page.messages.first() else {
            break;
        };
        before = first.seq;
        let mut rows: Vec<_> = page
            .messages
            .into_iter()
            .map(|m| (m.seq, m.prev, m.from, m.id))
            .collect();
        rows.append(&mut out);
        out = rows;
        if !page.more {
            break;
        }
    }
    Ok(out)
}
