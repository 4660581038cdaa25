//! Member lists and room topics against a real mesh: `GET /v1/rooms/{room}/members` pages by
//! user name with roles and display names and is for members only; `PATCH /v1/rooms/{room}`
//! sets a bounded, validated topic (owner or admin), which the room list returns and joined
//! sessions get live as a `topic` frame; `GET /v1/rooms` comes in pages.

mod common;

use anyhow::Result;
use common::*;
use serde_json::{json, Value};

fn users_of(page: &Value) -> Vec<(String, String)> {
    page["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["user"].as_str().unwrap_or("").to_owned(),
                        m["role"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Members see every member once, by name, with roles, over pages bounded by `limit`;
/// display names come along; outsiders get 403, unknown rooms 404, bad parameters 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_listed_in_pages_to_members_only() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let mut tokens = Vec::new();
    for u in ["bob", "cy", "dee"] {
        tokens.push(api.user(u).await?);
    }
    let eve = api.user("eve").await?;
    api.room(&ann, "club", "private").await?;
    for (u, role) in [("bob", "admin"), ("cy", "member"), ("dee", "member")] {
        let (s, v) = api
            .call(
                "POST",
                "/v1/rooms/club/members",
                Some(&ann),
                Some(json!({"user": u, "role": role})),
            )
            .await?;
        assert_eq!(s, 204, "{v}");
    }
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/users/me",
            Some(&tokens[1]),
            Some(json!({"display_name": "Cy Twombly"})),
        )
        .await?;
    assert_eq!(s, 200, "{v}");

    // One page, as a plain member.
    let (s, page) = api
        .call("GET", "/v1/rooms/club/members", Some(&tokens[2]), None)
        .await?;
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        users_of(&page),
        [
            ("ann", "owner"),
            ("bob", "admin"),
            ("cy", "member"),
            ("dee", "member")
        ]
        .map(|(u, r)| (u.to_owned(), r.to_owned()))
    );
    assert_eq!(page["more"], false);
    assert_eq!(page["members"][2]["display_name"], "Cy Twombly");
    assert!(page["members"][0].get("display_name").is_none());

    // Pages of two, following `after`.
    let (s, first) = api
        .call("GET", "/v1/rooms/club/members?limit=2", Some(&ann), None)
        .await?;
    assert_eq!(s, 200);
    assert_eq!(first["more"], true);
    let (s, second) = api
        .call(
            "GET",
            "/v1/rooms/club/members?limit=2&after=bob",
            Some(&ann),
            None,
        )
        .await?;
    assert_eq!(s, 200);
    assert_eq!(second["more"], false);
    let names: Vec<String> = users_of(&first)
        .into_iter()
        .chain(users_of(&second))
        .map(|(u, _)| u)
        .collect();
    assert_eq!(names, ["ann", "bob", "cy", "dee"]);

    // Outsiders, unknown rooms, bad parameters.
    let (s, v) = api
        .call("GET", "/v1/rooms/club/members", Some(&eve), None)
        .await?;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    api.room(&ann, "square", "public").await?;
    let (s, _) = api
        .call("GET", "/v1/rooms/square/members", Some(&eve), None)
        .await?;
    assert_eq!(s, 403, "a public room's member list is for its members");
    let (s, _) = api
        .call("GET", "/v1/rooms/nowhere/members", Some(&ann), None)
        .await?;
    assert_eq!(s, 404);
    for q in ["limit=0", "limit=201", "limit=x", "after=a.b", "sort=name"] {
        let (s, v) = api
            .call(
                "GET",
                &format!("/v1/rooms/club/members?{q}"),
                Some(&ann),
                None,
            )
            .await?;
        assert_eq!(s, 400, "{q}: {v}");
    }
    let (s, _) = api
        .call("GET", "/v1/rooms/club/members", None, None)
        .await?;
    assert_eq!(s, 401);
    Ok(())
}

