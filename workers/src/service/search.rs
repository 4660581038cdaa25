//! The `search` operation: a full-text search of some rooms of one partition in that
//! partition's index (`crate::search`). The gateway sends the caller's rooms; membership is
//! its check, at query time.

use chatmesh_protocol::search::{
    query_words, SearchHit, SearchRequest, SearchResults, MAX_QUERY_BYTES, MAX_QUERY_WORDS,
    MAX_SEARCH_LIMIT, MAX_SEARCH_ROOMS,
};
use chatmesh_protocol::ApiError;
use tracing::warn;

use super::{budget, valid, Service};

/// Searches of one request when every hit of a page was stale (see [`Service::search`]).
const STALE_ROUNDS: usize = 4;

impl Service {
    /// The newest messages of `req.rooms` matching `req`, from their partition's index.
    pub async fn search(&self, req: SearchRequest) -> Result<SearchResults, ApiError> {
        let search = self
            .inner
            .search
            .get()
            .ok_or_else(|| ApiError::unavailable("search is not enabled"))?;
        if req.q.trim().is_empty() || req.q.len() > MAX_QUERY_BYTES {
            return Err(ApiError::bad_request(format!(
                "q must be 1 to {MAX_QUERY_BYTES} bytes"
            )));
        }
        if query_words(&req.q) > MAX_QUERY_WORDS {
            return Err(ApiError::bad_request(format!(
                "q may have at most {MAX_QUERY_WORDS} words"
            )));
        }
        if req.limit == 0 || req.limit > MAX_SEARCH_LIMIT {
            return Err(ApiError::bad_request(format!(
                "limit must be 1 to {MAX_SEARCH_LIMIT}"
            )));
        }
        if req.rooms.is_empty() || req.rooms.len() > MAX_SEARCH_ROOMS {
            return Err(ApiError::bad_request(format!(
                "rooms must be 1 to {MAX_SEARCH_ROOMS}"
            )));
        }
        let topology = match self.inner.tail.get() {
            Some(tail) => tail.streams.topology().clone(),
            None => chatmesh_protocol::regions::Topology::new(search.partitions(), &[]),
        };
        let p = topology.partition_of(&req.rooms[0]);
        for room in &req.rooms {
            valid("room", room)?;
            if topology.partition_of(room) != p {
                return Err(ApiError::bad_request("rooms of one partition only"));
            }
        }
        let p = p.ok_or_else(|| ApiError::not_found("no such room"))?;
        if let Some(from) = &req.from {
            valid("user name", from)?;
        }
        let mut req = req;
        let mut rounds = 0;
        // A page whose hits were all stale says nothing of where this partition's next hit
        // is: search on below them, a few times (their removal reaches the index at its next
        // commit); then the page is empty, and `next_before` says where the next one starts.
        let (hits, more, stopped) = loop {
            let found = search.search(req.clone()).await.map_err(|e| match e {
                crate::search::SearchError::Busy => {
                    ApiError::unavailable("too many searches right now; retry shortly")
                }
                e => {
                    warn!(partition = p, error = %chatmesh_protocol::error::Chain(&e), "search failed");
                    ApiError::internal()
                }
            })?;
            let oldest = found.hits.last().map(|h| h.seq);
            let kept = self.still_stored(search, found.hits).await?;
            rounds += 1;
            match oldest {
                Some(oldest) if kept.is_empty() && found.more && rounds < STALE_ROUNDS => {
                    req.before = Some(oldest);
                }
                _ => break (kept, found.more, oldest),
            }
        };
        // Newest first: a cut page keeps the newest hits and the next starts below them.
        let before_fit = hits.len();
        let (hits, more) = budget::fit(hits, more, self.page_budget(), false);
        let next_before = match (more, hits.len() < before_fit) {
            (false, _) => None,
            (true, true) => hits.last().map(|h| h.seq),
            (true, false) => stopped,
        };
        Ok(SearchResults {
            hits,
            more,
            next_before,
        })
    }

