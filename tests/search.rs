//! Full-text search (issue 18, item 5) over a real mesh: `GET /v1/search` finds messages of
//! the rooms the caller is a member of at query time, newest first, with room, sender and
//! time filters and paging; edits and deletes change what is found; an index that is lost
//! is rebuilt from the stream when the worker starts again.

mod common;

use std::time::Duration;

use anyhow::Result;
use chatmesh_protocol::search::SearchResults;
use common::*;

/// `GET /v1/search?{query}` as `token`: the status and the body.
async fn search(api: &Api, token: &str, query: &str) -> Result<(u16, serde_json::Value)> {
    api.call("GET", &format!("/v1/search?{query}"), Some(token), None)
        .await
}

/// Searches until `pred` holds for the results (the index commits about every second).
async fn until(
    api: &Api,
    token: &str,
    query: &str,
    pred: impl Fn(&SearchResults) -> bool,
) -> Result<SearchResults> {
    until_within(api, token, query, WAIT, pred).await
}

/// [`until`], giving up after `wait`.
async fn until_within(
    api: &Api,
    token: &str,
    query: &str,
    wait: Duration,
    pred: impl Fn(&SearchResults) -> bool,
) -> Result<SearchResults> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (s, v) = search(api, token, query).await?;
        anyhow::ensure!(s == 200, "search {query}: {s} {v}");
        let r: SearchResults = serde_json::from_value(v)?;
        if pred(&r) {
            return Ok(r);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "search {query}: never matched, last {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn seqs(r: &SearchResults) -> Vec<u64> {
    r.hits.iter().map(|h| h.seq).collect()
}

