//! The state one run shares between the controller, the goose users (one per shard) and the
//! connection tasks: the plan, tokens, counters, merged histograms, and the start/stop
//! signals. Shard `s` owns connections `s, s + shards, s + 2·shards, …`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, watch, Notify};

use crate::cli::{Common, Protocol};
use crate::clock::now_us;
use crate::coord::Share;
use crate::plan::Plan;
use crate::stats::{Counters, Hists, Sample};

/// Batches of samples from connection tasks to their shard's recorder.
pub type SampleTx = mpsc::Sender<Vec<Sample>>;
pub type SampleRx = mpsc::Receiver<Vec<Sample>>;

/// Bounded queue of sample batches per shard.
const SHARD_QUEUE: usize = 4096;

/// One shard's sample channel, taken once by its goose user.
#[derive(Debug)]
pub struct Shard {
    pub tx: Mutex<Option<SampleTx>>,
    pub rx: Mutex<Option<SampleRx>>,
}

/// Everything a run shares.
#[derive(Debug)]
pub struct Engine {
    pub common: Common,
    pub run_id: String,
    pub plan: Plan,
    /// `(name, token)` per account.
    pub accounts: Vec<(String, String)>,
    pub ws_url: String,
    pub counters: Counters,
    pub hists: Mutex<Hists>,
    pub shards: Vec<Shard>,
    /// The rooms this generator drives (all of them unless several generators share a run).
    pub share: Share,
    ready: AtomicUsize,
    ready_notify: Notify,
    /// Scheduled start of the measured phase (unix µs), set once every shard is connected.
    pub start: watch::Sender<Option<u64>>,
    /// Set when the run is over: connection tasks settle their books and close.
    pub stop: watch::Sender<bool>,
    base: (Instant, u64),
}

impl Engine {
    pub fn new(
        common: Common,
        run_id: String,
        plan: Plan,
        accounts: Vec<(String, String)>,
    ) -> anyhow::Result<Arc<Self>> {
        let shards = (0..common.shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(SHARD_QUEUE);
                Shard {
                    tx: Mutex::new(Some(tx)),
                    rx: Mutex::new(Some(rx)),
                }
            })
            .collect();
        let share = common.share().map_err(anyhow::Error::msg)?;
        let ws_url = match common.protocol {
            Protocol::Chatmesh => crate::ws::chatmesh_ws_url(&common.target),
            Protocol::NatsWs => common.target.clone(),
        };
        Ok(Arc::new(Self {
            run_id,
            plan,
            accounts,
            ws_url,
            counters: Counters::default(),
            hists: Mutex::new(Hists::new()?),
            shards,
            share,
            ready: AtomicUsize::new(0),
            ready_notify: Notify::new(),
            start: watch::channel(None).0,
            stop: watch::channel(false).0,
            base: (Instant::now(), now_us()),
            common,
        }))
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Connection indices of shard `s` (of this generator's rooms).
    pub fn shard_conns(&self, s: usize) -> impl Iterator<Item = usize> + '_ {
        self.own_conns()
            .enumerate()
            .filter(move |(n, _)| n % self.shard_count() == s)
            .map(|(_, c)| c)
    }

    /// Indices of the connections this generator opens.
    pub fn own_conns(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.plan.conns.len()).filter(|&c| self.share.owns_room(self.plan.conns[c].room))
    }

    /// A shard has opened all its connections.
    pub fn shard_ready(&self) {
        self.ready.fetch_add(1, Ordering::SeqCst);
        self.ready_notify.notify_waiters();
    }

    /// Waits until every shard is ready.
    pub async fn all_ready(&self) {
        loop {
            let notified = self.ready_notify.notified();
            if self.ready.load(Ordering::SeqCst) >= self.shard_count() {
                return;
            }
            notified.await;
        }
    }

    /// The tokio instant of unix µs `t` (same clock as every timestamp of the run).
    pub fn instant_of(&self, t: u64) -> tokio::time::Instant {
        let (i0, t0) = self.base;
        let at = if t >= t0 {
            i0 + std::time::Duration::from_micros(t - t0)
        } else {
            i0
        };
        tokio::time::Instant::from_std(at)
    }

    /// The measured phase's start, once set.
    pub async fn started(&self) -> u64 {
        let mut rx = self.start.subscribe();
        loop {
            if let Some(t0) = *rx.borrow_and_update() {
                return t0;
            }
            if rx.changed().await.is_err() {
                return now_us();
            }
        }
    }

    /// Merges a shard's histograms into the run's.
    pub fn merge(&self, h: &Hists) {
        if let Ok(mut all) = self.hists.lock() {
            all.merge(h);
        }
    }
}
