//! [`Client`]: one chatmesh session for an application, and its [`Builder`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_protocol::frames::{ClientFrame, ServerFrame, MAX_HISTORY_LIMIT};
use chatmesh_protocol::message::{Change, Message};
use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::driver::{self, Auth, Command, Driver, Settings};
use crate::error::{Error, Result};
use crate::event::Events;
use crate::http::{Http, Page};

/// The answer to a send: the message is stored, as `seq` of its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub room: String,
    pub id: String,
    pub seq: u64,
    /// When the gateway accepted it (ms since the Unix epoch); for a resend, the original's.
    pub ts: u64,
}

/// How to connect. Every setting has a default but the base URL and the credentials.
#[derive(Debug, Clone)]
pub struct Builder {
    base: String,
    fallbacks: Vec<String>,
    auth: Option<Auth>,
    event_buffer: usize,
    request_timeout: Duration,
    reconnect_min: Duration,
    reconnect_max: Duration,
    ping_every: Duration,
}

impl Builder {
    /// Authenticate with a token (from `POST /v1/auth/login` or an external issuer).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Some(Auth::Token(token.into()));
        self
    }

    /// Log in with a user name and password (again whenever the token is refused).
    pub fn login(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some(Auth::Password {
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// Another gateway to fail over to (repeatable), e.g. another region's
    /// (docs/REGIONS.md): when the gateway in use cannot be reached, the next connection
    /// attempt goes to the next one, and the session resumes there. The first connect tries
    /// them in order too.
    pub fn fallback(mut self, base: impl Into<String>) -> Self {
        self.fallbacks.push(base.into());
        self
    }

    /// Events buffered for the application before the session stops reading (default 1,024).
    pub fn event_buffer(mut self, n: usize) -> Self {
        self.event_buffer = n.max(1);
        self
    }

    /// How long a request waits for its answer (default 30 s; a send keeps being resent
    /// after reconnects and `unavailable` until then).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Reconnect delays: from `min`, doubling to `max`, with jitter (default 100 ms to 10 s).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max;
        self
    }

    /// How often an idle connection is pinged; three intervals without a frame from the
    /// server count as a broken connection (default 15 s).
    pub fn ping_every(mut self, every: Duration) -> Self {
        self.ping_every = every.max(Duration::from_millis(10));
        self
    }

    /// Logs in if asked to, opens the session and waits for `welcome`.
    pub async fn connect(self) -> Result<Client> {
        let entries = std::iter::once(&self.base)
            .chain(&self.fallbacks)
            .map(|base| Http::new(base))
            .collect::<Result<Vec<_>>>()?;
        let auth = self
            .auth
            .ok_or_else(|| Error::Protocol("no credentials: call token() or login()".into()))?;
        let settings = Arc::new(Settings {
            entries,
            current: AtomicUsize::new(0),
            auth,
            reconnect_min: self.reconnect_min,
            reconnect_max: self.reconnect_max,
            ping_every: self.ping_every,
            hello_timeout: self.request_timeout,
            limits: Mutex::new(Default::default()),
        });
        let (token, ws, user) = first_session(&settings).await?;
        let token = Arc::new(Mutex::new(token));
        let (commands, rx) = mpsc::channel(64);
        let (events_tx, events_rx) = mpsc::channel(self.event_buffer);
        let taken = Arc::new(AtomicBool::new(false));
        let driver = Driver::new(
            settings.clone(),
            token.clone(),
            rx,
            events_tx,
            taken.clone(),
        );
        let task = tokio::spawn(driver.run(ws));
        Ok(Client {
            settings,
            user,
            token,
            commands,
            events: Some(Events { rx: events_rx }),
            events_taken: taken,
            timeout: self.request_timeout,
            ids: IdSource::new(),
            task,
        })
    }
}

/// Logs in if asked to and opens the first session, on the first gateway that can be
/// reached (the base URL, then each fallback); a refusal (a bad password) is final.
async fn first_session(settings: &Settings) -> Result<(String, driver::Ws, String)> {
    let mut tried = 0;
    loop {
        let attempt = async {
            let token = match &settings.auth {
                Auth::Token(t) => t.clone(),
                Auth::Password { username, password } => {
                    settings.http().login(username, password).await?.token
                }
            };
            let (ws, user) = driver::open_as(settings, &token).await?;
            Ok::<_, Error>((token, ws, user))
        };
        match attempt.await {
            Err(e) if !matches!(e, Error::Api(_)) && tried + 1 < settings.entries.len() => {
                tracing::info!(gateway = settings.http().base(), error = %e, "gateway unreachable");
                settings.fail_over();
                tried += 1;
            }
            other => return other,
        }
    }
}

/// Unique message ids for [`Client::send`]: a random prefix per client and a counter.
#[derive(Debug)]
pub(crate) struct IdSource {
    prefix: u64,
    next: AtomicU64,
}

impl IdSource {
    fn new() -> Self {
        Self {
            prefix: rand::random(),
            next: AtomicU64::new(1),
        }
    }

    pub(crate) fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}-{n}", self.prefix)
    }
}

