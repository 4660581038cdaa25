//! Push notifications end to end (docs/PUSH.md): a real mesh (nats-server, worker with its
//! fjall store and notifier, gateway), real WebSocket sessions, and a local Web Push service
//! ([`receiver`]) that checks each push's VAPID token and decrypts its payload with the
//! subscription's private key, as a browser's push service and service worker would; local
//! stand-ins for FCM ([`fcm`]) and APNs ([`apns`]) check what reaches them likewise.

mod apart;
mod apns;
#[path = "../common/mod.rs"]
mod common;
mod fcm;
mod kill;
mod origins;
mod proxy;
mod receiver;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{ensure, Result};
use apns::ApnsStandIn;
use chatmesh::Mesh;
use common::*;
use fcm::FcmStandIn;
use receiver::{Receiver, Subscription};
use serde_json::{json, Value};

/// Collapse window and grace of these tests (short, so the tests are).
const COLLAPSE_MS: u64 = 1_000;
const GRACE_MS: u64 = 500;

fn push_config() -> chatmesh::Config {
    let mut c = fast_config();
    c.push.enabled = true;
    c.push.allow_http_loopback = true;
    c.push.collapse_ms = COLLAPSE_MS;
    c.push.grace_ms = GRACE_MS;
    c.push.retry_max_secs = 20;
    c
}

/// The served VAPID public key.
async fn vapid_key(api: &Api, token: &str) -> Result<String> {
    let (s, v) = api.call("GET", "/v1/push/vapid", Some(token), None).await?;
    ensure!(s == 200, "vapid: {s} {v}");
    Ok(v["public_key"].as_str().unwrap_or_default().to_owned())
}

async fn register(api: &Api, token: &str, sub: &Subscription) -> Result<String> {
    let (s, v) = api
        .call("POST", "/v1/push/targets", Some(token), Some(sub.json()))
        .await?;
    ensure!(s == 201, "register target: {s} {v}");
    Ok(v["id"].as_str().unwrap_or_default().to_owned())
}

/// Waits until the presence bucket shows `user` online in `room`.
async fn wait_online(mesh: &Mesh, room: &str, user: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !chatmesh_workers::push::presence::read(&mesh.worker_nats, room)
        .await
        .contains(user)
    {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{user} never online in {room}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A room of `owner` with `members`.
async fn club(api: &Api, owner: &str, room: &str, members: &[&str]) -> Result<()> {
    api.room(owner, room, "private").await?;
    for user in members {
        let (s, v) = api
            .call(
                "POST",
                &format!("/v1/rooms/{room}/members"),
                Some(owner),
                Some(json!({"user": user})),
            )
            .await?;
        ensure!(s == 204, "add {user}: {s} {v}");
    }
    Ok(())
}

/// Registration is validated (https only, loopback http only by config, keys that are keys,
/// bounded), listed without keys, removable; settings patch and read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_and_settings_are_validated_listed_and_removed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = push_config();
    config.push.max_targets_per_user = 2;
    config.push.apns.topics = vec!["com.example.chat".into()];
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let key = vapid_key(&api, &ann).await?;
    assert_eq!(key.len(), 87, "65 bytes, base64url: {key}");
    assert!(dir.path().join("vapid-key").is_file());

    let bad = |body: Value| {
        let api = &api;
        let ann = &ann;
        async move {
            let (s, v) = api
                .call("POST", "/v1/push/targets", Some(ann), Some(body))
                .await?;
            anyhow::Ok((s, v))
        }
    };
    let mut sub = Subscription::new("http://push.example/x".into()).json();
    let (s, v) = bad(sub.clone()).await?;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("https"), "{v}");
    sub["endpoint"] = json!("https://push.example/x");
    sub["keys"]["p256dh"] = json!("AAAA");
    assert_eq!(bad(sub.clone()).await?.0, 400);
    sub["keys"]["p256dh"] = Subscription::new(String::new()).json()["keys"]["p256dh"].clone();
    sub["keys"]["auth"] = json!("AAAA");
    assert_eq!(bad(sub).await?.0, 400);
    let long = format!("https://push.example/{}", "a".repeat(2000));
    assert_eq!(bad(Subscription::new(long).json()).await?.0, 400);
    assert_eq!(bad(json!({"kind": "sms", "to": "1"})).await?.0, 400);
    assert_eq!(
        bad(json!({"kind": "apns", "token": "xyz", "topic": "a.b"}))
            .await?
            .0,
        400
    );
    // A topic that is not one of `[push.apns] topics` (another app of the team).
    let (s, v) =
        bad(json!({"kind": "apns", "token": "ab".repeat(32), "topic": "com.other.app"})).await?;
    assert_eq!(s, 400, "{v}");

    // Loopback http is allowed by this config; FCM and APNs tokens are stored.
    let web = Subscription::new("http://127.0.0.1:9/push/a".into());
    let id = register(&api, &ann, &web).await?;
    assert_eq!(
        register(&api, &ann, &web).await?,
        id,
        "same subscription, same id"
    );
    let fcm = json!({"kind": "fcm", "token": "fcm:token-1"});
    let (s, fcm_info) = api
        .call("POST", "/v1/push/targets", Some(&ann), Some(fcm))
        .await?;
    assert_eq!(s, 201, "{fcm_info}");
    let apns = json!({"kind": "apns", "token": "ab".repeat(32), "topic": "com.example.chat"});
    let (s, v) = api
        .call("POST", "/v1/push/targets", Some(&ann), Some(apns))
        .await?;
    assert_eq!(s, 409, "a third target is over the bound of 2: {v}");
    let (s, list) = api
        .call("GET", "/v1/push/targets", Some(&ann), None)
        .await?;
    assert_eq!(s, 200);
    let targets = list["targets"].as_array().cloned().unwrap_or_default();
    assert_eq!(targets.len(), 2, "{list}");
    assert!(
        !list.to_string().contains("p256dh"),
        "keys are never listed: {list}"
    );
    assert!(targets
        .iter()
        .any(|t| t["kind"] == "web_push" && t["label"] == "http://127.0.0.1:9"));
    let path = format!("/v1/push/targets/{}", fcm_info["id"].as_str().unwrap_or(""));
    assert_eq!(api.call("DELETE", &path, Some(&ann), None).await?.0, 204);
    assert_eq!(api.call("DELETE", &path, Some(&ann), None).await?.0, 404);

    let (s, v) = api
        .call("GET", "/v1/push/settings", Some(&ann), None)
        .await?;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"mute_all": false, "muted_rooms": [], "dms_only": false, "mentions_only": false, "preview": true})
    );
    let patch = json!({"mute_rooms": ["b", "a"], "preview": false});
    let (s, v) = api
        .call("PATCH", "/v1/push/settings", Some(&ann), Some(patch))
        .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["muted_rooms"], json!(["a", "b"]));
    let patch = json!({"unmute_rooms": ["a"], "dms_only": true});
    let (_, v) = api
        .call("PATCH", "/v1/push/settings", Some(&ann), Some(patch))
        .await?;
    assert_eq!(
        v,
        json!({"mute_all": false, "muted_rooms": ["b"], "dms_only": true, "mentions_only": false, "preview": false})
    );
    let (s, _) = api
        .call(
            "PATCH",
            "/v1/push/settings",
            Some(&ann),
            Some(json!({"mute": true})),
        )
        .await?;
    assert_eq!(s, 400, "unknown fields are refused");
    let (s, _) = api
        .call(
            "PATCH",
            "/v1/push/settings",
            Some(&ann),
            Some(json!({"mute_rooms": ["no such"]})),
        )
        .await?;
    assert_eq!(s, 400, "room names are checked");
    // Every list is bounded as it comes (at most MAX_MUTED_ROOMS names, repeats counted),
    // not only the list that results; within the bound, repeats and a room both muted and
    // unmuted cost one set operation each.
    let max = chatmesh_protocol::push::MAX_MUTED_ROOMS;
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/push/settings",
            Some(&ann),
            Some(json!({"mute_rooms": vec!["x"; max + 1], "unmute_rooms": vec!["x"; max]})),
        )
        .await?;
    assert_eq!(s, 400, "{} repeats of one room: {v}", max + 1);
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/push/settings",
            Some(&ann),
            Some(json!({"mute_rooms": vec!["x"; max], "unmute_rooms": vec!["x"; max]})),
        )
        .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["muted_rooms"], json!(["b"]), "{v}");
    assert_eq!(
        api.call("GET", "/v1/push/targets", None, None).await?.0,
        401
    );
    mesh.stop().await
}

