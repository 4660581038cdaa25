//! The task that owns the WebSocket: writes requests, matches answers to them by `ref`,
//! turns everything else into [`Event`]s, and when the connection breaks reconnects with
//! backoff, says `hello` again, re-joins every joined room with `since` = the last message it
//! delivered (so each `(room, seq)` reaches the application once) and resends every send
//! still without its `ack` with the same id (stored once, whichever attempt landed). With
//! fallback gateways (another region's), a failed attempt moves the next one to the next
//! gateway; a room's seqs are the same through every region's gateway, so the resume holds.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_protocol::backoff::Backoff;
use chatmesh_protocol::frames::{ClientFrame, ServerFrame};
use chatmesh_protocol::{ApiError, ErrorCode};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::http::Http;
use crate::pace::Pace;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(crate) type Reply = oneshot::Sender<Result<ServerFrame<'static>>>;

/// A send answered `unavailable` is resent after this, times its attempt (capped).
const RESEND_AFTER: Duration = Duration::from_millis(250);
/// Attempts of one send before its `unavailable` reaches the caller.
const MAX_SEND_ATTEMPTS: u32 = 40;
/// How long `close` waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// A connection that lasted this long counts as established: the reconnect delay starts
/// over after it (not after `welcome`, so a server that closes a session right after it
/// is not asked again ten times a second).
const STABLE: Duration = Duration::from_secs(10);
/// `typing` and `read` frames waiting to be written beyond this many are dropped (moot).
const MAX_QUEUED_FIRES: usize = 256;
/// Re-joins of a resume written and not answered yet, at most: the gateway replays four
/// rooms of a session at once by default and refuses the next ones for now, so writing
/// hundreds at once only had most of them refused and retried, crowding out the
/// application's own requests.
const MAX_REJOINS_OUT: usize = 4;

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    Token(String),
    Password { username: String, password: String },
}

/// Settings shared by the client and its driver.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The gateways to use, in order of preference: the base URL, then the fallbacks
    /// (another region's gateways, docs/REGIONS.md).
    pub entries: Vec<Http>,
    /// The entry in use; moves to the next when a connection attempt fails.
    pub current: AtomicUsize,
    pub auth: Auth,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub ping_every: Duration,
    pub hello_timeout: Duration,
    /// The limits of the latest `welcome` (the driver paces its writes by them).
    pub limits: Mutex<chatmesh_protocol::limits::Limits>,
}

impl Settings {
    /// The HTTP API of the gateway in use.
    pub fn http(&self) -> &Http {
        let i = self.current.load(Ordering::Relaxed);
        &self.entries[i % self.entries.len()]
    }

    /// After a failed connection attempt: the next attempts go to the next gateway (the
    /// first again after the last). Nothing changes with one gateway.
    pub fn fail_over(&self) {
        if self.entries.len() > 1 {
            let next = (self.current.load(Ordering::Relaxed) + 1) % self.entries.len();
            self.current.store(next, Ordering::Relaxed);
            tracing::info!(
                gateway = self.http().base(),
                "failing over to the next gateway"
            );
        }
    }
}

/// What the client asks of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// A request whose answer (or error) goes to `reply`.
    Request { frame: ClientFrame, reply: Reply },
    /// A request answered only when refused (`typing`, `read`): errors become events.
    Fire { frame: ClientFrame },
    /// Close the session; `done` once the close handshake is over.
    Close { done: oneshot::Sender<()> },
}

enum Waiter {
    Caller(Reply),
    /// A re-join of the resume: a refusal means the room is gone for this user.
    Resume,
}

struct Pending {
    frame: ClientFrame,
    waiter: Waiter,
    attempts: u32,
}

/// A frame waiting to be written, in order, at the [`Pace`].
enum Queued {
    /// The frame of pending request `ref`.
    Request(u64),
    /// A `typing` or `read`.
    Fire(Box<ClientFrame>),
}

/// How a connection ended.
enum End {
    Broken { code: u16, reason: String },
    Close(oneshot::Sender<()>),
    ClientGone,
}

