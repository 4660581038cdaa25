//! Replies and threads (issue 18, item 3) over a real mesh: a reply is an ordinary message
//! of the room (its own seq, live, replayed once on resume, unread like any other) that
//! names its thread's root; a reply to a reply joins the root's thread; the thread view
//! pages the replies and counts the caller's unread ones until its thread cursor moves.

mod common;

use anyhow::Result;
use chatmesh_protocol::service::ThreadPage;
use common::*;
use serde_json::json;

async fn thread(api: &Api, token: &str, path: &str) -> Result<(u16, serde_json::Value)> {
    api.call("GET", path, Some(token), None).await
}

fn seqs(p: &ThreadPage) -> Vec<u64> {
    p.messages.iter().map(|m| m.seq).collect()
}

/// Replies reach members live with `reply_to` and `thread_root`, dedupe by id, count on
/// the root in history; the thread pages with `after`/`limit`; unread per reader; bad
/// targets are refused; a member away gets each reply once on resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_form_threads_with_paging_unread_and_resume() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob, cat) = (
        api.user("ann").await?,
        api.user("bob").await?,
        api.user("cat").await?,
    );
    api.room(&ann, "hall", "public").await?;
    api.room(&ann, "den", "private").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    a.join("hall").await?;
    b.join("hall").await?;
    let root = a.post("hall", "m1", "plans?").await?;
    b.messages("hall", 1).await?;
    a.messages("hall", 1).await?;

    let r1 = acked(
        &b.request(frame::reply("hall", "b1", root.seq, "beach"))
            .await?,
    );
    let live = a.messages("hall", 1).await?.remove(0);
    assert_eq!(
        (live.seq, live.prev, live.reply_to, live.thread_root),
        (r1.seq, root.seq, Some(root.seq), Some(root.seq))
    );
    let again = acked(
        &b.request(frame::reply("hall", "b1", root.seq, "beach"))
            .await?,
    );
    assert_eq!(
        (again.seq, again.ts),
        (r1.seq, r1.ts),
        "dedupe by client id"
    );
    let r2 = acked(
        &a.request(frame::reply("hall", "a1", r1.seq, "when?"))
            .await?,
    );
    let live = b.messages("hall", 2).await?.remove(1);
    assert_eq!(
        (live.seq, live.reply_to, live.thread_root),
        (r2.seq, Some(r1.seq), Some(root.seq)),
        "a reply to a reply joins the root's thread"
    );
    let up = acked(
        &a.request(frame::react("hall", "a2", root.seq, "👍", false))
            .await?,
    );
    // Bad targets and shapes.
    for (f, want) in [
        (frame::reply("hall", "x1", 999, "?"), ErrorCode::NotFound),
        (
            frame::reply("hall", "x2", up.seq, "?"),
            ErrorCode::BadRequest,
        ),
    ] {
        let got = b.request(f).await?;
        assert_eq!(error_code(&got), Some(want), "{got:?}");
    }
    let got = b
        .request_json(json!({"type":"send","room":"hall","id":"x3","body":"x",
                             "reply_to": root.seq, "edit_of": root.seq}))
        .await?;
    assert_eq!(error_code(&got), Some(ErrorCode::BadRequest), "{got:?}");

    let (s, v) = api
        .call("GET", "/v1/rooms/hall/messages", Some(&bob), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    let h = http_page(&v).messages;
    assert_chain(&h, 0);
    let t = h[0].thread.expect("the root's summary");
    assert_eq!((t.count, t.last_seq, t.last_ts), (2, r2.seq, r2.ts));

    // Paging and unread: bob's own reply is read, ann's is not.
    let base = format!("/v1/rooms/hall/messages/{}/thread", root.seq);
    let (s, v) = thread(&api, &bob, &format!("{base}?limit=1")).await?;
    assert_eq!(s, 200, "{v}");
    let p: ThreadPage = serde_json::from_value(v)?;
    assert_eq!(
        (seqs(&p), p.more, p.unread, p.read),
        (vec![r1.seq], true, 1, 0)
    );
    assert_eq!(p.root.map(|r| r.body), Some("plans?".into()));
    let (_, v) = thread(&api, &bob, &format!("{base}?after={}", r1.seq)).await?;
    let p: ThreadPage = serde_json::from_value(v)?;
    assert_eq!((seqs(&p), p.more), (vec![r2.seq], false));
    let (s, v) = api
        .call(
            "POST",
            &format!("{base}/read"),
            Some(&bob),
            Some(json!({"seq": r2.seq})),
        )
        .await?;
    assert_eq!(s, 204, "{v}");
    let (_, v) = thread(&api, &bob, &base).await?;
    let p: ThreadPage = serde_json::from_value(v)?;
    assert_eq!((p.unread, p.read), (0, r2.seq));
    let (_, v) = thread(&api, &cat, &base).await?;
    let p: ThreadPage = serde_json::from_value(v)?;
    assert_eq!(p.unread, 2, "a reader of the public room");

    // The thread view's refusals.
    let path = format!("/v1/rooms/hall/messages/{}/thread", r1.seq);
    assert_eq!(
        thread(&api, &bob, &path).await?.0,
        400,
        "a reply is no root"
    );
    assert_eq!(
        thread(&api, &bob, "/v1/rooms/hall/messages/999/thread")
            .await?
            .0,
        404
    );
    assert_eq!(
        thread(&api, &bob, "/v1/rooms/hall/messages/x/thread")
            .await?
            .0,
        400
    );
    assert_eq!(thread(&api, &bob, &format!("{base}?limit=0")).await?.0, 400);
    assert_eq!(
        thread(&api, &bob, "/v1/rooms/den/messages/1/thread")
            .await?
            .0,
        403
    );

    // bob is away while ann replies: on resume, the reply once; and it is unread.
    let seen = up.seq;
    b.close().await;
    let r3 = acked(
        &a.request(frame::reply("hall", "a3", root.seq, "noon"))
            .await?,
    );
    let end = a.post("hall", "end", "end").await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    b.request(frame::join_since("hall", seen)).await?;
    let got = b.messages("hall", 2).await?;
    assert_chain(&got, seen);
    assert_eq!(
        got.iter()
            .map(|m| (m.seq, m.thread_root))
            .collect::<Vec<_>>(),
        [(r3.seq, Some(root.seq)), (end.seq, None)]
    );
    let (_, v) = thread(&api, &bob, &base).await?;
    let p: ThreadPage = serde_json::from_value(v)?;
    assert_eq!(p.unread, 1);
    mesh.stop().await
}