/// One burst of messages: the offline member gets ONE push (count, last sender, body) that
/// decrypts with its subscription's key under a valid VAPID token; the member online in the
/// room gets none, nor the one who muted the room; the one without previews gets the room
/// and the count only; the sender gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_members_get_one_push_per_window_and_nobody_else_does() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), push_config()).await?;
    let push = Receiver::start().await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let mut tokens = Vec::new();
    let mut subs = Vec::new();
    for user in ["bob", "cy", "dee", "eve"] {
        let token = api.user(user).await?;
        let sub = Subscription::new(push.endpoint(user));
        register(&api, &token, &sub).await?;
        tokens.push(token);
        subs.push(sub);
    }
    let sub_ann = Subscription::new(push.endpoint("ann"));
    register(&api, &ann, &sub_ann).await?;
    club(&api, &ann, "club", &["bob", "cy", "dee", "eve"]).await?;
    let (s, _) = api
        .call(
            "PATCH",
            "/v1/push/settings",
            Some(&tokens[2]),
            Some(json!({"mute_rooms": ["club"]})),
        )
        .await?;
    assert_eq!(s, 200);
    let (s, _) = api
        .call(
            "PATCH",
            "/v1/push/settings",
            Some(&tokens[3]),
            Some(json!({"preview": false})),
        )
        .await?;
    assert_eq!(s, 200);
    let key = vapid_key(&api, &ann).await?;

    let mut cy = Client::login(&mesh.ws_url(), &tokens[1]).await?;
    cy.join("club").await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    wait_online(&mesh, "club", "cy").await?;

    for (i, body) in ["one", "two", "the plans are ready"].iter().enumerate() {
        sender.post("club", &format!("m{i}"), body).await?;
    }
    let got = push.wait_delivered("bob", 1, WAIT).await?;
    let bob = subs[0].open(&got[0], &key, &push.origin())?;
    assert_eq!(bob["type"], "messages");
    assert_eq!(bob["room"], "club");
    assert_eq!(bob["count"], 3, "{bob}");
    assert_eq!(bob["from"], "ann");
    assert_eq!(bob["body"], "the plans are ready");
    assert_eq!(
        bob["rooms"],
        json!([{"room": "club", "count": 3, "last_seq": bob["seq"]}])
    );
    let eve = push.wait_delivered("eve", 1, WAIT).await?;
    let eve = subs[3].open(&eve[0], &key, &push.origin())?;
    assert_eq!(eve["count"], 3);
    assert!(
        eve.get("from").is_none() && eve.get("body").is_none(),
        "{eve}"
    );
    assert!(!eve.to_string().contains("plans"), "{eve}");

    // Nothing else arrives, for anyone, well past the window.
    tokio::time::sleep(Duration::from_millis(COLLAPSE_MS + 1_500)).await;
    assert_eq!(push.received("bob").len(), 1, "one push for the burst");
    assert_eq!(push.received("eve").len(), 1);
    assert!(push.received("cy").is_empty(), "cy is online in the room");
    assert!(push.received("dee").is_empty(), "dee muted the room");
    assert!(
        push.received("ann").is_empty(),
        "the sender is never pushed"
    );

    // A later message opens a new window: one more push, for that message only.
    sender.post("club", "m9", "later").await?;
    let got = push.wait_delivered("bob", 2, WAIT).await?;
    let later = subs[0].open(&got[1], &key, &push.origin())?;
    assert_eq!(
        (later["count"].clone(), later["body"].clone()),
        (json!(1), json!("later"))
    );
    mesh.stop().await
}

