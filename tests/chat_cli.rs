//! `chatmesh chat`, the terminal client, as users run it: over a pipe (a bot's way) and
//! interactively on a pseudo-terminal (`script` gives it one), against a real mesh.

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use chatmesh_client::{Client, Event};
use common::{fast_config, start_mesh, Api};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

const PASSWORD: &str = "correct horse";

fn chat(url: &str, user: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatmesh"));
    cmd.args(["chat", "--url", url, "--user", user])
        .env("CHATMESH_PASSWORD", PASSWORD)
        .env_remove("CHATMESH_TOKEN")
        .kill_on_drop(true);
    cmd
}

async fn sdk(url: &str, user: &str) -> Result<Client> {
    Ok(Client::builder(url).login(user, PASSWORD).connect().await?)
}

/// `printf 'hi\nthere\n' | chatmesh chat --room general`: both stored in order, exit 0;
/// a room the user may not post to fails with a message and a non-zero exit.
#[tokio::test]
async fn piped_lines_are_sent_in_order_and_acked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    api.user("ann").await?;
    let bob = api.user("bob").await?;
    api.room(&bob, "bobs", "private").await?;
    let url = mesh.url();

    let mut child = chat(&url, "ann")
        .args(["--room", "general", "--create"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(b"hi\nthere \"you\"\n\nlast line\n").await?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await??;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ann = sdk(&url, "ann").await?;
    let page = ann.history("general", None, 10).await?;
    let bodies: Vec<&str> = page.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["hi", "there \"you\"", "last line"]);

    let out = chat(&url, "ann")
        .args(["--room", "bobs"])
        .stdin(Stdio::null())
        .output()
        .await?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("joining bobs") && err.contains("forbidden"),
        "{err}"
    );
    Ok(())
}

/// Reads the pty output until it contains `needle` (at most 20 s); returns all read so far.
/// Runs the command line `inner` on a pseudo-terminal (`script`, util-linux, relays our
/// pipes to it): the child, its input and its output.
fn on_a_pty(
    inner: &str,
) -> Result<(
    tokio::process::Child,
    tokio::process::ChildStdin,
    tokio::process::ChildStdout,
)> {
    let mut child = Command::new("script")
        .args(["-qfec", inner, "/dev/null"])
        .env("CHATMESH_PASSWORD", PASSWORD)
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("script (util-linux) runs the client on a pty")?;
    let stdin = child.stdin.take().context("stdin")?;
    let stdout = child.stdout.take().context("stdout")?;
    Ok((child, stdin, stdout))
}

async fn read_until(
    out: &mut tokio::process::ChildStdout,
    seen: &mut String,
    needle: &str,
) -> Result<()> {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        while !seen.contains(needle) {
            let n = out.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "output ended");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        Ok(())
    })
    .await;
    match found {
        Ok(r) => r.with_context(|| format!("waiting for {needle:?} in {seen:?}")),
        Err(_) => anyhow::bail!("{needle:?} not seen within 20 s; output: {seen:?}"),
    }
}

/// On a terminal: messages and presence print as they come, a typed line is sent to the
/// current room, `/who`, `/accept` (of an invitation shown as it came) and `/quit` work.
#[tokio::test]
async fn interactive_on_a_pty() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann_token = api.user("ann").await?;
    api.user("bob").await?;
    api.room(&ann_token, "general", "public").await?;
    let url = mesh.url();
    let mut ann = sdk(&url, "ann").await?;
    let mut ann_events = ann.events().context("events")?;
    ann.join("general").await?;
    let bob_sdk = sdk(&url, "bob").await?;

    // `script` runs the client on a pseudo-terminal and relays our pipe to it.
    let inner = format!(
        "{} chat --url {url} --user bob --room general",
        env!("CARGO_BIN_EXE_chatmesh")
    );
    let (mut child, mut stdin, mut stdout) = on_a_pty(&inner)?;
    let mut seen = String::new();
    read_until(&mut stdout, &mut seen, "connected as bob").await?;

    ann.send("general", "hello bob").await?;
    read_until(&mut stdout, &mut seen, "[general] ann: hello bob").await?;

    stdin.write_all(b"hey ann\n").await?;
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ann_events.recv().await {
                Some(Event::Message(m)) if m.from == "bob" => return Some(m.body),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await?;
    assert_eq!(got.as_deref(), Some("hey ann"));

    stdin.write_all(b"/who\n").await?;
    read_until(&mut stdout, &mut seen, "online in general: ann, bob").await?;
    // bob takes invitations: ann's add is an invitation, shown, and accepted from here.
    bob_sdk
        .http()
        .set_adds(chatmesh_client::Adds::Invitations)
        .await?;
    ann.http()
        .create_room("den", chatmesh_protocol::service::RoomKind::Private)
        .await?;
    ann.http().add_or_invite("den", "bob", false).await?;
    read_until(&mut stdout, &mut seen, "ann invited you to den as Member").await?;
    stdin.write_all(b"/accept den\n").await?;
    read_until(&mut stdout, &mut seen, "you are a member of den").await?;
    stdin.write_all(b"/nonsense\n").await?;
    read_until(&mut stdout, &mut seen, "unknown command").await?;
    stdin.write_all(b"/quit\n").await?;
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
    assert!(status.success(), "output: {seen:?}");
    Ok(())
}

