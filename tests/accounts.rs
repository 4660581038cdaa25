//! Accounts under abuse, against a real mesh: a password-guessing flood cannot take the
//! service plane down, guessing and registration are throttled, room creation has quotas,
//! the room list keeps a user's own rooms, `logout_all` revokes tokens, and the JWT secret
//! file is never readable by others.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chatmesh::Config;
use chatmesh_client::Login;
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse";

/// An HTTP client whose connections come from `127.0.0.<last>`.
fn client_from(last: u8) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// POSTs JSON; returns the status, the `Retry-After` header and the body.
async fn post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Value,
) -> Result<(u16, Option<u64>, Value)> {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = resp.text().await?;
    Ok((
        status,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    ))
}

/// Logs `user` in, waiting out `429`s (as `Retry-After` asks) until `deadline`.
async fn login_patiently(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    deadline: Instant,
) -> Result<String> {
    loop {
        let (s, retry, v) = post(
            http,
            &format!("{base}/v1/auth/login"),
            None,
            credentials(user, PASSWORD),
        )
        .await?;
        match s {
            200 => return Ok(serde_json::from_value::<Login>(v)?.token),
            429 if Instant::now() < deadline => {
                let wait = Duration::from_secs(retry.context("429 without Retry-After")?);
                tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
            }
            _ => bail!("login {user}: {s} {v}"),
        }
    }
}

/// The p-th percentile (0–100) of `samples`.
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p / 100.0).round() as usize;
    samples[i.min(samples.len() - 1)]
}

/// Waves of 512 concurrent wrong-password logins over 64 accounts from 32 source IPs, at
/// production argon2 cost, for at least 5 s, while another user on another IP reads history
/// and lists rooms: that user never sees a 503 and its p99 stays under 100 ms; the right
/// password still logs in during and after the flood (after waiting out 429s), and the
/// flood's refusals are 429 with `Retry-After`, never 503. The gateway's per-account limits
/// are raised here: the point is the workers' service plane.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_flood_does_not_starve_other_services() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    let defaults = Config::default();
    config.worker.argon2_memory_kib = defaults.worker.argon2_memory_kib;
    config.worker.argon2_iterations = defaults.worker.argon2_iterations;
    config.gateway.login_free_failures = 1_000;
    config.gateway.login_account_burst = 100_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let base = mesh.url();
    let api = Api::new(&mesh);
    let reader = api.user("reader").await?;
    api.room(&reader, "quiet", "public").await?;
    let victims: Vec<String> = (0..64).map(|i| format!("victim{i}")).collect();
    for v in victims.iter().take(4) {
        api.user(v).await?;
    }

    let flood_http: Vec<reqwest::Client> = (0..32)
        .map(|i| client_from(10 + i))
        .collect::<Result<_>>()?;
    let started = Instant::now();
    let flood = {
        let base = base.clone();
        let victims = victims.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            while started.elapsed() < Duration::from_secs(5) {
                let attempts =
                    (0..512usize).map(|i| {
                        let http = flood_http[i / 16].clone();
                        let url = format!("{base}/v1/auth/login");
                        let user = victims[i % 64].clone();
                        async move {
                            post(&http, &url, None, credentials(&user, "wrong password")).await
                        }
                    });
                let wave: Vec<_> = futures::stream::iter(attempts)
                    .buffer_unordered(512)
                    .collect()
                    .await;
                results.extend(wave);
            }
            results
        })
    };

    let reader_http = client_from(200)?;
    let mut samples = Vec::new();
    let mut failures = Vec::new();
    let mut logged_in_during = false;
    while !flood.is_finished() || samples.len() < 50 {
        for path in ["/v1/rooms", "/v1/rooms/quiet/messages?limit=10"] {
            let t = Instant::now();
            let resp = reader_http
                .get(format!("{base}{path}"))
                .bearer_auth(&reader)
                .send()
                .await?;
            samples.push(t.elapsed());
            if resp.status() != 200 {
                failures.push((path, resp.status().as_u16()));
            }
        }
        if !logged_in_during && samples.len() == 20 {
            // A real user, on its own IP, mid-flood.
            let mine = client_from(201)?;
            login_patiently(&mine, &base, "victim0", Instant::now() + WAIT).await?;
            logged_in_during = true;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "flood still running after 60 s"
        );
    }
    let results = flood.await?;
    let flood_secs = started.elapsed().as_secs_f64();
    let mut by_status = std::collections::BTreeMap::new();
    for r in &results {
        let (s, retry, _) = r.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        *by_status.entry(*s).or_insert(0) += 1;
        if *s == 429 {
            assert!(retry.is_some(), "429 without Retry-After");
        }
    }
    let n = samples.len();
    let p50 = percentile(&mut samples, 50.0);
    let p99 = percentile(&mut samples, 99.0);
    eprintln!(
        "flood: {} logins in {flood_secs:.1} s, statuses {by_status:?}; reader: {n} calls, p50 {p50:?}, p99 {p99:?}",
        results.len()
    );
    assert!(failures.is_empty(), "reader failed: {failures:?}");
    assert!(
        !by_status.contains_key(&503),
        "the flood got 503s: {by_status:?}"
    );
    assert!(
        by_status.keys().all(|s| *s == 401 || *s == 429),
        "{by_status:?}"
    );
    assert!(p99 < Duration::from_millis(100), "reader p99 {p99:?}");
    let after = client_from(202)?;
    login_patiently(&after, &base, "victim1", Instant::now() + WAIT).await?;
    mesh.stop().await
}