pub(crate) struct Driver {
    pub settings: Arc<Settings>,
    pub token: Arc<Mutex<String>>,
    pub commands: mpsc::Receiver<Command>,
    pub events: mpsc::Sender<Event>,
    /// The application took the events (otherwise they are discarded, not queued).
    pub events_taken: Arc<AtomicBool>,
    /// Joined rooms and the seq of the last message delivered (or the join's `last_seq`).
    rooms: HashMap<String, u64>,
    /// Requests waiting for their answer, by `ref`; in `ref` order, so resends keep order.
    pending: BTreeMap<u64, Pending>,
    next_ref: u64,
    resends: (mpsc::UnboundedSender<u64>, mpsc::UnboundedReceiver<u64>),
    /// What waits to be written on the connection, in order.
    outbox: VecDeque<Queued>,
    fires: usize,
    pace: Pace,
    /// Re-joins of the resume not written yet, and how many written are not answered.
    rejoins: VecDeque<u64>,
    rejoins_out: usize,
    /// Rooms whose messages missed before a `prev` break a re-join is fetching, and per room
    /// the `prev` of the break the latest such re-join was for ([`Driver::fill_gap`]).
    filling: HashSet<String>,
    filled: HashMap<String, u64>,
}

impl Driver {
    pub fn new(
        settings: Arc<Settings>,
        token: Arc<Mutex<String>>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        events_taken: Arc<AtomicBool>,
    ) -> Self {
        Self {
            settings,
            token,
            commands,
            events,
            events_taken,
            rooms: HashMap::new(),
            pending: BTreeMap::new(),
            next_ref: 1,
            resends: mpsc::unbounded_channel(),
            outbox: VecDeque::new(),
            fires: 0,
            pace: Pace::new(&Default::default()),
            rejoins: VecDeque::new(),
            rejoins_out: 0,
            filling: HashSet::new(),
            filled: HashMap::new(),
        }
    }

    /// Serves `ws` and every connection after it until the client closes or the session
    /// ends for good.
    pub async fn run(mut self, mut ws: Ws) {
        let mut backoff = Backoff::new(self.settings.reconnect_min, self.settings.reconnect_max);
        self.pace = self.fresh_pace();
        loop {
            let served = Instant::now();
            let end = self.serve(&mut ws).await;
            if served.elapsed() >= STABLE {
                backoff.reset();
            }
            let (code, reason) = match end {
                End::Close(done) => {
                    close(&mut ws).await;
                    self.finish(1000, "closed by the client");
                    let _ = done.send(());
                    return;
                }
                End::ClientGone => {
                    close(&mut ws).await;
                    return;
                }
                End::Broken { code, reason } => (code, reason),
            };
            tracing::debug!(code, %reason, "session broke");
            self.fail_unresendable();
            self.emit(Event::Disconnected {
                code,
                reason: reason.clone(),
            })
            .await;
            if code == 4001 && matches!(self.settings.auth, Auth::Token(_)) {
                // The token is refused for good; a password login could get a new one.
                self.finish(code, &reason);
                return;
            }
            ws = loop {
                let delay = backoff.next_delay();
                if let Some(done) = self.wait_reconnect(delay).await {
                    self.finish(1000, "closed by the client");
                    let _ = done.send(());
                    return;
                }
                match self.reconnect().await {
                    Ok(ws) => break ws,
                    Err(Error::Api(e)) if e.code == ErrorCode::Unauthorized => {
                        self.finish(4001, &e.message);
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "reconnect failed"),
                }
            };
            self.resume();
            self.emit(Event::Reconnected).await;
        }
    }