/// An e2ee room from the terminal: bob's first run creates and publishes his device; once
/// ann (the SDK) has added him, his next run decrypts her message (`--history`) and sends an
/// encrypted line she reads; the server holds only ciphertext.
#[tokio::test]
async fn an_e2ee_room_from_the_terminal() -> Result<()> {
    use chatmesh_client::RoomKind;
    use chatmesh_e2ee::{
        catch_up, claim, commit, create_group, publish, send_text, Change, Device, Event as Sealed,
    };

    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    api.user("ann").await?;
    api.user("bob").await?;
    let url = mesh.url();
    let ann = sdk(&url, "ann").await?;
    ann.http().create_room("vault", RoomKind::E2ee).await?;
    ann.http().add_member("vault", "bob", false).await?;
    let mut ann_dev = Device::create(dir.path().join("ann-device"), "ann", "laptop", None)?;
    publish(&mut ann_dev, &ann.http(), 2).await?;
    create_group(&mut ann_dev, &ann.http(), "vault").await?;
    let bob_dir = dir.path().join("bob-device");

    // bob's first run: his device is created and published; nothing to read yet.
    let run = |input: &'static [u8], extra: &'static [&'static str]| {
        let mut cmd = chat(&url, "bob");
        cmd.args(["--room", "vault", "--device-dir"])
            .arg(&bob_dir)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        async move {
            let mut child = cmd.spawn()?;
            let mut stdin = child.stdin.take().context("stdin")?;
            stdin.write_all(input).await?;
            drop(stdin);
            let out =
                tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await??;
            anyhow::ensure!(
                out.status.success(),
                "chat failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            anyhow::Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }
    };
    run(b"", &[]).await?;
    let devices = ann.http().e2ee_devices("bob").await?;
    assert_eq!(devices.devices.len(), 1, "{devices:?}");
    assert_eq!(devices.devices[0].device, "cli");

    // ann adds bob's device to the group and writes to him.
    let packages = claim(&mut ann_dev, &ann.http(), "vault", &["bob"]).await?;
    commit(&mut ann_dev, &ann, "vault", &Change::Add(packages)).await?;
    send_text(&mut ann_dev, &ann, "vault", "hello bob, sealed").await?;

    // bob's second run reads her message and answers.
    let printed = run(b"hello ann, from the terminal\n", &["--history", "10"]).await?;
    assert!(
        printed.contains("[vault] ann: hello bob, sealed"),
        "printed: {printed}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = catch_up(&mut ann_dev, &ann, "vault").await?;
        let read = events.iter().any(|e| {
            matches!(e, Sealed::Text { from, text, .. } if from.user == "bob" && text == "hello ann, from the terminal")
        });
        if read {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "ann never read bob's line"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = ann.history("vault", None, 50).await?;
    assert!(page
        .messages
        .iter()
        .all(|m| m.body.is_empty() && m.mls.is_some()));

    // On a terminal, /fingerprint also prints the group's code: the one ann's device has
    // (one group, not forked).
    let (epoch, code) = ann_dev.epoch_code("vault")?;
    let inner = format!(
        "{} chat --url {url} --user bob --room vault --device-dir {}",
        env!("CARGO_BIN_EXE_chatmesh"),
        bob_dir.display()
    );
    let (mut child, mut stdin, mut stdout) = on_a_pty(&inner)?;
    let mut seen = String::new();
    read_until(&mut stdout, &mut seen, "connected as bob").await?;
    stdin.write_all(b"/fingerprint\n").await?;
    let want = format!("the group's code: vault at epoch {epoch}: {code}");
    read_until(&mut stdout, &mut seen, &want).await?;
    stdin.write_all(b"/quit\n").await?;
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;

    // A room bob creates encrypted from the terminal: its group is handed to the server,
    // which checks its commits from then on.
    let out = chat(&url, "bob")
        .args(["--room", "bobs", "--create", "--e2ee", "--device-dir"])
        .arg(&bob_dir)
        .stdin(Stdio::null())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "chat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bob = sdk(&url, "bob").await?;
    let group = bob.http().e2ee_group("bobs").await?;
    assert!(group.checked, "{group:?}");
    assert_eq!(group.members, ["bob/cli"]);
    Ok(())
}
