//! The `history` scenario and the history half of `mixed`: rooms filled with messages during
//! setup (through the normal `send` path), then readers paging each room backwards with the
//! protocol's `history` frame, from the newest message to the first and again, at a fixed
//! total rate in an open model: page request `i` of reader `g` (of `N`, total rate `R`) is due
//! at `t0 + g/R + i·N/R`. A reader has one request in flight (the next `before` is the oldest
//! seq of the last answer), so when answers are slow the next request goes out as soon as the
//! answer is in, and its latency still counts from its scheduled time: a stall shows up as
//! latency of every page scheduled during it, not as fewer pages.
//!
//! Every page is checked ([`Walker`]): oldest first with increasing seqs and an intact `prev`
//! chain, joined to the page before it (its newest message's seq is the `prev` of the oldest
//! message already read), `more` false exactly when the room's first message (`prev` 0) is in
//! it, full pages while `more`, and the fill messages' own indices (`h<k>` bodies) counting
//! down to 0 without a hole. A violation is counted as an error (`history_gap`,
//! `history_order`, `history_more`, `history_size`, `history_stale`, `history_fill`,
//! `history_count`) and the walk starts again from the newest message.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures::stream::SplitSink;
use futures::{stream, SinkExt as _, StreamExt as _, TryStreamExt as _};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::engine::{Engine, SampleTx};
use crate::inbound::now_us;
use crate::plan::{ConnPlan, Plan, PubPlan, RoomPlan};
pub use crate::plan::{Expect, ReadPlan};
use crate::stats::{Counters, Kind, Sample};
use crate::tracker::AckedSet;
use crate::ws::{self, Ws};

/// How long a reader waits for the answer to one page request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Sends in flight per room while filling.
const FILL_WINDOW: u64 = 64;
/// Rooms filled at once.
const FILL_ROOMS_AT_ONCE: usize = 8;
/// Deadline of one frame while filling.
const FILL_STEP: Duration = Duration::from_secs(30);

/// Answers (`history`, or `error` to a history request) forwarded from a connection's reader
/// to its scroller: `(arrival unix µs, frame text)`.
pub type PageTx = mpsc::Sender<(u64, String)>;
pub type PageRx = mpsc::Receiver<(u64, String)>;

/// A room after the fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomFill {
    pub filled: u64,
    pub newest: u64,
}

/// Schedule of reader `g` of `n` sharing `rate` requests/s for `secs` seconds.
pub fn schedule(g: usize, n: usize, rate: f64, secs: f64) -> PubPlan {
    let n = n.max(1);
    let (offset_us, interval_us, count) = if rate > 0.0 {
        (
            g as f64 * 1e6 / rate,
            n as f64 * 1e6 / rate,
            (secs * rate / n as f64).floor() as u64,
        )
    } else {
        (0.0, 0.0, 0)
    };
    PubPlan {
        offset_us,
        interval_us,
        count,
        slot: 0,
        stride: 1,
    }
}

/// The plan of the `history` scenario: `readers` connections, reader `i` in room
/// `i % rooms` with account `i % accounts`, sharing `rate` page requests/s. Nothing is sent.
pub fn history_plan(
    names: Vec<String>,
    fills: &[RoomFill],
    readers: usize,
    rate: f64,
    secs: f64,
    accounts: usize,
    limit: u64,
) -> Plan {
    let n_rooms = names.len().max(1);
    let mut members = vec![0u64; names.len()];
    let conns = (0..readers)
        .map(|i| {
            let room = i % n_rooms;
            members[room] += 1;
            let f = fills.get(room).copied().unwrap_or(RoomFill {
                filled: 0,
                newest: 0,
            });
            ConnPlan {
                account: i % accounts.max(1),
                room,
                publisher: None,
                reader: Some(ReadPlan {
                    schedule: schedule(i, readers, rate, secs),
                    expect: Expect {
                        limit,
                        fill: f.filled,
                        newest: f.newest,
                        exact: true,
                    },
                    progress: i == 0,
                }),
            }
        })
        .collect();
    let rooms = names
        .into_iter()
        .zip(members)
        .map(|(name, members)| RoomPlan {
            name,
            messages: 0,
            acked: AckedSet::new(0),
            members,
        })
        .collect();
    Plan {
        rooms,
        conns,
        body_bytes: 32,
        rate: 0.0,
        ramp_rate: 0.0,
    }
}

