//! Fixtures shared by the integration tests: a worker config with cheap password hashing,
//! an in-process model + caches + service over a temporary fjall store, and deadlines.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chatmesh_protocol::message::Payload;
use chatmesh_protocol::service::{CreateRoomRequest, Credentials, RoomKind};
use chatmesh_protocol::ErrorCode;
use chatmesh_workers::cache::Caches;
use chatmesh_workers::model::Model;
use chatmesh_workers::writer::{store_batch, Delivery};
use chatmesh_workers::{open_store, Service, Store, WorkerConfig};

/// Logs to the test output, filtered by `RUST_LOG` (nothing by default).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A config for tests: data in `dir`, argon2 at its cheapest (tests hash many passwords).
pub fn config(dir: &std::path::Path) -> WorkerConfig {
    WorkerConfig {
        data_dir: dir.to_path_buf(),
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        store_cache_mb: 8,
        ..WorkerConfig::default()
    }
}

/// Model, caches and service over a fresh store, without NATS.
pub struct Local {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub model: Model,
    pub caches: Arc<Caches>,
    pub service: Service,
}

impl Local {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// Like [`Local::new`], with the test config changed by `edit`.
    pub async fn with(edit: impl FnOnce(&mut WorkerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        edit(&mut cfg);
        let store = open_store(&cfg).await.unwrap();
        let model = Model::new(store.clone());
        let caches = Arc::new(Caches::new(cfg.cache_sizes()));
        let service = Service::new(model.clone(), caches.clone(), &cfg, None).unwrap();
        Self {
            dir,
            store,
            model,
            caches,
            service,
        }
    }

    /// Stores messages the way the store writer does: `(seq, room, body)` in stream order.
    pub async fn deliver(&self, p: u32, checkpoint: &mut u64, msgs: &[(u64, &str, &str)]) {
        let batch = msgs
            .iter()
            .map(|&(seq, room, body)| Delivery {
                seq,
                message: Some((room.to_owned(), payload(&format!("m{seq}"), "ann", body))),
            })
            .collect();
        store_batch(&self.model, &self.caches, p, checkpoint, batch)
            .await
            .unwrap();
    }
}

pub fn payload(id: &str, from: &str, body: &str) -> Payload {
    Payload {
        id: id.to_owned(),
        from: from.to_owned(),
        ts: 1,
        body: body.to_owned(),
        attachments: Vec::new(),
        mentions: chatmesh_protocol::mentions::Mentions::parse(body),
        ..Default::default()
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Credentials with a valid password for user `u`.
pub fn creds(u: &str) -> Credentials {
    Credentials::new(u, "correct horse")
}

/// Registers each of `names`.
pub async fn users(l: &Local, names: &[&str]) {
    for n in names {
        l.service.register(creds(n)).await.unwrap();
    }
}

/// Creates `room` of `kind` owned by `actor`.
pub async fn create(l: &Local, room: &str, kind: RoomKind, actor: &str) {
    let req = CreateRoomRequest {
        room: room.into(),
        kind,
        actor: actor.into(),
    };
    l.service.room_create(req).await.unwrap();
}

/// The error code of a failed service answer.
pub fn code<T: std::fmt::Debug>(r: Result<T, chatmesh_protocol::ApiError>) -> ErrorCode {
    r.unwrap_err().code
}

pub mod mesh;