/// Wrong passwords on one account from one IP get 429 with `Retry-After` after a few tries
/// (the right password too, until the window ends); another account from the same IP still
/// logs in; registrations from one IP over its limit get 429, another IP still registers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_and_registration_are_throttled() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.register_per_ip_per_hour = 3;
    config.gateway.register_ip_burst = 3;
    let mesh = start_mesh(dir.path(), config).await?;
    let base = mesh.url();
    let http = client_from(20)?;
    let register = |user: &'static str| {
        let (http, url) = (http.clone(), format!("{base}/v1/auth/register"));
        async move { post(&http, &url, None, credentials(user, PASSWORD)).await }
    };
    for user in ["ann", "bob", "cid"] {
        let (s, _, v) = register(user).await?;
        assert_eq!(s, 201, "{user}: {v}");
    }
    let (s, retry, v) = register("dan").await?;
    assert_eq!((s, http_error(&v)), (429, Some(ErrorCode::RateLimited)));
    assert!(retry.is_some_and(|r| r >= 1), "Retry-After {retry:?}");
    let (s, _, _) = post(
        &client_from(21)?,
        &format!("{base}/v1/auth/register"),
        None,
        credentials("dan", PASSWORD),
    )
    .await?;
    assert_eq!(s, 201, "another IP still registers");

    let login = |user: &'static str, password: &'static str| {
        let (http, url) = (http.clone(), format!("{base}/v1/auth/login"));
        async move { post(&http, &url, None, credentials(user, password)).await }
    };
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..12 {
        let (s, retry, _) = login("ann", "wrong password").await?;
        statuses.push(s);
        if s == 429 {
            retry_after = retry;
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "never throttled: {statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 401).count() >= 3,
        "{statuses:?}"
    );
    assert!(retry_after.is_some_and(|r| r >= 1), "{retry_after:?}");
    let (s, _, _) = login("ann", PASSWORD).await?;
    assert_eq!(s, 429, "the locked (IP, account) pair waits out its window");
    let (s, _, v) = login("bob", PASSWORD).await?;
    assert_eq!(s, 200, "another account from the same IP: {v}");
    let (s, _, v) = post(
        &client_from(22)?,
        &format!("{base}/v1/auth/login"),
        None,
        credentials("ann", PASSWORD),
    )
    .await?;
    assert_eq!(
        s, 200,
        "the account itself is not locked for other IPs: {v}"
    );
    mesh.stop().await
}

