//! `GET /v1/search` (extension, docs/PROTOCOL.md "Search"): full-text search over the rooms
//! the caller is a member of now. The gateway lists them (`rooms_list`), keeps those the
//! filters allow, asks the worker of each of their partitions at once (`search`, the
//! partition's index) and merges the answers, newest first. Paging: `before` = the seq of
//! the last hit of the page before.

use std::collections::BTreeMap;

use futures::future::try_join_all;
use hyper::body::Incoming;
use hyper::Request;

use chatmesh_protocol::search::{
    query_words, SearchRequest, SearchResults, MAX_QUERY_BYTES, MAX_QUERY_WORDS, MAX_SEARCH_LIMIT,
    MAX_SEARCH_ROOMS,
};
use chatmesh_protocol::service::Search;
use chatmesh_protocol::ApiError;

use super::reply;
use super::request::{caller, name, Answer};
use crate::state::AppState;

/// Hits per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 20;

pub(super) async fn search(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let mut ask = SearchRequest {
        q: String::new(),
        rooms: Vec::new(),
        from: None,
        since: None,
        until: None,
        before: None,
        limit: DEFAULT_LIMIT,
    };
    let mut only_room = None;
    let query = req.uri().query().unwrap_or("");
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let number = || {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{k} must be a number")))
        };
        match k.as_ref() {
            "q" => ask.q = v.into_owned(),
            "room" => {
                name("room", &v)?;
                only_room = Some(v.into_owned());
            }
            "from" => {
                name("from", &v)?;
                ask.from = Some(v.into_owned());
            }
            "since" => ask.since = Some(number()?),
            "until" => ask.until = Some(number()?),
            "before" => ask.before = Some(number()?),
            "limit" => ask.limit = usize::try_from(number()?).unwrap_or(usize::MAX),
            _ => return Err(ApiError::bad_request(format!("unknown parameter {k}")).into()),
        }
    }
    if ask.q.trim().is_empty() || ask.q.len() > MAX_QUERY_BYTES {
        return Err(
            ApiError::bad_request(format!("q must be 1 to {MAX_QUERY_BYTES} bytes")).into(),
        );
    }
    if query_words(&ask.q) > MAX_QUERY_WORDS {
        return Err(
            ApiError::bad_request(format!("q may have at most {MAX_QUERY_WORDS} words")).into(),
        );
    }
    if !(1..=MAX_SEARCH_LIMIT).contains(&ask.limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_SEARCH_LIMIT}"
        ))
        .into());
    }
    let _running = state.throttle.search_running(&user)?;
    state.throttle.search_allowed(&user).await?;
    // Membership at query time: the rooms the caller is in now (the first page of its
    // room list for a search of all of them).
    let mut rooms: Vec<String> = match &only_room {
        Some(room) => {
            let access = state.access.get(room, &user).await?;
            if !access.can_post() {
                return Err(ApiError::forbidden("not a member of this room").into());
            }
            vec![room.clone()]
        }
        None => {
            let list = state.services.rooms_list(&user, None).await?;
            list.rooms
                .into_iter()
                .filter(|r| r.role.is_some())
                .map(|r| r.room)
                .collect()
        }
    };
    rooms.truncate(MAX_SEARCH_ROOMS);
    // One ask per worker partition (a room's partition within its home region's stream).
    let topology = state.services.topology();
    let mut by_partition: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for room in rooms {
        let Some(p) = topology.partition_of(&room) else {
            continue;
        };
        by_partition.entry(p).or_default().push(room);
    }
    let asks = by_partition.into_values().map(|rooms| {
        let req = SearchRequest {
            rooms,
            ..ask.clone()
        };
        async move {
            let key = req.rooms[0].clone();
            state.services.ask::<Search>(&key, &req).await
        }
    });
    let answers = try_join_all(asks).await?;
    Ok(reply::json(200, &merge(answers, ask.limit)))
}

