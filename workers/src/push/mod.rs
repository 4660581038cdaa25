//! Push notifications (issue 14, docs/PUSH.md): a notifier that runs inside the worker
//! process, reads every stored message from JetStream with its own durable consumer, and
//! pushes the room's members who are offline and have not muted it, one notification per
//! user per collapse window, to each of their Web Push subscriptions, FCM tokens and APNs
//! device tokens.
//!
//! Layers, bottom up: [`config`], [`vapid`] (the deployment's key), [`webpush`], [`fcm`]
//! and [`apns`] (one push each), [`presence`] (who is online), [`collapse`] (the window),
//! [`intake`] (who a message may push), [`origins`] (each push service's share of the
//! request slots), [`deliver`] (decide, mark, send, retry), [`consumer`] (the loop). It runs
//! in the worker because it reads members, targets and settings from the worker's store (an
//! embedded fjall store belongs to one process), under the worker's bus role.

pub mod answering;
pub mod apns;
pub mod collapse;
pub mod config;
pub mod consumer;
pub mod deliver;
pub mod egress;
pub mod fcm;
pub mod intake;
pub mod origins;
pub mod presence;
pub mod vapid;
pub mod webpush;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::PushConfig;

use crate::service::{PushRules, Service};

/// How long the routing step trusts a room's presence before reading it again.
const PRESENCE_FRESH: Duration = Duration::from_millis(500);
/// The same when a window closes (the grace check: kept short).
const PRESENCE_RECHECK: Duration = Duration::from_millis(250);
/// Timeout of the notifier's JetStream API calls.
const JS_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Vapid(#[from] vapid::VapidError),
    #[error("building the HTTP client")]
    Http(#[source] reqwest::Error),
    #[error(transparent)]
    Fcm(#[from] fcm::FcmError),
    #[error(transparent)]
    Apns(#[from] apns::ApnsError),
}

/// The notifier's settings and identity, ready to start.
#[derive(Debug)]
pub struct Push {
    cfg: PushConfig,
    vapid: vapid::Vapid,
    /// Opened by [`Push::open`] when this process runs the notifier, so a bad key, CA or
    /// credentials file stops it at start with its reason.
    providers: Option<Providers>,
}

/// The push services' clients.
#[derive(Debug)]
struct Providers {
    /// Web Push: to users' endpoints, public addresses only.
    web: webpush::WebPush,
    fcm: Option<fcm::Fcm>,
    apns: Option<apns::Apns>,
}

impl Providers {
    fn open(cfg: &PushConfig) -> Result<Self, StartError> {
        let timeout = Duration::from_millis(cfg.request_timeout_ms);
        let ttl = Duration::from_secs(cfg.ttl_secs);
        let proxy = cfg.proxy.as_deref();
        if proxy.is_none() {
            warn_unused_proxy_env();
        }
        let web = webpush::WebPush::open(timeout, ttl, cfg.allow_http_loopback, proxy)
            .map_err(StartError::Http)?;
        let fcm = match &cfg.fcm.credentials_file {
            Some(path) => Some(fcm::Fcm::open(
                webpush::operator_client(timeout, proxy).map_err(StartError::Http)?,
                path,
                &cfg.fcm.base_url,
                cfg.fcm.token_url.as_deref(),
            )?),
            None => None,
        };
        let apns = match cfg.apns.key_file {
            Some(_) => Some(apns::Apns::open(&cfg.apns, timeout, ttl, proxy)?),
            None => None,
        };
        Ok(Self { web, fcm, apns })
    }
}

/// Says so when the environment names a proxy that the notifier does not use (see
/// [`egress`]: `[push] proxy` is the one it uses).
fn warn_unused_proxy_env() {
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            tracing::warn!(var, "the push notifier ignores proxies named by the environment; set [push] proxy to send pushes through one");
            return;
        }
    }
}

impl Push {
    /// Loads (or creates) the VAPID key (the worker's `data_dir` places it by default) and,
    /// when the notifier runs in this worker (`in_worker`), opens the push services' clients.
    pub fn open(cfg: PushConfig, data_dir: &std::path::Path) -> Result<Self, StartError> {
        let path = cfg.vapid_key_path(data_dir);
        let vapid = vapid::Vapid::load_or_create(&path, &cfg.vapid_subject)?;
        let providers = match cfg.in_worker {
            true => Some(Providers::open(&cfg)?),
            false => None,
        };
        Ok(Self {
            cfg,
            vapid,
            providers,
        })
    }

    /// The VAPID public key, base64url.
    pub fn public_key(&self) -> &str {
        self.vapid.public_key()
    }
}

/// Enables the push operations of `svc` and, unless `[push] in_worker` is false, starts the
/// notifier on `tasks` until `stop`.
pub fn start(
    svc: &Service,
    push: Push,
    topology: &chatmesh_protocol::regions::Topology,
    nats: async_nats::Client,
    tasks: &mut JoinSet<Result<(), crate::error::WorkerError>>,
    stop: CancellationToken,
) -> Result<(), StartError> {
    enable(svc, &push);
    if !push.cfg.in_worker {
        tracing::info!("push operations served; the pushes are sent by `chatmesh notifier`");
        return Ok(());
    }
    spawn_notifier(svc, push, topology, nats, tasks, stop)
}

/// Enables the push operations of `svc` (the rules its registrations are checked by).
pub fn enable(svc: &Service, push: &Push) {
    svc.enable_push(PushRules {
        allow_http_loopback: push.cfg.allow_http_loopback,
        max_targets: push.cfg.max_targets_per_user,
        vapid_public_key: push.vapid.public_key().to_owned(),
        apns_topics: push.cfg.apns.topics.clone(),
    });
}

/// Starts the notifier on `tasks` until `stop`, reading the store through `svc` (the
/// worker's, or [`crate::notifier`]'s of its own): one consumer loop per message stream of
/// `topology`, sharing the deliverer.
pub fn spawn_notifier(
    svc: &Service,
    push: Push,
    topology: &chatmesh_protocol::regions::Topology,
    nats: async_nats::Client,
    tasks: &mut JoinSet<Result<(), crate::error::WorkerError>>,
    stop: CancellationToken,
) -> Result<(), StartError> {
    let Push {
        cfg,
        vapid,
        providers,
    } = push;
    let Providers { web, fcm, apns } = match providers {
        Some(p) => p,
        None => Providers::open(&cfg)?,
    };
    let ttl = Duration::from_secs(cfg.ttl_secs);
    // The operator's own push services: known to answer from the start.
    let fcm_origin = fcm.iter().map(|f| origins::origin_of(f.send_url()));
    let apns_origins = apns
        .iter()
        .flat_map(|a| [false, true].map(|sandbox| origins::origin_of(a.base_url(sandbox))));
    let operator: Vec<String> = fcm_origin.chain(apns_origins).collect();
    let deliverer = Arc::new(deliver::Deliverer {
        svc: svc.clone(),
        presence: presence::Presence::new(nats.clone(), PRESENCE_RECHECK),
        vapid,
        web,
        fcm,
        apns,
        ttl,
        max_targets: cfg.max_targets_per_user,
        retry_max: Duration::from_secs(cfg.retry_max_secs),
        sends: Arc::new(tokio::sync::Semaphore::new(cfg.concurrency)),
        origins: origins::Origins::new(cfg.concurrency, operator),
        busy: deliver::Busy::default(),
        peers: (0..topology.streams())
            .any(|s| topology.serving_region(s).is_some())
            .then(|| crate::peers::Peers::new(nats.clone(), topology.per_stream())),
    });
    let js = jetstream::ContextBuilder::new()
        .timeout(JS_TIMEOUT)
        .build(nats.clone());
    for s in 0..topology.streams() {
        let region = topology.stream_region(s);
        let notifier = consumer::Loop {
            js: js.clone(),
            stream: topology.stream_name(s),
            filter: chatmesh_protocol::subjects::stream_subjects(region, topology.has_regions()),
            intake: intake::Intake {
                svc: svc.clone(),
                model: svc.model().clone(),
                presence: presence::Presence::new(nats.clone(), PRESENCE_FRESH),
                max_members: cfg.max_room_members,
                remote: topology
                    .serving_region(s)
                    .map(|_| crate::peers::Peers::new(nats.clone(), topology.per_stream())),
            },
            window: collapse::Window::new(cfg.delay(), cfg.max_pending_users),
            deliverer: deliverer.clone(),
            concurrency: cfg.concurrency,
            ack_wait: Duration::from_secs(cfg.ack_wait_secs),
            max_ack_pending: cfg.max_ack_pending,
        };
        let stop = stop.clone();
        tasks.spawn(async move {
            notifier.run(stop).await;
            Ok(())
        });
    }
    Ok(())
}
