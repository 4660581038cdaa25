//! The admin API (extension, docs/PROTOCOL.md "Admin API"): `/v1/admin/...`, for the server
//! admins of `[admin] users` only.
//!
//! The caller is authenticated as for any call (no token: 401); a caller that is not an
//! admin gets 403 `forbidden` here, and the refusal is sent to the workers' audit log
//! (fire and forget). The workers check the role again: a gateway never grants it. A room
//! deletion is run as bounded steps until done, for at most [`DELETE_DEADLINE`]; a deletion
//! still going then answers 202 with its progress (the same request goes on with it). An
//! export is streamed as JSON Lines, one worker page after another, and ends with an `end`
//! line (or an `error` line if a page failed midway).

use std::time::Duration;

use futures::StreamExt as _;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response};

use chatmesh_protocol::admin::{
    AuditPage, AuditRefusal, AuditRequest, Caller, DeleteRoomRequest, DeleteRoomStep, ExportCursor,
    ExportRequest, ExportUser, ListUsers, ListUsersRequest, ReadAudit, RefusedRequest, SetDisabled,
    SetDisabledRequest, DEFAULT_AUDIT_PAGE, DEFAULT_USERS_PAGE, MAX_AUDIT_PAGE, MAX_USERS_PAGE,
};
use chatmesh_protocol::ApiError;

use super::reply::{self, Body};
use super::request::{caller, name, query_pairs, Answer, Refusal};
use crate::services::Services;
use crate::state::AppState;

/// Longest a `DELETE /v1/admin/rooms/{room}` runs steps before it answers 202.
pub const DELETE_DEADLINE: Duration = Duration::from_secs(20);

/// Routes `/v1/admin/...` (segments after `admin`).
pub(super) async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    seg: &[&str],
) -> Response<Body> {
    route(state, req, seg)
        .await
        .unwrap_or_else(Refusal::response)
}

async fn route(state: &AppState, req: Request<Incoming>, seg: &[&str]) -> Answer {
    let (action, target) = match (req.method(), seg) {
        (&Method::GET, ["users"]) => ("list_users", ""),
        (&Method::POST, ["users", user, "disable"]) => ("disable", *user),
        (&Method::POST, ["users", user, "enable"]) => ("enable", *user),
        (&Method::GET, ["users", user, "export"]) => ("export_user", *user),
        (&Method::DELETE, ["rooms", room]) => ("delete_room", *room),
        (&Method::GET, ["audit"]) => ("audit", ""),
        (
            _,
            ["users"] | ["users", _, "disable" | "enable" | "export"] | ["rooms", _] | ["audit"],
        ) => return Err(ApiError::bad_request("method not allowed here").into()),
        _ => return Err(ApiError::not_found("no such endpoint").into()),
    };
    let actor = caller(state, &req).await?;
    let who = Caller {
        actor,
        ip: super::client_ip(&req).to_string(),
    };
    if !state.is_admin(&who.actor) {
        let refused = RefusedRequest {
            caller: who.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
        };
        if state.throttle.refusal_audited(&who.actor).await {
            state
                .services
                .notify::<AuditRefusal>(&who.actor, &refused)
                .await;
        } else {
            metrics::counter!("chatmesh_admin_refusals_unaudited_total").increment(1);
        }
        return Err(ApiError::forbidden("only a server admin may do this").into());
    }
    match action {
        "list_users" => list_users(state, &req, who).await,
        "disable" | "enable" => set_disabled(state, who, target, action == "disable").await,
        "export_user" => export(state, who, target).await,
        "delete_room" => delete_room(state, who, target).await,
        _ => audit(state, &req, who).await,
    }
}

/// `?after=NAME&limit=N` or `?before=ID&limit=N`: the cursor and the limit (`max` at most).
fn page<'r>(
    req: &'r Request<Incoming>,
    cursor: &str,
    default: u32,
    max: u32,
) -> Result<(Option<&'r str>, u32), ApiError> {
    let (mut at, mut limit) = (None, default);
    for (k, v) in query_pairs(req) {
        if k == cursor {
            at = Some(v);
        } else if k == "limit" {
            limit = v
                .parse::<u32>()
                .map_err(|_| ApiError::bad_request("limit must be a number"))?;
        } else {
            return Err(ApiError::bad_request(format!("unknown parameter {k}")));
        }
    }
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {max}"
        )));
    }
    Ok((at, limit))
}

