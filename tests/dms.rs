//! Closing DMs (extension) over a real mesh: a user closes a DM (`DELETE /v1/dm/{user}`), it
//! is listed `closed` in that user's room list (not the other's) while the user stays a
//! member, and is open again with the next message in it or when the user opens it again;
//! bad requests are refused.

mod common;

use anyhow::Result;
use common::*;
use serde_json::Value;

/// The DMs in the caller's room list that are not closed, by room id; every DM listed is
/// listed once, closed or not.
async fn listed_dms(api: &Api, token: &str) -> Result<Vec<String>> {
    let (s, v) = api.call("GET", "/v1/rooms", Some(token), None).await?;
    assert_eq!(s, 200, "{v}");
    let dms: Vec<&Value> = v["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["kind"] == "dm")
        .collect();
    for dm in &dms {
        assert!(dm["closed"].is_null() || dm["closed"] == true, "{dm}");
    }
    Ok(dms
        .into_iter()
        .filter(|r| r["closed"].is_null())
        .filter_map(|r| Some(r["room"].as_str()?.to_owned()))
        .collect())
}

async fn open(api: &Api, token: &str, other: &str) -> Result<String> {
    let (s, v) = api
        .call("POST", &format!("/v1/dm/{other}"), Some(token), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    Ok(v["room"].as_str().unwrap_or_default().to_owned())
}

async fn close(api: &Api, token: Option<&str>, other: &str) -> Result<(u16, Value)> {
    api.call("DELETE", &format!("/v1/dm/{other}"), token, None)
        .await
}

/// Waits until `room` is in the caller's room list.
async fn listed_again(api: &Api, token: &str, room: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !listed_dms(api, token).await?.iter().any(|r| r == room) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{room} never came back to the list"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_dm_comes_back_with_the_next_message_or_an_open() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let dm = open(&api, &ann, "bob").await?;
    let mut her = Client::login(&mesh.ws_url(), &ann).await?;
    her.join(&dm).await?;
    her.post(&dm, "m1", "hi bob").await?;
    listed_again(&api, &bob, &dm).await?;

    // Another session of bob's, not in the DM, is told to read its room list again.
    let mut elsewhere = Client::login(&mesh.ws_url(), &bob).await?;
    let (s, v) = close(&api, Some(&bob), "ann").await?;
    assert_eq!(s, 204, "{v}");
    elsewhere
        .wait_for(|f| matches!(f, ServerFrame::Membership { room, role: Some(_) } if *room == dm))
        .await?;
    assert!(
        listed_dms(&api, &bob).await?.is_empty(),
        "closed, still listed"
    );
    let (_, v) = api.call("GET", "/v1/rooms", Some(&bob), None).await?;
    assert_eq!(
        (&v["rooms"][0]["room"], &v["rooms"][0]["closed"]),
        (&dm.as_str().into(), &true.into()),
        "{v}"
    );
    assert_eq!(
        listed_dms(&api, &ann).await?,
        std::slice::from_ref(&dm),
        "ann's list changed"
    );
    // Still a member: bob reads the DM.
    let (s, v) = api
        .call("GET", &format!("/v1/rooms/{dm}/messages"), Some(&bob), None)
        .await?;
    assert_eq!((s, v["messages"].as_array().map(Vec::len)), (200, Some(1)));
    // Closing twice is one close.
    assert_eq!(close(&api, Some(&bob), "ann").await?.0, 204);

    // The next message brings it back, unread.
    her.post(&dm, "m2", "still there?").await?;
    listed_again(&api, &bob, &dm).await?;
    let (_, v) = api.call("GET", "/v1/rooms", Some(&bob), None).await?;
    let listing = v["rooms"]
        .as_array()
        .and_then(|rooms| rooms.iter().find(|r| r["room"] == dm.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&listing["peer"], &listing["unread"]),
        (&"ann".into(), &2.into())
    );

    // Closed again, then opened by bob: listed with nothing new in it.
    assert_eq!(close(&api, Some(&bob), "ann").await?.0, 204);
    assert!(listed_dms(&api, &bob).await?.is_empty());
    assert_eq!(open(&api, &bob, "ann").await?, dm);
    assert_eq!(listed_dms(&api, &bob).await?, std::slice::from_ref(&dm));

    // A DM with nothing in it closes too.
    let carl = api.user("carl").await?;
    let empty = open(&api, &carl, "ann").await?;
    assert_eq!(close(&api, Some(&carl), "ann").await?.0, 204);
    assert!(listed_dms(&api, &carl).await?.is_empty());
    assert!(listed_dms(&api, &ann).await?.contains(&empty));
    mesh.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_close_requests_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.user("bob").await?;
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or_default().to_owned();

    // No DM with bob yet, and no such user.
    let (s, v) = close(&api, Some(&ann), "bob").await?;
    assert_eq!((s, code(&v)), (404, "not_found".to_owned()), "{v}");
    let (s, v) = close(&api, Some(&ann), "nobody").await?;
    assert_eq!((s, code(&v)), (404, "not_found".to_owned()), "{v}");
    let (s, v) = close(&api, Some(&ann), "ann").await?;
    assert_eq!((s, code(&v)), (400, "bad_request".to_owned()), "{v}");
    let (s, v) = close(&api, Some(&ann), "b%20b").await?;
    assert_eq!((s, code(&v)), (400, "bad_request".to_owned()), "{v}");
    let (s, v) = close(&api, None, "bob").await?;
    assert_eq!(s, 401, "{v}");
    mesh.stop().await
}