/// The owner and admins set a topic; members and outsiders may not; it is trimmed, bounded
/// (256 characters) and one line of visible text; the room list carries it; joined sessions
/// get `topic {room, topic, by}` live; null clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_set_by_owners_and_admins_and_reach_the_room() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let cy = api.user("cy").await?;
    api.room(&ann, "lounge", "public").await?;
    let (s, _) = api
        .call(
            "POST",
            "/v1/rooms/lounge/members",
            Some(&ann),
            Some(json!({"user": "bob", "role": "admin"})),
        )
        .await?;
    assert_eq!(s, 204);
    let mut watcher = Client::login(&mesh.ws_url(), &cy).await?;
    watcher.join("lounge").await?;

    let set = |token: String, topic: Value| {
        let api = &api;
        async move {
            api.call(
                "PATCH",
                "/v1/rooms/lounge",
                Some(&token),
                Some(json!({ "topic": topic })),
            )
            .await
        }
    };
    let (s, v) = set(bob.clone(), json!("  Gardening, and rust 🦀 ")).await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["room"], &v["topic"]),
        (&json!("lounge"), &json!("Gardening, and rust 🦀"))
    );
    assert!(v["seq"].as_u64().is_some(), "the topic event's seq: {v}");
    let live = watcher
        .wait_for(|f| matches!(f, ServerFrame::Topic { .. }))
        .await?;
    assert_eq!(
        live,
        ServerFrame::Topic {
            room: "lounge".into(),
            topic: Some("Gardening, and rust 🦀".into()),
            by: "bob".into(),
        }
    );
    let (_, list) = api.call("GET", "/v1/rooms", Some(&cy), None).await?;
    let lounge = list["rooms"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["room"] == "lounge").cloned())
        .unwrap_or_default();
    assert_eq!(lounge["topic"], "Gardening, and rust 🦀");

    // A plain member (cy joined the public room) and an outsider may not.
    let (s, v) = set(cy.clone(), json!("mine now")).await?;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let dee = api.user("dee").await?;
    let (s, _) = set(dee, json!("mine now")).await?;
    assert_eq!(s, 403);
    // Bounded and validated, before anything is stored.
    for bad in [
        json!("x".repeat(257)),
        json!("two\nlines"),
        json!("sneaky \u{202E}txt.exe"),
        json!(42),
    ] {
        let (s, v) = set(ann.clone(), bad.clone()).await?;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    for body in [json!({}), json!({"topic": "a", "title": "b"})] {
        let (s, _) = api
            .call("PATCH", "/v1/rooms/lounge", Some(&ann), Some(body))
            .await?;
        assert_eq!(s, 400);
    }
    let (s, _) = api
        .call(
            "PATCH",
            "/v1/rooms/nowhere",
            Some(&ann),
            Some(json!({"topic": "x"})),
        )
        .await?;
    assert_eq!(s, 404);
    // A DM has no owner or admin: nobody sets its topic.
    let (_, dm) = api.call("POST", "/v1/dm/bob", Some(&ann), None).await?;
    let room = dm["room"].as_str().unwrap_or_default().to_owned();
    let (s, _) = api
        .call(
            "PATCH",
            &format!("/v1/rooms/{room}"),
            Some(&ann),
            Some(json!({"topic": "us"})),
        )
        .await?;
    assert_eq!(s, 403);

    // Null clears it, live too.
    let (s, v) = set(ann.clone(), Value::Null).await?;
    assert_eq!((s, &v["topic"]), (200, &Value::Null));
    let live = watcher
        .wait_for(|f| matches!(f, ServerFrame::Topic { topic: None, .. }))
        .await?;
    assert!(
        matches!(&live, ServerFrame::Topic { by, .. } if by == "ann"),
        "{live:?}"
    );
    let (_, list) = api.call("GET", "/v1/rooms", Some(&ann), None).await?;
    let lounge = list["rooms"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["room"] == "lounge").cloned())
        .unwrap_or_default();
    assert!(lounge.get("topic").is_none(), "{lounge}");
    Ok(())
}

