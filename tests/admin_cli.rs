//! `chatmesh admin`, as an operator runs it against a real mesh: every subcommand, text and
//! `--json` output, and the errors it explains (not an admin, no credentials, unknown
//! names, a deletion without `--yes`).

mod common;

use std::process::Output;
use std::time::Duration;

use anyhow::Result;
use common::{fast_config, start_mesh, with_admins, Api, ADMIN_TOKEN};
use serde_json::Value;
use tokio::process::Command;

const PASSWORD: &str = "correct horse";

/// `chatmesh admin --url URL ARGS` with a clean environment of credentials.
async fn admin(url: &str, env: &[(&str, &str)], args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatmesh"));
    cmd.args(["admin", "--url", url])
        .args(args)
        .env_remove("CHATMESH_TOKEN")
        .env_remove("CHATMESH_PASSWORD")
        .env_remove("CHATMESH_URL")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok(tokio::time::timeout(Duration::from_secs(60), cmd.output()).await??)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Each subcommand does its job as a server admin (token from the environment, or a login
/// with `--user`), and prints text or, with `--json`, the API's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_works_for_an_admin() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = with_admins(fast_config(), &["root"]);
    let mesh = start_mesh(dir.path(), cfg).await?;
    let api = Api::new(&mesh);
    let url = mesh.url();
    // The operator registers the listed admin with the bootstrap token; only once.
    let boot = [
        ("CHATMESH_ADMIN_BOOTSTRAP_TOKEN", ADMIN_TOKEN),
        ("CHATMESH_PASSWORD", PASSWORD),
    ];
    let out = admin(&url, &boot, &["bootstrap", "root"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("root registered"), "{}", stdout(&out));
    let out = admin(&url, &boot, &["bootstrap", "root"]).await?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has an account already"),
        "{}",
        stderr(&out)
    );
    let root = api.user("root").await?;
    let ann = api.user("ann").await?;
    api.room(&ann, "old-room", "public").await?;
    let token = [("CHATMESH_TOKEN", root.as_str())];

    let out = admin(&url, &token, &["users"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("root") && text.contains("ann") && text.contains("active"),
        "{text}"
    );
    let out = admin(&url, &token, &["--json", "users", "--limit", "1"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let page: Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(page["users"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["more"], true);

    let login = [("CHATMESH_PASSWORD", PASSWORD)];
    let out = admin(&url, &login, &["--user", "root", "disable", "ann"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ann disabled"), "{}", stdout(&out));
    let (s, _) = api.call("GET", "/v1/rooms", Some(&ann), None).await?;
    assert_eq!(s, 401, "ann's token is revoked");
    let out = admin(&url, &token, &["--json", "enable", "ann"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let state: Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(state["disabled"], false);

    let out = admin(&url, &token, &["delete-room", "old-room"]).await?;
    assert!(!out.status.success(), "refused without --yes");
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    let (s, _) = api
        .call("GET", "/v1/rooms/old-room/messages", Some(&root), None)
        .await?;
    assert_eq!(s, 200, "nothing was deleted");
    let out = admin(&url, &token, &["delete-room", "old-room", "--yes"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("old-room: deleted"),
        "{}",
        stdout(&out)
    );
    let (s, _) = api
        .call("GET", "/v1/rooms/old-room/messages", Some(&root), None)
        .await?;
    assert_eq!(s, 404);

    let file = dir.path().join("ann.jsonl");
    let path = file.to_string_lossy().into_owned();
    let out = admin(&url, &token, &["export-user", "ann", "-o", &path]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = std::fs::read_to_string(&file)?;
    let first: Value = serde_json::from_str(lines.lines().next().unwrap_or(""))?;
    assert_eq!(
        (&first["type"], &first["user"]),
        (&Value::from("account"), &Value::from("ann"))
    );
    assert!(
        !lines.contains("\"end\""),
        "the closing line is the CLI's, not the file's"
    );
    let out = admin(&url, &token, &["export-user", "ann"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with('{'), "to stdout: {}", stdout(&out));

    let out = admin(&url, &token, &["audit", "--limit", "50"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for action in [
        "disable",
        "enable",
        "delete_room",
        "export_user",
        "list_users",
    ] {
        assert!(text.contains(action), "{action} missing: {text}");
    }
    let out = admin(&url, &token, &["--json", "audit", "--limit", "2"]).await?;
    let page: Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(2));
    mesh.stop().await
}

/// What goes wrong is said plainly: a user who is not an admin, no credentials, a wrong
/// password, an unknown user or room, a bad name; each exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_explained() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = with_admins(fast_config(), &["root"]);
    let mesh = start_mesh(dir.path(), cfg).await?;
    let api = Api::new(&mesh);
    let url = mesh.url();
    let root = api.server_admin("root").await?;
    let bob = api.user("bob").await?;

    let out = admin(&url, &[("CHATMESH_TOKEN", bob.as_str())], &["users"]).await?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("[admin] users"), "{}", stderr(&out));
    let out = admin(&url, &[], &["users"]).await?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("CHATMESH_TOKEN"), "{}", stderr(&out));
    let wrong = [("CHATMESH_PASSWORD", "not the password")];
    let out = admin(&url, &wrong, &["--user", "root", "users"]).await?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    let out = admin(&url, &[("CHATMESH_TOKEN", "junk")], &["users"]).await?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not authenticated"),
        "{}",
        stderr(&out)
    );

    // `bootstrap` without the token, with a wrong one, for a name that is not listed.
    let out = admin(
        &url,
        &[("CHATMESH_PASSWORD", PASSWORD)],
        &["bootstrap", "ops"],
    )
    .await?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("CHATMESH_ADMIN_BOOTSTRAP_TOKEN"),
        "{}",
        stderr(&out)
    );
    let wrong = "w".repeat(40);
    let env = [
        ("CHATMESH_ADMIN_BOOTSTRAP_TOKEN", wrong.as_str()),
        ("CHATMESH_PASSWORD", PASSWORD),
    ];
    let out = admin(&url, &env, &["bootstrap", "ops"]).await?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("only for a name listed"),
        "{}",
        stderr(&out)
    );

    let token = [("CHATMESH_TOKEN", root.as_str())];
    let out = admin(&url, &token, &["disable", "nobody"]).await?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no such account"), "{}", stderr(&out));
    let out = admin(&url, &token, &["delete-room", "nowhere", "--yes"]).await?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no such room"), "{}", stderr(&out));
    let out = admin(&url, &token, &["enable", "bad.name"]).await?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad request"), "{}", stderr(&out));
    mesh.stop().await
}

/// `--check-config` refuses an `[admin]` section with a name that is not a user name.
#[test]
fn check_config_checks_the_admin_names() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("admin.toml");
    std::fs::write(
        &file,
        "[admin]\nusers = [\"root\", \"not a name\"]\naudit_retention_days = 99999\n",
    )?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatmesh"))
        .args(["--check-config", "--config"])
        .arg(&file)
        .arg("up")
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"not a name\""), "{err}");
    assert!(err.contains("audit_retention_days"), "{err}");
    assert!(!err.contains("\"root\""), "{err}");
    Ok(())
}