/// A login hands out a device token; a login that brings it back is a known device's
/// (OWASP's device cookies): while guessing from other addresses keeps the account's limits
/// spent (the gateway's and the worker's, both at 4 here), its owner without the token is
/// refused 429, with it logs in. The token is no access token; another account's, a
/// made-up one or a client's own `known_device` are no device; a device has its own
/// lockout, which another device of the owner does not share; `logout_all` makes every
/// device unknown again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_device_logs_in_while_guessing_holds_its_account() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.login_free_failures = 3;
    config.gateway.login_account_failures_per_minute = 1;
    config.gateway.login_account_burst = 4;
    config.worker.login_account_failures_per_minute = 1;
    config.worker.login_account_burst = 4;
    let mesh = start_mesh(dir.path(), config).await?;
    let base = mesh.url();
    let (login, register) = (
        format!("{base}/v1/auth/login"),
        format!("{base}/v1/auth/register"),
    );
    let owner = client_from(30)?;
    for user in ["ann", "bob"] {
        let (s, _, v) = post(&owner, &register, None, credentials(user, PASSWORD)).await?;
        assert_eq!(s, 201, "{v}");
    }
    let device_of = |v: &Value| v["device"].as_str().map(str::to_owned);
    // The owner's phone and laptop log in once each: two devices.
    let mut devices = Vec::new();
    for _ in 0..2 {
        let (s, _, v) = post(&owner, &login, None, credentials("ann", PASSWORD)).await?;
        assert_eq!(s, 200, "{v}");
        devices.push(device_of(&v).context("a login hands out a device token")?);
    }
    let (phone, laptop) = (devices[0].clone(), devices[1].clone());
    let (s, _, v) = post(&owner, &login, None, credentials("bob", PASSWORD)).await?;
    assert_eq!(s, 200, "{v}");
    let bobs = device_of(&v).context("bob's device token")?;

    let rooms = owner
        .get(format!("{base}/v1/rooms"))
        .bearer_auth(&phone)
        .send()
        .await?;
    assert_eq!(
        rooms.status().as_u16(),
        401,
        "a device token is no access token"
    );

    // Guessing from other addresses spends the account's limits.
    let mut statuses = Vec::new();
    for i in 0..12u8 {
        let guesser = client_from(40 + i)?;
        let (s, _, _) = post(&guesser, &login, None, credentials("ann", "wrong password")).await?;
        statuses.push(s);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let (s, _, v) = post(&owner, &login, None, credentials("ann", PASSWORD)).await?;
    assert_eq!(s, 429, "the owner without a device token is held too: {v}");

    let with = |password: &str, device: &str| json!({"username": "ann", "password": password, "device": device});
    let (s, _, v) = post(&owner, &login, None, with(PASSWORD, &phone)).await?;
    assert_eq!(s, 200, "the known device logs in past both limits: {v}");
    let phone = device_of(&v).context("the phone's device token again")?;
    let by_sdk = chatmesh_client::Http::new(&base)?
        .login_known("ann", PASSWORD, &phone)
        .await?;
    assert!(
        by_sdk.device.is_some(),
        "the Rust client brings it back too"
    );
    for (what, body) in [
        ("bob's device token", with(PASSWORD, &bobs)),
        ("a made-up token", with(PASSWORD, "not.a.token")),
        (
            "a client's own known_device",
            json!({"username": "ann", "password": PASSWORD, "known_device": "x"}),
        ),
    ] {
        let (s, _, v) = post(&owner, &login, None, body).await?;
        assert_eq!(s, 429, "{what} is no device for ann: {v}");
    }

    // The phone's own lockout: three free failures, then even the right password waits;
    // the laptop is another device.
    for _ in 0..3 {
        let (s, _, v) = post(&owner, &login, None, with("wrong password", &phone)).await?;
        assert_eq!(s, 401, "{v}");
    }
    let (s, retry, v) = post(&owner, &login, None, with(PASSWORD, &phone)).await?;
    assert_eq!((s, http_error(&v)), (429, Some(ErrorCode::RateLimited)));
    assert!(retry.is_some_and(|r| r >= 1), "{retry:?}");
    let (s, _, v) = post(&owner, &login, None, with(PASSWORD, &laptop)).await?;
    assert_eq!(s, 200, "the laptop is not locked by the phone: {v}");
    let token = v["token"].as_str().context("token")?.to_owned();
    let laptop = device_of(&v).context("the laptop's device token again")?;

    // A logout everywhere (or a password change) makes every device unknown again.
    let (s, _, v) = post(
        &owner,
        &format!("{base}/v1/auth/logout_all"),
        Some(&token),
        json!({}),
    )
    .await?;
    assert_eq!(s, 204, "{v}");
    let (s, _, v) = post(&owner, &login, None, with(PASSWORD, &laptop)).await?;
    assert_eq!(
        s, 429,
        "the laptop's token from before the logout is no device: {v}"
    );
    mesh.stop().await
}

