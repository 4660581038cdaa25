//! Everything a gateway's connections share, built once at start.

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmesh_protocol::invitations::{Invitation, INVITATION_EVENT};
use chatmesh_protocol::service::UserEvent;
use chatmesh_protocol::subjects::USER_ALL;
use chatmesh_protocol::MeshConfig;
use futures::StreamExt as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::AccessCache;
use crate::admission::Admission;
use crate::auth::Tokens;
use crate::config::GatewayConfig;
use crate::cursors::OwnReads;
use crate::error::GatewayError;
use crate::fanout::{Fanout, RoomEnv};
use crate::jsread::JsReader;
use crate::late::Late;
use crate::receipts::Receipts;
use crate::replay_slots::{ReplaySlots, Shares};
use crate::revocation::Revocation;
use crate::services::Services;
use crate::throttle::Throttle;

/// How long one JetStream request (a publish's PubAck) is waited for.
pub const PUBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared state of one gateway.
#[derive(Debug)]
pub struct AppState {
    /// This gateway's id.
    pub gateway: Arc<str>,
    pub cfg: GatewayConfig,
    pub mesh: MeshConfig,
    pub nats: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub services: Services,
    pub tokens: Tokens,
    pub access: AccessCache,
    /// Token generations (`logout_all`) and the sessions to close on a bump.
    pub revocation: Arc<Revocation>,
    /// The membership and account events kept for a while, read after a possible loss.
    pub event_log: Arc<crate::eventlog::EventLog>,
    /// Login, registration and room-creation throttles.
    pub throttle: Throttle,
    pub fanout: Fanout,
    pub reader: JsReader,
    /// Replays (`join` with `since`) running at once on this gateway.
    pub replay_slots: ReplaySlots,
    /// Queued reply bytes per client address (`reply_bytes_per_address`).
    pub reply_shares: crate::reply_share::ReplyShares,
    pub metrics: Option<PrometheusHandle>,
    /// Cancelled when the gateway drains: every session closes with 1001.
    pub drain: CancellationToken,
    /// Connections and sessions, awaited on drain.
    pub tasks: TaskTracker,
    /// The background tasks the gateway cannot do without (listeners, periodic passes).
    pub background: crate::supervise::Supervisor,
    pub sessions: AtomicUsize,
    /// Senders' own cursor moves, flushed to the workers once a second.
    pub own_reads: OwnReads,
    /// `read` frames, coalesced per room and user.
    pub receipts: Receipts,
    /// The budget of sends awaiting their PubAck.
    pub admission: Admission,
    pub next_session: AtomicU64,
    /// Shared files (`[files]`); `None`: their endpoints answer `unavailable`.
    pub files: Option<crate::files::GatewayFiles>,
    /// `[admin]`, set once at start ([`AppState::set_admin`]); unset: nobody is an admin.
    admin: std::sync::OnceLock<chatmesh_protocol::admin::AdminConfig>,
    /// The last answer of the stream and worker checks of `/readyz`, and when it was taken.
    ready: tokio::sync::Mutex<Option<(Instant, Result<(), &'static str>)>>,
}

/// How long `/readyz` reuses its stream and worker checks: the endpoint is public, and a
/// flood of it must not become a flood of JetStream API requests (nats-server's API queue
/// is shared with every send's consumer and stream calls).
const READY_FOR: Duration = Duration::from_secs(1);
/// How long a starting gateway waits for the presence bucket, which the workers make.
const PRESENCE_PATIENCE: Duration = Duration::from_secs(30);
/// How long each of the stream and worker checks may take.
const READY_WAIT: Duration = Duration::from_secs(2);

/// The gateway's JetStream context: PubAcks awaited `PUBACK_TIMEOUT`, at most
/// `max_inflight_sends` + 64 publishes awaiting theirs.
pub fn bus_context(
    nats: async_nats::Client,
    max_inflight_sends: usize,
) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new()
        .timeout(PUBACK_TIMEOUT)
        .backpressure_on_inflight(true)
        // Above the admission budget, so a publish never blocks here: sends beyond the
        // budget are refused by `admission` with a clear error instead.
        .max_ack_inflight(max_inflight_sends + 64)
        .build(nats)
}