/// Members find what was said in their rooms, nothing of rooms they are not in (also once
/// removed), newest first; filters by room, sender and time; pages with `before`; bad
/// queries are `bad_request`, a room one is not in `forbidden`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_messages_of_the_callers_rooms_only() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    // Rooms in several partitions.
    let rooms = ["hall", "den", "yard", "attic", "porch"];
    for r in rooms {
        api.room(&ann, r, if r == "den" { "private" } else { "public" })
            .await?;
    }
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    for r in rooms {
        a.join(r).await?;
    }
    b.join("hall").await?;
    b.join("yard").await?;
    let mut acks = Vec::new();
    acks.push(a.post("hall", "h1", "the quick brown fox").await?);
    acks.push(a.post("den", "d1", "secret fox plans").await?);
    acks.push(b.post("yard", "y1", "a fox in the yard, says bob").await?);
    acks.push(a.post("attic", "t1", "no animals here").await?);
    acks.push(a.post("porch", "p1", "Fox! on the porch").await?);

    // ann is in every room: four foxes, newest first, with room, sender, time and body.
    let all = until(&api, &ann, "q=fox", |r| r.hits.len() == 4).await?;
    let fox_seqs = [acks[4].seq, acks[2].seq, acks[1].seq, acks[0].seq];
    assert_eq!(seqs(&all), fox_seqs);
    assert!(!all.more);
    let h = &all.hits[1];
    assert_eq!(
        (h.room.as_str(), h.from.as_str(), h.ts, h.body.as_str()),
        ("yard", "bob", acks[2].ts, "a fox in the yard, says bob")
    );
    // bob is in hall and yard only (and public rooms he did not join do not count).
    let bobs = until(&api, &bob, "q=fox", |r| r.hits.len() == 2).await?;
    assert_eq!(seqs(&bobs), [acks[2].seq, acks[0].seq]);
    // All words must match; case does not matter.
    let both = until(&api, &ann, "q=FOX+quick", |r| !r.hits.is_empty()).await?;
    assert_eq!(seqs(&both), [acks[0].seq]);

    // Filters.
    let (_, v) = search(&api, &ann, "q=fox&room=den").await?;
    assert_eq!(seqs(&serde_json::from_value(v)?), [acks[1].seq], "one room");
    let (_, v) = search(&api, &ann, "q=fox&from=bob").await?;
    assert_eq!(seqs(&serde_json::from_value(v)?), [acks[2].seq], "sender");
    let query = format!("q=fox&since={}&until={}", acks[1].ts, acks[2].ts + 1);
    let (_, v) = search(&api, &ann, &query).await?;
    let r: SearchResults = serde_json::from_value(v)?;
    assert!(
        seqs(&r)
            .iter()
            .all(|s| [acks[1].seq, acks[2].seq].contains(s))
            && !r.hits.is_empty(),
        "time: {r:?}"
    );

    // Paging: two at a time, then the rest with `before`.
    let (_, v) = search(&api, &ann, "q=fox&limit=2").await?;
    let first: SearchResults = serde_json::from_value(v)?;
    assert_eq!((seqs(&first), first.more), (fox_seqs[..2].to_vec(), true));
    let next = format!("q=fox&limit=2&before={}", first.hits[1].seq);
    let (_, v) = search(&api, &ann, &next).await?;
    let second: SearchResults = serde_json::from_value(v)?;
    assert_eq!(seqs(&second), fox_seqs[2..].to_vec());

    // Refusals.
    let (s, _) = search(&api, &bob, "q=fox&room=den").await?;
    assert_eq!(s, 403, "a room bob is not in");
    for bad in [
        "q=",
        "q=fox&limit=0",
        "q=fox&limit=51",
        "q=fox&nope=1",
        "q=fox&since=x",
    ] {
        let (s, v) = search(&api, &ann, bad).await?;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let long = format!("q={}", "a".repeat(257));
    assert_eq!(search(&api, &ann, &long).await?.0, 400);
    let (s, _) = api.call("GET", "/v1/search?q=fox", None, None).await?;
    assert_eq!(s, 401);
    // Query syntax the parser cannot read is not an error: what it can read is searched.
    let (s, v) = search(&api, &ann, "q=fox+%22unclosed").await?;
    assert_eq!(s, 200, "{v}");

    // Membership at query time: removed from yard, bob no longer finds what is there.
    let (s, v) = api
        .call("DELETE", "/v1/rooms/yard/members/bob", Some(&ann), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    let after = until(&api, &bob, "q=fox", |r| r.hits.len() == 1).await?;
    assert_eq!(seqs(&after), [acks[0].seq]);
    mesh.stop().await
}

/// An edit replaces what a message is found by, a delete removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletes_change_what_is_found() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("hall").await?;
    let typo = a.post("hall", "m1", "meeting at noun").await?;
    let gone = a
        .post("hall", "m2", "meeting cancelled, noun mistake")
        .await?;
    until(&api, &ann, "q=noun", |r| r.hits.len() == 2).await?;
    acked(
        &a.request(frame::edit("hall", "e1", typo.seq, "meeting at noon"))
            .await?,
    );
    acked(&a.request(frame::delete("hall", "x1", gone.seq)).await?);
    until(&api, &ann, "q=noun", |r| r.hits.is_empty()).await?;
    let noon = until(&api, &ann, "q=noon", |r| !r.hits.is_empty()).await?;
    assert_eq!(
        seqs(&noon),
        [typo.seq],
        "found under its new body, at its own seq"
    );
    assert_eq!(noon.hits[0].body, "meeting at noon");
    let meeting = until(&api, &ann, "q=meeting", |r| r.hits.len() == 1).await?;
    assert_eq!(
        seqs(&meeting),
        [typo.seq],
        "the deleted message is not found"
    );
    mesh.stop().await
}

/// An index lost while the mesh was down is rebuilt from the stream at the next start (the
/// store writer starts its consumer where the index is; the store skips what it has).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_index_is_rebuilt_from_the_stream() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("hall").await?;
    for i in 0..30 {
        a.post(
            "hall",
            &format!("m{i}"),
            &format!("note number {i} about llamas"),
        )
        .await?;
    }
    until(&api, &ann, "q=llamas&limit=50", |r| r.hits.len() == 30).await?;
    a.close().await;
    mesh.stop().await?;
    std::fs::remove_dir_all(dir.path().join("search"))?;

    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let back = until(&api, &ann, "q=llamas&limit=50", |r| r.hits.len() == 30).await?;
    assert_eq!(
        back.hits.last().map(|h| h.body.as_str()),
        Some("note number 0 about llamas")
    );
    // History is whole too: nothing was stored twice.
    let (_, v) = api
        .call("GET", "/v1/rooms/hall/messages?limit=100", Some(&ann), None)
        .await?;
    assert_eq!(http_page(&v).messages.len(), 30);
    mesh.stop().await
}

/// A config whose retention keeps each room's newest three messages, checked every 100 ms.
fn retention_of_three() -> chatmesh::Config {
    let mut config = fast_config();
    config.worker.retention.max_messages = 3;
    config.worker.retention.interval_ms = 100;
    config
}

