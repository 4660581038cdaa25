//! The server admin role and its operations (extension, docs/PROTOCOL.md "Admin API"):
//! who is an admin (`[admin]` of the config file, never granted through the API), the
//! requests a gateway forwards to the workers, and the audit log's entries.
//!
//! Every request names its `actor` (the caller the gateway authenticated) and the client
//! `ip` the gateway saw; the worker checks the actor against its own copy of `[admin]`
//! before it does anything, so a gateway with a stale or wrong list cannot grant the role,
//! and writes every attempt (done or refused) to the audit log.

use serde::{Deserialize, Serialize};

use crate::service::{Done, Op, Role};
use crate::validate_name;

/// Shortest `[admin] bootstrap_token` accepted.
pub const MIN_BOOTSTRAP_TOKEN_CHARS: usize = 32;
/// Longest admin bootstrap token (configured or sent), in bytes.
pub const MAX_ADMIN_TOKEN_BYTES: usize = 256;

/// `[admin]`: who the server admins are, and how long their actions stay in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// User names of the server admins (none by default: the admin API refuses everyone).
    /// A listed name without an account can be registered only with `bootstrap_token`.
    pub users: Vec<String>,
    /// The secret with which a name of `users` that has no account yet is registered
    /// (`POST /v1/auth/register` with `admin_token`, or `chatmesh admin bootstrap`); at
    /// least 32 characters. Unset: such a name cannot be registered at all (register the
    /// account first, then list it). Only workers read it.
    pub bootstrap_token: Option<String>,
    /// Days an audit entry is kept (the retention sweep deletes older ones; 0: for ever).
    pub audit_retention_days: u64,
    /// Most messages of one room a user export reads, newest first, looking for the user's
    /// own (`GET /v1/admin/users/{user}/export`): bounds the work of one export.
    pub export_scan_per_room: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            users: Vec::new(),
            bootstrap_token: None,
            audit_retention_days: 365,
            export_scan_per_room: 100_000,
        }
    }
}

impl AdminConfig {
    /// Is `user` a server admin?
    pub fn is_admin(&self, user: &str) -> bool {
        self.users.iter().any(|u| u == user)
    }

    /// Every problem with these settings.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for user in &self.users {
            if validate_name("user name", user).is_err() {
                out.push(format!("admin.users: {user:?} is not a valid user name"));
            }
        }
        if let Some(token) = &self.bootstrap_token {
            if token.chars().count() < MIN_BOOTSTRAP_TOKEN_CHARS
                || token.len() > MAX_ADMIN_TOKEN_BYTES
            {
                out.push(format!(
                    "admin.bootstrap_token must have {MIN_BOOTSTRAP_TOKEN_CHARS} to {MAX_ADMIN_TOKEN_BYTES} characters (e.g. `openssl rand -hex 32`)"
                ));
            }
        }
        if self.audit_retention_days > 36_500 {
            out.push("admin.audit_retention_days must be at most 36500 (0: for ever)".into());
        }
        if !(1..=100_000_000).contains(&self.export_scan_per_room) {
            out.push("admin.export_scan_per_room must be between 1 and 100000000".into());
        }
        out
    }
}

/// Most users in one page of `GET /v1/admin/users`, and the default.
pub const MAX_USERS_PAGE: u32 = 1_000;
pub const DEFAULT_USERS_PAGE: u32 = 100;
/// Most audit entries in one page of `GET /v1/admin/audit`, and the default.
pub const MAX_AUDIT_PAGE: u32 = 1_000;
pub const DEFAULT_AUDIT_PAGE: u32 = 100;

/// Who asks, from where: part of every admin request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub actor: String,
    /// The client IP the gateway saw (after trusted proxies).
    pub ip: String,
}

/// A page of accounts, in the store's key order, after the account `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListUsersRequest {
    #[serde(flatten)]
    pub caller: Caller,
    pub after: Option<String>,
    pub limit: u32,
}

/// One account as an admin sees it (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub user: String,
    pub disabled: bool,
    /// When the account was registered, ms since the Unix epoch.
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPage {
    pub users: Vec<AccountInfo>,
    /// More accounts follow the last one (ask again with `after` = its name).
    pub more: bool,
}

/// Disables (`disabled: true`) or enables an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetDisabledRequest {
    #[serde(flatten)]
    pub caller: Caller,
    pub user: String,
    pub disabled: bool,
}

/// The account's state after a disable or an enable, with its token generation (a
/// disable revokes every token issued so far).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    pub user: String,
    pub disabled: bool,
    pub gen: u64,
}