impl AppState {
    /// Builds the state and starts the background listeners (membership changes).
    pub async fn new(
        cfg: GatewayConfig,
        mesh: MeshConfig,
        nats: async_nats::Client,
        metrics: Option<PrometheusHandle>,
        files: Option<crate::files::GatewayFiles>,
    ) -> Result<Arc<Self>, GatewayError> {
        let service_timeout = Duration::from_millis(cfg.service_timeout_ms);
        let js = bus_context(nats.clone(), cfg.max_inflight_sends);
        let services = Services::new(
            nats.clone(),
            mesh.topology(),
            mesh.region.clone(),
            service_timeout,
        );
        let tokens = Tokens::from_config(&cfg).map_err(|e| GatewayError::Tokens(e.into()))?;
        let reader = JsReader::new(nats.clone(), &js, service_timeout).await?;
        // A stream that is not there yet is checked by `readiness` once it is.
        if let Ok(Ok(stream)) = tokio::time::timeout(
            READY_WAIT,
            js.get_stream(chatmesh_protocol::subjects::region_stream(
                services.local_workers(),
            )),
        )
        .await
        {
            if let Some(why) = partitions_differ(stream.cached_info(), mesh.partitions) {
                return Err(GatewayError::PartitionsDiffer { why });
            }
        }
        crate::presence::await_bucket(&js, PRESENCE_PATIENCE).await;
        let gateway: Arc<str> = Arc::from(format!("{:016x}", rand_id()).as_str());
        // The rooms' hold after a reconnect until the access re-check has run.
        let losses = natskit::lossy::losses(&nats.statistics());
        let (rechecks, rechecked) = crate::reconnects::Rechecked::new(losses);
        let access = AccessCache::new(services.clone());
        let on_ban = {
            let access = access.clone();
            crate::fanout::OnBan::new(move |room, user| access.forget_now(room, user))
        };
        let fanout = Fanout::new(RoomEnv {
            nats: nats.clone(),
            js: js.clone(),
            reader: reader.clone(),
            partitions: mesh.partitions,
            gateway: gateway.clone(),
            presence_ttl: Duration::from_secs(cfg.presence_ttl_secs),
            timeout: service_timeout,
            rechecked,
            recheck_hold: Duration::from_millis(cfg.recheck_hold_ms),
            on_ban,
        });
        let cfg_receipts = cfg.receipt_interval_ms;
        let (cfg_inflight, cfg_admission) = (cfg.max_inflight_sends, cfg.admission_wait_ms);
        let revocation = Arc::new(Revocation::new(
            services.clone(),
            Duration::from_secs(cfg.user_gen_cache_secs),
        ));
        let event_log = Arc::new(crate::eventlog::EventLog::new(
            nats.clone(),
            js.clone(),
            service_timeout,
            losses,
        ));
        let throttle = Throttle::new(&cfg);
        let shares = Shares {
            per_user: cfg.max_replays_per_user,
            per_ip: cfg.max_replays_per_ip,
        };
        let replay_slots = ReplaySlots::new(
            cfg.max_replays,
            shares,
            Duration::from_millis(cfg.replay_wait_ms),
        );
        let reply_shares = crate::reply_share::ReplyShares::new(
            cfg.reply_bytes_per_address,
            cfg.reply_bytes_total,
        );
        let drain = CancellationToken::new();
        let state = Arc::new(Self {
            gateway,
            cfg,
            mesh,
            nats,
            js,
            services,
            tokens,
            access,
            revocation,
            event_log,
            throttle,
            fanout,
            reader,
            replay_slots,
            reply_shares,
            metrics,
            drain: drain.clone(),
            background: crate::supervise::Supervisor::new(drain),
            tasks: TaskTracker::new(),
            sessions: AtomicUsize::new(0),
            own_reads: OwnReads::default(),
            receipts: Receipts::new(Duration::from_millis(cfg_receipts)),
            admission: Admission::new(cfg_inflight, Duration::from_millis(cfg_admission)),
            next_session: AtomicU64::new(1),
            files,
            admin: std::sync::OnceLock::new(),
            ready: tokio::sync::Mutex::new(None),
        });
        let weak = Arc::downgrade(&state);
        let late = Arc::new(Late::default());
        crate::access::spawn_member_listener(
            &state.nats,
            (state.access.clone(), state.fanout.clone()),
            &state.background,
            Arc::new(move |ev| {
                if let Some(state) = weak.upgrade() {
                    state.membership_changed(ev);
                }
            }),
            late.clone(),
        )
        .await?;
        spawn_user_listener(state.clone(), late.clone()).await?;
        if state.cfg.session_recheck_secs > 0 {
            let every = Duration::from_secs(state.cfg.session_recheck_secs);
            let weak = Arc::downgrade(&state);
            let knows_key = move |kid: &str| {
                weak.upgrade()
                    .is_none_or(|state| state.tokens.knows_key(kid))
            };
            state.background.spawn(
                "session re-check",
                state
                    .revocation
                    .clone()
                    .sweep(every, knows_key, state.drain.clone()),
            );
            let weak = Arc::downgrade(&state);
            let notify: crate::access::Notify = Arc::new(move |ev| {
                if let Some(state) = weak.upgrade() {
                    state.membership_changed(ev);
                }
            });
            state.background.spawn(
                "access sweep",
                crate::access::sweep(
                    state.access.clone(),
                    state.fanout.clone(),
                    notify,
                    every,
                    state.drain.clone(),
                ),
            );
        }
        let connects = crate::reconnects::watch(&state.nats, losses, &state.background);
        state.event_log.spawn_looks(&state.background);
        let weak = Arc::downgrade(&state);
        crate::catchup::spawn(
            crate::catchup::Parts {
                log: state.event_log.clone(),
                access: state.access.clone(),
                fanout: state.fanout.clone(),
                revocation: state.revocation.clone(),
                notify: Arc::new(move |ev| {
                    if let Some(state) = weak.upgrade() {
                        state.membership_changed(ev);
                    }
                }),
            },
            late,
            &state.nats,
            &state.background,
            (connects, rechecks),
        );
        state
            .own_reads
            .spawn_flusher(state.services.clone(), state.drain.clone());
        state.receipts.spawn_flusher(
            state.nats.clone(),
            state.services.clone(),
            state.drain.clone(),
        );
        Ok(state)
    }

