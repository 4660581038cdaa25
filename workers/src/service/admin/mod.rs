//! The admin operations (`chatmesh_protocol::admin`): list accounts, disable and enable one,
//! delete a room, export a user's data, read the audit log.
//!
//! Who is a server admin is `[admin] users` of this worker's own config: every operation
//! checks its `actor` here, whatever the gateway decided, so the role is never taken from a
//! request. Every attempt, done or refused, is written to the audit log (`audit.rs`) with
//! the client IP the gateway saw; reading the audit log itself is not recorded.

mod audit;
mod delete;
mod delete_files;
mod export;
mod users;

use std::future::Future;
use std::sync::OnceLock;

use chatmesh_protocol::admin::{self as ops, AdminConfig, Caller, OP_PREFIX};
use chatmesh_protocol::service::{Credentials, Done, Op};
use chatmesh_protocol::{ApiError, ErrorCode};

use super::dispatch::call;
use super::{valid, Service};

pub(super) use audit::AuditLog;

/// The admin settings of this worker: `[admin]`, set once at start.
#[derive(Debug, Default)]
pub(super) struct AdminState {
    cfg: OnceLock<AdminConfig>,
    pub(super) audit: AuditLog,
}

/// The error of a login (right password) to a disabled account.
pub(super) fn account_disabled() -> ApiError {
    ApiError::forbidden("this account is disabled; ask a server admin")
}

/// Whether two secrets are equal, in time that does not depend on where they differ (their
/// digests are compared).
fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// An admin request's action and target, for the audit log.
struct Act<'a> {
    caller: &'a Caller,
    action: &'static str,
    target: &'a str,
}

impl Service {
    /// Sets `[admin]` (once; later calls are ignored). Without it nobody is an admin.
    pub fn enable_admin(&self, cfg: AdminConfig) {
        let _ = self.inner.admin.cfg.set(cfg);
    }

    /// Says which `[admin] users` names have no account here, and how they can be
    /// registered (only with the bootstrap token; without one, not at all).
    pub async fn warn_unregistered_admins(&self) {
        let cfg = self.admin_cfg();
        for user in cfg.users {
            match self.model().user(&user).await {
                Ok(Some(_)) => {}
                Ok(None) if cfg.bootstrap_token.is_some() => tracing::info!(
                    user,
                    "[admin] users names an account that does not exist yet: register it with \
                     the admin bootstrap token (`chatmesh admin bootstrap`)"
                ),
                Ok(None) => tracing::warn!(
                    user,
                    "[admin] users names an account that does not exist, and no \
                     [admin] bootstrap_token is set: nobody can register it; unlist it, \
                     register it, then list it again (or set a bootstrap token)"
                ),
                Err(e) => tracing::warn!(user, error = %e, "could not look up an admin's account"),
            }
        }
    }

    /// Whether `req` may register its name: a name of `[admin] users` only with the admin
    /// bootstrap token (whoever registers it is a server admin), and the token only with
    /// such a name.
    pub(super) fn check_admin_registration(&self, req: &Credentials) -> Result<(), ApiError> {
        let cfg = self.admin_cfg();
        let listed = cfg.is_admin(&req.username);
        if !listed {
            return match req.admin_token {
                None => Ok(()),
                Some(_) => Err(ApiError::bad_request(
                    "admin_token is only for a name listed in [admin] users",
                )),
            };
        }
        let given = req.admin_token.as_deref();
        match (given, cfg.bootstrap_token.as_deref()) {
            (Some(given), Some(token)) if same_secret(given, token) => return Ok(()),
            _ => {}
        }
        metrics::counter!("chatmesh_admin_registrations_refused_total").increment(1);
        let why = match (given, cfg.bootstrap_token.is_some()) {
            (_, false) => "and this deployment has no admin bootstrap token: the operator registers the account before listing it",
            (None, true) => "register it with the admin bootstrap token (admin_token)",
            (Some(_), true) => "the admin bootstrap token is wrong",
        };
        // Logged, not kept in the audit log: refusals come at the sign-up rate of anyone.
        tracing::warn!(
            target: "audit",
            user = %req.username,
            ip = req.ip.as_deref().unwrap_or(""),
            why,
            "a server admin's name was refused at registration"
        );
        Err(ApiError::forbidden(format!(
            "this name is reserved for a server admin; {why}"
        )))
    }