/// A subscription its push service says is gone (410) is removed; one whose service is
/// down (503 with Retry-After, twice) gets the same push once it is back, exactly once,
/// after waiting as long as it was told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_targets_are_removed_and_an_outage_delivers_exactly_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), push_config()).await?;
    let push = Receiver::start().await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let gone = Subscription::new(push.endpoint("gone"));
    let flaky = Subscription::new(push.endpoint("flaky"));
    let gone_id = register(&api, &bob, &gone).await?;
    let flaky_id = register(&api, &bob, &flaky).await?;
    push.script("gone", &[(410, None)]);
    push.script("flaky", &[(503, Some(1)), (503, Some(1))]);
    club(&api, &ann, "club", &["bob"]).await?;
    let key = vapid_key(&api, &ann).await?;

    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    sender.post("club", "m1", "are you there?").await?;

    let got = push.wait_delivered("flaky", 1, WAIT).await?;
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 201]
    );
    for pair in got.windows(2) {
        let waited = pair[1].at - pair[0].at;
        assert!(
            waited >= Duration::from_millis(950),
            "Retry-After honoured: {waited:?}"
        );
    }
    let payloads: Vec<Value> = got
        .iter()
        .map(|r| flaky.open(r, &key, &push.origin()))
        .collect::<Result<_>>()?;
    assert!(payloads
        .iter()
        .all(|p| p["body"] == "are you there?" && p["count"] == 1));

    // The gone target was tried once and removed; the other is still there.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, list) = api
            .call("GET", "/v1/push/targets", Some(&bob), None)
            .await?;
        let ids: Vec<&str> = list["targets"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["id"].as_str()).collect())
            .unwrap_or_default();
        if !ids.contains(&gone_id.as_str()) {
            assert_eq!(ids, [flaky_id.as_str()]);
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "gone target never removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(push.received("gone").len(), 1);

    // Exactly once: nothing more for that message, and the next message pushes once.
    tokio::time::sleep(Duration::from_millis(COLLAPSE_MS + 1_000)).await;
    assert_eq!(push.received("flaky").len(), 3);
    sender.post("club", "m2", "hello?").await?;
    let got = push.wait_delivered("flaky", 2, WAIT).await?;
    assert_eq!(got.len(), 4);
    let next = flaky.open(&got[3], &key, &push.origin())?;
    assert_eq!(
        (next["count"].clone(), next["body"].clone()),
        (json!(1), json!("hello?"))
    );
    assert_eq!(
        push.received("gone").len(),
        1,
        "a removed target is never tried again"
    );
    mesh.stop().await
}

/// `sender` posts to room `fine`; dan's push must arrive within its window and 3 s, not
/// behind `others`.
async fn dan_is_pushed_at_once(sender: &mut Client, push: &Receiver, others: &str) -> Result<()> {
    let sent = tokio::time::Instant::now();
    sender.post("fine", "m2", "hello dan").await?;
    push.wait_delivered("dan", 1, WAIT).await?;
    let took = sent.elapsed();
    let window = Duration::from_millis(COLLAPSE_MS + GRACE_MS);
    assert!(
        took < window + Duration::from_secs(3),
        "dan's push took {took:?} behind {others}"
    );
    Ok(())
}

