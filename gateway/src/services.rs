//! A typed client for the workers' request-reply services. Each call goes to the subject of
//! its key's partition, so the worker that owns the partition answers it.

use std::time::Duration;

use async_nats::client::RequestErrorKind;
use chatmesh_protocol::regions::Topology;
use chatmesh_protocol::service::{ListRooms, ListRoomsRequest, Op, Reply, RoomList, RoomListing};
use chatmesh_protocol::subjects::{home_region, svc_subject, HOME_SEP};
use chatmesh_protocol::ApiError;

use crate::error::GatewayError;

/// Pause between attempts while no worker answers a partition.
const NO_RESPONDER_RETRY: Duration = Duration::from_millis(100);

/// How long one region's part of a room list waits out a missing responder: a region whose
/// workers are cut off is left out (and named) rather than holding up the list.
const REGION_LIST_RETRY: Duration = Duration::from_millis(1_500);

/// Calls worker services over NATS.
#[derive(Debug, Clone)]
pub struct Services {
    nats: async_nats::Client,
    topology: Topology,
    /// The region this gateway runs in (`mesh.region`).
    region: Option<String>,
    timeout: Duration,
}

impl Services {
    pub fn new(
        nats: async_nats::Client,
        topology: Topology,
        region: Option<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            nats,
            topology,
            region,
            timeout,
        }
    }

    /// Whether `room` is homed in another region than this gateway's (false when either is
    /// not known).
    pub fn homed_elsewhere(&self, room: &str) -> bool {
        match (home_region(room), self.region.as_deref()) {
            (Some(home), Some(here)) => home != here,
            _ => false,
        }
    }

    /// This gateway's region when it runs workers of its own (`mesh.regional_workers`):
    /// its rooms are served there, so readiness asks its workers rather than the primary's.
    pub fn local_workers(&self) -> Option<&str> {
        self.topology.workers_of(self.region.as_deref())
    }

    /// How many partitions each stream of the mesh has (`mesh.partitions`).
    pub fn partitions(&self) -> u32 {
        self.topology.per_stream()
    }

    /// The streams and worker partitions of the mesh.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Calls `O` for the partition of `key` (a room, or a user for user-keyed operations).
    /// The outer error is the transport's; the inner one is the service's answer.
    pub async fn call<O: Op>(
        &self,
        key: &str,
        req: &O::Request,
    ) -> Result<Result<O::Response, ApiError>, GatewayError> {
        self.request::<O>(key, req, self.timeout).await
    }

    /// Like [`Services::call`] but without waiting out a missing responder: for probes that
    /// must answer at once (readiness).
    pub async fn call_once<O: Op>(
        &self,
        key: &str,
        req: &O::Request,
    ) -> Result<Result<O::Response, ApiError>, GatewayError> {
        self.request::<O>(key, req, Duration::ZERO).await
    }

    /// The user's room list. With regions that run workers of their own
    /// (`mesh.regional_workers`) each keeps the memberships of its rooms: the list is asked
    /// of the primary's workers and of each such region's at once, and merged (the user's
    /// rooms first, then public ones). A region that does not answer is named in
    /// `unavailable`; the call fails only when none answers. `after`: the next page of the
    /// user's rooms (see [`merge_pages`]).
    pub async fn rooms_list(&self, user: &str, after: Option<&str>) -> Result<RoomList, ApiError> {
        let req = ListRoomsRequest {
            user: user.to_owned(),
            after: after.map(str::to_owned),
        };
        let regional = self.topology.regional_workers();
        if regional.is_empty() {
            return self.ask::<ListRooms>(user, &req).await;
        }
        let keys = std::iter::once((self.topology.regions()[0].clone(), user.to_owned())).chain(
            regional
                .iter()
                .map(|r| (r.clone(), format!("{r}{HOME_SEP}{user}"))),
        );
        let asks = keys.map(|(region, key)| {
            let req = &req;
            async move {
                let answer = self
                    .request::<ListRooms>(&key, req, REGION_LIST_RETRY)
                    .await;
                (region, answer)
            }
        });
        let mut pages = Vec::new();
        let mut public = Vec::new();
        let mut unavailable = Vec::new();
        let mut refusal = None;
        for (region, answer) in futures::future::join_all(asks).await {
            match answer {
                Ok(Ok(list)) => {
                    let (mut m, mut p): (Vec<_>, Vec<_>) =
                        list.rooms.into_iter().partition(|r| r.role.is_some());
                    // Where this region's page ends, stale rooms or not.
                    let last = m.last().map(|r| r.room.clone());
                    let serves = |r: &RoomListing| serves(&self.topology, &region, &r.room);
                    m.retain(serves);
                    p.retain(serves);
                    pages.push(Page {
                        rooms: m,
                        more: list.more,
                        last,
                    });
                    public.extend(p);
                }
                Ok(Err(e)) => {
                    refusal.get_or_insert(e);
                }
                Err(e) => {
                    tracing::warn!(region, error = %crate::error::Chain(&e), "a region's room list is unavailable");
                    unavailable.push(region);
                }
            }
        }
        if let Some(e) = refusal {
            return Err(e);
        }
        if unavailable.len() == regional.len() + 1 {
            return Err(ApiError::unavailable(
                "no region answered for the room list",
            ));
        }
        let (mut rooms, more) = merge_pages(pages);
        if !more {
            rooms.extend(public);
        }
        Ok(RoomList {
            rooms,
            more,
            unavailable,
        })
    }

    async fn request<O: Op>(
        &self,
        key: &str,
        req: &O::Request,
        retry_for: Duration,
    ) -> Result<Result<O::Response, ApiError>, GatewayError> {
        if let Some(e) = unknown_home(&self.topology, key) {
            return Ok(Err(e));
        }
        let subject = svc_subject(self.partitions(), key, O::NAME);
        let payload = serde_json::to_vec(req).map_err(|e| GatewayError::BadReply {
            op: O::NAME,
            detail: e.to_string(),
        })?;
        // While a partition moves between workers nobody answers for a moment: retry
        // "no responders" (nothing was processed) until the timeout.
        let give_up = tokio::time::Instant::now() + retry_for.min(self.timeout);
        let payload = bytes::Bytes::from(payload);
        let reply = loop {
            let request = async_nats::Request::new()
                .payload(payload.clone())
                .headers(natskit::deadline::headers(self.timeout))
                .timeout(Some(self.timeout));
            match self.nats.send_request(subject.clone(), request).await {
                Ok(reply) => break reply,
                Err(e)
                    if e.kind() == RequestErrorKind::NoResponders
                        && tokio::time::Instant::now() + NO_RESPONDER_RETRY < give_up =>
                {
                    tokio::time::sleep(NO_RESPONDER_RETRY).await;
                }
                Err(e) => {
                    return Err(match e.kind() {
                        RequestErrorKind::TimedOut | RequestErrorKind::NoResponders => {
                            GatewayError::ServiceUnavailable { op: O::NAME }
                        }
                        _ => GatewayError::nats("service request", e),
                    })
                }
            }
        };
        let reply: Reply<O::Response> =
            serde_json::from_slice(&reply.payload).map_err(|e| GatewayError::BadReply {
                op: O::NAME,
                detail: e.to_string(),
            })?;
        Ok(reply.into_result())
    }

    /// Sends `O` without waiting for (or getting) an answer: for updates whose outcome the
    /// caller does not need, at the cost of one publish.
    pub async fn notify<O: Op>(&self, key: &str, req: &O::Request) {
        if unknown_home(&self.topology, key).is_some() {
            return;
        }
        let subject = svc_subject(self.partitions(), key, O::NAME);
        let Ok(payload) = serde_json::to_vec(req) else {
            return;
        };
        if let Err(e) = self.nats.publish(subject, payload.into()).await {
            tracing::debug!(op = O::NAME, error = %e, "service notification not sent");
        }
    }

    /// Like [`Services::call`], folding transport failures into the protocol error a client
    /// gets (logged here once).
    pub async fn ask<O: Op>(&self, key: &str, req: &O::Request) -> Result<O::Response, ApiError> {
        match self.call::<O>(key, req).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(op = O::NAME, error = %crate::error::Chain(&e), "worker service call failed");
                Err(e.api())
            }
        }
    }
}