/// One session with a gateway. Requests may be made from many tasks at once (`&self`);
/// events come through [`Client::events`].
#[derive(Debug)]
pub struct Client {
    settings: Arc<Settings>,
    user: String,
    token: Arc<Mutex<String>>,
    commands: mpsc::Sender<Command>,
    events: Option<Events>,
    events_taken: Arc<AtomicBool>,
    timeout: Duration,
    pub(crate) ids: IdSource,
    task: JoinHandle<()>,
}

impl Client {
    /// Starts a connection to the gateway at `base` (`http://host:port`).
    pub fn builder(base: impl Into<String>) -> Builder {
        Builder {
            base: base.into(),
            fallbacks: Vec::new(),
            auth: None,
            event_buffer: 1024,
            request_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            ping_every: Duration::from_secs(15),
        }
    }

    /// The user the server welcomed.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The session's events. Once: later calls get `None`. Until this is called, events are
    /// discarded.
    pub fn events(&mut self) -> Option<Events> {
        let events = self.events.take()?;
        self.events_taken.store(true, Ordering::Release);
        Some(events)
    }

    /// The HTTP API with this session's current token (rooms, members, DMs).
    pub fn http(&self) -> Http {
        let token = self.token.lock().map(|t| t.clone()).unwrap_or_default();
        self.settings.http().with_token(token)
    }

    /// Joins `room` for live messages; its `last_seq`.
    pub async fn join(&self, room: &str) -> Result<u64> {
        self.join_frame(room, None).await
    }

    /// Joins `room` and first gets every message after `since`, in order.
    pub async fn join_since(&self, room: &str, since: u64) -> Result<u64> {
        self.join_frame(room, Some(since)).await
    }

    async fn join_frame(&self, room: &str, since: Option<u64>) -> Result<u64> {
        let frame = ClientFrame::Join {
            room: room.to_owned(),
            since,
        };
        match self.request(frame).await? {
            ServerFrame::Joined { last_seq, .. } => Ok(last_seq),
            other => Err(unexpected(&other)),
        }
    }

    /// Leaves `room`: no more of its messages.
    pub async fn leave(&self, room: &str) -> Result<()> {
        let frame = ClientFrame::Leave {
            room: room.to_owned(),
        };
        self.request(frame).await.map(drop)
    }

    /// Sends `body` to `room` with a fresh id; the ack means it is stored.
    pub async fn send(&self, room: &str, body: &str) -> Result<Ack> {
        self.send_with_id(room, &self.ids.next(), body).await
    }

    /// Sends with the caller's id: a resend with the same id is stored once (within the
    /// server's dedupe window, 2 minutes by default).
    pub async fn send_with_id(&self, room: &str, id: &str, body: &str) -> Result<Ack> {
        self.ack_of(ClientFrame::send(room, id, body)).await
    }

    /// Replaces the body of the caller's message `seq` of `room` with `body` (an edit: a
    /// message of its own, with its own seq). Only the author edits (`forbidden`); a deleted
    /// or unknown message is `not_found`.
    pub async fn edit(&self, room: &str, seq: u64, body: &str) -> Result<Ack> {
        self.edit_with_id(room, &self.ids.next(), seq, body).await
    }

    /// [`Client::edit`] with the caller's id: a resend with the same id is stored once.
    pub async fn edit_with_id(&self, room: &str, id: &str, seq: u64, body: &str) -> Result<Ack> {
        self.ack_of(ClientFrame::send_change(room, id, body, Change::Edit(seq)))
            .await
    }

    /// Deletes message `seq` of `room`: its body and files are erased from the store. The
    /// author, a room admin or the owner may (`forbidden` otherwise).
    pub async fn delete(&self, room: &str, seq: u64) -> Result<Ack> {
        self.delete_with_id(room, &self.ids.next(), seq).await
    }

    /// [`Client::delete`] with the caller's id: a resend with the same id is stored once.
    pub async fn delete_with_id(&self, room: &str, id: &str, seq: u64) -> Result<Ack> {
        self.ack_of(ClientFrame::send_change(room, id, "", Change::Delete(seq)))
            .await
    }

    /// Puts the reaction `key` (an emoji, ≤ 64 bytes, no whitespace) on message `seq` of
    /// `room`: a message of its own, with its own seq. Once per key and user; bounded per
    /// user and per message (`forbidden`); a deleted or unknown message is `not_found`.
    pub async fn react(&self, room: &str, seq: u64, key: &str) -> Result<Ack> {
        self.react_with_id(room, &self.ids.next(), seq, key).await
    }

    /// [`Client::react`] with the caller's id: a resend with the same id is stored once.
    pub async fn react_with_id(&self, room: &str, id: &str, seq: u64, key: &str) -> Result<Ack> {
        self.ack_of(ClientFrame::send_change(room, id, key, Change::React(seq)))
            .await
    }

    /// Takes the caller's reaction `key` off message `seq` (`not_found` if it has none).
    pub async fn unreact(&self, room: &str, seq: u64, key: &str) -> Result<Ack> {
        self.unreact_with_id(room, &self.ids.next(), seq, key).await
    }