/// The newest `limit` hits of all partitions' answers (each newest first, each with up to
/// `limit` hits, fewer when its worker cut the page at its byte budget or met hits the store
/// no longer holds); `more` when any hit was left out. No hit older than where a partition's
/// page with `more` stopped (its `next_before`, else its last hit) is kept: the next page
/// would skip that partition's hits between the two. `next_before` says where the next page
/// starts, also when this one is empty.
fn merge(answers: Vec<SearchResults>, limit: usize) -> SearchResults {
    let mut more = answers.iter().any(|a| a.more);
    let cut = answers
        .iter()
        .filter(|a| a.more)
        .filter_map(|a| a.next_before.or_else(|| a.hits.last().map(|h| h.seq)))
        .max();
    let mut hits: Vec<_> = answers.into_iter().flat_map(|a| a.hits).collect();
    hits.sort_by_key(|h| std::cmp::Reverse(h.seq));
    if let Some(cut) = cut {
        hits.retain(|h| h.seq >= cut);
    }
    let mut next_before = cut;
    if hits.len() > limit {
        hits.truncate(limit);
        more = true;
        next_before = hits.last().map(|h| h.seq);
    }
    SearchResults {
        hits,
        more,
        next_before: next_before.filter(|_| more),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmesh_protocol::search::SearchHit;

    fn hit(seq: u64) -> SearchHit {
        SearchHit {
            room: "r".into(),
            seq,
            from: "u".into(),
            ts: seq,
            body: String::new(),
        }
    }

    #[test]
    fn merges_newest_first_and_says_when_hits_were_left_out() {
        let a = SearchResults {
            hits: vec![hit(9), hit(4)],
            more: false,
            next_before: None,
        };
        let b = SearchResults {
            hits: vec![hit(7), hit(5), hit(1)],
            more: false,
            next_before: None,
        };
        let m = merge(vec![a.clone(), b.clone()], 3);
        assert_eq!(m.hits.iter().map(|h| h.seq).collect::<Vec<_>>(), [9, 7, 5]);
        assert_eq!((m.more, m.next_before), (true, Some(5)));
        let all = merge(vec![a, b], 10);
        assert_eq!(all.hits.len(), 5);
        assert_eq!((all.more, all.next_before), (false, None));
    }

    /// A partition whose page was cut short (its byte budget) bounds the merged page: hits
    /// older than its last one wait for the next page, which starts below the last kept.
    #[test]
    fn a_page_cut_short_bounds_the_merged_page() {
        let cut = SearchResults {
            hits: vec![hit(9), hit(6)],
            more: true,
            next_before: Some(6),
        };
        let full = SearchResults {
            hits: vec![hit(8), hit(5), hit(2)],
            more: false,
            next_before: None,
        };
        let m = merge(vec![cut, full], 10);
        assert_eq!(m.hits.iter().map(|h| h.seq).collect::<Vec<_>>(), [9, 8, 6]);
        assert_eq!((m.more, m.next_before), (true, Some(6)));
    }

    /// A partition whose worker met only hits the store no longer holds answers an empty
    /// page that goes on below them: the merged page keeps nothing older than that, and its
    /// `next_before` is where the next page starts, even when it has no hit to start from.
    #[test]
    fn a_page_of_stale_hits_alone_still_says_where_to_go_on() {
        let stale = SearchResults {
            hits: vec![],
            more: true,
            next_before: Some(7),
        };
        let other = SearchResults {
            hits: vec![hit(8), hit(5)],
            more: false,
            next_before: None,
        };
        let m = merge(vec![stale.clone(), other], 10);
        assert_eq!(m.hits.iter().map(|h| h.seq).collect::<Vec<_>>(), [8]);
        assert_eq!((m.more, m.next_before), (true, Some(7)));
        let alone = merge(vec![stale], 10);
        assert_eq!(
            (alone.hits.len(), alone.more, alone.next_before),
            (0, true, Some(7))
        );
    }
}