/// `not_found` for a room whose home region this deployment does not have: nothing would
/// answer its service subject, so the call is refused at once instead of timing out.
fn unknown_home(topology: &Topology, key: &str) -> Option<ApiError> {
    let region = home_region(key)?;
    topology.stream_of(key).is_none().then(|| {
        ApiError::not_found(format!(
            "no such room: its home region {region:?} is not a region of this deployment"
        ))
    })
}

/// Whether `region`'s workers serve `room` (its home region's when that region runs workers
/// of its own, the primary's otherwise). A region's store can hold rooms it no longer
/// serves: those of a region that got workers of its own later stay in the primary's store
/// after their import there (docs/REGIONS.md), with the memberships they had then; listing
/// them would show rooms the user left, and search, which trusts this list, would read the
/// current messages of a room the user was removed from since.
fn serves(topology: &Topology, region: &str, room: &str) -> bool {
    let server = topology.workers_of(home_region(room));
    server.unwrap_or(topology.regions()[0].as_str()) == region
}

/// One region's page of the user's rooms.
struct Page {
    /// By name: those the region serves.
    rooms: Vec<RoomListing>,
    /// More follow in the region.
    more: bool,
    /// The last room of the region's page as it answered (where its next page starts).
    last: Option<String>,
}

/// Merges one page of the user's rooms from each region into one page by name: it ends at
/// the smallest last room of the regions with more, so that the next page, `after` its last
/// room, skips none of any region's.
fn merge_pages(pages: Vec<Page>) -> (Vec<RoomListing>, bool) {
    let cut = pages
        .iter()
        .filter(|p| p.more)
        .filter_map(|p| p.last.clone())
        .min();
    let more = pages.iter().any(|p| p.more);
    let mut rooms: Vec<RoomListing> = pages.into_iter().flat_map(|p| p.rooms).collect();
    rooms.sort_by(|a, b| a.room.cmp(&b.room));
    if let Some(cut) = cut {
        rooms.retain(|r| r.room <= cut);
    }
    (rooms, more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmesh_protocol::service::{Role, RoomKind};

    fn page(rooms: &[&str], more: bool) -> Page {
        let rooms: Vec<RoomListing> = rooms
            .iter()
            .map(|r| RoomListing {
                room: (*r).to_owned(),
                kind: RoomKind::Private,
                role: Some(Role::Member),
                last_seq: 0,
                unread: 0,
                mentions: 0,
                peer: None,
                topic: None,
                name: None,
                closed: false,
            })
            .collect();
        let last = rooms.last().map(|r| r.room.clone());
        Page { rooms, more, last }
    }

    fn names(merged: &(Vec<RoomListing>, bool)) -> (Vec<&str>, bool) {
        (merged.0.iter().map(|r| r.room.as_str()).collect(), merged.1)
    }

    /// A region's answer keeps only the rooms its workers serve: the primary's stale copy
    /// of a room of a region with workers of its own is left out, and where that region's
    /// page stops still bounds the merged page.
    #[test]
    fn a_region_lists_only_the_rooms_it_serves() {
        let regions = ["eu".to_owned(), "us".to_owned(), "ap".to_owned()];
        let t = Topology::new(4, &regions).with_regional_workers(&["us".to_owned()]);
        assert!(serves(&t, "eu", "general") && serves(&t, "eu", "ap~x"));
        assert!(!serves(&t, "eu", "us~x"), "a stale copy in the primary");
        assert!(serves(&t, "us", "us~x"));
        assert!(!serves(&t, "us", "general") && !serves(&t, "us", "ap~x"));
        let mut primary = page(&["a", "us~z"], true);
        primary.rooms.retain(|r| serves(&t, "eu", &r.room));
        let merged = merge_pages(vec![primary, page(&["us~a", "us~zz"], false)]);
        // Cut where the primary's page stopped ("us~z", left out): "us~zz" comes next page.
        assert_eq!(names(&merged), (vec!["a", "us~a"], true));
    }

    /// A merged page ends where the first region with more stops, so no room of any region
    /// falls between two pages; paging on gives every room once.
    #[test]
    fn merged_pages_skip_no_region_s_rooms() {
        let merged = merge_pages(vec![page(&["a", "c", "e"], true), page(&["b", "f"], false)]);
        assert_eq!(names(&merged), (vec!["a", "b", "c", "e"], true));
        // The next page: after "e".
        let merged = merge_pages(vec![page(&["g"], false), page(&["f"], false)]);
        assert_eq!(names(&merged), (vec!["f", "g"], false));
        let merged = merge_pages(vec![page(&["a", "d"], true), page(&["b", "c"], true)]);
        assert_eq!(names(&merged), (vec!["a", "b", "c"], true));
        let merged = merge_pages(vec![page(&[], false), page(&["x"], false)]);
        assert_eq!(names(&merged), (vec!["x"], false));
    }
}