/// A host holds a whole IPv6 /64: registrations from its addresses (forwarded here by a
/// trusted proxy) share one bucket, so new addresses do not buy new accounts; another /64
/// has its own bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_client_is_throttled_by_its_64() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.register_per_ip_per_hour = 3;
    config.gateway.register_ip_burst = 3;
    config.gateway.trusted_proxies = vec![[127, 0, 0, 1].into()];
    let mesh = start_mesh(dir.path(), config).await?;
    let url = format!("{}/v1/auth/register", mesh.url());
    let proxy = client_from(1)?;
    let register = |user: String, from: &'static str| {
        let req = proxy
            .post(&url)
            .header("x-forwarded-for", from)
            .json(&credentials(&user, PASSWORD));
        async move {
            let resp = req.send().await?;
            anyhow::Ok((resp.status().as_u16(), resp.json::<Value>().await?))
        }
    };
    let one_host = [
        "2001:db8:0:1::1",
        "2001:db8:0:1::2",
        "2001:db8:0:1:ffff:ffff:ffff:fffe",
        "2001:db8:0:1:1234::9",
    ];
    let mut statuses = Vec::new();
    for (i, from) in one_host.into_iter().enumerate() {
        statuses.push(register(format!("six{i}"), from).await?.0);
    }
    assert_eq!(statuses, [201, 201, 201, 429], "one /64's registrations");
    let (s, v) = register("other".into(), "2001:db8:0:2::1").await?;
    assert_eq!(s, 201, "another /64 registers: {v}");
    mesh.stop().await
}

