//! A user's data, online, as JSON Lines (`GET /v1/admin/users/{user}/export`), one bounded
//! page per request: the gateway asks again from the page's `next` until there is none.
//!
//! Lines, in order: `account` (record without the password hash), `membership` (room, role),
//! `cursor` (room, seq), `push_target` (id, kind, label: never the endpoint's keys),
//! `push_settings`, `block` (user, ts: the users it blocked), `invitation` (room, by, role,
//! ts: the invitations it holds), then `message` for each message the user sent in the rooms it is a
//! member of or has a read cursor in (a room it left keeps its cursor): at most
//! [`MAX_ROOMS`] of each, and in each room the newest `[admin] export_scan_per_room`
//! messages are read (newest first), so one export's work is bounded; a room whose scan
//! stopped there gets a `scan_limit` line. A page holds at most [`PAGE_KEYS`] store keys
//! read and about [`PAGE_BYTES`] of lines (it ends at the first message past them, in the
//! middle of the keys it read if need be), below the bus's payload limit. With
//! `mesh.regional_workers` the gateway asks the primary's workers, then each region's for
//! the user's part in that region's rooms (no `account` or push lines there).

use chatmesh_protocol::admin::{ExportCursor, ExportMembership, ExportPage, ExportRequest};
use chatmesh_protocol::blocks::MAX_BLOCKS;
use chatmesh_protocol::invitations::MAX_PENDING;
use chatmesh_protocol::ApiError;
use serde::Serialize;
use serde_json::{json, Value};

use super::{valid, Act, Service};
use crate::model::{keys, records, StoredMessage};
use crate::store::{Direction, KvStore};

/// Rooms of each kind (memberships, cursors) an export covers.
pub const MAX_ROOMS: usize = 1_000;
/// Store keys read per page.
const PAGE_KEYS: usize = 2_000;
/// Bytes of lines per page, about.
const PAGE_BYTES: usize = 256 * 1024;

const ACCOUNT: u32 = 0;
const MEMBERSHIPS: u32 = 1;
const CURSORS: u32 = 2;
const PUSH: u32 = 3;
const MESSAGES: u32 = 4;

fn line<T: Serialize>(kind: &str, value: &T) -> Value {
    let mut v = serde_json::to_value(value).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("type".into(), Value::String(kind.into()));
    }
    v
}

impl Service {
    pub(super) async fn export_user(&self, req: ExportRequest) -> Result<ExportPage, ApiError> {
        valid("user name", &req.user)?;
        let act = Act {
            caller: &req.caller,
            action: "export_user",
            target: &req.user,
        };
        let first = req.at.is_none();
        // The first page says it started; later pages only if they fail.
        let record =
            move |r: &Result<ExportPage, ApiError>| (first || r.is_err()).then(String::new);
        self.as_admin(act, record, || {
            self.export_page(&req.user, req.at.clone().unwrap_or_default())
        })
        .await
    }

    async fn export_page(&self, user: &str, mut at: ExportCursor) -> Result<ExportPage, ApiError> {
        let mut lines = Vec::new();
        match at.section {
            // A region's own workers keep no accounts or push targets: their part of an
            // export is the user's memberships, cursors and messages in their rooms.
            ACCOUNT | PUSH if !self.keeps_accounts() => {
                at = ExportCursor {
                    section: if at.section == ACCOUNT {
                        MEMBERSHIPS
                    } else {
                        MESSAGES
                    },
                    ..ExportCursor::default()
                };
            }
            ACCOUNT => {
                let Some(rec) = self.model().user(user).await? else {
                    return Err(ApiError::not_found("no such account"));
                };
                lines.push(json!({
                    "type": "account",
                    "user": user,
                    "created_at": rec.created,
                    "disabled": rec.disabled,
                    "display_name": rec.display_name,
                    "token_generation": rec.gen,
                }));
                at = ExportCursor {
                    section: MEMBERSHIPS,
                    ..ExportCursor::default()
                };
            }
            MEMBERSHIPS => {
                for (room, role) in self.model().rooms_of(user, MAX_ROOMS).await? {
                    lines.push(line("membership", &ExportMembership { room, role }));
                }
                at.section = CURSORS;
            }
            CURSORS => {
                for (room, c) in self.model().cursors_of(user, MAX_ROOMS).await? {
                    lines.push(json!({"type": "cursor", "room": room, "seq": c.seq}));
                }
                at.section = PUSH;
            }
            PUSH => {
                for (id, rec) in self.model().push_targets(user, MAX_ROOMS).await? {
                    lines.push(line("push_target", &super::super::push::info(id, &rec)));
                }
                let settings = self.model().push_settings(user).await?;
                lines.push(line("push_settings", &settings));
                for (other, rec) in self.model().blocks_after(user, None, MAX_BLOCKS).await? {
                    lines.push(json!({"type": "block", "user": other, "ts": rec.ts}));
                }
                let held = self.model().invitations_after(user, None, MAX_PENDING);
                for (room, rec) in held.await? {
                    let (by, role, ts) = (rec.by, rec.role, rec.ts);
                    let line = json!({"type": "invitation", "room": room, "by": by, "role": role, "ts": ts});
                    lines.push(line);
                }
                at.section = MESSAGES;
            }
            MESSAGES => return self.export_messages(user, at).await,
            _ => return Err(ApiError::bad_request("not an export cursor")),
        }
        Ok(ExportPage {
            lines,
            next: Some(at),
        })
    }

