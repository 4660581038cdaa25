//! The caller's own account against a real mesh: `GET`/`PATCH /v1/users/me` (a bounded,
//! validated, Unicode display name) and `POST /v1/auth/password` (old password checked and
//! throttled like a login; on success every earlier token is revoked and a fresh one
//! returned).

mod common;

use anyhow::{Context, Result};
use common::*;
use serde_json::{json, Value};

/// A display name is trimmed, Unicode-safe and bounded; invisible or control characters
/// and unknown fields are refused; an empty string or null clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_names_are_validated_and_stored() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let me = |token: &str| {
        let token = token.to_owned();
        let api = &api;
        async move { api.call("GET", "/v1/users/me", Some(&token), None).await }
    };
    let patch = |body: Value| {
        let (api, ann) = (&api, ann.clone());
        async move {
            api.call("PATCH", "/v1/users/me", Some(&ann), Some(body))
                .await
        }
    };
    assert_eq!(
        me(&ann).await?,
        (200, json!({"user": "ann", "display_name": null}))
    );
    let (s, v) = patch(json!({"display_name": "  Ann Lovelace 👩‍💻 "})).await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["display_name"], "Ann Lovelace 👩‍💻");
    assert_eq!(me(&ann).await?.1["display_name"], "Ann Lovelace 👩‍💻");
    // 64 characters of 3 bytes are fine; 65 characters are not.
    let (s, _) = patch(json!({ "display_name": "名".repeat(64) })).await?;
    assert_eq!(s, 200);
    for bad in [
        json!({ "display_name": "名".repeat(65) }),
        json!({"display_name": "line\nbreak"}),
        json!({"display_name": "admin\u{202E}nimda"}),
        json!({"display_name": "zero\u{200B}width"}),
        json!({"display_name": 7}),
        json!({}),
        json!({"display_name": "x", "avatar": "y"}),
    ] {
        let (s, v) = patch(bad.clone()).await?;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    assert_eq!(me(&ann).await?.1["display_name"], "名".repeat(64));
    for clear in [
        json!({"display_name": "   "}),
        json!({"display_name": null}),
    ] {
        let (s, v) = patch(clear).await?;
        assert_eq!((s, &v["display_name"]), (200, &Value::Null));
    }
    let (s, _) = api.call("GET", "/v1/users/me", None, None).await?;
    assert_eq!(s, 401);
    Ok(())
}

async fn login(api: &Api, user: &str, password: &str) -> Result<(u16, Value)> {
    api.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(json!({"username": user, "password": password})),
    )
    .await
}

/// A wrong old password is 403 and counts as a failed login (after the free failures the
/// pair is locked out: 429); the right one changes the password, revokes the old tokens
/// (HTTP 401, open sessions closed with 4001) and answers a fresh token that works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_checks_the_old_one_and_revokes_tokens() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.login_free_failures = 2;
    config.gateway.login_lockout_base_secs = 1;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let old = api.user("ann").await?;
    let second = api.user("ann").await?;
    let mut session = Client::login(&mesh.ws_url(), &second).await?;
    let change = |token: &str, old_password: &str, new_password: &str| {
        let (api, token) = (&api, token.to_owned());
        let body = json!({"old_password": old_password, "new_password": new_password});
        async move {
            api.call("POST", "/v1/auth/password", Some(&token), Some(body))
                .await
        }
    };

    let (s, v) = change(&old, "correct horse", "short").await?;
    assert_eq!(s, 400, "{v}");
    for _ in 0..2 {
        let (s, v) = change(&old, "wrong horse", "battery staple").await?;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{v}"
        );
    }
    // The two free failures are used up: the pair waits, the right password included.
    let (s, _) = change(&old, "correct horse", "battery staple").await?;
    assert_eq!(s, 429, "locked out like a login");
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;

    let (s, v) = change(&old, "correct horse", "battery staple").await?;
    assert_eq!(s, 200, "{v}");
    let fresh = v["token"].as_str().context("token")?.to_owned();
    assert!(v["expires_at"].as_u64().is_some());
    // Every earlier token is revoked, open sessions too; the fresh one works.
    let (s, _) = api.call("GET", "/v1/rooms", Some(&old), None).await?;
    assert_eq!(s, 401);
    assert_eq!(session.ended().await, Ended::Closed(4001));
    let (s, _) = api.call("GET", "/v1/rooms", Some(&fresh), None).await?;
    assert_eq!(s, 200);
    Client::login(&mesh.ws_url(), &fresh).await?.close().await;
    // The new password logs in, the old one does not.
    assert_eq!(login(&api, "ann", "battery staple").await?.0, 200);
    assert_eq!(login(&api, "ann", "correct horse").await?.0, 401);
    Ok(())
}