    /// Ready when NATS is connected, the stream answers, and a worker answers from its
    /// store; otherwise what is missing. The stream and worker checks are asked of NATS at
    /// most once per [`READY_FOR`] (callers meanwhile share the last answer).
    pub async fn readiness(&self) -> Result<(), &'static str> {
        use async_nats::connection::State;
        if self.drain.is_cancelled() {
            return Err("draining");
        }
        if self.background.ended().is_some() {
            return Err("a background task stopped (see the log): restart the gateway");
        }
        if self.nats.connection_state() != State::Connected {
            return Err("nats: not connected");
        }
        let mut last = self.ready.lock().await;
        if let Some((at, answer)) = *last {
            if at.elapsed() < READY_FOR {
                return answer;
            }
        }
        let answer = self.stream_and_worker().await;
        *last = Some((Instant::now(), answer));
        answer
    }

    /// The stream answers a `STREAM.INFO` (its leader is up), and a worker answers from its
    /// store.
    async fn stream_and_worker(&self) -> Result<(), &'static str> {
        use chatmesh_protocol::service::{GetAccess, RoomUserRequest};
        // A region with workers of its own serves its rooms while the primary is cut off:
        // its gateways are ready when its own stream and workers are.
        let local = self.services.local_workers();
        // `get_stream` asks the stream's leader (`get_stream_no_info` asks nothing).
        let stream = tokio::time::timeout(
            READY_WAIT,
            self.js
                .get_stream(chatmesh_protocol::subjects::region_stream(local)),
        )
        .await;
        let Ok(Ok(stream)) = stream else {
            return Err("jetstream: stream not reachable");
        };
        if let Some(why) = partitions_differ(stream.cached_info(), self.mesh.partitions) {
            tracing::error!(why, "not ready");
            return Err("config: mesh.partitions differs from the workers' (see the log)");
        }
        // Any answer from a worker (not_found included) proves the worker and its store
        // are up; only a transport failure means they are not.
        let room = match local {
            Some(r) => format!("{r}{}_readyz_probe", chatmesh_protocol::subjects::HOME_SEP),
            None => "_readyz_probe".into(),
        };
        let probe = RoomUserRequest {
            room,
            user: "_readyz".into(),
        };
        match self
            .services
            .call_once::<GetAccess>(&probe.room, &probe)
            .await
        {
            Ok(_) => Ok(()),
            Err(_) => Err("worker: not answering"),
        }
    }

    /// Tells every session of the event's user on this gateway (`membership {room, role}`),
    /// so room lists update without a refresh. A session that cannot take it (full queue) is
    /// closed as a slow consumer, as for any frame.
    pub fn membership_changed(&self, ev: &chatmesh_protocol::service::MemberEvent) {
        let frame = chatmesh_protocol::frames::ServerFrame::Membership {
            room: ev.room.as_str().into(),
            role: ev.role,
        };
        self.tell_user(&ev.user, &frame);
    }

    /// Offers `frame` to every session of `user` on this gateway (a session that cannot take
    /// it is closed as a slow consumer, as for any frame).
    fn tell_user(&self, user: &str, frame: &chatmesh_protocol::frames::ServerFrame<'_>) {
        let frame = bytes::Bytes::from(frame.encode());
        for link in self.revocation.sessions_of(user) {
            link.offer(crate::link::Out::Frame(frame.clone()));
        }
    }
}