/// A mesh on `config` in `dir` where ann posted "walrus 0" to "walrus {n-1}" in her public
/// room `hall`: the mesh, the API, ann's token, her session and the acks.
async fn walruses(
    dir: &std::path::Path,
    config: chatmesh::Config,
    n: usize,
) -> Result<(chatmesh::Mesh, Api, String, Client, Vec<Acked>)> {
    let mesh = start_mesh(dir, config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("hall").await?;
    let mut acks = Vec::new();
    for i in 0..n {
        acks.push(
            a.post("hall", &format!("m{i}"), &format!("walrus {i}"))
                .await?,
        );
    }
    Ok((mesh, api, ann, a, acks))
}

/// What retention deletes from the store is not found any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_what_it_deletes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mesh, api, ann, _a, acks) = walruses(dir.path(), retention_of_three(), 6).await?;
    let left = until(&api, &ann, "q=walrus", |r| r.hits.len() == 3).await?;
    assert_eq!(seqs(&left), [acks[5].seq, acks[4].seq, acks[3].seq]);
    mesh.stop().await
}

/// One user's searches are throttled (each asks every partition the user has rooms in);
/// another user is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_flood_is_refused_rate_limited() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.searches_per_minute = 1;
    config.gateway.search_burst = 3;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    for _ in 0..3 {
        assert_eq!(search(&api, &ann, "q=anything").await?.0, 200);
    }
    let (s, v) = search(&api, &ann, "q=anything").await?;
    assert_eq!(
        (s, http_error(&v)),
        (429, Some(ErrorCode::RateLimited)),
        "{v}"
    );
    assert_eq!(
        search(&api, &bob, "q=anything").await?.0,
        200,
        "bob has his own bucket"
    );
    mesh.stop().await
}

/// A query of more than 16 words is refused before any worker reads its index: a long
/// phrase of a word a room repeats costs its words times their places in every candidate
/// message, seconds of a worker's CPU per query. 16 words are searched; so is a 256-byte
/// query of few words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_of_too_many_words_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "r", "private").await?;
    let words = |n: usize| vec!["a"; n].join("%20");
    let (s, v) = search(&api, &ann, &format!("q=%22{}%22&room=r", words(17))).await?;
    assert_eq!(
        (s, http_error(&v)),
        (400, Some(ErrorCode::BadRequest)),
        "{v}"
    );
    let (s, v) = search(&api, &ann, "q=a-a-a-a-a-a-a-a-a-a-a-a-a-a-a-a-a&room=r").await?;
    assert_eq!(s, 400, "words as the index splits them: {v}");
    let (s, v) = search(&api, &ann, &format!("q=%22{}%22&room=r", words(16))).await?;
    assert_eq!(s, 200, "{v}");
    let (s, v) = search(&api, &ann, &format!("q={}&room=r", "w".repeat(256))).await?;
    assert_eq!(s, 200, "{v}");
    mesh.stop().await
}

/// 30 messages of control characters with one word each (44 KB a message once
/// JSON-escaped): 20 hits would be over NATS's 1 MiB payload limit. The hits come in pages
/// under it instead, newest first, each with at least one hit and `more` until the last,
/// and paging with `before` finds every message once (before: 500 `internal` for anyone in
/// the room searching for that word).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_of_long_messages_come_in_pages_that_fit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    a.join("hall").await?;
    b.join("hall").await?;
    let noise = escape_heavy();
    let body = format!("zebra {noise}");
    let bodies = vec![body.clone(); 30];
    let mut sent: Vec<u64> = a
        .fill("hall", &bodies)
        .await?
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    sent.reverse();
    until(&api, &bob, "q=zebra&limit=1", |r| {
        r.hits.first().map(|h| h.seq) == sent.first().copied()
    })
    .await?;
    let mut got = Vec::new();
    let mut pages = 0;
    let mut before = String::new();
    loop {
        let (s, v) = search(&api, &bob, &format!("q=zebra&limit=50{before}")).await?;
        assert_eq!(s, 200, "{}", v["error"]);
        assert!(v.to_string().len() < 1 << 20, "page over 1 MiB");
        let page: SearchResults = serde_json::from_value(v)?;
        assert!(!page.hits.is_empty(), "a page makes progress");
        assert!(page.hits.iter().all(|h| h.body == body));
        pages += 1;
        before = format!("&before={}", page.hits.last().expect("a hit").seq);
        got.extend(seqs(&page));
        if !page.more {
            break;
        }
    }
    assert_eq!(got, sent, "every message once, newest first");
    assert!(pages >= 2, "{pages} pages");
    Ok(())
}