/// Setup and plan of the `history` scenario: rooms, the fill, the readers.
pub async fn setup(
    api: &crate::setup::Api,
    common: &crate::cli::Common,
    accounts: &[(String, String)],
    run_id: &str,
    a: &crate::cli::HistoryArgs,
) -> anyhow::Result<Plan> {
    let (names, fills) = filled_rooms(
        api,
        common,
        accounts,
        run_id,
        a.rooms,
        a.messages_per_room,
        a.body_bytes,
    )
    .await?;
    let secs = common.duration.as_secs_f64();
    Ok(history_plan(
        names,
        &fills,
        a.readers,
        a.rate,
        secs,
        accounts.len(),
        a.page,
    ))
}

/// The run's rooms `lt-<run>-<i>`, created if need be, and (this generator's share of them)
/// filled to `per_room` messages: what `history` and `mixed` read.
pub async fn filled_rooms(
    api: &crate::setup::Api,
    common: &crate::cli::Common,
    accounts: &[(String, String)],
    run_id: &str,
    rooms: usize,
    per_room: u64,
    body_bytes: usize,
) -> anyhow::Result<(Vec<String>, Vec<RoomFill>)> {
    let names = crate::setup::rooms(api, accounts, run_id, rooms.max(1), false).await?;
    let url = ws::chatmesh_ws_url(&common.target);
    let share = common.share().map_err(anyhow::Error::msg)?;
    let fills = fill(&url, accounts, &names, per_room, body_bytes, run_id, share).await?;
    Ok((names, fills))
}

/// A fill message's body: `h<k> ` padded with `x` to `size` bytes.
pub fn fill_body(k: u64, size: usize) -> String {
    let mut body = format!("h{k} ");
    while body.len() < size {
        body.push('x');
    }
    body
}

/// The `k` of a fill message's body.
pub fn fill_k(body: &str) -> Option<u64> {
    let rest = body.strip_prefix('h')?;
    rest.split(' ').next()?.parse().ok()
}

/// One message of a page, as the checks need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageMsg {
    pub seq: u64,
    pub prev: u64,
    /// `Some(k)` for a fill message.
    pub fill: Option<u64>,
}

/// What one page did to the walk.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Violations, as error codes (empty for a good page).
    pub errors: Vec<&'static str>,
    /// The walk reached the room's first message with every page good.
    pub walk_done: bool,
}

/// One reader's walk from the newest message back to the first, page by page.
#[derive(Debug)]
pub struct Walker {
    expect: Expect,
    /// Oldest message read so far in this walk.
    oldest: Option<PageMsg>,
    /// The last fill `k` seen in this walk (walking backwards).
    last_fill: Option<u64>,
    /// Messages read in this walk.
    read: u64,
}

impl Walker {
    pub fn new(expect: Expect) -> Self {
        Self {
            expect,
            oldest: None,
            last_fill: None,
            read: 0,
        }
    }

    /// The `before` of the next request (`None`: the newest page).
    pub fn before(&self) -> Option<u64> {
        self.oldest.map(|m| m.seq)
    }

    /// Starts again from the newest message.
    pub fn restart(&mut self) {
        self.oldest = None;
        self.last_fill = None;
        self.read = 0;
    }

