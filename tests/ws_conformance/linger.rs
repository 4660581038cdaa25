//! Server-initiated closes of clients that are still writing (the lingering close): the
//! client must read every reply to what it sent before the close — above all the `ack` of
//! every message that was stored — then the close frame with its code, then a clean TCP
//! close. Closing a socket with unread input makes the kernel send a reset, and a reset
//! discards what the client had not read yet: before the lingering close such clients saw
//! 1006 and lost acks. Also: a burst of pings to a client that reads is never closed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use chatmesh::{Config, Mesh};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::task::JoinHandle;

use crate::common::{
    error_code, fast_config, frame, http_page, replies_to, start_mesh, Api, ErrorCode, ServerFrame,
};
use crate::raw::{parse_server_frame, In, Out, Raw, TcpEnd, PING};

const ROOM: &str = "linger";

/// A mesh, a user with a public room, and the gateway's address.
struct Setup {
    mesh: Mesh,
    api: Api,
    token: String,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

async fn setup(config: Config) -> Result<Setup> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let token = api.user("ann").await?;
    api.room(&token, ROOM, "public").await?;
    let addr = mesh.url().trim_start_matches("http://").parse()?;
    Ok(Setup {
        mesh,
        api,
        token,
        addr,
        _dir: dir,
    })
}

/// Writes `frame(i)` for i = 0, 1, 2, … in batches as fast as the socket takes them, until
/// `stop` is set or a write fails. Returns how many frames were written, and the write half:
/// the caller keeps it open (dropping it would send a FIN the server could take for the
/// client's goodbye).
fn keep_writing(
    mut w: OwnedWriteHalf,
    stop: Arc<AtomicBool>,
    frame: impl Fn(usize) -> Out + Send + 'static,
) -> JoinHandle<(usize, OwnedWriteHalf)> {
    tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) && i < 200_000 {
            let batch: Vec<u8> = (i..i + 16).flat_map(|k| frame(k).encode()).collect();
            if w.write_all(&batch).await.is_err() {
                break;
            }
            i += 16;
        }
        (i, w)
    })
}

/// What a client read up to and including the server's close.
struct Outcome {
    frames: Vec<ServerFrame<'static>>,
    close: Option<u16>,
    end: TcpEnd,
}

/// Reads frames off `r` until the close frame, then how TCP ended.
async fn read_until_close(
    (mut r, mut buf): (tokio::net::tcp::OwnedReadHalf, Vec<u8>),
    stop: &AtomicBool,
) -> Result<Outcome> {
    use tokio::io::AsyncReadExt;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        while let Some((frame, used)) = parse_server_frame(&buf)? {
            buf.drain(..used);
            match frame {
                In::Text(_) => frames.extend(frame.frame()),
                In::Close(code, _) => {
                    stop.store(true, Ordering::Relaxed);
                    let end = tcp_end(&mut r, &mut chunk).await;
                    return Ok(Outcome {
                        frames,
                        close: code,
                        end,
                    });
                }
                _ => {}
            }
        }
        match tokio::time::timeout_at(deadline, r.read(&mut chunk)).await {
            Err(_) => bail!("no close within 30 s; read {} frames", frames.len()),
            Ok(Ok(0)) => {
                stop.store(true, Ordering::Relaxed);
                return Ok(Outcome {
                    frames,
                    close: None,
                    end: TcpEnd::Eof,
                });
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => {
                stop.store(true, Ordering::Relaxed);
                return Ok(Outcome {
                    frames,
                    close: None,
                    end: TcpEnd::Reset(e.to_string()),
                });
            }
        }
    }
}

async fn tcp_end(r: &mut tokio::net::tcp::OwnedReadHalf, chunk: &mut [u8]) -> TcpEnd {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, r.read(chunk)).await {
            Ok(Ok(0)) => return TcpEnd::Eof,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return TcpEnd::Reset(e.to_string()),
            Err(_) => return TcpEnd::Open,
        }
    }
}

/// A session of the room's owner. It does not join the room: its own messages would come
/// back as `message` frames, and the test is about replies.
async fn owner(s: &Setup) -> Result<Raw> {
    Raw::connect(s.addr, Some(&s.token)).await
}

