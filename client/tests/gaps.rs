//! A `prev` break (a message whose `prev` is above the last one the client delivered) is
//! filled by a re-join from that last message, as docs/PROTOCOL.md asks of a client; a break
//! the re-join cannot fill is delivered after a gap event, and the gateway's own `gap` frame
//! moves the cursor. A real gateway sends such a break only when its live gap fill gives up
//! (a mirror lagging after a heal), so a scripted gateway plays it here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use chatmesh_client::{Client, Event, Events};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;

/// What the scripted gateway replays after `joined`, by the join's `since`.
type Replays = Arc<Mutex<HashMap<u64, Vec<Value>>>>;

/// A gateway for one connection: `welcome` to `hello`, `joined` (last seq 3) and the replay
/// of its `since` to `join`; frames sent on the returned channel go out live. The joins it
/// was sent are recorded.
async fn scripted(
    replays: Replays,
) -> Result<(String, mpsc::UnboundedSender<Value>, Arc<Mutex<Vec<Value>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (live, mut rx) = mpsc::unbounded_channel::<Value>();
    let joins: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = joins.clone();
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        loop {
            let out: Vec<Value> = tokio::select! {
                frame = rx.recv() => match frame {
                    Some(f) => vec![f],
                    None => return,
                },
                msg = ws.next() => {
                    let Some(Ok(Ws::Text(text))) = msg else {
                        if msg.is_none() { return; }
                        continue;
                    };
                    let f: Value = serde_json::from_str(&text).unwrap_or_default();
                    match f["type"].as_str() {
                        Some("hello") => vec![json!({"type": "welcome", "ref": f["ref"], "user": "ann", "session": "s1", "limits": {}})],
                        Some("join") => {
                            seen.lock().unwrap().push(f.clone());
                            let since = f["since"].as_u64().unwrap_or(0);
                            let mut out = vec![json!({"type": "joined", "ref": f["ref"], "room": f["room"], "last_seq": 3})];
                            out.extend(replays.lock().unwrap().get(&since).cloned().unwrap_or_default());
                            out
                        }
                        _ => Vec::new(),
                    }
                }
            };
            for f in out {
                if ws.send(Ws::Text(f.to_string().into())).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok((base, live, joins))
}

fn msg(seq: u64, prev: u64) -> Value {
    json!({"type": "message", "room": "r", "seq": seq, "prev": prev, "id": format!("i{seq}"),
           "from": "bob", "ts": 1, "body": format!("m{seq}")})
}

/// The seqs of the next `n` messages, and the gaps among them, within 5 s.
async fn take(events: &mut Events, n: usize) -> Result<(Vec<u64>, Vec<(u64, u64)>)> {
    let (mut seqs, mut gaps) = (Vec::new(), Vec::new());
    tokio::time::timeout(Duration::from_secs(5), async {
        while seqs.len() < n {
            match events.recv().await {
                Some(Event::Message(m)) => seqs.push(m.seq),
                Some(Event::Gap { from, to, .. }) => gaps.push((from, to)),
                Some(_) => {}
                None => break,
            }
        }
    })
    .await
    .context("messages did not come")?;
    Ok((seqs, gaps))
}

#[tokio::test]
async fn a_prev_break_is_filled_by_a_rejoin_and_an_unfillable_one_is_a_gap() -> Result<()> {
    let replays: Replays = Arc::default();
    let (base, live, joins) = scripted(replays.clone()).await?;
    let mut client = Client::builder(&base).token("t").connect().await?;
    let mut events = client.events().context("events")?;
    client.join("r").await?;
    live.send(msg(4, 3))?;
    assert_eq!(take(&mut events, 1).await?, (vec![4], vec![]));

    // 5 and 6 were missed: 7 comes with prev 6, then 8 live before the re-join is answered.
    // The re-join from 4 replays 5 to 8.
    replays
        .lock()
        .unwrap()
        .insert(4, vec![msg(5, 4), msg(6, 5), msg(7, 6), msg(8, 7)]);
    live.send(msg(7, 6))?;
    live.send(msg(8, 7))?;
    assert_eq!(take(&mut events, 4).await?, (vec![5, 6, 7, 8], vec![]));
    let since: Vec<Option<u64>> = joins
        .lock()
        .unwrap()
        .iter()
        .map(|j| j["since"].as_u64())
        .collect();
    assert_eq!(since, [None, Some(4)]);

    // The re-join from 8 brings the same break: the messages are not to be had.
    replays.lock().unwrap().insert(8, vec![msg(11, 10)]);
    live.send(msg(11, 10))?;
    assert_eq!(take(&mut events, 1).await?, (vec![11], vec![(9, 10)]));

    // The gateway's gap frame moves the cursor: no re-join for the message after it.
    live.send(json!({"type": "gap", "room": "r", "from": 12, "to": 14}))?;
    live.send(msg(15, 14))?;
    assert_eq!(take(&mut events, 1).await?, (vec![15], vec![(12, 14)]));
    assert_eq!(
        joins.lock().unwrap().len(),
        3,
        "no re-join after a gap frame"
    );
    client.close().await;
    Ok(())
}