    /// Checks one answer (`messages` as received, `more`) against the walk so far.
    pub fn on_page(&mut self, msgs: &[PageMsg], more: bool) -> Outcome {
        let mut errors = Vec::new();
        let e = self.expect;
        // Oldest first: seqs increase and each `prev` is the seq before it.
        for w in msgs.windows(2) {
            if w[1].seq <= w[0].seq {
                errors.push("history_order");
                break;
            }
            if w[1].prev != w[0].seq {
                errors.push("history_gap");
                break;
            }
        }
        if msgs.len() as u64 > e.limit || (more && (msgs.len() as u64) < e.limit) {
            errors.push("history_size");
        }
        match (self.oldest, msgs.last()) {
            // The page ends right before what was read already.
            (Some(o), Some(newest)) if newest.seq >= o.seq => errors.push("history_order"),
            (Some(o), Some(newest)) if newest.seq != o.prev => errors.push("history_gap"),
            // Asked for what lies before a message whose `prev` is not 0, got nothing.
            (Some(_), None) => errors.push("history_gap"),
            (None, newest) => {
                let top = newest.map_or(0, |m| m.seq);
                if (e.exact && top != e.newest) || top < e.newest {
                    errors.push("history_stale");
                }
            }
            _ => {}
        }
        // `more` is false exactly when the first message of the room is in the page.
        let at_first = msgs.first().is_none_or(|m| m.prev == 0);
        if more == at_first {
            errors.push("history_more");
        }
        // Fill indices count down to 0, and nothing older than a fill message is not one.
        for m in msgs.iter().rev() {
            let want = match self.last_fill {
                None => e.fill.checked_sub(1),
                Some(k) => k.checked_sub(1),
            };
            match (m.fill, want) {
                (Some(k), Some(w)) if k == w => self.last_fill = Some(k),
                (None, _) if self.last_fill.is_none() && !e.exact => {}
                _ => {
                    errors.push("history_fill");
                    break;
                }
            }
        }
        self.read += msgs.len() as u64;
        if errors.is_empty() && !more {
            let fills_complete = e.fill == 0 || self.last_fill == Some(0);
            if !fills_complete || (e.exact && self.read != e.fill) {
                errors.push("history_count");
            }
        }
        errors.dedup();
        let walk_done = errors.is_empty() && !more;
        if !errors.is_empty() || !more {
            self.restart();
        } else {
            self.oldest = msgs.first().copied();
        }
        Outcome { errors, walk_done }
    }
}

#[derive(Debug, Deserialize)]
struct RawMsg {
    seq: u64,
    #[serde(default)]
    prev: u64,
    #[serde(default)]
    body: String,
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, rename = "ref")]
    r#ref: Option<serde_json::Value>,
    #[serde(default)]
    messages: Vec<RawMsg>,
    #[serde(default)]
    more: bool,
}

/// The ref of page request `i`.
fn page_ref(i: u64) -> String {
    format!("h{i}")
}

/// Whether a frame is the answer to a page request (`history`, or `error` with a `h…` ref).
pub fn is_answer(kind: &str, r#ref: Option<&serde_json::Value>) -> bool {
    kind == "history"
        || (kind == "error"
            && r#ref
                .and_then(|r| r.as_str())
                .is_some_and(|r| r.starts_with('h')))
}

/// A parsed answer: `Ok((messages, more))` for a page, `Err(())` for an error frame.
type Parsed = Result<(Vec<PageMsg>, bool), ()>;

/// Parses an answer if it is the one to request `i`.
fn parse_answer(text: &str, i: u64) -> Option<Parsed> {
    let a: Answer = serde_json::from_str(text).ok()?;
    let want = page_ref(i);
    if a.r#ref.as_ref().and_then(|r| r.as_str()) != Some(want.as_str()) {
        return None;
    }
    if a.kind != "history" {
        return Some(Err(()));
    }
    let msgs = a
        .messages
        .iter()
        .map(|m| PageMsg {
            seq: m.seq,
            prev: m.prev,
            fill: fill_k(&m.body),
        })
        .collect();
    Some(Ok((msgs, a.more)))
}