    /// The rooms whose messages an export reads: memberships, then rooms with a cursor.
    async fn export_rooms(&self, user: &str) -> Result<Vec<String>, ApiError> {
        let mut rooms: Vec<String> = self
            .model()
            .rooms_of(user, MAX_ROOMS)
            .await?
            .into_iter()
            .map(|(room, _)| room)
            .collect();
        for (room, _) in self.model().cursors_of(user, MAX_ROOMS).await? {
            if !rooms.contains(&room) {
                rooms.push(room);
            }
        }
        Ok(rooms)
    }

    async fn export_messages(
        &self,
        user: &str,
        mut at: ExportCursor,
    ) -> Result<ExportPage, ApiError> {
        let rooms = self.export_rooms(user).await?;
        let cap = self.admin_cfg().export_scan_per_room;
        let (mut lines, mut bytes, mut read) = (Vec::new(), 0usize, 0usize);
        while let Some(room) = rooms.get(at.room as usize) {
            let all = keys::messages_of(room);
            let start = if at.key.is_empty() {
                all.start
            } else {
                hex::decode(&at.key).map_err(|_| ApiError::bad_request("not an export cursor"))?
            };
            let left = usize::try_from(cap.saturating_sub(at.scanned)).unwrap_or(usize::MAX);
            let want = (PAGE_KEYS - read).min(left);
            let pairs = if want == 0 {
                Vec::new()
            } else {
                self.model()
                    .store()
                    .scan(start..all.end, Direction::Forward, want)
                    .await?
            };
            // The keys taken into this page: all that were read, unless the page's bytes
            // ran out first (a message is at most a body and its edits, well under the
            // bus's limit, so one more than the budget still fits).
            let mut taken = 0;
            for (k, v) in &pairs {
                if bytes >= PAGE_BYTES {
                    break;
                }
                taken += 1;
                let m: StoredMessage = records::decode(k, v)?;
                if m.from != user {
                    continue;
                }
                let seq = keys::seq_of_message(k).unwrap_or(0);
                let mut l = line("message", &m);
                if let Value::Object(map) = &mut l {
                    map.insert("room".into(), json!(room));
                    map.insert("seq".into(), json!(seq));
                }
                bytes += l.to_string().len();
                lines.push(l);
            }
            read += taken;
            at.scanned += taken as u64;
            let room_done = taken == pairs.len() && (pairs.len() < want || want == 0);
            let pairs = &pairs[..taken];
            if room_done {
                if at.scanned >= cap && want == 0 {
                    lines.push(json!({"type": "scan_limit", "room": room, "scanned": at.scanned}));
                }
                at = ExportCursor {
                    section: MESSAGES,
                    room: at.room + 1,
                    ..ExportCursor::default()
                };
            } else if let Some((last, _)) = pairs.last() {
                let mut next = last.clone();
                next.push(0);
                at.key = hex::encode(next);
            }
            if read >= PAGE_KEYS || bytes >= PAGE_BYTES {
                return Ok(ExportPage {
                    lines,
                    next: Some(at),
                });
            }
        }
        Ok(ExportPage { lines, next: None })
    }
}