    /// The hits whose message the store still holds as found, in its current version. The
    /// index may hold messages the store no longer does: after a crash lost the removals
    /// retention had queued, or an index rebuilt (or a partition's caught up on another
    /// worker) from a stream that still holds what retention deleted from the store. Those
    /// are left out, and removed from the index. A hit whose indexed body is not the
    /// message's body now (an edit the index missed: its batch failed to index, or it is
    /// not committed yet) was found by words the message may no longer have: left out, and
    /// the message indexed again as it is, so that an edited-out word never finds it.
    async fn still_stored(
        &self,
        search: &crate::search::Indexes,
        hits: Vec<SearchHit>,
    ) -> Result<Vec<SearchHit>, ApiError> {
        let mut kept = Vec::with_capacity(hits.len());
        let mut gone = Vec::new();
        let mut changed = Vec::new();
        for hit in hits {
            match self.model().message(&hit.room, hit.seq).await? {
                Some(m) if m.is_searchable() && m.body != hit.body => {
                    changed.push((hit.room, hit.seq, m));
                }
                Some(m) if m.is_searchable() => {
                    kept.push(SearchHit {
                        from: m.from,
                        ts: m.ts,
                        body: m.body,
                        ..hit
                    });
                }
                _ => gone.push((hit.room, hit.seq)),
            }
        }
        if !changed.is_empty() {
            metrics::counter!(crate::metrics::SEARCH_STALE_HITS).increment(changed.len() as u64);
        }
        for (room, seq, m) in changed {
            if let Err(e) = search.put(&room, vec![(seq, m)]).await {
                warn!(error = %chatmesh_protocol::error::Chain(&e), "indexing a changed message again failed");
            }
        }
        if !gone.is_empty() {
            metrics::counter!(crate::metrics::SEARCH_STALE_HITS).increment(gone.len() as u64);
            if let Err(e) = search.remove(gone).await {
                warn!(error = %chatmesh_protocol::error::Chain(&e), "removing stale search hits failed");
            }
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chatmesh_protocol::message::Payload;

    use super::*;
    use crate::cache::Caches;
    use crate::config::WorkerConfig;
    use crate::model::Model;
    use crate::search::{IndexOp, Indexes, SearchConfig};
    use crate::writer::{store_batch, Delivery};

    fn ask(q: &str) -> SearchRequest {
        SearchRequest {
            q: q.into(),
            rooms: vec!["r".into()],
            from: None,
            since: None,
            until: None,
            before: None,
            limit: 10,
        }
    }

    fn sent(seq: u64, body: &str, edit_of: Option<u64>) -> Delivery {
        let payload = Payload {
            id: format!("m{seq}"),
            from: "ann".into(),
            ts: seq,
            body: body.into(),
            edit_of,
            ..Payload::default()
        };
        Delivery {
            seq,
            message: Some(("r".into(), payload)),
        }
    }

    /// An edit the index missed (its batch failed to index) no longer lets the words it
    /// took out find the message: before, `hunter2` found it, showing the new body, which
    /// told anyone searching what the edit removed. The message is indexed again as it is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_edit_the_index_missed_does_not_let_its_old_words_find_the_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = WorkerConfig {
            data_dir: dir.path().to_path_buf(),
            ..WorkerConfig::default()
        };
        let model = Model::new(crate::open_store(&cfg).await.expect("store"));
        let caches = Arc::new(Caches::new(cfg.cache_sizes()));
        let svc = Service::new(model.clone(), caches.clone(), &cfg, None).expect("service");
        let search = Indexes::new(&dir.path().join("search"), 1, &SearchConfig::default());
        svc.enable_search(search.clone());
        let mut checkpoint = 0;
        let first = vec![sent(1, "pw hunter2", None)];
        store_batch(&model, &caches, 0, &mut checkpoint, first)
            .await
            .expect("stored");
        let add = IndexOp::Add {
            seq: 1,
            room: "r".into(),
            from: "ann".into(),
            ts: 1,
            body: "pw hunter2".into(),
        };
        search
            .apply(&model, 0, 1, vec![add])
            .await
            .expect("indexed");
        search.commit().await.expect("commit");
        assert_eq!(
            svc.search(ask("hunter2")).await.expect("search").hits.len(),
            1
        );

        // The edit is stored; the index never hears of it.
        let edit = vec![sent(2, "pw removed", Some(1))];
        store_batch(&model, &caches, 0, &mut checkpoint, edit)
            .await
            .expect("stored");
        let found = svc.search(ask("hunter2")).await.expect("search");
        assert!(found.hits.is_empty(), "{:?}", found.hits);
        search.commit().await.expect("commit");
        let found = svc.search(ask("removed")).await.expect("search");
        let seqs: Vec<u64> = found.hits.iter().map(|h| h.seq).collect();
        assert_eq!(seqs, [1], "indexed again as it is");
        assert!(svc
            .search(ask("hunter2"))
            .await
            .expect("search")
            .hits
            .is_empty());
    }
}
