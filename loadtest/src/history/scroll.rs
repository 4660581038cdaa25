//! A reader connection's page requests: sent on its schedule, one in flight, each answer
//! (forwarded by the connection's reader task) checked by its [`Walker`] and timed from the
//! request's scheduled time.

use std::sync::Arc;
use std::time::Duration;

use chatmesh_protocol::frames::{ClientFrame, FrameType, ServerFrame};
use futures::stream::SplitSink;
use futures::SinkExt as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::fill::fill_k;
use super::walker::{PageMsg, Walker};
use crate::clock::now_us;
use crate::engine::{Engine, SampleTx};
use crate::plan::ReadPlan;
use crate::stats::{Counters, Kind, Sample};
use crate::ws::Ws;

/// How long a reader waits for the answer to one page request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers (`history`, or `error` to a history request) forwarded from a connection's reader
/// to its scroller: `(arrival unix µs, frame text)`.
pub type PageTx = mpsc::Sender<(u64, String)>;
pub type PageRx = mpsc::Receiver<(u64, String)>;

/// The ref of page request `i`.
fn page_ref(i: u64) -> String {
    format!("h{i}")
}

/// Whether a frame is the answer to a page request (`history`, or `error` with a `h…` ref).
pub fn is_answer(kind: FrameType, r#ref: Option<&serde_json::Value>) -> bool {
    kind == FrameType::History
        || (kind == FrameType::Error
            && r#ref
                .and_then(|r| r.as_str())
                .is_some_and(|r| r.starts_with('h')))
}

/// A parsed answer: `Ok((messages, more))` for a page, `Err(())` for an error frame.
type Parsed = Result<(Vec<PageMsg>, bool), ()>;

/// Parses an answer if it is the one to request `i`.
fn parse_answer(text: &str, i: u64) -> Option<Parsed> {
    let frame = ServerFrame::decode(text).ok()?;
    if frame.reply_to().and_then(|r| r.as_str()) != Some(page_ref(i).as_str()) {
        return None;
    }
    let ServerFrame::History { messages, more, .. } = frame else {
        return Some(Err(()));
    };
    let msgs = messages
        .iter()
        .map(|m| PageMsg {
            seq: m.seq,
            prev: m.prev,
            fill: fill_k(&m.body),
        })
        .collect();
    Some(Ok((msgs, more)))
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
        let ask = ClientFrame::History {
            room: room.clone(),
            before: walker.before(),
            limit: plan.expect.limit as u32,
        };
        let frame = ask.encode(&Some(page_ref(i).into()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        let text = r#"{"type":"history","ref":"h7","room":"r","messages":[{"room":"r","seq":5,"prev":0,"id":"a","from":"u","ts":1,"body":"h0 x"},{"room":"r","seq":9,"prev":5,"id":"b","from":"u","ts":1,"body":"hi"}],"more":false}"#;
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
        assert!(is_answer(FrameType::Error, Some(&r)));
        assert!(!is_answer(FrameType::Error, Some(&serde_json::json!(8))));
        assert!(is_answer(FrameType::History, None));
    }

    #[test]
    fn requests_are_protocol_history_frames() {
        let ask = ClientFrame::History {
            room: "r".into(),
            before: Some(9),
            limit: 50,
        };
        let text = ask.encode(&Some(page_ref(3).into()));
        assert_eq!(
            text,
            r#"{"type":"history","room":"r","before":9,"limit":50,"ref":"h3"}"#
        );
    }
}