    /// Writes a server admin's registration (with the bootstrap token) to the audit log.
    pub(super) async fn audit_admin_registration(&self, user: &str, ip: &str) {
        let caller = Caller {
            actor: user.to_owned(),
            ip: ip.to_owned(),
        };
        let act = Act {
            caller: &caller,
            action: "register_admin",
            target: user,
        };
        self.audit(&act, "ok", "registered with the admin bootstrap token")
            .await;
    }

    pub(super) fn admin_cfg(&self) -> AdminConfig {
        self.inner.admin.cfg.get().cloned().unwrap_or_default()
    }

    /// Runs admin operation `op` (its name starts with `admin_`), `None` if it is none.
    pub(super) async fn dispatch_admin(
        &self,
        op: &str,
        payload: &[u8],
    ) -> Option<(Vec<u8>, &'static str)> {
        if !op.starts_with(OP_PREFIX) {
            return None;
        }
        Some(match op {
            ops::ListUsers::NAME => {
                call::<ops::ListUsers, _>(payload, |r| self.list_users(r)).await
            }
            ops::SetDisabled::NAME => {
                call::<ops::SetDisabled, _>(payload, |r| self.set_disabled(r)).await
            }
            ops::DeleteRoomStep::NAME => {
                call::<ops::DeleteRoomStep, _>(payload, |r| self.delete_room_step(r)).await
            }
            ops::ExportUser::NAME => {
                call::<ops::ExportUser, _>(payload, |r| self.export_user(r)).await
            }
            ops::ReadAudit::NAME => {
                call::<ops::ReadAudit, _>(payload, |r| self.read_audit(r)).await
            }
            ops::AuditRefusal::NAME => {
                call::<ops::AuditRefusal, _>(payload, |r| self.audit_refusal(r)).await
            }
            _ => return None,
        })
    }

    /// Runs `work` if the caller is a server admin, and writes the outcome to the audit
    /// log when `record` says so (given the outcome).
    async fn as_admin<T, Fut>(
        &self,
        act: Act<'_>,
        record: impl FnOnce(&Result<T, ApiError>) -> Option<String>,
        work: impl FnOnce() -> Fut,
    ) -> Result<T, ApiError>
    where
        Fut: Future<Output = Result<T, ApiError>>,
    {
        valid("user name", &act.caller.actor)?;
        if !self.admin_cfg().is_admin(&act.caller.actor) {
            let refused = ApiError::forbidden("only a server admin may do this");
            self.audit(&act, ErrorCode::Forbidden.as_str(), "not a server admin")
                .await;
            return Err(refused);
        }
        let result = work().await;
        if let Some(detail) = record(&result) {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.code.as_str(),
            };
            let detail = match &result {
                Err(e) if detail.is_empty() => e.message.clone(),
                _ => detail,
            };
            self.audit(&act, outcome, &detail).await;
        }
        result
    }

    /// A gateway refused a caller that is not an admin: record it.
    async fn audit_refusal(&self, req: ops::RefusedRequest) -> Result<Done, ApiError> {
        valid("user name", &req.caller.actor)?;
        let action = audit::action_name(&req.action)
            .ok_or_else(|| ApiError::bad_request("unknown admin action"))?;
        let act = Act {
            caller: &req.caller,
            action,
            target: &req.target,
        };
        self.audit(
            &act,
            ErrorCode::Forbidden.as_str(),
            "not a server admin (gateway)",
        )
        .await;
        Ok(Done {})
    }
}