/// One bounded step of deleting a room; repeated until `done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRoomRequest {
    #[serde(flatten)]
    pub caller: Caller,
    pub room: String,
}

/// How far a room's deletion got (totals since it started).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteProgress {
    pub room: String,
    /// The phase the next step runs (`done` once nothing is left).
    pub phase: String,
    pub done: bool,
    pub members: u64,
    pub messages: u64,
    pub cursors: u64,
}

/// Where a user export continues: the section and the key to go on from (opaque to the
/// gateway, which hands it back).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCursor {
    pub section: u32,
    /// Which of the user's rooms the messages section is in.
    #[serde(default)]
    pub room: u32,
    /// Hex of the next store key to read in the section (empty: its start).
    #[serde(default)]
    pub key: String,
    /// Messages of the current room read so far.
    #[serde(default)]
    pub scanned: u64,
}

/// One page of a user export, from `at` (the start when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    #[serde(flatten)]
    pub caller: Caller,
    pub user: String,
    pub at: Option<ExportCursor>,
}

/// Lines of a user export (JSON objects, each with a `type`), and where to go on (`None`:
/// the export is complete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPage {
    pub lines: Vec<serde_json::Value>,
    pub next: Option<ExportCursor>,
}

/// A page of the audit log, newest first, older than the entry `before` (an entry's `id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRequest {
    #[serde(flatten)]
    pub caller: Caller,
    pub before: Option<String>,
    pub limit: u32,
}

/// One admin action (or attempt), as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unique; the `before` of the next page.
    #[serde(default)]
    pub id: String,
    /// When, ms since the Unix epoch.
    pub ts: u64,
    /// Who (the authenticated caller).
    pub actor: String,
    /// What: `list_users`, `disable`, `enable`, `delete_room`, `export_user`, `audit`.
    pub action: String,
    /// The user or room acted on (empty for listings).
    #[serde(default)]
    pub target: String,
    /// `ok`, or the error code the caller got (`forbidden` for a refused attempt).
    pub outcome: String,
    /// The client IP the gateway saw.
    pub ip: String,
    /// More about it (a refusal's reason, a deletion's totals).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub more: bool,
    /// With regions that run workers of their own: those whose part of the log did not
    /// answer (their entries are missing from this page).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<String>,
}

/// A gateway refused an admin request itself (the caller is not an admin): the worker
/// writes it to the audit log. Sent without waiting for an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRequest {
    #[serde(flatten)]
    pub caller: Caller,
    pub action: String,
    pub target: String,
}

/// One membership of an exported user (a line of the export).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportMembership {
    pub room: String,
    pub role: Role,
}

crate::service::op!(ListUsers, "admin_users", ListUsersRequest, UserPage);
crate::service::op!(
    SetDisabled,
    "admin_disable",
    SetDisabledRequest,
    AccountState
);
crate::service::op!(
    DeleteRoomStep,
    "admin_room_delete",
    DeleteRoomRequest,
    DeleteProgress
);
crate::service::op!(ExportUser, "admin_export", ExportRequest, ExportPage);
crate::service::op!(ReadAudit, "admin_audit", AuditRequest, AuditPage);
crate::service::op!(AuditRefusal, "admin_refused", RefusedRequest, Done);

/// Every admin operation's subject token starts with this (the worker routes them as one).
pub const OP_PREFIX: &str = "admin_";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_checks_names_and_bounds() {
        assert!(AdminConfig::default().problems().is_empty());
        let bad = AdminConfig {
            users: vec!["alice".into(), "not a name".into()],
            bootstrap_token: Some("too short".into()),
            audit_retention_days: 40_000,
            export_scan_per_room: 0,
        };
        let p = bad.problems();
        assert_eq!(p.len(), 4, "{p:?}");
        let good = AdminConfig {
            bootstrap_token: Some("x".repeat(MIN_BOOTSTRAP_TOKEN_CHARS)),
            ..AdminConfig::default()
        };
        assert!(good.problems().is_empty());
        assert!(bad.is_admin("alice") && !bad.is_admin("bob"));
    }

    #[test]
    fn the_caller_is_flattened_into_each_request() {
        let req = SetDisabledRequest {
            caller: Caller {
                actor: "root".into(),
                ip: "127.0.0.1".into(),
            },
            user: "bob".into(),
            disabled: true,
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["actor"], "root");
        assert_eq!(v["ip"], "127.0.0.1");
        let back: SetDisabledRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, req);
    }
}
