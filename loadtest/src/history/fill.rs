//! Setup of the `history` and `mixed` scenarios: the run's rooms, filled with numbered
//! messages (`h<k>` bodies) through the normal `send` path, resuming an earlier fill.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{bail, Context as _};
use chatmesh_protocol::frames::{ClientFrame, FrameType, FrameView, ServerFrame};
use futures::{stream, SinkExt as _, StreamExt as _, TryStreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use super::plan::{history_plan, RoomFill};
use crate::plan::Plan;
use crate::ws::{self, Ws};

/// Sends in flight per room while filling.
const FILL_WINDOW: u64 = 64;
/// Rooms filled at once.
const FILL_ROOMS_AT_ONCE: usize = 8;
/// Deadline of one frame while filling.
const FILL_STEP: Duration = Duration::from_secs(30);

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
    let names = crate::setup::rooms(api, accounts, run_id, rooms.max(1), false, None).await?;
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
    let ask = ClientFrame::History {
        room: room.to_owned(),
        before: None,
        limit: 1,
    };
    ws.send(Message::text(ask.encode(&Some("top".into()))))
        .await?;
    let top = loop {
        let text = next_text(&mut ws, "history").await?;
        match ServerFrame::decode(&text).context("fill: unparsable frame")? {
            ServerFrame::History { messages, .. } => break messages.last().cloned(),
            ServerFrame::Error { .. } => bail!("fill: history of {room} answered {text}"),
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
            let send = ClientFrame::send(
                room,
                format!("{run_id}-fill{r}-k{next}"),
                fill_body(next, body_bytes.max(32)),
            );
            ws.feed(Message::text(send.encode(&Some(next.into()))))
                .await?;
            next += 1;
        }
        ws.flush().await?;
        let text = next_text(&mut ws, "ack").await?;
        let Ok(a) = FrameView::peek(&text) else {
            bail!("fill: unparsable frame {text}");
        };
        match a.kind {
            FrameType::Ack => {
                let k = a
                    .r#ref
                    .as_ref()
                    .and_then(serde_json::Value::as_u64)
                    .context("fill: ack without a numeric ref")?;
                let seq = a.seq.context("fill: ack without seq")?;
                let slot = seqs
                    .get_mut((k.wrapping_sub(start)) as usize)
                    .context("fill: ack for a send never made")?;
                if *slot == 0 {
                    *slot = seq;
                    acked += 1;
                    done.fetch_add(1, Relaxed);
                }
            }
            FrameType::Error => bail!(
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

    #[test]
    fn fill_bodies_parse() {
        let b = fill_body(42, 40);
        assert_eq!(b.len(), 40);
        assert_eq!(fill_k(&b), Some(42));
        assert_eq!(fill_k("42 123 xx"), None);
    }
}