    /// Waits `delay` before a reconnect, queueing requests meanwhile; `Some` if the client
    /// closed.
    async fn wait_reconnect(&mut self, delay: Duration) -> Option<oneshot::Sender<()>> {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return None,
                cmd = self.commands.recv() => match cmd {
                    None => return Some(oneshot::channel().0),
                    Some(Command::Close { done }) => return Some(done),
                    Some(Command::Request { frame, reply }) => {
                        let r = self.take_ref();
                        self.pending.insert(r, Pending { frame, waiter: Waiter::Caller(reply), attempts: 0 });
                    }
                    Some(Command::Fire { .. }) => {} // typing and reads of a broken session are moot
                },
            }
        }
    }

    async fn reconnect(&mut self) -> Result<Ws> {
        let opened = self.reconnect_here().await;
        // A gateway that cannot be reached (or broke the session before `welcome`): the
        // next attempt tries the next one, e.g. another region's when this one is cut off.
        if matches!(
            opened,
            Err(Error::WebSocket(_) | Error::Http(_) | Error::Closed { .. } | Error::Timeout(_))
        ) {
            self.settings.fail_over();
        }
        opened
    }

    async fn reconnect_here(&mut self) -> Result<Ws> {
        let token = self.token.lock().map(|t| t.clone()).unwrap_or_default();
        match open(&self.settings, &token).await {
            Err(Error::Api(e)) if e.code == ErrorCode::Unauthorized => {
                let Auth::Password { username, password } = &self.settings.auth else {
                    return Err(Error::Api(e));
                };
                let login = self.settings.http().login(username, password).await?;
                if let Ok(mut t) = self.token.lock() {
                    t.clone_from(&login.token);
                }
                open(&self.settings, &login.token).await
            }
            other => other,
        }
    }

    /// After a reconnect: queue a re-join of every room from its last delivered message,
    /// then every request still waiting (sends with their ids, in their order), to be
    /// written at the [`Pace`]. A request whose caller gave up waiting (timed out) is
    /// dropped, not written late.
    fn resume(&mut self) {
        self.outbox.clear();
        self.fires = 0;
        self.pace = self.fresh_pace();
        self.rejoins.clear();
        self.rejoins_out = 0;
        self.filling.clear();
        self.filled.clear();
        self.pending
            .retain(|_, p| !matches!(&p.waiter, Waiter::Caller(reply) if reply.is_closed()));
        let waiting: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p.waiter, Waiter::Caller(_)))
            .map(|(r, _)| *r)
            .collect();
        let rooms: Vec<(String, u64)> = self.rooms.iter().map(|(r, s)| (r.clone(), *s)).collect();
        for (room, since) in rooms {
            self.queue_rejoin(room, since);
        }
        self.release_rejoins();
        self.outbox.extend(waiting.into_iter().map(Queued::Request));
    }

    /// A full pace at the latest `welcome`'s limits.
    fn fresh_pace(&self) -> Pace {
        let limits = self
            .settings
            .limits
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        Pace::new(&limits)
    }

    /// Queues a re-join of `room` from `since` (a resume, or a gap fill): answered `joined`,
    /// the messages after `since` follow in order, then live ones; refused for now, retried.
    fn queue_rejoin(&mut self, room: String, since: u64) {
        let r = self.take_ref();
        let frame = ClientFrame::Join {
            room,
            since: Some(since),
        };
        self.pending.insert(
            r,
            Pending {
                frame,
                waiter: Waiter::Resume,
                attempts: 0,
            },
        );
        self.rejoins.push_back(r);
    }

    /// A message of `room` whose `prev` is above `last`, the last one delivered: the ones
    /// between were missed (a gateway's live gap fill gave up, e.g. on a lagging mirror).
    /// The room is joined again from `last` (docs/PROTOCOL.md: a client that sees such a
    /// `prev` fills the gap), which brings them, and this one again, in order; meanwhile the
    /// room's frames are dropped. False when a re-join for a break this far was made already
    /// and the messages still did not come: they are not to be had, and the message is
    /// delivered after a [`Event::Gap`].
    fn fill_gap(&mut self, room: &str, last: u64, prev: u64) -> bool {
        if self.filling.contains(room) {
            return true;
        }
        if self.filled.get(room).is_some_and(|p| *p >= prev) {
            return false;
        }
        self.filled.insert(room.to_owned(), prev);
        self.filling.insert(room.to_owned());
        self.queue_rejoin(room.to_owned(), last);
        self.release_rejoins();
        true
    }

    /// Queues re-joins while fewer than [`MAX_REJOINS_OUT`] wait for their answer.
    fn release_rejoins(&mut self) {
        while self.rejoins_out < MAX_REJOINS_OUT {
            let Some(r) = self.rejoins.pop_front() else {
                return;
            };
            if self.pending.contains_key(&r) {
                self.rejoins_out += 1;
                self.outbox.push_back(Queued::Request(r));
            }
        }
    }

    /// Writes what the [`Pace`] allows now, in order.
    async fn flush(&mut self, ws: &mut Ws) -> Result<()> {
        while let Some(next) = self.outbox.front() {
            let text = match next {
                // `None`: answered or given up on meanwhile.
                Queued::Request(r) => self
                    .pending
                    .get(r)
                    .map(|p| (is_send(&p.frame), p.frame.encode(&Some(json!(r))))),
                Queued::Fire(frame) => Some((false, frame.encode(&None))),
            };
            let Some((send, text)) = text else {
                self.outbox.pop_front();
                continue;
            };
            if self.pace.wait(send) > Duration::ZERO {
                return Ok(());
            }
            if let Some(Queued::Fire(_)) = self.outbox.pop_front() {
                self.fires -= 1;
            }
            self.pace.take(send);
            write(ws, text).await?;
        }
        Ok(())
    }

    /// How long until the next queued frame may be written (`None`: nothing queued).
    fn next_write(&mut self) -> Option<Duration> {
        let send = match self.outbox.front()? {
            Queued::Request(r) => self.pending.get(r).is_some_and(|p| is_send(&p.frame)),
            Queued::Fire(_) => false,
        };
        Some(self.pace.wait(send))
    }

    async fn serve(&mut self, ws: &mut Ws) -> End {
        let mut ping = tokio::time::interval(self.settings.ping_every);
        ping.tick().await;
        let mut heard = Instant::now();
        loop {
            let next_write = self.next_write();
            tokio::select! {
                () = tokio::time::sleep(next_write.unwrap_or_default()), if next_write.is_some() => {
                    if let Err(e) = self.flush(ws).await {
                        return End::Broken { code: 1006, reason: e.to_string() };
                    }
                }
                cmd = self.commands.recv() => {
                    match cmd {
                        None => return End::ClientGone,
                        Some(Command::Close { done }) => {
                            // What the application asked for before closing still goes out.
                            self.pace = Pace::unlimited();
                            let _ = self.flush(ws).await;
                            return End::Close(done);
                        }
                        Some(Command::Request { frame, reply }) => {
                            let r = self.take_ref();
                            self.pending.insert(r, Pending { frame, waiter: Waiter::Caller(reply), attempts: 0 });
                            self.outbox.push_back(Queued::Request(r));
                        }
                        Some(Command::Fire { frame }) if self.fires < MAX_QUEUED_FIRES => {
                            self.fires += 1;
                            self.outbox.push_back(Queued::Fire(Box::new(frame)));
                        }
                        Some(Command::Fire { .. }) => {}
                    }
                }
                Some(r) = self.resends.1.recv() => {
                    match self.pending.get(&r).map(|p| matches!(p.waiter, Waiter::Resume)) {
                        Some(true) => {
                            self.rejoins.push_back(r);
                            self.release_rejoins();
                        }
                        Some(false) => self.outbox.push_back(Queued::Request(r)),
                        None => {}
                    }
                }
                msg = ws.next() => {
                    heard = Instant::now();
                    match msg {
                        Some(Ok(WsMessage::Text(text))) => self.on_frame(&text).await,
                        Some(Ok(WsMessage::Close(frame))) => {
                            let (code, reason) = frame
                                .map(|f| (u16::from(f.code), f.reason.to_string()))
                                .unwrap_or((1005, String::new()));
                            return End::Broken { code, reason };
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return End::Broken { code: 1006, reason: e.to_string() },
                        None => return End::Broken { code: 1006, reason: "connection closed".into() },
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > self.settings.ping_every * 3 {
                        return End::Broken { code: 1006, reason: "no answer to pings".into() };
                    }
                    if let Err(e) = ws.send(WsMessage::Ping(Default::default())).await {
                        return End::Broken { code: 1006, reason: e.to_string() };
                    }
                }
            }
        }
    }

    async fn on_frame(&mut self, text: &str) {
        let frame = match ServerFrame::decode(text) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable frame skipped");
                return;
            }
        };
        if let Some(r) = frame.reply_to().and_then(serde_json::Value::as_u64) {
            if let Some(p) = self.pending.remove(&r) {
                return self.answer(r, p, frame).await;
            }
        }
        let event = match frame {
            ServerFrame::Message(m) => {
                // Seen already (a replay overlapping live), or a room no longer joined.
                let Some(last) = self.rooms.get(m.room.as_str()).copied() else {
                    return;
                };
                if m.seq <= last {
                    return;
                }
                if m.prev > last {
                    if self.fill_gap(&m.room, last, m.prev) {
                        return;
                    }
                    let gap = Event::Gap {
                        room: m.room.clone(),
                        from: last + 1,
                        to: m.prev,
                    };
                    self.emit(gap).await;
                }
                self.rooms.insert(m.room.clone(), m.seq);
                Event::Message(m)
            }
            ServerFrame::Left { room, .. } => {
                self.rooms.remove(room.as_ref());
                Event::Removed {
                    room: room.into_owned(),
                }
            }
            ServerFrame::Membership { room, role } => Event::Membership {
                room: room.into_owned(),
                role,
            },
            ServerFrame::Invitation { room, by, role } => Event::Invitation {
                room: room.into_owned(),
                by: by.into_owned(),
                role,
            },
            ServerFrame::Gap { room, from, to } => {
                // What the gateway says is gone is not asked for again: the next message's
                // `prev` is the gap's end.
                if let Some(last) = self.rooms.get_mut(room.as_ref()) {
                    *last = (*last).max(to);
                }
                Event::Gap {
                    room: room.into_owned(),
                    from,
                    to,
                }
            }
            ServerFrame::PresenceDiff { room, joined, left } => Event::Presence {
                room: room.into_owned(),
                joined: joined.into_iter().map(Into::into).collect(),
                left: left.into_iter().map(Into::into).collect(),
            },
            ServerFrame::Typing { room, user } => Event::Typing {
                room: room.into_owned(),
                user: user.into_owned(),
            },
            ServerFrame::Receipt { room, user, seq } => Event::Receipt {
                room: room.into_owned(),
                user: user.into_owned(),
                seq,
            },
            ServerFrame::Error { code, message, .. } => {
                Event::Error(ApiError::new(code, message.into_owned()))
            }
            // Pongs, answers to requests given up on, frames of newer servers.
            _ => return,
        };
        self.emit(event).await;
    }

    /// The answer to request `r`.
    async fn answer(&mut self, r: u64, p: Pending, frame: ServerFrame<'_>) {
        let rejoin = match (&p.waiter, &p.frame) {
            (Waiter::Resume, ClientFrame::Join { room, .. }) => Some(room.clone()),
            _ => None,
        };
        self.answered(r, p, frame).await;
        if let Some(room) = rejoin {
            // Answered for good (not refused for now and queued again): a gap fill is over.
            if !self.pending.contains_key(&r) {
                self.filling.remove(&room);
            }
            self.rejoins_out = self.rejoins_out.saturating_sub(1);
            self.release_rejoins();
        }
    }

    async fn answered(&mut self, r: u64, mut p: Pending, frame: ServerFrame<'_>) {
        if let ServerFrame::Error { code, message, .. } = &frame {
            let send = *code == ErrorCode::Unavailable
                && matches!(p.frame, ClientFrame::Send { .. })
                && matches!(&p.waiter, Waiter::Caller(reply) if !reply.is_closed());
            // A resume's re-join refused for now (the session's replay slots are busy, or the
            // gateway's, or the workers do not answer) is tried again as long as the
            // connection lasts: the room is not gone (only `forbidden` or `not_found` say so).
            let rejoin = matches!(
                code,
                ErrorCode::RateLimited | ErrorCode::Unavailable | ErrorCode::Internal
            ) && matches!(p.waiter, Waiter::Resume);
            let retry = (send && p.attempts + 1 < MAX_SEND_ATTEMPTS) || rejoin;
            if retry {
                // Not stored (yet): the protocol asks for a resend with the same id.
                p.attempts += 1;
                tracing::debug!(attempt = p.attempts, code = ?code, "request refused for now; resending");
                let delay = RESEND_AFTER * p.attempts.min(8);
                self.pending.insert(r, p);
                let tx = self.resends.0.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(r);
                });
                return;
            }
            let error = ApiError::new(*code, message.as_ref());
            match p.waiter {
                Waiter::Caller(reply) => {
                    let _ = reply.send(Err(Error::Api(error)));
                }
                Waiter::Resume => {
                    if let ClientFrame::Join { room, .. } = p.frame {
                        self.rooms.remove(&room);
                        self.emit(Event::Removed { room }).await;
                    }
                }
            }
            return;
        }
        match (&p.frame, &frame) {
            (ClientFrame::Join { room, since }, ServerFrame::Joined { last_seq, .. }) => {
                let from = since.unwrap_or(*last_seq);
                let cursor = match p.waiter {
                    // The application asked for this: messages after `since` come again.
                    Waiter::Caller(_) => from,
                    // A resume never goes back behind what was delivered.
                    Waiter::Resume => from.max(self.rooms.get(room).copied().unwrap_or(0)),
                };
                self.rooms.insert(room.clone(), cursor);
            }
            (ClientFrame::Leave { room }, _) => {
                self.rooms.remove(room);
            }
            _ => {}
        }
        if let Waiter::Caller(reply) = p.waiter {
            let _ = reply.send(Ok(frame.into_owned()));
        }
    }

    /// Requests that are not resent after a reconnect get `Disconnected` (sends are kept).
    fn fail_unresendable(&mut self) {
        let keep = |p: &Pending| {
            matches!(p.frame, ClientFrame::Send { .. })
                && matches!(&p.waiter, Waiter::Caller(reply) if !reply.is_closed())
        };
        let gone: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| !keep(p))
            .map(|(r, _)| *r)
            .collect();
        for r in gone {
            if let Some(Pending {
                waiter: Waiter::Caller(reply),
                ..
            }) = self.pending.remove(&r)
            {
                let _ = reply.send(Err(Error::Disconnected));
            }
        }
    }

    /// The session is over: every waiting request gets `Closed`, and the last event.
    fn finish(&mut self, code: u16, reason: &str) {
        for (_, p) in std::mem::take(&mut self.pending) {
            if let Waiter::Caller(reply) = p.waiter {
                let _ = reply.send(Err(Error::Closed {
                    code,
                    reason: reason.to_owned(),
                }));
            }
        }
        if self.events_taken.load(Ordering::Acquire) {
            let _ = self.events.try_send(Event::Closed {
                code,
                reason: reason.to_owned(),
            });
        }
    }

    async fn emit(&self, event: Event) {
        if self.events_taken.load(Ordering::Acquire) {
            // Waits while the application's queue is full (see `Events`).
            let _ = self.events.send(event).await;
        }
    }

    fn take_ref(&mut self) -> u64 {
        let r = self.next_ref;
        self.next_ref += 1;
        r
    }
}