async fn list_users(state: &AppState, req: &Request<Incoming>, who: Caller) -> Answer {
    let (after, limit) = page(req, "after", DEFAULT_USERS_PAGE, MAX_USERS_PAGE)?;
    if let Some(after) = after {
        name("after", after)?;
    }
    let key = who.actor.clone();
    let ask = ListUsersRequest {
        caller: who,
        after: after.map(str::to_owned),
        limit,
    };
    let page = state.services.ask::<ListUsers>(&key, &ask).await?;
    Ok(reply::json(200, &page))
}

async fn set_disabled(state: &AppState, who: Caller, user: &str, disabled: bool) -> Answer {
    name("user", user)?;
    let ask = SetDisabledRequest {
        caller: who,
        user: user.to_owned(),
        disabled,
    };
    let account = state.services.ask::<SetDisabled>(user, &ask).await?;
    // The worker's event does the same on every gateway; this one need not wait for it.
    state
        .revocation
        .changed(user, account.gen, account.disabled)
        .await;
    Ok(reply::json(200, &account))
}

async fn delete_room(state: &AppState, who: Caller, room: &str) -> Answer {
    name("room", room)?;
    let ask = DeleteRoomRequest {
        caller: who,
        room: room.to_owned(),
    };
    let give_up = tokio::time::Instant::now() + DELETE_DEADLINE;
    loop {
        let progress = state.services.ask::<DeleteRoomStep>(room, &ask).await?;
        if progress.done {
            return Ok(reply::json(200, &progress));
        }
        if tokio::time::Instant::now() >= give_up {
            return Ok(reply::json(202, &progress));
        }
    }
}

async fn audit(state: &AppState, req: &Request<Incoming>, who: Caller) -> Answer {
    let (before, limit) = page(req, "before", DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE)?;
    if before.is_some_and(|b| b.is_empty() || b.len() > 64) {
        return Err(ApiError::bad_request("before is not an audit entry id").into());
    }
    let key = who.actor.clone();
    let ask = AuditRequest {
        caller: who,
        before: before.map(str::to_owned),
        limit,
    };
    let regions = state.services.topology().regional_workers().to_vec();
    if regions.is_empty() {
        let page = state.services.ask::<ReadAudit>(&key, &ask).await?;
        return Ok(reply::json(200, &page));
    }
    // Each region with workers of its own keeps the log of what its workers did (a room
    // deleted there, its part of an export): asked beside the primary's, and merged.
    let sep = chatmesh_protocol::subjects::HOME_SEP;
    let keys = std::iter::once((None, key.clone())).chain(
        regions
            .into_iter()
            .map(|r| (Some(r.clone()), format!("{r}{sep}{key}"))),
    );
    let asks = keys.map(|(region, key)| {
        let (services, ask) = (&state.services, &ask);
        async move { (region, services.call::<ReadAudit>(&key, ask).await) }
    });
    let mut pages = Vec::new();
    let mut unavailable = Vec::new();
    for (region, answer) in futures::future::join_all(asks).await {
        match (region, answer) {
            (_, Ok(Ok(page))) => pages.push(page),
            // The primary's answer decides: a refusal there (not an admin) or its absence
            // is the answer.
            (None, Ok(Err(e))) => return Err(e.into()),
            (None, Err(e)) => return Err(e.api().into()),
            (Some(region), Ok(Err(e))) => {
                tracing::warn!(region, error = %e.message, "a region's audit log refused");
                unavailable.push(region);
            }
            (Some(region), Err(e)) => {
                tracing::warn!(region, error = %crate::error::Chain(&e), "a region's audit log is unavailable");
                unavailable.push(region);
            }
        }
    }
    let mut page = merge_audit(pages, limit as usize);
    page.unavailable = unavailable;
    Ok(reply::json(200, &page))
}

/// Merges one page of each region's audit log (each newest first, `before` the same id)
/// into one page, newest first, of at most `limit` entries. Ids sort newest first (their
/// key starts with the time counted down), across regions too. The page goes no further
/// than the last entry of any region with more (its next entries come after that, unread):
/// the next page, `before` this one's last entry, skips none of any region's.
fn merge_audit(pages: Vec<AuditPage>, limit: usize) -> AuditPage {
    let bound = pages
        .iter()
        .filter(|p| p.more)
        .filter_map(|p| p.entries.last().map(|e| e.id.clone()))
        .min();
    let mut more = pages.iter().any(|p| p.more);
    let mut entries: Vec<_> = pages.into_iter().flat_map(|p| p.entries).collect();
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(bound) = bound {
        entries.retain(|e| e.id <= bound);
    }
    if entries.len() > limit {
        entries.truncate(limit);
        more = true;
    }
    AuditPage {
        entries,
        more,
        unavailable: Vec::new(),
    }
}