/// A push service that keeps answering 503 (with `Retry-After`) delays only its own pushes:
/// its retries wait without holding a delivery slot, so another user's push goes out at
/// once. With one slot (`concurrency = 1`) the failing pushes, due first, held it through
/// every retry, until they gave up (`retry_max_secs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_push_service_does_not_hold_up_other_users() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = push_config();
    config.push.concurrency = 1;
    let mesh = start_mesh(dir.path(), config).await?;
    let push = Receiver::start().await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let failing = ["bob", "cat"];
    for user in failing {
        let token = api.user(user).await?;
        register(&api, &token, &Subscription::new(push.endpoint(user))).await?;
        push.script(user, &[(503, Some(4)); 10]);
    }
    let dan = api.user("dan").await?;
    register(&api, &dan, &Subscription::new(push.endpoint("dan"))).await?;
    club(&api, &ann, "down", &failing).await?;
    club(&api, &ann, "fine", &["dan"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("down").await?;
    sender.join("fine").await?;
    // The failing users' windows close first.
    sender.post("down", "m1", "anyone?").await?;
    push.wait_for_request("bob", WAIT).await?;
    dan_is_pushed_at_once(&mut sender, &push, "the failing ones").await?;
    mesh.stop().await
}

/// One user whose ten push targets all stall (a push service that takes every request and
/// never answers) cannot take the request slots from everyone else while messages keep
/// coming for it: a user's notification is sent to at most two of its targets at once, one
/// notification of a user at a time (newer ones are skipped while it is out), so another
/// user's push goes out at once. Before, each of its windows queued ten requests for the
/// shared slots, each held for the whole request timeout. Here the other user's endpoint is
/// on the same push service, whose share of the slots (a quarter of 16: four) is more than
/// one user's two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_stalling_targets_does_not_starve_other_users() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = push_config();
    config.push.concurrency = 16;
    config.push.request_timeout_ms = 5_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let push = Receiver::start().await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    for i in 0..10 {
        let name = format!("bob{i}");
        push.hold(&name, Some(Duration::from_secs(60)));
        register(&api, &bob, &Subscription::new(push.endpoint(&name))).await?;
    }
    let dan = api.user("dan").await?;
    register(&api, &dan, &Subscription::new(push.endpoint("dan"))).await?;
    club(&api, &ann, "down", &["bob"]).await?;
    club(&api, &ann, "fine", &["dan"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("down").await?;
    sender.join("fine").await?;
    // A window of bob's closes about every 1.5 s, each with ten stalling requests.
    for i in 0..4 {
        sender.post("down", &format!("d{i}"), "anyone?").await?;
        tokio::time::sleep(Duration::from_millis(COLLAPSE_MS + GRACE_MS + 100)).await;
    }
    dan_is_pushed_at_once(&mut sender, &push, "bob's stalling ones").await?;
    let at_once = (0..10)
        .filter(|i| !push.received(&format!("bob{i}")).is_empty())
        .count();
    assert!(at_once <= 4, "bob's targets asked so far: {at_once}");
    mesh.stop().await
}

/// Users whose endpoints are on one push service that takes every request and never answers
/// (a vendor's outage, or one host behind many accounts) hold at most that origin's share of
/// the request slots (a quarter of `concurrency` 4: one), so a user of another push service,
/// one that answered before, is pushed at once. Before, two such users held all four slots
/// for the whole request timeout, and every other push waited behind them. (A push service
/// never heard from waits, like the hanging one, for the one slot of the origins not known
/// to answer: `origins::many_hanging_push_services_together_hold_a_quarter_of_the_slots`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_push_service_does_not_starve_users_of_other_services() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = push_config();
    config.push.concurrency = 4;
    // Well past `dan_is_pushed_at_once`'s bound, so waiting for a held request shows.
    config.push.request_timeout_ms = 8_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let hanging = Receiver::start().await?;
    let push = Receiver::start().await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let stalled = ["bob", "cat"];
    let mut names = Vec::new();
    for user in stalled {
        let token = api.user(user).await?;
        for i in 0..2 {
            let name = format!("{user}{i}");
            hanging.hold(&name, Some(Duration::from_secs(60)));
            register(&api, &token, &Subscription::new(hanging.endpoint(&name))).await?;
            names.push(name);
        }
    }
    let dan = api.user("dan").await?;
    register(&api, &dan, &Subscription::new(push.endpoint("dan"))).await?;
    let eve = api.user("eve").await?;
    register(&api, &eve, &Subscription::new(push.endpoint("eve"))).await?;
    club(&api, &ann, "down", &stalled).await?;
    club(&api, &ann, "fine", &["dan"]).await?;
    club(&api, &ann, "before", &["eve"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("down").await?;
    sender.join("fine").await?;
    sender.join("before").await?;
    // Dan's push service answers eve's push: known to answer from then on.
    sender.post("before", "e1", "hello eve").await?;
    push.wait_delivered("eve", 1, WAIT).await?;
    sender.post("down", "m1", "anyone?").await?;
    hanging.wait_for_requests(1, WAIT).await?;
    dan_is_pushed_at_once(&mut sender, &push, "the hanging push service").await?;
    let asked = names
        .iter()
        .filter(|n| !hanging.received(n).is_empty())
        .count();
    assert_eq!(asked, 1, "requests held by the hanging service");
    mesh.stop().await
}

/// The delivery marks survive a restart: after the mesh is restarted on its data dir and the
/// notifier's consumer is made to deliver the whole stream again, nothing already pushed is
/// pushed again, and the next message is pushed once, for itself alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_notifier_never_pushes_a_message_twice() -> Result<()> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    use chatmesh_protocol::subjects::{IN_ALL, PUSH_CONSUMER, STREAM};

    let dir = tempfile::tempdir()?;
    let push = Receiver::start().await?;
    let sub = Subscription::new(push.endpoint("bob"));
    {
        let mesh = start_mesh(dir.path(), push_config()).await?;
        let api = Api::new(&mesh);
        let ann = api.user("ann").await?;
        let bob = api.user("bob").await?;
        register(&api, &bob, &sub).await?;
        club(&api, &ann, "club", &["bob"]).await?;
        let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
        sender.join("club").await?;
        sender.post("club", "m1", "first").await?;
        sender.post("club", "m2", "second").await?;
        push.wait_delivered("bob", 1, WAIT).await?;
        mesh.stop().await?;
    }
    let mesh = start_mesh(dir.path(), push_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let key = vapid_key(&api, &ann).await?;
    // Replay everything to the notifier: its consumer, recreated from the stream's start.
    let js = async_nats::jetstream::new(mesh.worker_nats.clone());
    let stream = js.get_stream(STREAM).await?;
    stream.delete_consumer(PUSH_CONSUMER).await?;
    let config = pull::Config {
        durable_name: Some(PUSH_CONSUMER.into()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        filter_subject: IN_ALL.into(),
        ..Default::default()
    };
    let consumer = stream.create_consumer(config).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut consumer = consumer;
    while consumer.info().await?.ack_floor.stream_sequence < 2 {
        ensure!(tokio::time::Instant::now() < deadline, "replay never acked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(COLLAPSE_MS + 500)).await;
    assert_eq!(
        push.received("bob").len(),
        1,
        "the replayed messages were pushed already"
    );

    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    sender.post("club", "m3", "third").await?;
    let got = push.wait_delivered("bob", 2, WAIT).await?;
    let third = sub.open(&got[1], &key, &push.origin())?;
    assert_eq!(
        (third["count"].clone(), third["body"].clone()),
        (json!(1), json!("third"))
    );
    mesh.stop().await
}

/// `mentions_only`: a member is pushed only for the messages that mention it (by name or
/// `@room`); the rest of a burst is neither pushed nor counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_only_pushes_only_what_mentions_the_member() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let push = Receiver::start().await?;
    let sub = Subscription::new(push.endpoint("bob"));
    let mesh = start_mesh(dir.path(), push_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    register(&api, &bob, &sub).await?;
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/push/settings",
            Some(&bob),
            Some(json!({"mentions_only": true})),
        )
        .await?;
    ensure!(s == 200 && v["mentions_only"] == true, "settings: {s} {v}");
    club(&api, &ann, "club", &["bob"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    sender.post("club", "m1", "nothing for bob").await?;
    sender.post("club", "m2", "@bob look").await?;
    sender.post("club", "m3", "still nothing").await?;
    let got = push.wait_delivered("bob", 1, WAIT).await?;
    let key = vapid_key(&api, &ann).await?;
    let opened = sub.open(&got[0], &key, &push.origin())?;
    assert_eq!(
        (opened["count"].clone(), opened["body"].clone()),
        (json!(1), json!("@bob look"))
    );
    sender.post("club", "m4", "@room lunch").await?;
    let got = push.wait_delivered("bob", 2, WAIT).await?;
    let opened = sub.open(&got[1], &key, &push.origin())?;
    assert_eq!(opened["body"], "@room lunch");
    sender.post("club", "m5", "and nothing").await?;
    tokio::time::sleep(Duration::from_millis(COLLAPSE_MS + GRACE_MS + 500)).await;
    assert_eq!(push.received("bob").len(), 2);
    mesh.stop().await
}

/// Reactions are not pushed and not counted in a push; a reply is pushed like any message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_are_not_pushed_and_replies_are() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let push = Receiver::start().await?;
    let sub = Subscription::new(push.endpoint("bob"));
    let mesh = start_mesh(dir.path(), push_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    register(&api, &bob, &sub).await?;
    club(&api, &ann, "club", &["bob"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    let first = sender.post("club", "m1", "lunch?").await?;
    let got = push.wait_delivered("bob", 1, WAIT).await?;
    let key = vapid_key(&api, &ann).await?;
    let opened = sub.open(&got[0], &key, &push.origin())?;
    assert_eq!(opened["body"], "lunch?");
    let up = sender
        .request(frame::react("club", "r1", first.seq, "👍", false))
        .await?;
    acked(&up);
    sender
        .request(frame::reply("club", "re1", first.seq, "at noon"))
        .await?;
    let got = push.wait_delivered("bob", 2, WAIT).await?;
    let opened = sub.open(&got[1], &key, &push.origin())?;
    assert_eq!(
        (opened["count"].clone(), opened["body"].clone()),
        (json!(1), json!("at noon")),
        "the reaction is neither pushed nor counted"
    );
    sender
        .request(frame::react("club", "r2", first.seq, "🎉", false))
        .await?;
    tokio::time::sleep(Duration::from_millis(COLLAPSE_MS + GRACE_MS + 500)).await;
    assert_eq!(push.received("bob").len(), 2);
    mesh.stop().await
}

/// What changes within a collapse window is what is pushed: a message deleted meanwhile is
/// not pushed (nor its preview), an edit meanwhile is pushed as edited, and a member removed
/// from the room meanwhile is not pushed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_edits_and_removals_within_the_window_are_honoured() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let push = Receiver::start().await?;
    let (bob_sub, cat_sub) = (
        Subscription::new(push.endpoint("bob")),
        Subscription::new(push.endpoint("cat")),
    );
    let mesh = start_mesh(dir.path(), push_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let cat = api.user("cat").await?;
    register(&api, &bob, &bob_sub).await?;
    register(&api, &cat, &cat_sub).await?;
    // The notifier reads new messages as they are stored (not from its lookback).
    wait_consumer(&mesh, true, WAIT).await?;
    club(&api, &ann, "club", &["bob", "cat"]).await?;
    let key = vapid_key(&api, &ann).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    let window = Duration::from_millis(COLLAPSE_MS + GRACE_MS + 700);

    // Sent and deleted at once: nobody is pushed, nothing of it reaches a push service.
    let secret = sender.post("club", "s1", "the vault code is 1234").await?;
    acked(
        &sender
            .request(frame::delete("club", "d1", secret.seq))
            .await?,
    );
    tokio::time::sleep(window).await;
    assert_eq!(
        (push.received("bob").len(), push.received("cat").len()),
        (0, 0),
        "a message deleted within its window was pushed"
    );

    // Edited within the window: pushed once, as edited.
    let typo = sender.post("club", "t1", "lunch at 1").await?;
    acked(
        &sender
            .request(frame::edit("club", "e1", typo.seq, "lunch at 2"))
            .await?,
    );
    let got = push.wait_delivered("bob", 1, WAIT).await?;
    let opened = bob_sub.open(&got[0], &key, &push.origin())?;
    assert_eq!(
        (opened["count"].clone(), opened["body"].clone()),
        (json!(1), json!("lunch at 2")),
        "the edit is what the push shows"
    );
    push.wait_delivered("cat", 1, WAIT).await?;

    // Cat removed within the window: bob is pushed, cat is not.
    sender.post("club", "b1", "cat is out").await?;
    let (s, v) = api
        .call("DELETE", "/v1/rooms/club/members/cat", Some(&ann), None)
        .await?;
    ensure!(s == 204, "remove cat: {s} {v}");
    push.wait_delivered("bob", 2, WAIT).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        push.received("cat").len(),
        1,
        "a member removed within the window was pushed"
    );
    mesh.stop().await
}

/// Whether the notifier's consumer exists now.
async fn push_consumer_exists(mesh: &Mesh) -> Result<bool> {
    use chatmesh_protocol::subjects::{PUSH_CONSUMER, STREAM};
    let js = async_nats::jetstream::new(mesh.worker_nats.clone());
    let stream = js.get_stream(STREAM).await?;
    match stream.consumer_info(PUSH_CONSUMER).await {
        Ok(_) => Ok(true),
        Err(e) if e.to_string().contains("not found") => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn wait_consumer(mesh: &Mesh, exists: bool, within: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    while push_consumer_exists(mesh).await? != exists {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the push consumer never {}",
            if exists { "appeared" } else { "went" }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// While nobody has a push target the notifier keeps no consumer, so nats-server delivers
/// it nothing; the first registration creates one that also delivers what was stored just
/// before it was noticed (a message sent at once after registering is pushed, once); when
/// the last target is removed the consumer goes again and nothing more is pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_keeps_no_consumer_while_nobody_has_a_target() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let push = Receiver::start().await?;
    let sub = Subscription::new(push.endpoint("bob"));
    let mesh = start_mesh(dir.path(), push_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    club(&api, &ann, "club", &["bob"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    sender
        .post("club", "m1", "before anyone registered")
        .await?;
    // Two idle polls: the notifier has looked and made nothing.
    tokio::time::sleep(chatmesh_workers::push::consumer::IDLE_POLL * 2).await;
    assert!(
        !push_consumer_exists(&mesh).await?,
        "no target, no consumer"
    );

    let id = register(&api, &bob, &sub).await?;
    sender.post("club", "m2", "right after").await?;
    let got = push.wait_delivered("bob", 1, WAIT).await?;
    let key = vapid_key(&api, &ann).await?;
    let first = sub.open(&got[0], &key, &push.origin())?;
    assert_eq!(
        (first["count"].clone(), first["body"].clone()),
        (json!(1), json!("right after")),
        "only the message sent after registering"
    );
    assert!(push_consumer_exists(&mesh).await?);

    let path = format!("/v1/push/targets/{id}");
    assert_eq!(api.call("DELETE", &path, Some(&bob), None).await?.0, 204);
    wait_consumer(&mesh, false, WAIT).await?;
    sender
        .post("club", "m3", "after the last target went")
        .await?;
    tokio::time::sleep(Duration::from_millis(COLLAPSE_MS + 500)).await;
    assert_eq!(
        push.received("bob").len(),
        1,
        "nothing after the target went"
    );
    mesh.stop().await
}

/// FCM HTTP v1: an offline member's registration token gets one data message carrying the
/// push JSON, sent with an access token the OAuth2 stand-in issued for the service
/// account's RS256 assertion (one token for every send); a 503 is retried; a token FCM
/// answers 404 UNREGISTERED is removed after one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_tokens_are_pushed_with_oauth2_and_unregistered_ones_removed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (fcm, account) = FcmStandIn::start(dir.path()).await?;
    let mut config = push_config();
    config.push.fcm.credentials_file = Some(account);
    config.push.fcm.base_url = fcm.base_url();
    let mesh = start_mesh(&dir.path().join("mesh"), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let mut ids = Vec::new();
    for token in ["bob-phone", "bob-old-phone"] {
        let target = json!({"kind": "fcm", "token": token});
        let (s, v) = api
            .call("POST", "/v1/push/targets", Some(&bob), Some(target))
            .await?;
        assert_eq!(s, 201, "{v}");
        ids.push(v["id"].as_str().unwrap_or_default().to_owned());
    }
    fcm.script("bob-phone", &[503]);
    fcm.script("bob-old-phone", &[404]);
    club(&api, &ann, "club", &["bob"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    sender.post("club", "m1", "hi").await?;
    sender.post("club", "m2", "ship it").await?;

    let got = fcm.wait_accepted("bob-phone", 1, WAIT).await?;
    assert_eq!(got.iter().map(|m| m.status).collect::<Vec<_>>(), [503, 200]);
    let payload = &got[1].payload;
    assert_eq!(payload["room"], "club");
    assert_eq!(payload["count"], 2, "{payload}");
    assert_eq!(payload["from"], "ann");
    assert_eq!(payload["body"], "ship it");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, list) = api
            .call("GET", "/v1/push/targets", Some(&bob), None)
            .await?;
        let left: Vec<&str> = list["targets"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["id"].as_str()).collect())
            .unwrap_or_default();
        if left == [ids[0].as_str()] {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "unregistered token kept: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fcm.sent("bob-old-phone").len(), 1);
    assert_eq!(fcm.tokens(), (1, 0), "one access token, never refused");
    mesh.stop().await
}

/// The ids of `user`'s targets, polled until they are `want` (bounded).
async fn wait_targets(api: &Api, user: &str, want: &[&str]) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, list) = api
            .call("GET", "/v1/push/targets", Some(user), None)
            .await?;
        let mut ids: Vec<&str> = list["targets"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["id"].as_str()).collect())
            .unwrap_or_default();
        ids.sort_unstable();
        let mut want = want.to_vec();
        want.sort_unstable();
        if ids == want {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "targets {ids:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// APNs over HTTP/2 with token auth: an offline member's device token gets one alert push
/// (the headers APNs wants, the sender and body in the alert, the push JSON under
/// `chatmesh`) signed with an ES256 provider token the stand-in verifies; without previews
/// the alert names the room and the count only; a token answered 410, and one answered 400
/// `BadDeviceToken`, are removed after one attempt; a 503 with `Retry-After: 1` is retried
/// once, a sandbox token goes to the sandbox host; an `ExpiredProviderToken` is answered by
/// a new token; one provider token and one connection serve every push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_tokens_are_pushed_over_http2_and_bad_ones_removed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (apns, key_file) = ApnsStandIn::start(dir.path()).await?;
    let mut config = push_config();
    config.push.apns.key_file = Some(key_file);
    config.push.apns.key_id = Some(apns::KEY_ID.into());
    config.push.apns.team_id = Some(apns::TEAM_ID.into());
    config.push.apns.base_url = apns.base_url();
    config.push.apns.sandbox_base_url = apns.sandbox_url();
    assert!(
        config.push.problems().is_empty(),
        "{:?}",
        config.push.problems()
    );
    let mesh = start_mesh(&dir.path().join("mesh"), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let eve = api.user("eve").await?;
    let (phone, gone, bad, flaky, quiet) = (
        "a1".repeat(32),
        "b2".repeat(32),
        "c3".repeat(32),
        "d4".repeat(32),
        "e5".repeat(32),
    );
    let mut ids = HashMap::new();
    for (user, device, sandbox) in [
        (&bob, &phone, false),
        (&bob, &gone, false),
        (&bob, &bad, false),
        (&bob, &flaky, true),
        (&eve, &quiet, false),
    ] {
        let target = json!({"kind": "apns", "token": device, "topic": "com.example.chat", "sandbox": sandbox});
        let (s, v) = api
            .call("POST", "/v1/push/targets", Some(user), Some(target))
            .await?;
        assert_eq!(s, 201, "{v}");
        ids.insert(
            device.clone(),
            v["id"].as_str().unwrap_or_default().to_owned(),
        );
    }
    let (s, _) = api
        .call(
            "PATCH",
            "/v1/push/settings",
            Some(&eve),
            Some(json!({"preview": false})),
        )
        .await?;
    assert_eq!(s, 200);
    apns.script(&gone, &[(410, "Unregistered", None)]);
    apns.script(&bad, &[(400, "BadDeviceToken", None)]);
    apns.script(&flaky, &[(503, "ServiceUnavailable", Some(1))]);
    club(&api, &ann, "club", &["bob", "eve"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    sender.post("club", "m1", "hi").await?;
    sender.post("club", "m2", "ship it").await?;

    let got = apns.wait_accepted(&phone, 1, WAIT).await?;
    assert_eq!(got.len(), 1);
    let push = &got[0];
    let header = |name: &str| {
        push.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("apns-topic"), "com.example.chat");
    assert_eq!(header("apns-push-type"), "alert");
    assert_eq!(header("apns-priority"), "10");
    let collapse = header("apns-collapse-id");
    assert!(!collapse.is_empty() && collapse.len() <= 64, "{collapse}");
    let expiration: u64 = header("apns-expiration").parse()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let ttl = chatmesh::Config::default().push.ttl_secs;
    assert!(
        expiration.abs_diff(now + ttl) < 60,
        "expiration {expiration}, now {now}"
    );
    assert!(!push.sandbox);
    assert_eq!(
        push.body["aps"],
        json!({"alert": {"title": "ann", "subtitle": "club", "body": "ship it"},
               "thread-id": "club", "mutable-content": 1})
    );
    let chatmesh = &push.body["chatmesh"];
    assert_eq!(
        (
            &chatmesh["type"],
            &chatmesh["room"],
            &chatmesh["count"],
            &chatmesh["from"],
            &chatmesh["body"]
        ),
        (
            &json!("messages"),
            &json!("club"),
            &json!(2),
            &json!("ann"),
            &json!("ship it")
        )
    );

    let got = apns.wait_accepted(&quiet, 1, WAIT).await?;
    assert_eq!(
        got[0].body["aps"]["alert"],
        json!({"title": "club", "body": "2 new messages"})
    );
    let text = got[0].body.to_string();
    assert!(!text.contains("ship it") && !text.contains("ann"), "{text}");

    let got = apns.wait_accepted(&flaky, 1, WAIT).await?;
    assert_eq!(got.iter().map(|m| m.status).collect::<Vec<_>>(), [503, 200]);
    assert!(
        got.iter().all(|m| m.sandbox),
        "a sandbox token goes to the sandbox host"
    );
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(950),
        "Retry-After honoured"
    );
    assert_eq!(
        got[0].headers.get("apns-collapse-id"),
        got[1].headers.get("apns-collapse-id"),
        "one notification, one collapse id"
    );

    wait_targets(&api, &bob, &[&ids[&phone], &ids[&flaky]]).await?;
    assert_eq!(apns.sent(&gone).len(), 1);
    assert_eq!(apns.sent(&bad).len(), 1);

    // A later window: the same provider token; then one APNs calls expired, replaced at once.
    sender.post("club", "m3", "later").await?;
    let got = apns.wait_accepted(&phone, 2, WAIT).await?;
    assert_eq!(got[1].body["aps"]["alert"]["body"], "later");
    assert_ne!(
        got[0].headers.get("apns-collapse-id"),
        got[1].headers.get("apns-collapse-id")
    );
    let bearers: std::collections::HashSet<String> =
        apns.all().into_iter().map(|m| m.bearer).collect();
    assert_eq!(bearers.len(), 1, "one provider token for every push");
    apns.script(&phone, &[(403, "ExpiredProviderToken", None)]);
    sender.post("club", "m4", "again").await?;
    let got = apns.wait_accepted(&phone, 3, WAIT).await?;
    // (The refused token, younger than 20 minutes, is kept: the push is sent once more with
    // it, and the stand-in takes it.)
    assert_eq!(
        got.iter().map(|m| m.status).collect::<Vec<_>>(),
        [200, 200, 403, 200]
    );
    let (connections, refused, not_http2) = apns.counts();
    assert_eq!((refused, not_http2), (0, 0));
    assert_eq!(connections, 1, "one HTTP/2 connection for every push");
    mesh.stop().await
}

/// APNs as Apple serves it: TLS with a certificate the notifier checks (the test's CA,
/// trusted through `[push.apns] ca_file`) and HTTP/2 chosen by ALPN. An offline member's
/// device gets its push over one TLS connection that negotiated `h2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_is_reached_over_tls_with_alpn_h2() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (apns, key_file, ca_file) = ApnsStandIn::start_tls(dir.path()).await?;
    let mut config = push_config();
    config.push.apns.key_file = Some(key_file);
    config.push.apns.key_id = Some(apns::KEY_ID.into());
    config.push.apns.team_id = Some(apns::TEAM_ID.into());
    config.push.apns.base_url = apns.base_url();
    config.push.apns.sandbox_base_url = apns.sandbox_url();
    config.push.apns.ca_file = Some(ca_file);
    assert!(apns.base_url().starts_with("https://localhost:"));
    let mesh = start_mesh(&dir.path().join("mesh"), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let phone = "f6".repeat(32);
    let target = json!({"kind": "apns", "token": phone, "topic": "com.example.chat"});
    let (s, v) = api
        .call("POST", "/v1/push/targets", Some(&bob), Some(target))
        .await?;
    assert_eq!(s, 201, "{v}");
    club(&api, &ann, "club", &["bob"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    sender.post("club", "m1", "over tls").await?;
    let got = apns.wait_accepted(&phone, 1, WAIT).await?;
    assert_eq!(got[0].body["aps"]["alert"]["body"], "over tls");
    let (alpn, failed) = apns.handshakes();
    assert_eq!(failed, 0);
    assert_eq!(
        alpn,
        vec![Some(b"h2".to_vec())],
        "one TLS connection, h2 by ALPN"
    );
    let (connections, refused, not_http2) = apns.counts();
    assert_eq!((connections, refused, not_http2), (1, 0, 0));
    mesh.stop().await
}

/// The notifier checks the APNs host's certificate: without the stand-in's CA in
/// `ca_file` no request reaches it (the handshake fails on the notifier's side, nothing is
/// sent in the clear), and the device token is kept for a later attempt, not removed. A
/// `ca_file` that holds no certificate stops the worker at start with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_refuses_a_host_it_cannot_verify() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (apns, key_file, _ca) = ApnsStandIn::start_tls(dir.path()).await?;
    let mut config = push_config();
    config.push.apns.key_file = Some(key_file);
    config.push.apns.key_id = Some(apns::KEY_ID.into());
    config.push.apns.team_id = Some(apns::TEAM_ID.into());
    config.push.apns.base_url = apns.base_url();
    config.push.apns.sandbox_base_url = apns.sandbox_url();

    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "just text\n")?;
    let mut bad = config.clone();
    bad.push.apns.ca_file = Some(not_pem);
    let err = match start_mesh(&dir.path().join("bad"), bad).await {
        Ok(mesh) => {
            mesh.stop().await?;
            anyhow::bail!("a ca_file without a certificate was accepted");
        }
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("holds no PEM certificate"), "{err}");

    let mesh = start_mesh(&dir.path().join("mesh"), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let phone = "a7".repeat(32);
    let target = json!({"kind": "apns", "token": phone, "topic": "com.example.chat"});
    let (s, v) = api
        .call("POST", "/v1/push/targets", Some(&bob), Some(target))
        .await?;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    club(&api, &ann, "club", &["bob"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    sender.post("club", "m1", "unverified").await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while apns.handshakes().1 == 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the notifier never tried the host"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a wrongly trusting client time to send.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(apns.all().is_empty(), "nothing reached an unverified host");
    assert!(apns.handshakes().0.is_empty(), "no handshake finished");
    wait_targets(&api, &bob, &[&id]).await?;
    mesh.stop().await
}

/// Revoking a user's tokens also removes its push targets: a thief who registered one with a
/// stolen token is not pushed the user's messages after "log out everywhere", a password
/// change or an admin's disable (the targets are gone from the list too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_users_tokens_removes_its_push_targets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), with_admins(push_config(), &["ann"])).await?;
    let push = Receiver::start().await?;
    let api = Api::new(&mesh);
    let ann = api.server_admin("ann").await?;
    let mut tokens = HashMap::new();
    for user in ["bob", "cy", "dee", "eve"] {
        let token = api.user(user).await?;
        register(&api, &token, &Subscription::new(push.endpoint(user))).await?;
        tokens.insert(user, token);
    }
    club(&api, &ann, "club", &["bob", "cy", "dee", "eve"]).await?;

    let (s, v) = api
        .call("POST", "/v1/auth/logout_all", Some(&tokens["bob"]), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    let change = json!({"old_password": "correct horse", "new_password": "a new password"});
    let (s, v) = api
        .call(
            "POST",
            "/v1/auth/password",
            Some(&tokens["cy"]),
            Some(change),
        )
        .await?;
    assert_eq!(s, 200, "{v}");
    let cy = v["token"].as_str().unwrap_or_default().to_owned();
    let (s, v) = api
        .call("POST", "/v1/admin/users/dee/disable", Some(&ann), None)
        .await?;
    assert_eq!(s, 200, "{v}");

    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    sender.post("club", "m1", "after the revocations").await?;
    push.wait_delivered("eve", 1, WAIT).await?;
    tokio::time::sleep(Duration::from_millis(COLLAPSE_MS + GRACE_MS)).await;
    for user in ["bob", "cy", "dee"] {
        assert!(
            push.received(user).is_empty(),
            "{user}'s target is pushed after its tokens were revoked"
        );
    }
    let (s, v) = api.call("GET", "/v1/push/targets", Some(&cy), None).await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["targets"], json!([]), "cy's targets after the change");
    mesh.stop().await
}

/// With `[push] proxy` every push goes through the operator's egress proxy: the Web Push
/// POST and FCM's token and send requests forwarded by it, APNs's TLS connection tunnelled
/// by `CONNECT` (so the proxy never sees inside it); each still arrives and is checked as
/// without a proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_push_goes_through_the_configured_proxy() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let egress = proxy::Proxy::start().await?;
    let web = Receiver::start().await?;
    let (fcm, account) = FcmStandIn::start(dir.path()).await?;
    let (apns, key_file, ca_file) = ApnsStandIn::start_tls(dir.path()).await?;
    let mut config = push_config();
    config.push.proxy = Some(egress.url());
    config.push.fcm.credentials_file = Some(account);
    config.push.fcm.base_url = fcm.base_url();
    config.push.apns.key_file = Some(key_file);
    config.push.apns.key_id = Some(apns::KEY_ID.into());
    config.push.apns.team_id = Some(apns::TEAM_ID.into());
    config.push.apns.base_url = apns.base_url();
    config.push.apns.sandbox_base_url = apns.sandbox_url();
    config.push.apns.ca_file = Some(ca_file);
    let mesh = start_mesh(&dir.path().join("mesh"), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let browser = Subscription::new(web.endpoint("bob"));
    register(&api, &bob, &browser).await?;
    let phone = "a7".repeat(32);
    for target in [
        json!({"kind": "fcm", "token": "bob-tablet"}),
        json!({"kind": "apns", "token": phone, "topic": "com.example.chat"}),
    ] {
        let (s, v) = api
            .call("POST", "/v1/push/targets", Some(&bob), Some(target))
            .await?;
        assert_eq!(s, 201, "{v}");
    }
    club(&api, &ann, "club", &["bob"]).await?;
    let key = vapid_key(&api, &ann).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    sender.post("club", "m1", "through the proxy").await?;

    let got = web.wait_delivered("bob", 1, WAIT).await?;
    let opened = browser.open(&got[0], &key, &web.origin())?;
    assert_eq!(opened["body"], "through the proxy");
    let got = fcm.wait_accepted("bob-tablet", 1, WAIT).await?;
    assert_eq!(got[0].payload["body"], "through the proxy");
    let got = apns.wait_accepted(&phone, 1, WAIT).await?;
    assert_eq!(got[0].body["aps"]["alert"]["body"], "through the proxy");

    let seen = egress.seen();
    let has = |line: String| seen.contains(&line);
    assert!(has(format!("POST {}", web.endpoint("bob"))), "{seen:?}");
    assert!(has(format!("POST {}/token", fcm.base_url())), "{seen:?}");
    assert!(
        seen.iter()
            .any(|l| l.starts_with(&format!("POST {}/v1/projects/", fcm.base_url()))),
        "{seen:?}"
    );
    let apns_host = apns.base_url().trim_start_matches("https://").to_owned();
    assert!(has(format!("CONNECT {apns_host}")), "{seen:?}");
    mesh.stop().await
}
