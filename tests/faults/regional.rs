//! Regions with workers of their own (issue 17 item 2, docs/REGIONS.md section 12): two
//! regions on loopback (`ops/mesh up --regions 2 --regional-workers`), each with its NATS
//! node, gateway, worker and fjall store. `us`'s worker runs only the partitions of `us`'s
//! stream; rooms homed in `us` are stored there. Then the primary, `eu`, is cut off (its
//! processes killed) and healed: `us`'s rooms keep taking sends, their history, member lists
//! and room lists are served in `us`, and a room can be created there; what needs the
//! accounts (registration) is refused until the primary returns. Last, `us` is cut: its
//! rooms' history is refused in `eu` (nobody else keeps them), eu's room list says so.

use std::time::Duration;

use anyhow::Result;

use crate::common::{Api, ADMIN_TOKEN};
use crate::launcher::MeshProc;
use crate::run::{self, Run};
use crate::{history_until, missing_from, RATE};

/// `chatmesh chat --url ENTRY --user USER ARGS` with `line` on its stdin (the users of
/// the harness have the password `correct horse`).
async fn chat_cli(
    entry: &str,
    user: &str,
    args: &[&str],
    line: &str,
) -> Result<std::process::Output> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatmesh"))
        .args(["chat", "--url", entry, "--user", user])
        .args(args)
        .env("CHATMESH_PASSWORD", "correct horse")
        .env_remove("CHATMESH_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(format!("{line}\n").as_bytes()).await?;
    drop(stdin);
    Ok(tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await??)
}

/// `POST /v1/rooms` with `"home": "here"` through `api`'s gateway: the id made (an error
/// unless it answered 201).
async fn create_here(api: &Api, token: &str, room: &str, kind: &str) -> Result<String> {
    let body = serde_json::json!({"room": room, "kind": kind, "home": "here"});
    let (status, made) = api
        .call("POST", "/v1/rooms", Some(token), Some(body))
        .await?;
    match (status, made["room"].as_str()) {
        (201, Some(id)) => Ok(id.to_owned()),
        _ => anyhow::bail!("creating {room}: {status} {made}"),
    }
}

/// The rooms of a room list, as `(room, role)`, and its `unavailable` regions.
fn listed(list: &serde_json::Value) -> (Vec<(String, Option<String>)>, Vec<String>) {
    let rooms = list["rooms"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let room = r["room"].as_str().unwrap_or_default().to_owned();
                    (room, r["role"].as_str().map(str::to_owned))
                })
                .collect()
        })
        .unwrap_or_default();
    let unavailable = list["unavailable"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (rooms, unavailable)
}

fn has(rooms: &[(String, Option<String>)], room: &str) -> bool {
    rooms.iter().any(|(r, role)| r == room && role.is_some())
}