fn send_frame(prefix: &'static str) -> impl Fn(usize) -> Out + Send + 'static {
    move |i| {
        let send = frame::send(ROOM, &format!("{prefix}{i}"), "spam");
        Out::text(send.encode(&Some(i.into())))
    }
}

/// Every id stored in [`ROOM`], once the store has at least `at_least` (or 15 s passed).
async fn stored_ids(s: &Setup, at_least: usize) -> Result<BTreeSet<String>> {
    let token = s.api.user("ann").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut ids = BTreeSet::new();
        let mut before: Option<u64> = None;
        loop {
            let path = match before {
                Some(b) => format!("/v1/rooms/{ROOM}/messages?limit=100&before={b}"),
                None => format!("/v1/rooms/{ROOM}/messages?limit=100"),
            };
            let (status, page) = s.api.call("GET", &path, Some(&token), None).await?;
            ensure!(status == 200, "history: {status} {page}");
            let page = http_page(&page);
            ids.extend(page.messages.iter().map(|m| m.id.clone()));
            if !page.more || page.messages.is_empty() {
                break;
            }
            before = Some(page.messages[0].seq);
        }
        if ids.len() >= at_least || tokio::time::Instant::now() > deadline {
            return Ok(ids);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks the outcome: close `code`, then a clean TCP close, and an ack for every stored
/// message.
async fn check_acks(s: &Setup, out: &Outcome, code: u16) -> Result<()> {
    let acked: BTreeSet<String> = out
        .frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Ack { id, .. } => Some(id.to_string()),
            _ => None,
        })
        .collect();
    ensure!(
        out.close == Some(code),
        "expected close {code}, got {:?} then {:?} ({} acks read)",
        out.close,
        out.end,
        acked.len()
    );
    ensure!(out.end == TcpEnd::Eof, "after the close: {:?}", out.end);
    ensure!(!acked.is_empty(), "no send was acked");
    let stored = stored_ids(s, acked.len()).await?;
    let unacked: Vec<_> = stored.difference(&acked).collect();
    ensure!(
        unacked.is_empty(),
        "{} of {} stored messages were never acked: {:?}",
        unacked.len(),
        stored.len(),
        unacked.iter().take(10).collect::<Vec<_>>()
    );
    let lost: Vec<_> = acked.difference(&stored).collect();
    ensure!(lost.is_empty(), "acked but not stored: {lost:?}");
    Ok(())
}

/// The room's owner sends (ids `prefix0`, `prefix1`, …) without pause until the server
/// closes; what it read.
async fn send_until_closed(s: &Setup, prefix: &'static str) -> Result<Outcome> {
    let (r, w) = owner(s).await?.into_split();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(w, stop.clone(), send_frame(prefix));
    let out = read_until_close(r, &stop).await?;
    let (written, _w) = writer.await?;
    eprintln!(
        "wrote {written} sends, read {} frames, close {:?}, then {:?}",
        out.frames.len(),
        out.close,
        out.end
    );
    Ok(out)
}

pub async fn flood_closed_with_4008() -> Result<()> {
    // The default rates and strike count (fast_config lifts them for bulk tests).
    let mut config = fast_config();
    let defaults = Config::default();
    config.gateway.limits = defaults.gateway.limits.clone();
    config.gateway.frames_per_second = defaults.gateway.frames_per_second;
    config.gateway.rate_limit_strikes = defaults.gateway.rate_limit_strikes;
    let s = setup(config).await?;
    let out = send_until_closed(&s, "f").await?;
    ensure!(
        out.frames
            .iter()
            .any(|f| error_code(f) == Some(ErrorCode::RateLimited)),
        "the flood was rate limited"
    );
    check_acks(&s, &out, 4008).await?;
    s.mesh.stop().await
}

pub async fn bad_hello_while_writing() -> Result<()> {
    let s = setup(fast_config()).await?;
    let c = Raw::connect(s.addr, None).await?;
    let (r, mut w) = c.into_split();
    let hello = Out::text(frame::hello("not-a-token").encode(&Some("h".into())));
    w.write_all(&hello.encode()).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let ping = |i: usize| Out::text(frame::ping().encode(&Some(i.into())));
    let writer = keep_writing(w, stop.clone(), ping);
    let out = read_until_close(r, &stop).await?;
    let (written, _w) = writer.await?;
    eprintln!(
        "wrote {written} pings after the bad hello; close {:?}, then {:?}",
        out.close, out.end
    );
    ensure!(
        out.frames
            .first()
            .is_some_and(|f| error_code(f) == Some(ErrorCode::Unauthorized) && replies_to(f, "h")),
        "first frame: {:?}",
        out.frames.first()
    );
    ensure!(
        out.close == Some(4001),
        "close {:?} then {:?}",
        out.close,
        out.end
    );
    ensure!(out.end == TcpEnd::Eof, "after the close: {:?}", out.end);
    s.mesh.stop().await
}

pub async fn expiry_while_writing() -> Result<()> {
    let mut config = fast_config();
    // `exp` is whole seconds: the token lives 1–2 s.
    config.gateway.token_ttl_secs = 2;
    config.gateway.limits.sends_per_second = 200;
    config.gateway.limits.send_burst = 200;
    config.gateway.rate_limit_strikes = 1_000_000;
    let s = setup(config).await?;
    let out = send_until_closed(&s, "e").await?;
    check_acks(&s, &out, 4001).await?;
    s.mesh.stop().await
}

pub async fn ping_burst() -> Result<()> {
    let s = setup(fast_config()).await?;
    let mut c = Raw::connect(s.addr, Some(&s.token)).await?;
    let n = 1025;
    let pings: Vec<Out> = (0..n)
        .map(|i| Out::new(PING, format!("p{i:05}").into_bytes()))
        .collect();
    c.send(&pings).await?;
    let last = format!("p{:05}", n - 1).into_bytes();
    let mut answered = 0;
    loop {
        match c.next_frame().await? {
            Some(In::Pong(p)) => {
                answered += 1;
                if p == last {
                    break;
                }
            }
            Some(In::Close(code, reason)) => {
                bail!("closed with {code:?} {reason:?} after {answered} pongs")
            }
            other => bail!("unexpected {other:?} after {answered} pongs"),
        }
    }
    eprintln!("{n} pings answered with {answered} pongs");
    c.alive("after the burst").await?;
    s.mesh.stop().await
}
