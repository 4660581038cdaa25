//! The audit log: one store record per admin action or refused attempt (who, what, target,
//! when, outcome, client IP), newest first, kept `[admin] audit_retention_days` (the
//! retention sweep deletes older ones), and the same as a log line of tracing target
//! `audit` for a log collector. A failed audit write is logged and counted, never hidden:
//! the action it records has happened (or was refused) either way.

use std::sync::atomic::{AtomicU64, Ordering};

use chatmesh_protocol::admin::{
    AuditEntry, AuditPage, AuditRequest, DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE,
};
use chatmesh_protocol::message::now_ms;
use chatmesh_protocol::ApiError;
use tracing::{error, info};

use super::{Act, Service};
use crate::model::admin::{audit_all, audit_key, audit_key_of};
use crate::model::Model;
use crate::store::WriteBatch;

/// Longest `target` and `detail` kept in an entry, bytes.
const MAX_FIELD: usize = 256;

/// The actions the audit log names.
const ACTIONS: [&str; 6] = [
    "list_users",
    "disable",
    "enable",
    "delete_room",
    "export_user",
    "audit",
];

/// `action` if it is one the audit log knows.
pub(super) fn action_name(action: &str) -> Option<&'static str> {
    ACTIONS.iter().find(|a| **a == action).copied()
}

/// This process's part of every audit key: a random node id and a counter.
#[derive(Debug)]
pub(in crate::service) struct AuditLog {
    node: u64,
    next: AtomicU64,
}

impl Default for AuditLog {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(u128::from(now_ms()));
        h.write_u32(std::process::id());
        Self {
            node: h.finish(),
            next: AtomicU64::new(0),
        }
    }
}

fn clip(text: &str) -> String {
    let mut end = text.len().min(MAX_FIELD);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl Service {
    /// Appends an entry for `act` with `outcome` to the audit log and the `audit` log target.
    pub(super) async fn audit(&self, act: &Act<'_>, outcome: &str, detail: &str) {
        let entry = AuditEntry {
            id: String::new(),
            ts: now_ms(),
            actor: act.caller.actor.clone(),
            action: act.action.to_owned(),
            target: clip(act.target),
            outcome: outcome.to_owned(),
            ip: clip(&act.caller.ip),
            detail: clip(detail),
        };
        info!(
            target: "audit",
            actor = %entry.actor,
            action = %entry.action,
            target_name = %entry.target,
            outcome = %entry.outcome,
            ip = %entry.ip,
            detail = %entry.detail,
            "admin action"
        );
        let log = &self.inner.admin.audit;
        let key = audit_key(entry.ts, log.node, log.next.fetch_add(1, Ordering::Relaxed));
        let mut batch = WriteBatch::new();
        Model::put_audit(&mut batch, key, &entry);
        if let Err(e) = self.model().write(batch).await {
            metrics::counter!("chatmesh_audit_write_errors_total").increment(1);
            error!(target: "audit", error = %chatmesh_protocol::error::Chain(&e), actor = %entry.actor, action = %entry.action, "could not write an audit entry");
        }
    }

    /// A page of the audit log, newest first.
    pub(super) async fn read_audit(&self, req: AuditRequest) -> Result<AuditPage, ApiError> {
        let limit = if req.limit == 0 {
            DEFAULT_AUDIT_PAGE
        } else {
            req.limit
        };
        if limit > MAX_AUDIT_PAGE {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_AUDIT_PAGE}"
            )));
        }
        let range = match &req.before {
            None => audit_all(),
            Some(id) => {
                let mut start = audit_key_of(id)
                    .ok_or_else(|| ApiError::bad_request("before is not an audit entry id"))?;
                start.push(0);
                start..audit_all().end
            }
        };
        let act = Act {
            caller: &req.caller,
            action: "audit",
            target: "",
        };
        // Reading the log is not itself recorded (only a refused attempt is).
        self.as_admin(
            act,
            |_| None,
            || async {
                let (entries, more) = self.model().audit(range, limit as usize).await?;
                Ok(AuditPage {
                    entries,
                    more,
                    unavailable: Vec::new(),
                })
            },
        )
        .await
    }
}