/// A thread cursor is kept only for a member (as the room's own cursor), only for a thread
/// (a root with replies), and never beyond the room's last message: reading made-up roots
/// or messages without replies (one stored record each, which retention never drops) is
/// refused, as is a reader of a public room who is no member, and a read at u64::MAX does
/// not hide the next reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_cursors_are_for_threads_and_clamped() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, cat) = (api.user("ann").await?, api.user("cat").await?);
    let dan = api.user("dan").await?;
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("hall").await?;
    let mut c = Client::login(&mesh.ws_url(), &cat).await?;
    c.join("hall").await?;
    let root = a.post("hall", "m1", "plans?").await?;
    let r1 = acked(
        &a.request(frame::reply("hall", "a1", root.seq, "beach"))
            .await?,
    );
    let lonely = a.post("hall", "m2", "nobody answers this").await?;
    let read_as = |who: &str, seq_root: u64, seq: u64| {
        let (api, who) = (&api, who.to_owned());
        async move {
            api.call(
                "POST",
                &format!("/v1/rooms/hall/messages/{seq_root}/thread/read"),
                Some(&who),
                Some(json!({ "seq": seq })),
            )
            .await
        }
    };
    let read = |seq_root: u64, seq: u64| read_as(&cat, seq_root, seq);
    for made_up in [999, 1_000_000, u64::MAX, lonely.seq] {
        let (s, v) = read(made_up, 1).await?;
        assert_eq!(s, 404, "a cursor for root {made_up}, no thread: {v}");
    }
    let (s, v) = read_as(&dan, root.seq, 1).await?;
    assert_eq!(
        (s, http_error(&v)),
        (403, Some(ErrorCode::Forbidden)),
        "a reader who is no member keeps no cursor: {v}"
    );
    let (s, v) = read(r1.seq, 1).await?;
    assert_eq!(s, 400, "a reply is no root: {v}");

    let (s, v) = read(root.seq, u64::MAX).await?;
    assert_eq!(s, 204, "{v}");
    let base = format!("/v1/rooms/hall/messages/{}/thread", root.seq);
    let (_, v) = thread(&api, &cat, &base).await?;
    let p: ThreadPage = serde_json::from_value(v)?;
    assert_eq!(
        (p.unread, p.read),
        (0, lonely.seq),
        "clamped to the room's last message"
    );
    let r2 = acked(
        &a.request(frame::reply("hall", "a2", root.seq, "noon"))
            .await?,
    );
    let (_, v) = thread(&api, &cat, &base).await?;
    let p: ThreadPage = serde_json::from_value(v)?;
    assert_eq!((p.unread, seqs(&p).last()), (1, Some(&r2.seq)));
    mesh.stop().await
}

/// 30 replies of control characters (most of them 6 bytes once JSON-escaped, 44 KB a
/// reply): one page of 100 would be over NATS's 1 MiB payload limit. The thread comes in
/// pages under it instead, each with at least one reply and `more` until the last, and
/// together they hold every reply once (before: 500 `internal` for every reader).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_of_long_replies_comes_in_pages_that_fit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("hall").await?;
    let root = a.post("hall", "root", "a long thread").await?;
    let long = escape_heavy();
    let mut replies = Vec::new();
    for i in 0..30 {
        let f = a
            .request(frame::reply("hall", &format!("r{i}"), root.seq, &long))
            .await?;
        replies.push(acked(&f).seq);
    }
    let base = format!("/v1/rooms/hall/messages/{}/thread?limit=100", root.seq);
    let mut got = Vec::new();
    let mut pages = 0;
    let mut after = String::new();
    loop {
        let (s, v) = thread(&api, &bob, &format!("{base}{after}")).await?;
        assert_eq!(s, 200, "{}", v["error"]);
        assert!(v.to_string().len() < 1 << 20, "page over 1 MiB");
        let page: ThreadPage = serde_json::from_value(v)?;
        assert!(!page.messages.is_empty(), "a page makes progress");
        assert!(page.messages.iter().all(|m| m.body == long));
        assert_eq!(page.root.as_ref().map(|r| r.seq), Some(root.seq));
        pages += 1;
        after = format!("&after={}", page.messages.last().expect("a reply").seq);
        got.extend(seqs(&page));
        if !page.more {
            break;
        }
    }
    assert_eq!(got, replies, "every reply once, in order");
    assert!(pages >= 2, "{pages} pages");
    Ok(())
}