/// Streams the export: the first page is asked before answering (so a refusal or an
/// unknown user is an HTTP error), the rest while the body is read.
async fn export(state: &AppState, who: Caller, user: &str) -> Answer {
    name("user", user)?;
    let ask = ExportRequest {
        caller: who,
        user: user.to_owned(),
        at: None,
    };
    let first = state.services.ask::<ExportUser>(user, &ask).await?;
    // Regions with workers of their own keep the user's part in their rooms: asked after
    // the primary's (docs/REGIONS.md section 12).
    let regions = state.services.topology().regional_workers().to_vec();
    let start = Pages {
        services: state.services.clone(),
        key: user.to_owned(),
        regions: regions.into(),
        ask,
        next: first.next.clone(),
        lines: first.lines.len() as u64,
        ended: false,
    };
    let head = Bytes::from(jsonl(&first.lines));
    let rest = futures::stream::unfold(start, |mut pages| async move {
        let chunk = pages.next_chunk().await?;
        Some((chunk, pages))
    });
    let body = futures::stream::once(async move { head })
        .chain(rest)
        .map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b)));
    let body = sync_wrapper::SyncStream::new(body);
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(body)));
    if let Ok(v) = "application/x-ndjson".parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

/// The pages of an export after the first.
struct Pages {
    services: Services,
    /// The routing key of the workers asked now: the user (the primary's), then
    /// `<region>~<user>` for each region in `regions`.
    key: String,
    regions: std::collections::VecDeque<String>,
    ask: ExportRequest,
    next: Option<ExportCursor>,
    lines: u64,
    ended: bool,
}

impl Pages {
    /// The next chunk of the body: a page's lines, then the `end` (or `error`) line.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        match (self.next.take(), self.regions.pop_front()) {
            (Some(at), region) => {
                if let Some(region) = region {
                    self.regions.push_front(region);
                }
                self.ask.at = Some(at);
            }
            (None, Some(region)) => {
                let sep = chatmesh_protocol::subjects::HOME_SEP;
                self.key = format!("{region}{sep}{}", self.ask.user);
                self.ask.at = None;
            }
            (None, None) => {
                self.ended = true;
                let end = serde_json::json!({"type": "end", "lines": self.lines});
                return Some(Bytes::from(format!("{end}\n")));
            }
        }
        match self.services.ask::<ExportUser>(&self.key, &self.ask).await {
            Ok(page) => {
                self.lines += page.lines.len() as u64;
                self.next = page.next;
                Some(Bytes::from(jsonl(&page.lines)))
            }
            Err(e) => {
                self.ended = true;
                let line = serde_json::json!({"type": "error", "error": e});
                Some(Bytes::from(format!("{line}\n")))
            }
        }
    }
}

fn jsonl(lines: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        if serde_json::to_writer(&mut out, l).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chatmesh_protocol::admin::AuditEntry;

    use super::*;

    fn page(ids: &[&str], more: bool) -> AuditPage {
        let entries = ids
            .iter()
            .map(|id| AuditEntry {
                id: (*id).to_owned(),
                ts: 0,
                actor: "root".into(),
                action: "a".into(),
                target: String::new(),
                outcome: "ok".into(),
                ip: String::new(),
                detail: String::new(),
            })
            .collect();
        AuditPage {
            entries,
            more,
            unavailable: Vec::new(),
        }
    }

    fn ids(p: &AuditPage) -> (Vec<&str>, bool) {
        (p.entries.iter().map(|e| e.id.as_str()).collect(), p.more)
    }

    /// The regions' pages merge newest first (smaller ids are newer), at most `limit`,
    /// never past where a region with more stopped; paging on from the last entry reads
    /// every entry once.
    #[test]
    fn audit_pages_of_the_regions_merge_without_skipping_any() {
        let merged = merge_audit(
            vec![page(&["1", "5", "6"], true), page(&["2", "8"], false)],
            3,
        );
        assert_eq!(ids(&merged), (vec!["1", "2", "5"], true));
        let merged = merge_audit(
            vec![page(&["1", "3"], true), page(&["2", "4", "9"], false)],
            10,
        );
        assert_eq!(
            ids(&merged),
            (vec!["1", "2", "3"], true),
            "not past 3: the first region's next are unread"
        );
        let merged = merge_audit(vec![page(&["7"], false), page(&["8", "9"], false)], 10);
        assert_eq!(ids(&merged), (vec!["7", "8", "9"], false));
    }
}