/// An index rebuilt from the stream after retention deleted messages from the store does
/// not bring them back: the stream still holds them, the store does not, and a hit is
/// answered only for what the store holds (before: the rebuilt index found all ten again,
/// bodies included); a page of stale hits alone searches on below them, and when there are
/// too many of them for one request (seven, at one hit a page), the empty page says where
/// the next one starts (before: `more` with no hit to page on from).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_rebuilt_after_retention_finds_nothing_it_deleted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = retention_of_three();
    let (mesh, api, ann, a, acks) = walruses(dir.path(), config.clone(), 10).await?;
    let kept = [acks[9].seq, acks[8].seq, acks[7].seq];
    until(&api, &ann, "q=walrus", |r| seqs(r) == kept).await?;
    a.close().await;
    mesh.stop().await?;
    std::fs::remove_dir_all(dir.path().join("search"))?;

    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    // The rebuild has read the whole stream by now (it commits about every second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Pages below the kept messages hold only stale hits (the first search to meet them
    // removes them): empty, each says where the next starts, and the last says it is.
    let mut before = acks[7].seq;
    let mut pages = Vec::new();
    loop {
        let below = format!("q=walrus&limit=1&before={before}");
        let (s, v) = search(&api, &ann, &below).await?;
        assert_eq!(s, 200, "{v}");
        let r: SearchResults = serde_json::from_value(v)?;
        assert_eq!(seqs(&r), Vec::<u64>::new(), "below the kept ones");
        pages.push((r.more, r.next_before));
        if !r.more {
            break;
        }
        let next = r
            .next_before
            .expect("a page with more says where the next starts");
        assert!(next < before, "{pages:?}");
        assert!(pages.len() < 8, "{pages:?}");
        before = next;
    }
    assert!(
        pages.len() >= 2,
        "seven stale hits take two requests: {pages:?}"
    );
    for _ in 0..2 {
        let (s, v) = search(&api, &ann, "q=walrus").await?;
        assert_eq!(s, 200, "{v}");
        let r: SearchResults = serde_json::from_value(v)?;
        assert_eq!(seqs(&r), kept, "only what the store holds");
    }
    mesh.stop().await
}

/// A room moved into another deployment with `chatmesh import` is found there: import marks
/// it, and the worker owning it indexes its stored messages within about ten seconds (before:
/// never; its messages are in no stream the target's index reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_room_is_found() -> Result<()> {
    use chatmesh_workers::KvStore as _;
    let (from, to) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (mesh, api, ann, a, acks) = walruses(from.path(), fast_config(), 4).await?;
    let mut sent: Vec<u64> = acks.iter().map(|k| k.seq).collect();
    sent.reverse();
    // Stored (an ack says JetStream has it; the store writer follows), so exported.
    until(&api, &ann, "q=walrus", |r| seqs(r) == sent).await?;
    a.close().await;
    mesh.stop().await?;
    let worker = |dir: &std::path::Path| chatmesh_workers::WorkerConfig {
        data_dir: dir.join("store"),
        ..chatmesh_workers::WorkerConfig::default()
    };
    // The stopped worker's last tasks let go of its store a moment after `stop`.
    let open = |cfg: chatmesh_workers::WorkerConfig| async move {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match chatmesh_workers::open_store(&cfg).await {
                Err(chatmesh_workers::store::StoreError::Locked { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                opened => return opened,
            }
        }
    };
    let mut file = Vec::new();
    {
        let store = open(worker(from.path())).await?;
        let model = chatmesh_workers::model::Model::new(store);
        chatmesh_workers::export::export_room(&model, "hall", &mut file, 0, &mut |_| {}).await?;
    }
    {
        let store = open(worker(to.path())).await?;
        let model = chatmesh_workers::model::Model::new(store);
        let input = std::io::Cursor::new(file);
        chatmesh_workers::export::import_room(&model, input, 0, &mut |_| {}).await?;
        model.store().flush().await?;
    }

    let mesh = start_mesh(to.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let wait = chatmesh_workers::search::reindex::EVERY + WAIT;
    let found = until_within(&api, &ann, "q=walrus", wait, |r| seqs(r) == sent).await?;
    assert!(found
        .hits
        .iter()
        .all(|h| h.room == "hall" && h.from == "ann"));
    mesh.stop().await
}
