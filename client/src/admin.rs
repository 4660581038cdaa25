//! The admin API (extension; `[admin] users` only): accounts, disabling one, deleting a
//! room, a user's export, the audit log. `chatmesh admin` is built on these.

use std::io::Write;

use chatmesh_protocol::admin::{AccountState, AuditPage, DeleteProgress, UserPage};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::http::Http;

/// How an export ended: its lines (the `end` line not counted), and whether the server said
/// it was complete (`end`) or stopped on an error (`error`, given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub lines: u64,
    pub complete: bool,
    pub error: Option<String>,
}

impl Http {
    /// `GET /v1/admin/users?after=&limit=`: a page of accounts.
    pub async fn admin_users(&self, after: Option<&str>, limit: u32) -> Result<UserPage> {
        let mut path = format!("/v1/admin/users?limit={limit}");
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// `POST /v1/admin/users/{user}/disable` (or `enable`).
    pub async fn admin_set_disabled(&self, user: &str, disabled: bool) -> Result<AccountState> {
        let verb = if disabled { "disable" } else { "enable" };
        let path = format!("/v1/admin/users/{user}/{verb}");
        self.call(reqwest::Method::POST, &path, None).await
    }

    /// `DELETE /v1/admin/rooms/{room}`: deletes the room (or goes on deleting it: repeat
    /// while the answer is not `done`).
    pub async fn admin_delete_room(&self, room: &str) -> Result<DeleteProgress> {
        let path = format!("/v1/admin/rooms/{room}");
        self.call(reqwest::Method::DELETE, &path, None).await
    }

    /// `GET /v1/admin/audit?before=&limit=`: the audit log, newest first.
    pub async fn admin_audit(&self, before: Option<&str>, limit: u32) -> Result<AuditPage> {
        let mut path = format!("/v1/admin/audit?limit={limit}");
        if let Some(before) = before {
            path.push_str(&format!("&before={before}"));
        }
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// `GET /v1/admin/users/{user}/export`: writes the user's data (JSON Lines, the server's
    /// closing `end` or `error` line left out) to `out` as it arrives.
    pub async fn admin_export(&self, user: &str, out: &mut impl Write) -> Result<ExportSummary> {
        let path = format!("/v1/admin/users/{user}/export");
        let mut res = self.send(reqwest::Method::GET, &path, None).await?;
        let mut summary = ExportSummary {
            lines: 0,
            complete: false,
            error: None,
        };
        let mut partial: Vec<u8> = Vec::new();
        while let Some(chunk) = res.chunk().await? {
            partial.extend_from_slice(&chunk);
            while let Some(at) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=at).collect();
                self.export_line(&line, out, &mut summary)?;
            }
        }
        if !partial.is_empty() {
            self.export_line(&partial, out, &mut summary)?;
        }
        out.flush().map_err(Error::Io)?;
        Ok(summary)
    }

    fn export_line(
        &self,
        line: &[u8],
        out: &mut impl Write,
        summary: &mut ExportSummary,
    ) -> Result<()> {
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| Error::Protocol(format!("an export line is not JSON: {e}")))?;
        match value.get("type").and_then(Value::as_str) {
            Some("end") => summary.complete = true,
            Some("error") => summary.error = Some(value["error"].to_string()),
            _ => {
                out.write_all(line).map_err(Error::Io)?;
                if !line.ends_with(b"\n") {
                    out.write_all(b"\n").map_err(Error::Io)?;
                }
                summary.lines += 1;
            }
        }
        Ok(())
    }
}