/// A user can own at most `max_rooms_per_user` rooms (then `forbidden`) and create at most
/// `rooms_per_minute` (then 429 + `Retry-After`); another user's room list still starts with
/// its own rooms and holds at most `rooms_list_public_per_owner` of the spammer's rooms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_quotas_and_a_spam_proof_room_list() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.worker.max_rooms_per_user = 8;
    config.worker.rooms_list_public_per_owner = 3;
    config.gateway.rooms_per_minute = 30;
    config.gateway.rooms_burst = 5;
    let mesh = start_mesh(dir.path(), config).await?;
    let base = mesh.url();
    let api = Api::new(&mesh);
    let spam = api.user("spammer").await?;
    let http = client_from(30)?;
    let create = |room: String| {
        let (http, url, spam) = (http.clone(), format!("{base}/v1/rooms"), spam.clone());
        async move {
            post(
                &http,
                &url,
                Some(&spam),
                json!({"room": room, "kind": "public"}),
            )
            .await
        }
    };
    let mut statuses = Vec::new();
    for i in 0..6 {
        let (s, retry, v) = create(format!("aaa{i:02}")).await?;
        if s == 429 {
            assert!(retry.is_some(), "{v}");
        }
        statuses.push(s);
    }
    assert_eq!(statuses, [201, 201, 201, 201, 201, 429], "rate per user");
    // The count cap, past the rate (the bucket refills one room per 2 s: wait it out).
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut made = 5;
    let cap_error = loop {
        let (s, retry, v) = create(format!("aaa{made:02}")).await?;
        match s {
            201 => made += 1,
            429 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1).min(3))).await
            }
            _ => break (s, v),
        }
    };
    assert_eq!(made, 8, "max_rooms_per_user");
    assert_eq!(cap_error.0, 403, "{}", cap_error.1);
    assert_eq!(http_error(&cap_error.1), Some(ErrorCode::Forbidden));

    let ann = api.user("ann").await?;
    api.room(&ann, "zzz-mine", "private").await?;
    api.room(&ann, "zzz-ours", "public").await?;
    let (s, list) = api.call("GET", "/v1/rooms", Some(&ann), None).await?;
    assert_eq!(s, 200);
    let rooms = http_rooms(&list).context("rooms")?;
    let names: Vec<&str> = rooms.iter().map(|r| r.room.as_str()).collect();
    assert_eq!(
        &names[..2],
        ["zzz-mine", "zzz-ours"],
        "own rooms first: {names:?}"
    );
    let spam_rooms = names.iter().filter(|n| n.starts_with("aaa")).count();
    assert_eq!(
        spam_rooms, 3,
        "one owner's share of the public tail: {names:?}"
    );
    mesh.stop().await
}

/// Opening DMs is rate-limited per user like creating rooms (`dms_per_minute`, burst
/// `dm_burst`; then 429 + `Retry-After`): every new DM is a room its peer cannot leave, so
/// one account cannot open one with every user in a loop. Another user is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_flood_is_refused_rate_limited() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.dms_per_minute = 30;
    config.gateway.dm_burst = 5;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let spam = api.user("spammer").await?;
    let ann = api.user("ann").await?;
    let http = client_from(31)?;
    let mut statuses = Vec::new();
    for i in 0..6 {
        api.user(&format!("target{i}")).await?;
        let url = format!("{}/v1/dm/target{i}", mesh.url());
        let resp = http.post(&url).bearer_auth(&spam).send().await?;
        let status = resp.status().as_u16();
        if status == 429 {
            assert!(resp.headers().get("retry-after").is_some());
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429], "rate per user");
    let (s, v) = api.call("POST", "/v1/dm/target0", Some(&ann), None).await?;
    assert_eq!(s, 200, "another user opens a DM at once: {v}");
    mesh.stop().await
}

/// Every authenticated API call counts against its user's rate (`api_per_user_per_minute`,
/// burst `api_user_burst`; then 429 + `Retry-After`, whatever the endpoint): one account
/// hammering cheap reads cannot keep the workers busy for everyone. Another user is not held
/// up, and unauthenticated calls are not charged to anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_flood_of_api_calls_is_refused_rate_limited() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.api_per_user_per_minute = 1;
    config.gateway.api_user_burst = 8;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let greedy = api.user("greedy").await?;
    let ann = api.user("ann").await?;
    let http = client_from(31)?;
    let mut statuses = Vec::new();
    for path in ["/v1/rooms", "/v1/users/me", "/v1/users/me/blocks"]
        .iter()
        .cycle()
        .take(10)
    {
        let resp = http
            .get(format!("{}{path}", mesh.url()))
            .bearer_auth(&greedy)
            .send()
            .await?;
        let status = resp.status().as_u16();
        if status == 429 {
            let wait = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().map(str::to_owned));
            assert!(matches!(wait, Some(Ok(_))), "429 without Retry-After");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 429, 429]);
    let (s, v) = api.call("GET", "/v1/rooms", Some(&ann), None).await?;
    assert_eq!(s, 200, "another user is served at once: {v}");
    let (s, _) = api.call("GET", "/healthz", None, None).await?;
    assert_eq!(s, 200);
    mesh.stop().await
}