/// The page requests of reader connection `c`, on its schedule, until they are done; then
/// keeps the write half open until the run stops.
pub async fn scroll(
    engine: Arc<Engine>,
    c: usize,
    plan: ReadPlan,
    mut sink: SplitSink<Ws, Message>,
    mut answers: PageRx,
    tx: SampleTx,
) {
    let t0 = engine.started().await;
    if plan.progress {
        tokio::spawn(progress(engine.clone(), t0));
    }
    let warm_until = t0 + engine.common.warmup.as_micros() as u64;
    let phase_end = t0 + engine.common.duration.as_micros() as u64;
    let room = &engine.plan.rooms[engine.plan.conns[c].room].name;
    let counters = &engine.counters;
    let mut walker = Walker::new(plan.expect);
    for i in 0..plan.schedule.count {
        let due = plan.schedule.due(t0, i);
        if due > now_us() {
            tokio::time::sleep_until(engine.instant_of(due)).await;
        }
        let before = walker
            .before()
            .map_or(String::new(), |b| format!(r#","before":{b}"#));
        let frame = format!(
            r#"{{"type":"history","ref":"{}","room":"{room}"{before},"limit":{}}}"#,
            page_ref(i),
            plan.expect.limit
        );
        if sink.send(Message::text(frame)).await.is_err() {
            counters.error("send_failed");
            return;
        }
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        let answer = loop {
            match tokio::time::timeout_at(deadline, answers.recv()).await {
                Err(_) => break None,
                // The reader is gone: the run is over or the connection was lost.
                Ok(None) => return,
                Ok(Some((at, text))) => {
                    if let Some(parsed) = parse_answer(&text, i) {
                        break Some((at, parsed));
                    }
                }
            }
        };
        match answer {
            None => {
                counters.error("history_timeout");
                Counters::add(&counters.history_failed, 1);
                walker.restart();
            }
            // Counted under its code by the reader.
            Some((_, Err(()))) => {
                Counters::add(&counters.history_failed, 1);
                walker.restart();
            }
            Some((at, Ok((msgs, more)))) => {
                Counters::add(&counters.history_pages, 1);
                Counters::add(&counters.history_messages, msgs.len() as u64);
                if at <= phase_end {
                    Counters::add(&counters.history_pages_in_phase, 1);
                    Counters::add(&counters.history_messages_in_phase, msgs.len() as u64);
                }
                if due >= warm_until {
                    let sample = Sample {
                        kind: Kind::History,
                        us: at.saturating_sub(due),
                    };
                    if tx.send(vec![sample]).await.is_err() {
                        return;
                    }
                }
                let out = walker.on_page(&msgs, more);
                for code in out.errors {
                    counters.error(code);
                }
                if out.walk_done {
                    Counters::add(&counters.history_walks, 1);
                }
            }
        }
    }
    let mut stop = engine.stop.subscribe();
    let _ = stop.wait_for(|s| *s).await;
}

/// A `[history]` progress line every `--progress-secs` until the run stops.
async fn progress(engine: Arc<Engine>, t0: u64) {
    let every = engine.common.progress_secs;
    if every == 0 {
        return;
    }
    let mut stop = engine.stop.subscribe();
    let c = &engine.counters;
    let mut last = (0, 0);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(every)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = (
            Counters::get(&c.history_pages),
            Counters::get(&c.history_messages),
        );
        eprintln!(
            "[history] {:>6.1}s  pages/s {:.0}  messages/s {:.0}  walks {}  failed {}",
            now_us().saturating_sub(t0) as f64 / 1e6,
            (now.0 - last.0) as f64 / every as f64,
            (now.1 - last.1) as f64 / every as f64,
            Counters::get(&c.history_walks),
            Counters::get(&c.history_failed),
        );
        last = now;
    }
}

/// Fills each room up to `per_room` fill messages (bodies `h<k>`, sent by account
/// `r % accounts` through `send`, up to [`FILL_WINDOW`] in flight), resuming where an earlier
/// fill of the same room stopped; progress on stderr.
pub async fn fill(
    ws_url: &str,
    accounts: &[(String, String)],
    rooms: &[String],
    per_room: u64,
    body_bytes: usize,
    run_id: &str,
    share: crate::coord::Share,
) -> anyhow::Result<Vec<RoomFill>> {
    let done = AtomicU64::new(0);
    let owned = (0..rooms.len()).filter(|&r| share.owns_room(r)).count();
    let total = per_room * owned as u64;
    let started = tokio::time::Instant::now();
    let work = stream::iter(rooms.iter().enumerate())
        .map(|(r, room)| {
            let account = &accounts[r % accounts.len().max(1)];
            let done = &done;
            async move {
                // With several generators each fills the rooms it drives (two filling one
                // room would interleave); the others' entries are never read here.
                if !share.owns_room(r) {
                    return Ok(RoomFill {
                        filled: 0,
                        newest: 0,
                    });
                }
                fill_room(
                    ws_url, &account.1, room, r, per_room, body_bytes, run_id, done,
                )
                .await
            }
        })
        .buffered(FILL_ROOMS_AT_ONCE)
        .try_collect::<Vec<_>>();
    let report = async {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            eprintln!(
                "[fill] {:>6.1}s  {} of {} messages",
                started.elapsed().as_secs_f64(),
                done.load(Relaxed),
                total
            );
        }
    };
    let fills = tokio::select! {
        fills = work => fills?,
        _ = report => unreachable!("the report loop never ends"),
    };
    eprintln!(
        "setup: {} rooms hold {} fill messages each; {} sent in {:.1} s",
        owned,
        per_room,
        done.load(Relaxed),
        started.elapsed().as_secs_f64()
    );
    Ok(fills)
}