async fn write(ws: &mut Ws, text: String) -> Result<()> {
    ws.send(WsMessage::text(text)).await.map_err(Error::from)
}

/// Our close frame, then the server's (its acks come before it), at most [`CLOSE_WAIT`].
async fn close(ws: &mut Ws) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    if ws.send(WsMessage::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(msg)) = ws.next().await {
            if matches!(msg, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// The WebSocket URL of a gateway's HTTP base URL.
pub(crate) fn ws_url(base: &str) -> String {
    let rest = base
        .strip_prefix("https://")
        .map(|r| format!("wss://{r}"))
        .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
        .unwrap_or_else(|| base.to_owned());
    format!("{rest}/v1/ws")
}

/// Opens a session: connect, `hello`, `welcome`. The user name comes back.
pub(crate) async fn open(settings: &Settings, token: &str) -> Result<Ws> {
    open_as(settings, token).await.map(|(ws, _)| ws)
}

/// [`open`], with the user the server welcomed.
pub(crate) async fn open_as(settings: &Settings, token: &str) -> Result<(Ws, String)> {
    let url = ws_url(settings.http().base());
    crate::tls();
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let hello = ClientFrame::Hello {
        token: token.to_owned(),
    };
    write(&mut ws, hello.encode(&Some(json!(0)))).await?;
    let welcome = tokio::time::timeout(settings.hello_timeout, async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(text))) => match ServerFrame::decode(&text) {
                    Ok(ServerFrame::Welcome { user, limits, .. }) => {
                        if let Ok(mut held) = settings.limits.lock() {
                            *held = limits.into_owned();
                        }
                        return Ok(user.into_owned());
                    }
                    Ok(ServerFrame::Error { code, message, .. }) => {
                        return Err(Error::Api(ApiError::new(code, message.as_ref())))
                    }
                    _ => {}
                },
                Some(Ok(WsMessage::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Err(Error::Closed { code, reason });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Error::from(e)),
                None => {
                    return Err(Error::Closed {
                        code: 1006,
                        reason: "connection closed before welcome".into(),
                    })
                }
            }
        }
    })
    .await
    .map_err(|_| Error::Timeout(settings.hello_timeout))??;
    Ok((ws, welcome))
}

fn is_send(frame: &ClientFrame) -> bool {
    matches!(frame, ClientFrame::Send { .. })
}