/// While the primary is cut: `us~own` keeps acking sends (nothing lost, nothing duplicated,
/// chains unbroken at the end), its history and member list are read in `us`, a room is
/// created in `us`, and `us`'s room list shows `us`'s rooms and names `eu` unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_primary_leaves_the_rooms_of_a_region_with_its_own_workers_working() -> Result<()> {
    // The harness's first sender of us~own is a server admin (the export below).
    let admin = [
        ("CHATMESH__ADMIN__USERS", r#"["us-own-s0"]"#),
        ("CHATMESH__ADMIN__BOOTSTRAP_TOKEN", ADMIN_TOKEN),
    ];
    let mesh = MeshProc::up_regions_with("127.64.0", 2, &["--regional-workers"], &admin).await?;
    let (eu, us) = (mesh.region_entry(1), mesh.region_entry(2));
    // Each region's worker runs its own partitions: eu CHAT and CHAT_eu, us CHAT_us.
    // A worker reports the gauge once its ownership loop has claimed: wait for both (up to
    // 30 s), then check the split.
    let owned = "chatmesh_partitions_owned";
    let split = (Some(32.0), Some(16.0));
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    let (eu_owned, us_owned) = loop {
        let eu_owned = mesh.region_worker_metric(1, owned).await?;
        let us_owned = mesh.region_worker_metric(2, owned).await?;
        let both = (eu_owned, us_owned);
        if both == split || tokio::time::Instant::now() > give_up {
            break both;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        (eu_owned, us_owned),
        split,
        "partitions owned by eu's and us's workers"
    );
    // Registered with the bootstrap token before the harness logs it in (a listed admin
    // name is not registered without it).
    Api::at(&us).server_admin("us-own-s0").await?;
    let run = Run::start(&us, "us~own", 2, 1, RATE).await?;
    run.wait_acked(40, Duration::from_secs(30)).await?;
    let (owner, token) = run.tokens[0].clone();
    let (other, _) = run.tokens[2].clone();
    let api = Api::at(&us);
    // A room homed in eu (served by eu's worker) and a private room in us.
    let eu_api = Api::at(&eu);
    let made = create_here(&eu_api, &token, "elsewhere", "public").await?;
    assert_eq!(made, "eu~elsewhere");
    let made = create_here(&api, &token, "priv", "private").await?;
    assert_eq!(made, "us~priv");
    // Adding a member in us asks eu (accounts live there) whether the user exists.
    let add = |user: &str| serde_json::json!({"user": user});
    let (status, body) = api
        .call(
            "POST",
            "/v1/rooms/us~priv/members",
            Some(&token),
            Some(add(&other)),
        )
        .await?;
    assert!(
        (200..300).contains(&status),
        "adding {other}: {status} {body}"
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/rooms/us~priv/members",
            Some(&token),
            Some(add("nobody-at-all")),
        )
        .await?;
    assert_eq!(status, 404, "adding a user without an account: {body}");
    // So does a ban there (the accounts are eu's; us's store has none); then the ban is
    // lifted and the member added again.
    let ban = |user: &str| serde_json::json!({"user": user, "reason": "test"});
    let bans = "/v1/rooms/us~priv/bans";
    let (status, body) = api
        .call("POST", bans, Some(&token), Some(ban(&other)))
        .await?;
    assert!(
        (200..300).contains(&status),
        "banning {other}: {status} {body}"
    );
    let (status, body) = api
        .call("POST", bans, Some(&token), Some(ban("nobody-at-all")))
        .await?;
    assert_eq!(status, 404, "banning a user without an account: {body}");
    let lifted = format!("{bans}/{other}");
    let (status, body) = api.call("DELETE", &lifted, Some(&token), None).await?;
    assert!((200..300).contains(&status), "unbanning: {status} {body}");
    let (status, body) = api
        .call(
            "POST",
            "/v1/rooms/us~priv/members",
            Some(&token),
            Some(add(&other)),
        )
        .await?;
    assert!(
        (200..300).contains(&status),
        "adding {other} again: {status} {body}"
    );
    // The terminal client creates a room in its gateway's region (`--home here`) and
    // writes to it by its id; a second run names the region to join it again.
    for (home, line) in [("here", "from the cli"), ("us", "again")] {
        let out = chat_cli(
            &us,
            &owner,
            &["--room", "cli", "--create", "--home", home],
            line,
        )
        .await?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = chat_cli(
        &us,
        &owner,
        &["--room", "cli", "--create", "--home", "here"],
        "x",
    )
    .await?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("<region>~cli"),
        "{err}"
    );
    let (status, page) = api
        .call(
            "GET",
            "/v1/rooms/us~cli/messages?limit=10",
            Some(&token),
            None,
        )
        .await?;
    let bodies: Vec<&str> = page["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["body"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        (status, bodies),
        (200, vec!["from the cli", "again"]),
        "{page}"
    );
    // A user's export has its part in each region: the account once, memberships in both.
    let (status, export) = api
        .call(
            "GET",
            &format!("/v1/admin/users/{owner}/export"),
            Some(&token),
            None,
        )
        .await?;
    let text = export.as_str().unwrap_or_default().to_owned();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of = |kind: &str| lines.iter().filter(|l| l["type"] == kind).count();
    let member_of = |room: &str| {
        lines
            .iter()
            .any(|l| l["type"] == "membership" && l["room"] == room)
    };
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        (of("account"), of("push_settings"), of("end")),
        (1, 1, 1),
        "{text}"
    );
    assert!(
        member_of("eu~elsewhere") && member_of("us~own") && member_of("us~priv"),
        "{text}"
    );
    // The audit log merges both regions' parts: each audited its part of the export (before,
    // the API read the primary's part only).
    let (status, audit) = api
        .call("GET", "/v1/admin/audit", Some(&token), None)
        .await?;
    let exports = audit["entries"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["action"] == "export_user" && e["target"] == owner.as_str())
                .count()
        })
        .unwrap_or_default();
    assert_eq!((status, exports), (200, 2), "{audit}");
    // The room list merges both regions' stores.
    let (_, list) = api.call("GET", "/v1/rooms", Some(&token), None).await?;
    let (rooms, unavailable) = listed(&list);
    for room in ["us~own", "us~priv", "eu~elsewhere"] {
        assert!(has(&rooms, room), "{owner}'s list lacks {room}: {list}");
    }
    assert!(unavailable.is_empty(), "{list}");

    mesh.cut("eu").await?;
    let before = run.acked();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = run.acked() - before;
    assert!(
        during >= 20,
        "us~own took {during} acked sends while eu was cut"
    );
    let history = run::history(&us, &token, "us~own").await?;
    assert!(
        history.len() >= before,
        "history in us during the cut: {}",
        history.len()
    );
    let (status, members) = api
        .call(
            "GET",
            "/v1/rooms/us~priv/members?limit=10",
            Some(&token),
            None,
        )
        .await?;
    assert_eq!(status, 200, "members of us~priv during the cut: {members}");
    assert_eq!(
        members["members"].as_array().map(Vec::len),
        Some(2),
        "{members}"
    );
    let made = create_here(&api, &token, "during", "public").await?;
    assert_eq!(made, "us~during");
    let (status, list) = api.call("GET", "/v1/rooms", Some(&token), None).await?;
    let (rooms, unavailable) = listed(&list);
    assert_eq!(status, 200, "{list}");
    assert!(has(&rooms, "us~own") && has(&rooms, "us~during"), "{list}");
    assert_eq!(unavailable, ["eu"], "{list}");
    // Accounts live in the primary: a registration waits for it.
    let creds = crate::common::credentials("newcomer", "correct horse");
    let (status, body) = api
        .call("POST", "/v1/auth/register", None, Some(creds))
        .await?;
    assert_eq!(status, 503, "registering while the primary is cut: {body}");
    println!(
        "regional: eu (the primary) cut; us~own acked {during} sends in 6 s, history of {} \
         messages, member list, room list (eu unavailable) and a new room served in us",
        history.len()
    );
    mesh.heal("eu").await?;

    let after = run.acked();
    run.wait_acked(after + 20, Duration::from_secs(60)).await?;
    let acked = run.acked_map();
    let verdict = run.finish().await?;
    println!("regional: us~own {verdict:?}");
    verdict.assert_clean();
    let hist = history_until(&us, &token, "us~own", verdict.last_seq).await?;
    let mut prev = 0;
    for (seq, p, _, _) in &hist {
        assert_eq!(*p, prev, "us~own: history chain broken at {seq}");
        prev = *seq;
    }
    let missing = missing_from(&acked, &hist);
    assert!(missing.is_empty(), "us~own: acked but missing: {missing:?}");
    let (_, list) = api.call("GET", "/v1/rooms", Some(&token), None).await?;
    let (rooms, unavailable) = listed(&list);
    assert!(
        has(&rooms, "eu~elsewhere") && unavailable.is_empty(),
        "after the heal: {list}"
    );
    println!("regional: us~own history of {} messages intact", hist.len());

    // The other way round, the trade-off of a store per region (docs/REGIONS.md section
    // 12): with us cut, us's rooms are kept by nobody else. eu's room list names us
    // unavailable (keeping eu's rooms), and a history page of us~own is refused
    // `unavailable`, never answered short.
    mesh.cut("us").await?;
    let (status, list) = eu_api.call("GET", "/v1/rooms", Some(&token), None).await?;
    let (rooms, unavailable) = listed(&list);
    assert_eq!(status, 200, "{list}");
    assert!(
        has(&rooms, "eu~elsewhere") && !has(&rooms, "us~own"),
        "{list}"
    );
    assert_eq!(unavailable, ["us"], "{list}");
    let (status, page) = eu_api
        .call(
            "GET",
            "/v1/rooms/us~own/messages?limit=10",
            Some(&token),
            None,
        )
        .await?;
    assert_eq!(status, 503, "a history page of a cut region's room: {page}");
    println!("regional: us cut: eu lists its rooms (us unavailable), us~own's history refused 503");
    Ok(())
}