/// Next text frame within [`FILL_STEP`].
async fn next_text(ws: &mut Ws, what: &str) -> anyhow::Result<String> {
    loop {
        let next = tokio::time::timeout(FILL_STEP, ws.next())
            .await
            .with_context(|| format!("fill: no {what} within {FILL_STEP:?}"))?;
        match next {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(c))) => bail!("fill: closed while waiting for {what}: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("fill: {e}"),
            None => bail!("fill: connection closed while waiting for {what}"),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn fill_room(
    ws_url: &str,
    token: &str,
    room: &str,
    r: usize,
    per_room: u64,
    body_bytes: usize,
    run_id: &str,
    done: &AtomicU64,
) -> anyhow::Result<RoomFill> {
    let mut ws = ws::open(ws_url, None, "chatmesh.v1").await?;
    ws::hello(&mut ws, token).await?;
    ws::join(&mut ws, room).await?;
    // The newest message says how far an earlier fill got.
    let ask = format!(r#"{{"type":"history","ref":"top","room":"{room}","limit":1}}"#);
    ws.send(Message::text(ask)).await?;
    let top = loop {
        let text = next_text(&mut ws, "history").await?;
        let a: Answer = serde_json::from_str(&text).context("fill: unparsable frame")?;
        match a.kind.as_str() {
            "history" => break a.messages.into_iter().last(),
            "error" => bail!("fill: history of {room} answered {text}"),
            _ => {}
        }
    };
    let (start, mut newest) = match &top {
        None => (0, 0),
        Some(m) => match fill_k(&m.body) {
            Some(k) => (k + 1, m.seq),
            None => {
                bail!("room {room} already holds messages other than a fill; use a new --run-id")
            }
        },
    };
    if start >= per_room {
        return Ok(RoomFill {
            filled: start,
            newest,
        });
    }
    let count = per_room - start;
    let mut seqs = vec![0u64; count as usize];
    let (mut next, mut acked) = (start, 0u64);
    while acked < count {
        while next < per_room && next - start - acked < FILL_WINDOW {
            let body = fill_body(next, body_bytes.max(32));
            let frame = format!(
                r#"{{"type":"send","ref":{next},"room":"{room}","id":"{run_id}-fill{r}-k{next}","body":"{body}"}}"#
            );
            ws.feed(Message::text(frame)).await?;
            next += 1;
        }
        ws.flush().await?;
        let text = next_text(&mut ws, "ack").await?;
        let Ok(a) = serde_json::from_str::<serde_json::Value>(&text) else {
            bail!("fill: unparsable frame {text}");
        };
        match a["type"].as_str() {
            Some("ack") => {
                let k = a["ref"]
                    .as_u64()
                    .context("fill: ack without a numeric ref")?;
                let seq = a["seq"].as_u64().context("fill: ack without seq")?;
                let slot = seqs
                    .get_mut((k.wrapping_sub(start)) as usize)
                    .context("fill: ack for a send never made")?;
                if *slot == 0 {
                    *slot = seq;
                    acked += 1;
                    done.fetch_add(1, Relaxed);
                }
            }
            Some("error") => bail!(
                "fill of {room}: {text} (the target must allow fast sends: see ops/bench's \
                 CHATMESH__GATEWAY__LIMITS__* settings)"
            ),
            _ => {}
        }
    }
    // Sends of one session are stored in the order they were read; the walk's checks rely
    // on fill indices increasing with seq.
    if seqs.windows(2).any(|w| w[1] <= w[0]) || seqs.first().is_some_and(|&s| s <= newest) {
        bail!("fill of {room}: the target stored the fill out of order");
    }
    newest = seqs.last().copied().unwrap_or(newest);
    let _ = ws.close(None).await;
    Ok(RoomFill {
        filled: per_room,
        newest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(fill: u64, newest: u64, exact: bool) -> Expect {
        Expect {
            limit: 3,
            fill,
            newest,
            exact,
        }
    }

    /// A room of fill messages `h0..h{n}` with seqs `first, first+step, …` (seqs need not
    /// be consecutive: other rooms share the stream).
    fn room(n: u64, first: u64, step: u64) -> Vec<PageMsg> {
        (0..n)
            .map(|k| PageMsg {
                seq: first + k * step,
                prev: if k == 0 { 0 } else { first + (k - 1) * step },
                fill: Some(k),
            })
            .collect()
    }

    /// The page a correct server answers: up to `limit` messages with seq < before.
    fn page(all: &[PageMsg], before: Option<u64>, limit: usize) -> (Vec<PageMsg>, bool) {
        let older: Vec<PageMsg> = all
            .iter()
            .copied()
            .filter(|m| before.is_none_or(|b| m.seq < b))
            .collect();
        let from = older.len().saturating_sub(limit);
        (older[from..].to_vec(), from > 0)
    }

    #[test]
    fn a_healthy_room_walks_cleanly_and_repeats() {
        let all = room(7, 10, 4);
        let mut w = Walker::new(expect(7, all[6].seq, true));
        let mut walks = 0;
        for n in 0..9 {
            let (msgs, more) = page(&all, w.before(), 3);
            let out = w.on_page(&msgs, more);
            assert!(out.errors.is_empty(), "{out:?} at page {n}");
            walks += u64::from(out.walk_done);
        }
        // 7 messages in pages of 3: 3 pages a walk, so 9 pages are 3 walks.
        assert_eq!(walks, 3);
        assert_eq!(w.before(), None);
    }

    #[test]
    fn a_missing_message_is_a_gap() {
        let mut all = room(7, 10, 1);
        all.remove(2); // seq 12 lost; seq 13 still names it as prev
        let mut w = Walker::new(expect(7, 16, true));
        let (p1, more) = page(&all, w.before(), 3);
        assert!(w.on_page(&p1, more).errors.is_empty());
        let (p2, more) = page(&all, w.before(), 3);
        let out = w.on_page(&p2, more);
        assert!(out.errors.contains(&"history_gap"), "{out:?}");
        assert!(!out.walk_done);
        // The walk starts over from the newest page.
        assert_eq!(w.before(), None);
    }

    #[test]
    fn pages_that_do_not_join_are_a_gap() {
        let all = room(9, 100, 1);
        let mut w = Walker::new(expect(9, 108, true));
        let (p1, more) = page(&all, None, 3);
        assert!(w.on_page(&p1, more).errors.is_empty());
        // The server skipped three messages: answered "before 103" with seqs 100..=102.
        let (p2, more) = page(&all, Some(103), 3);
        let out = w.on_page(&p2, more);
        assert_eq!(out.errors, vec!["history_gap", "history_fill"]);
    }

    #[test]
    fn newest_first_is_out_of_order() {
        let all = room(6, 1, 1);
        let mut w = Walker::new(expect(6, 6, true));
        let (mut p1, more) = page(&all, None, 3);
        p1.reverse();
        let out = w.on_page(&p1, more);
        assert!(out.errors.contains(&"history_order"), "{out:?}");
    }

    #[test]
    fn more_must_be_false_exactly_at_the_first_message() {
        let all = room(4, 1, 1);
        let mut w = Walker::new(expect(4, 4, true));
        let (p1, _) = page(&all, None, 3);
        assert!(w.on_page(&p1, true).errors.is_empty());
        let (p2, _) = page(&all, w.before(), 3);
        // The first message is in the page, yet the server says there is more.
        assert!(w.on_page(&p2, true).errors.contains(&"history_more"));
        // A full page claiming to be the end while its oldest has a prev.
        let (p1, _) = page(&all, None, 3);
        let out = w.on_page(&p1, false);
        assert!(out.errors.contains(&"history_more"), "{out:?}");
        assert!(!out.walk_done);
    }

    #[test]
    fn short_pages_with_more_and_stale_tops_are_caught() {
        let all = room(6, 1, 1);
        let mut w = Walker::new(expect(6, 6, true));
        let (p1, more) = page(&all, None, 2);
        assert!(more);
        assert_eq!(w.on_page(&p1, more).errors, vec!["history_size"]);
        // The newest page does not reach the room's newest message.
        let (p1, more) = page(&all, Some(6), 3);
        assert!(w.on_page(&p1, more).errors.contains(&"history_stale"));
    }

    #[test]
    fn a_walk_must_read_every_fill_message() {
        // The server lost h0 and the chain was relinked around it: seqs and prevs look
        // fine, only the fill indices and the count show it.
        let mut all = room(5, 1, 1);
        all.remove(0);
        all[0].prev = 0;
        let mut w = Walker::new(expect(5, 5, true));
        let (p1, more) = page(&all, None, 3);
        assert!(w.on_page(&p1, more).errors.is_empty());
        let (p2, more) = page(&all, w.before(), 3);
        let out = w.on_page(&p2, more);
        assert_eq!(out.errors, vec!["history_count"]);
        assert!(!out.walk_done);
    }

    #[test]
    fn mixed_rooms_allow_newer_chat_but_not_older() {
        let mut all = room(4, 1, 1);
        for s in 5..=8 {
            all.push(PageMsg {
                seq: s,
                prev: s - 1,
                fill: None,
            });
        }
        let mut w = Walker::new(expect(4, 4, false));
        let mut walks = 0;
        for _ in 0..3 {
            let (msgs, more) = page(&all, w.before(), 3);
            let out = w.on_page(&msgs, more);
            assert!(out.errors.is_empty(), "{out:?}");
            walks += u64::from(out.walk_done);
        }
        assert_eq!(walks, 1);
        // A chat message older than a fill message: the fill is not where it should be.
        all[1].fill = None;
        let mut w = Walker::new(expect(4, 4, false));
        let mut errors = Vec::new();
        for _ in 0..3 {
            let (msgs, more) = page(&all, w.before(), 3);
            errors.extend(w.on_page(&msgs, more).errors);
        }
        assert!(errors.contains(&"history_fill"), "{errors:?}");
        // The exact (history-only) room accepts no message but the fill.
        let mut w = Walker::new(expect(4, 8, true));
        let (msgs, more) = page(&all, None, 3);
        assert_eq!(w.on_page(&msgs, more).errors, vec!["history_fill"]);
    }

    #[test]
    fn empty_room_is_one_empty_page() {
        let mut w = Walker::new(expect(0, 0, true));
        let out = w.on_page(&[], false);
        assert!(out.errors.is_empty() && out.walk_done);
        let mut w = Walker::new(expect(3, 9, true));
        assert!(w.on_page(&[], false).errors.contains(&"history_stale"));
    }

    #[test]
    fn readers_share_the_rate_open_model() {
        let names = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let fills = [
            RoomFill {
                filled: 10,
                newest: 30,
            },
            RoomFill {
                filled: 10,
                newest: 31,
            },
            RoomFill {
                filled: 10,
                newest: 32,
            },
        ];
        let p = history_plan(names, &fills, 4, 200.0, 2.0, 3, 50);
        assert_eq!(p.conns.len(), 4);
        assert_eq!(p.scheduled(), 0);
        // 4 readers share 200 requests/s for 2 s: 100 each, every 20 ms, offset by 5 ms.
        assert_eq!(p.history_scheduled(), 400);
        let r1 = p.conns[1].reader.unwrap();
        assert_eq!(r1.schedule.count, 100);
        assert_eq!(r1.schedule.due(1_000, 0), 6_000);
        assert_eq!(r1.schedule.due(1_000, 2), 46_000);
        assert!(p.conns[0].reader.unwrap().progress && !r1.progress);
        // Reader 3 wraps to room 0 with account 0; room 0 has two readers.
        assert_eq!((p.conns[3].room, p.conns[3].account), (0, 0));
        assert_eq!(p.rooms[0].members, 2);
        assert_eq!(p.conns[2].reader.unwrap().expect.newest, 32);
        assert!(p.conns.iter().all(|c| c.publisher.is_none()));
    }

    #[test]
    fn fill_bodies_and_answers_parse() {
        let b = fill_body(42, 40);
        assert_eq!(b.len(), 40);
        assert_eq!(fill_k(&b), Some(42));
        assert_eq!(fill_k("42 123 xx"), None);
        let text = r#"{"type":"history","ref":"h7","room":"r","messages":[{"seq":5,"prev":0,"id":"a","from":"u","ts":1,"body":"h0 x"},{"seq":9,"prev":5,"id":"b","from":"u","ts":1,"body":"hi"}],"more":false}"#;
        let (msgs, more) = parse_answer(text, 7).unwrap().unwrap();
        assert!(!more);
        assert_eq!(msgs[0].fill, Some(0));
        assert_eq!(msgs[1].fill, None);
        assert_eq!((msgs[1].seq, msgs[1].prev), (9, 5));
        // Another request's answer is not this one's.
        assert!(parse_answer(text, 8).is_none());
        let err = r#"{"type":"error","ref":"h8","code":"unavailable","message":"x"}"#;
        assert_eq!(parse_answer(err, 8), Some(Err(())));
        let r = serde_json::json!("h8");
        assert!(is_answer("error", Some(&r)));
        assert!(!is_answer("error", Some(&serde_json::json!(8))));
        assert!(is_answer("history", None));
    }
}