    /// [`Client::unreact`] with the caller's id: a resend with the same id is stored once.
    pub async fn unreact_with_id(&self, room: &str, id: &str, seq: u64, key: &str) -> Result<Ack> {
        self.ack_of(ClientFrame::send_change(
            room,
            id,
            key,
            Change::Unreact(seq),
        ))
        .await
    }

    /// Sends `body` as a reply to message `seq` of `room`; it joins the thread of `seq`'s
    /// root (read it with [`crate::Http::thread`]).
    pub async fn reply(&self, room: &str, seq: u64, body: &str) -> Result<Ack> {
        self.reply_with_id(room, &self.ids.next(), seq, body).await
    }

    /// [`Client::reply`] with the caller's id: a resend with the same id is stored once.
    pub async fn reply_with_id(&self, room: &str, id: &str, seq: u64, body: &str) -> Result<Ack> {
        let frame = ClientFrame::send_reply(room, id, seq, body);
        self.ack_of(frame).await
    }

    /// Sends `body` with the files `ids` of `room` (uploaded with
    /// [`crate::Http::upload`]; at most 10); `body` may be empty.
    pub async fn send_files(&self, room: &str, body: &str, ids: &[String]) -> Result<Ack> {
        self.ack_of(ClientFrame::send_files(
            room,
            self.ids.next(),
            body,
            ids.to_vec(),
        ))
        .await
    }

    /// Sends `frame` (a `send`) and waits for its ack.
    pub(crate) async fn ack_of(&self, frame: ClientFrame) -> Result<Ack> {
        match self.request(frame).await? {
            ServerFrame::Ack {
                room, id, seq, ts, ..
            } => Ok(Ack {
                room: room.into_owned(),
                id: id.into_owned(),
                seq,
                ts,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// One page of `room`'s history: up to `limit` (1–100) messages before `before`.
    pub async fn history(&self, room: &str, before: Option<u64>, limit: u32) -> Result<Page> {
        let frame = ClientFrame::History {
            room: room.to_owned(),
            before,
            limit: limit.clamp(1, MAX_HISTORY_LIMIT),
        };
        match self.request(frame).await? {
            ServerFrame::History { messages, more, .. } => Ok(Page {
                messages: messages.into_owned(),
                more,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// `room`'s history from the newest page back to the first, `page` messages at a time
    /// (each page oldest first).
    pub fn history_pages<'a>(
        &'a self,
        room: &'a str,
        page: u32,
    ) -> impl Stream<Item = Result<Vec<Message>>> + 'a {
        futures::stream::try_unfold(Some(None), move |before| async move {
            let Some(before) = before else {
                return Ok(None);
            };
            let page = self.history(room, before, page).await?;
            let next = match (page.more, page.messages.first()) {
                (true, Some(first)) => Some(Some(first.seq)),
                _ => None,
            };
            if page.messages.is_empty() {
                return Ok(None);
            }
            Ok(Some((page.messages, next)))
        })
    }

    /// Who is online in `room` (sorted).
    pub async fn presence(&self, room: &str) -> Result<Vec<String>> {
        let frame = ClientFrame::Presence {
            room: room.to_owned(),
        };
        match self.request(frame).await? {
            ServerFrame::Presence { online, .. } => {
                Ok(online.into_iter().map(Into::into).collect())
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Tells `room` the user is typing (a refusal comes as an [`Event::Error`]).
    ///
    /// [`Event::Error`]: crate::Event::Error
    pub async fn typing(&self, room: &str) -> Result<()> {
        self.fire(ClientFrame::Typing {
            room: room.to_owned(),
        })
        .await
    }

    /// Marks `room` read up to `seq`; members get a receipt.
    pub async fn read(&self, room: &str, seq: u64) -> Result<()> {
        self.fire(ClientFrame::Read {
            room: room.to_owned(),
            seq,
        })
        .await
    }

    /// A round trip to the gateway.
    pub async fn ping(&self) -> Result<()> {
        self.request(ClientFrame::Ping).await.map(drop)
    }

    /// Closes the session: waits for the acks of sends in flight (the server sends them
    /// before its close frame), at most a few seconds.
    pub async fn close(self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Close { done }).await.is_ok() {
            let _ = wait.await;
        }
        let _ = self.task.await;
    }

    async fn request(&self, frame: ClientFrame) -> Result<ServerFrame<'static>> {
        let (reply, answer) = oneshot::channel();
        let closed = || Error::Closed {
            code: 1000,
            reason: "the session is over".into(),
        };
        self.commands
            .send(Command::Request { frame, reply })
            .await
            .map_err(|_| closed())?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    async fn fire(&self, frame: ClientFrame) -> Result<()> {
        self.commands
            .send(Command::Fire { frame })
            .await
            .map_err(|_| Error::Closed {
                code: 1000,
                reason: "the session is over".into(),
            })
    }
}

fn unexpected(frame: &ServerFrame<'_>) -> Error {
    Error::Protocol(format!("unexpected answer {}", frame.encode()))
}