/// Waits (up to `within`) until the first worker of region `k` reports owning `partitions`.
async fn wait_owned(mesh: &MeshProc, k: u32, partitions: f64, within: Duration) -> Result<()> {
    let give_up = tokio::time::Instant::now() + within;
    loop {
        let owned = mesh
            .region_worker_metric(k, "chatmesh_partitions_owned")
            .await
            .ok()
            .flatten();
        if owned == Some(partitions) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < give_up,
            "region {k}'s worker owns {owned:?} partitions, not {partitions}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Three regions with workers of their own (one cut leaves a meta quorum, docs/REGIONS.md
/// section 4): `us`'s worker restarts while the primary is cut off, takes its partitions
/// again and serves its region's rooms; nothing acked is lost. It makes and checks its own
/// region's stream only (it asked for the primary's too, whose leader is in the cut region,
/// and gave up after a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regions_worker_restarts_while_the_primary_is_cut() -> Result<()> {
    let mesh = MeshProc::up_regions_with("127.65.0", 3, &["--regional-workers"], &[]).await?;
    let us = mesh.region_entry(2);
    wait_owned(&mesh, 2, 16.0, Duration::from_secs(30)).await?;
    let run = Run::start(&us, "us~back", 2, 1, RATE).await?;
    run.wait_acked(20, Duration::from_secs(30)).await?;
    let (_, token) = run.tokens[0].clone();

    mesh.cut("eu").await?;
    mesh.kill("us-worker-1").await?;
    mesh.start("us-worker-1").await?;
    if let Err(e) = wait_owned(&mesh, 2, 16.0, Duration::from_secs(60)).await {
        panic!("{e}: {}", mesh.log("us-worker-1"));
    }
    let before = run.acked();
    run.wait_acked(before + 20, Duration::from_secs(30)).await?;
    let history = run::history(&us, &token, "us~back").await?;
    assert!(
        history.len() >= before,
        "history in us after the restart: {} of {before} acked",
        history.len()
    );
    println!(
        "regional: us's worker restarted while eu was cut; history of {} messages",
        history.len()
    );
    mesh.heal("eu").await?;
    let verdict = run.finish().await?;
    println!("regional: us~back {verdict:?}");
    verdict.assert_clean();
    Ok(())
}