impl AppState {
    /// Tells every session here of the user of `subject` (`chat.user.<user>`) of the
    /// invitation in `payload` (`invitation {room, by, role}`).
    fn invited(&self, subject: &str, payload: &[u8]) {
        let user = subject.strip_prefix("chat.user.").unwrap_or_default();
        let Ok(invitation) = serde_json::from_slice::<Invitation>(payload) else {
            tracing::warn!(subject, "malformed invitation event");
            return;
        };
        let frame = chatmesh_protocol::frames::ServerFrame::Invitation {
            room: invitation.room.as_str().into(),
            by: invitation.by.as_str().into(),
            role: invitation.role,
        };
        self.tell_user(user, &frame);
    }

    /// Sets `[admin]`: who may call the admin API (the workers check it again). Once; later
    /// calls are ignored.
    pub fn set_admin(&self, cfg: chatmesh_protocol::admin::AdminConfig) {
        let _ = self.admin.set(cfg);
    }

    /// Is `user` a server admin (`[admin] users`)?
    pub fn is_admin(&self, user: &str) -> bool {
        self.admin.get().is_some_and(|a| a.is_admin(user))
    }
}

/// A random id for this gateway process.
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Listens to account events: applies generation bumps to the revocation registry (what was
/// missed is caught up by [`crate::catchup`]); a late event is handed to `late` instead.
async fn spawn_user_listener(state: Arc<AppState>, late: Arc<Late>) -> Result<(), GatewayError> {
    let mut sub = state
        .nats
        .subscribe(USER_ALL)
        .await
        .map_err(|e| GatewayError::nats("subscribing to user events", e))?;
    let drain = state.drain.clone();
    let background = state.background.clone();
    background.spawn("account events", async move {
        loop {
            let msg = tokio::select! {
                _ = drain.cancelled() => break,
                msg = sub.next() => match msg { Some(m) => m, None => break },
            };
            let headers = msg.headers.as_ref();
            if headers.is_some_and(|h| h.get(INVITATION_EVENT).is_some()) {
                // Not an account change: tells the user's sessions (late or not).
                state.invited(&msg.subject, &msg.payload);
                continue;
            }
            if Late::is_late(headers) {
                late.add(&msg.subject, &msg.payload);
                continue;
            }
            match serde_json::from_slice::<UserEvent>(&msg.payload) {
                Ok(ev) => {
                    state
                        .revocation
                        .changed(&ev.user, ev.gen, ev.disabled)
                        .await
                }
                Err(_) => tracing::warn!(subject = %msg.subject, "malformed user event"),
            }
        }
    });
    Ok(())
}

/// Why this gateway, configured with `partitions`, must not serve with the stream `info`
/// describes (its workers recorded another count); `None` when it may.
fn partitions_differ(
    info: &async_nats::jetstream::stream::Info,
    partitions: u32,
) -> Option<String> {
    let recorded = info
        .config
        .metadata
        .get(chatmesh_protocol::subjects::PARTITIONS_KEY);
    chatmesh_protocol::subjects::partitions_mismatch(
        &info.config.name,
        recorded.map(String::as_str),
        partitions,
    )
}
