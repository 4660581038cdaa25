//! Accounts as a region's own workers see them (`mesh.regional_workers`, docs/REGIONS.md
//! section 12). Users live in the primary region's store; a worker whose store holds only
//! its region's rooms asks the primary's workers (`profile_get`) whether a user exists and
//! what its display name is. The primary's workers read their own store.

use chatmesh_protocol::service::{GetProfile, Profile, UserRequest};
use chatmesh_protocol::ApiError;
use futures::StreamExt;

use super::Service;
use crate::peers::Peers;

/// Display names asked of the primary at once for one member page.
const NAMES_IN_FLIGHT: usize = 32;
/// How long one member page waits for the primary's display names in all: those not in by
/// then are left out, so a slow primary holds a service slot for this long, not for one
/// request timeout per batch of names.
const NAMES_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a worker whose store has no accounts asks for them: the primary's workers.
#[derive(Debug, Clone)]
pub(crate) struct Primary(pub(crate) Peers);

impl Primary {
    async fn profile(&self, user: &str) -> Result<Option<Profile>, ApiError> {
        let req = UserRequest {
            user: user.to_owned(),
        };
        self.0.ask_found::<GetProfile>(user, &req).await
    }
}

impl Service {
    /// Makes this worker ask the primary region's workers for accounts (a region's own
    /// workers: their store has none).
    pub(crate) fn accounts_in_primary(&self, primary: Primary) {
        let _ = self.inner.accounts.set(primary);
    }

    /// Whether this worker's store keeps the accounts (and push targets): the primary's
    /// workers, not a region's own.
    pub(super) fn keeps_accounts(&self) -> bool {
        self.inner.accounts.get().is_none()
    }

    /// Whether `user` has an account (`unavailable` if the primary cannot be asked).
    pub(super) async fn user_exists(&self, user: &str) -> Result<bool, ApiError> {
        match self.inner.accounts.get() {
            None => Ok(self.model().user(user).await?.is_some()),
            Some(primary) => Ok(primary.profile(user).await?.is_some()),
        }
    }

    /// The display names of `users`, in order; a name that cannot be read (or not within
    /// [`NAMES_DEADLINE`] of the primary) is left out: a member list is still worth showing
    /// while the primary is slow or cut off.
    pub(super) async fn display_names(
        &self,
        users: &[String],
    ) -> Result<Vec<Option<String>>, ApiError> {
        let Some(primary) = self.inner.accounts.get() else {
            let mut out = Vec::with_capacity(users.len());
            for user in users {
                out.push(self.model().user(user).await?.and_then(|u| u.display_name));
            }
            return Ok(out);
        };
        let deadline = tokio::time::Instant::now() + NAMES_DEADLINE;
        let names = futures::stream::iter(users.to_vec())
            .map(|user| {
                let primary = primary.clone();
                async move {
                    let asked = tokio::time::timeout_at(deadline, primary.profile(&user)).await;
                    let profile = asked.ok().and_then(Result::ok).flatten();
                    profile.and_then(|p| p.display_name)
                }
            })
            .buffered(NAMES_IN_FLIGHT)
            .collect()
            .await;
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;

    use super::*;
    use crate::cache::Caches;
    use crate::model::Model;
    use crate::WorkerConfig;

    /// A primary that never answers costs a member page [`NAMES_DEADLINE`], not one request
    /// timeout per batch of names (100 names: four batches of 5 s before): the names are
    /// left out and the page is answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_primary_costs_a_member_page_its_deadline_only() {
        let server = natsd::NatsServer::start_temp().await.unwrap();
        let nats = server.connect().await.unwrap();
        // Takes the primary's requests and never answers them.
        let mut sink = nats.subscribe("chat.svc.*.profile_get").await.unwrap();
        let taken = tokio::spawn(async move {
            let mut n = 0;
            while sink.next().await.is_some() {
                n += 1;
            }
            n
        });
        nats.flush().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = WorkerConfig {
            data_dir: dir.path().to_path_buf(),
            store_cache_mb: 8,
            ..WorkerConfig::default()
        };
        let model = Model::new(crate::open_store(&cfg).await.unwrap());
        let caches = Arc::new(Caches::new(cfg.cache_sizes()));
        let svc = Service::new(model, caches, &cfg, None).unwrap();
        svc.accounts_in_primary(Primary(Peers::new(nats.clone(), 4)));
        let users: Vec<String> = (0..100).map(|n| format!("u{n}")).collect();
        let names = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            svc.display_names(&users),
        )
        .await
        .expect("answered within the page's deadline, far below 20 s")
        .unwrap();
        assert_eq!(names, vec![None; 100]);
        taken.abort();
    }
}