/// A user added to more rooms than one page of `GET /v1/rooms` holds (here by another user's
/// rooms, named to sort first) still reaches every room of its own: the list comes in pages
/// (`more`, `after`), the SDK reads them all, and the public rooms come on the last page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_list_pages_past_rooms_one_was_added_to() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.worker.rooms_list_max = 4;
    config.worker.rooms_list_public_max = 4;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let spam = api.user("spam").await?;
    let cy = api.user("cy").await?;
    api.room(&ann, "zz-mine", "private").await?;
    api.room(&cy, "zz-public", "public").await?;
    for i in 0..6 {
        let room = format!("aa-spam{i}");
        api.room(&spam, &room, "private").await?;
        let body = json!({"user": "ann", "role": "member"});
        let (s, v) = api
            .call(
                "POST",
                &format!("/v1/rooms/{room}/members"),
                Some(&spam),
                Some(body),
            )
            .await?;
        assert_eq!(s, 204, "{v}");
    }
    let (s, first) = api.call("GET", "/v1/rooms", Some(&ann), None).await?;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["more"], true);
    let listed: Vec<String> = http_rooms(&first)
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.room)
        .collect();
    assert_eq!(listed, ["aa-spam0", "aa-spam1", "aa-spam2", "aa-spam3"]);
    let (s, last) = api
        .call("GET", "/v1/rooms?after=aa-spam3", Some(&ann), None)
        .await?;
    assert_eq!(s, 200, "{last}");
    assert_eq!(last["more"], false);
    let listed: Vec<(String, bool)> = http_rooms(&last)
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.room, r.role.is_some()))
        .collect();
    let want = [
        ("aa-spam4", true),
        ("aa-spam5", true),
        ("zz-mine", true),
        ("zz-public", false),
    ];
    assert_eq!(
        listed,
        want.map(|(r, mine)| (r.to_owned(), mine)),
        "own rooms, then the public tail"
    );

    let every = chatmesh_client::Http::new(&mesh.url())?
        .with_token(&ann)
        .rooms()
        .await?;
    assert_eq!(every.len(), 8, "{every:?}");
    for bad in [
        "/v1/rooms?after=a%20b",
        "/v1/rooms?after=",
        "/v1/rooms?page=2",
    ] {
        let (s, v) = api.call("GET", bad, Some(&ann), None).await?;
        assert_eq!(
            (s, http_error(&v)),
            (400, Some(ErrorCode::BadRequest)),
            "{bad}: {v}"
        );
    }
    mesh.stop().await
}

/// A room list of long topics (256 four-byte characters each) is cut at the worker's page
/// budget, not only at `rooms_list_max`: every page is under the budget and says `more`
/// until the last, and paging with `after` lists each room once (before: a list over NATS's
/// payload limit, 1,000 such rooms, answered 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_list_is_cut_at_its_byte_budget() -> Result<()> {
    const BUDGET: usize = 16 * 1024;
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.worker.history_page_max_bytes = BUDGET;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let topic = "🦀".repeat(256);
    let rooms: Vec<String> = (0..30).map(|i| format!("long{i:02}")).collect();
    for room in &rooms {
        api.room(&ann, room, "private").await?;
        let (s, v) = api
            .call(
                "PATCH",
                &format!("/v1/rooms/{room}"),
                Some(&ann),
                Some(json!({ "topic": topic })),
            )
            .await?;
        assert_eq!(s, 200, "{v}");
    }
    let mut listed = Vec::new();
    let mut pages = 0;
    let mut after = String::new();
    loop {
        let (s, v) = api
            .call("GET", &format!("/v1/rooms{after}"), Some(&ann), None)
            .await?;
        assert_eq!(s, 200, "{v}");
        assert!(
            v["rooms"].to_string().len() <= BUDGET,
            "page over the budget"
        );
        let page = http_rooms(&v).expect("rooms");
        assert!(!page.is_empty(), "a page makes progress");
        assert!(page
            .iter()
            .all(|r| r.topic.as_deref() == Some(topic.as_str())));
        pages += 1;
        after = format!("?after={}", page.last().expect("a room").room);
        listed.extend(page.into_iter().map(|r| r.room));
        if v["more"] != json!(true) {
            break;
        }
    }
    assert_eq!(listed, rooms, "each room once, in order");
    assert!(pages >= 3, "cut at the budget: {pages} pages");
    Ok(())
}