/// `POST /v1/auth/logout_all` revokes every token issued before it: the old token gets 401
/// over HTTP and `unauthorized` + 4001 at `hello`, open sessions of that user close with 4001
/// (on this gateway and, through the `chat.user.*` event, on another one), an upgrade with
/// the old token in its `Authorization` header is refused; a fresh login works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_revokes_old_tokens() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let role = chatmesh_protocol::bus::Role::Gateway;
    let nats = chatmesh::nats::connect(&mesh.config.mesh, role, "second-gateway").await?;
    let second = chatmesh::services::GatewayHandle::start(&mesh.config, nats).await?;
    let far_api = Api::at(&format!("http://{}", second.addr));
    let far_ws = format!("ws://{}/v1/ws", second.addr);
    let api = Api::new(&mesh);
    let old = api.user("ann").await?;
    let other = api.user("bob").await?;
    for a in [&api, &far_api] {
        let (s, _) = a.call("GET", "/v1/rooms", Some(&old), None).await?;
        assert_eq!(s, 200, "the old token is cached as valid on both gateways");
    }
    let mut open = Client::login(&mesh.ws_url(), &old).await?;
    let mut far = Client::login(&far_ws, &old).await?;
    let mut bystander = Client::login(&mesh.ws_url(), &other).await?;

    let (s, v) = api
        .call("POST", "/v1/auth/logout_all", Some(&old), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    let closed = tokio::time::timeout(Duration::from_secs(5), open.ended()).await;
    assert_eq!(closed.ok(), Some(Ended::Closed(4001)), "open session");
    let closed = tokio::time::timeout(Duration::from_secs(5), far.ended()).await;
    assert_eq!(
        closed.ok(),
        Some(Ended::Closed(4001)),
        "session on the other gateway"
    );

    for a in [&api, &far_api] {
        let (s, v) = a.call("GET", "/v1/rooms", Some(&old), None).await?;
        assert_eq!((s, http_error(&v)), (401, Some(ErrorCode::Unauthorized)));
    }
    let mut c = Client::connect(&mesh.ws_url()).await?;
    let e = c.request(frame::hello(&old)).await?;
    assert_eq!(error_code(&e), Some(ErrorCode::Unauthorized));
    assert_eq!(c.ended().await, Ended::Closed(4001));
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        mesh.ws_url(),
    )?;
    req.headers_mut()
        .insert("Authorization", format!("Bearer {old}").parse()?);
    assert!(
        tokio_tungstenite::connect_async(req).await.is_err(),
        "upgrade with a revoked token"
    );

    let pong = bystander.request(frame::ping()).await?;
    assert_eq!(
        pong.frame_type(),
        FrameType::Pong,
        "other users' sessions live on"
    );
    let fresh = api.user("ann").await?;
    let (s, _) = api.call("GET", "/v1/rooms", Some(&fresh), None).await?;
    assert_eq!(s, 200);
    let mut again = Client::login(&mesh.ws_url(), &fresh).await?;
    assert_eq!(
        again.request(frame::ping()).await?.frame_type(),
        FrameType::Pong
    );
    mesh.stop().await
}

/// User events are core NATS: a `logout_all` whose event a gateway missed while it was cut
/// off from the bus still closes that gateway's sessions of the old token (4001) once it is
/// back (it asks again about every user with a session there), while a session with a fresh
/// token lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_all_missed_while_cut_off_from_nats_applies_once_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let old = api.user("ann").await?;
    let far = FarGateway::start(&mesh).await?;
    let mut session = Client::login(&far.ws_url(), &old).await?;

    far.cut().await?;
    let (s, v) = api
        .call("POST", "/v1/auth/logout_all", Some(&old), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    let fresh = api.user("ann").await?;
    far.proxy.restore();
    let mut kept = Client::login(&far.ws_url(), &fresh).await?;

    let closed = tokio::time::timeout(WAIT, session.ended()).await;
    assert_eq!(
        closed.ok(),
        Some(Ended::Closed(4001)),
        "old token's session"
    );
    assert_eq!(
        kept.request(frame::ping()).await?.frame_type(),
        FrameType::Pong,
        "the fresh token's session lives on"
    );
    far.stop().await;
    mesh.stop().await
}

