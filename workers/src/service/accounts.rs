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

    /// The display names of `users`, in order; a name that cannot be read is left out
    /// (a member list is still worth showing while the primary is cut off).
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
        let names = futures::stream::iter(users.to_vec())
            .map(|user| {
                let primary = primary.clone();
                async move {
                    let profile = primary.profile(&user).await.ok().flatten();
                    profile.and_then(|p| p.display_name)
                }
            })
            .buffered(NAMES_IN_FLIGHT)
            .collect()
            .await;
        Ok(names)
    }
}