/// A session of a token revoked (`logout_all`) while its gateway was cut off from NATS gets
/// nothing posted after the revocation once the gateway is back: the rooms hold their
/// messages until the token re-check has closed the session (4001), as they do for a missed
/// ban. Bystanders' sessions in no room make the token re-check the longer of the two (it
/// asks about each user, the access re-check about each user in a room), so a room let go
/// after the access re-check alone would deliver to the revoked session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_posted_after_a_missed_logout_all_reaches_the_old_tokens_session() -> Result<()> {
    const BYSTANDERS: usize = 200;
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let old = api.user("ann").await?;
    let bob = api.user("bob").await?;
    api.room(&bob, "hall", "public").await?;
    let far = FarGateway::start(&mesh).await?;
    let mut bystanders = Vec::new();
    for i in 0..BYSTANDERS {
        let token = api.user(&format!("by{i}")).await?;
        bystanders.push(Client::login(&far.ws_url(), &token).await?);
    }
    let mut session = Client::login(&far.ws_url(), &old).await?;
    session.join("hall").await?;
    let mut owner = Client::login(&mesh.ws_url(), &bob).await?;
    owner.join("hall").await?;
    owner.post("hall", "b1", "before").await?;
    session.messages("hall", 1).await?;

    far.cut().await?;
    let (s, v) = api
        .call("POST", "/v1/auth/logout_all", Some(&old), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    owner.post("hall", "b2", "after the logout").await?;
    far.proxy.restore();
    far.reconnected().await?;
    // At once, before the gateway's re-checks: the live message that reveals the gap.
    owner.post("hall", "b3", "just after the reconnect").await?;

    let closed = tokio::time::timeout(WAIT, session.ended()).await;
    assert_eq!(
        closed.ok(),
        Some(Ended::Closed(4001)),
        "old token's session"
    );
    let leaked: Vec<_> = session
        .backlog
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Message(m) => Some(m.body.to_string()),
            _ => None,
        })
        .collect();
    assert!(leaked.is_empty(), "the revoked session got {leaked:?}");
    let expired = api
        .metric("chatmesh_fanout_recheck_waits_expired_total")
        .await?;
    assert_eq!(
        expired, 0.0,
        "the rooms were let go by the re-checks, not by the hold's end"
    );
    drop(bystanders);
    far.stop().await;
    mesh.stop().await
}

/// A `logout_all` whose event never reaches a gateway that saw no loss (a NATS route that
/// dropped it; here a proxy that drops the `chat.user.*` messages on their way to the
/// gateway and keeps its connection up) still closes the old token's session there, 4001,
/// by the periodic re-check (`gateway.session_recheck_secs`): before, nothing asked again
/// and the session worked until its token expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_all_whose_event_never_arrived_closes_the_session_all_the_same() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.session_recheck_secs = 2;
    config.gateway.user_gen_cache_secs = 1;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let old = api.user("ann").await?;
    let far = FarGateway::start(&mesh).await?;
    let mut session = Client::login(&far.ws_url(), &old).await?;
    far.proxy.drop_subjects("chat.user.");
    let (s, v) = api
        .call("POST", "/v1/auth/logout_all", Some(&old), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    let closed = tokio::time::timeout(WAIT, session.ended()).await;
    assert_eq!(
        closed.ok(),
        Some(Ended::Closed(4001)),
        "old token's session"
    );
    far.stop().await;
    mesh.stop().await
}

/// A mesh started in a fresh data dir writes `jwt-secret` with mode 0600 and leaves no
/// temporary file beside it; a second start reads the same secret. A `jwt-secret` symlink
/// planted in the dir is replaced, not followed (the secret never lands in its target).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_secret_file_is_private() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let outside = tempfile::tempdir()?;
    let target = outside.path().join("leaked");
    std::os::unix::fs::symlink(&target, dir.path().join("jwt-secret"))?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let secret = mesh.config.gateway.jwt_secret.clone();
    mesh.stop().await?;
    assert!(!target.exists(), "the secret was written through a symlink");
    let path = dir.path().join("jwt-secret");
    assert!(!std::fs::symlink_metadata(&path)?.file_type().is_symlink());
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    let stray: Vec<_> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("jwt-secret") && n != "jwt-secret")
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    assert_eq!(mesh.config.gateway.jwt_secret, secret);
    mesh.stop().await
}

/// An external issuer's key withdrawn from the JWKS file (after a leak) closes the open
/// sessions of its tokens, 4001, at the next periodic re-check once the gateway has read the
/// file again: external tokens have no generation to revoke, and before, such a session
/// lasted until its token's `exp`, which a forger picks. Sessions of the keys still in the
/// set stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_issuer_key_closes_the_sessions_of_its_tokens() -> Result<()> {
    use base64::Engine;
    let dir = tempfile::tempdir()?;
    let jwks = dir.path().join("jwks.json");
    let key = |kid: &str, secret: &[u8]| {
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": k})
    };
    let (leaked, kept) = (
        b"a leaked signing secret".as_slice(),
        b"a kept one".as_slice(),
    );
    let both = json!({"keys": [key("k1", leaked), key("k2", kept)]});
    std::fs::write(&jwks, both.to_string())?;
    let mut config = fast_config();
    config.gateway.jwks_file = Some(jwks.clone());
    config.gateway.jwt_issuer = "https://idp.example".into();
    config.gateway.jwt_audience = Some("chatmesh".into());
    config.gateway.session_recheck_secs = 2;
    let mesh = start_mesh(dir.path(), config).await?;
    let token = |kid: &str, secret: &[u8]| -> Result<String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid.into());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let claims = json!({"sub": "ann", "iss": "https://idp.example", "aud": "chatmesh",
            "iat": now, "exp": now + 3600});
        let key = jsonwebtoken::EncodingKey::from_secret(secret);
        Ok(jsonwebtoken::encode(&header, &claims, &key)?)
    };
    let mut forged = Client::login(&mesh.ws_url(), &token("k1", leaked)?).await?;
    let mut fine = Client::login(&mesh.ws_url(), &token("k2", kept)?).await?;

    let only_kept = json!({"keys": [key("k2", kept)]});
    let tmp = jwks.with_extension("tmp");
    std::fs::write(&tmp, only_kept.to_string())?;
    std::fs::rename(&tmp, &jwks)?;
    let closed = tokio::time::timeout(WAIT, forged.ended()).await;
    assert_eq!(
        closed.ok(),
        Some(Ended::Closed(4001)),
        "the withdrawn key's session"
    );
    let pong = fine.request(frame::ping()).await?;
    assert!(matches!(pong, ServerFrame::Pong { .. }), "{pong:?}");
    mesh.stop().await
}

/// A gateway that takes an external issuer's tokens keeps no accounts of its own: sign-up
/// and login answer 400 at once (no account record is made, no password is checked).
#[tokio::test]
async fn an_external_issuers_gateway_neither_signs_up_nor_logs_in() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, r#"{"keys":[]}"#)?;
    let mut config = fast_config();
    config.gateway.jwks_file = Some(jwks);
    config.gateway.jwt_audience = Some("chatmesh".into());
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let creds = json!({"username": "ann", "password": "ann password"});
    for path in ["/v1/auth/register", "/v1/auth/login"] {
        let (status, body) = api.call("POST", path, None, Some(creds.clone())).await?;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("external issuer"), "{path}: {body}");
    }
    mesh.stop().await
}
