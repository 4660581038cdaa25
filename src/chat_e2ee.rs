//! End-to-end encrypted rooms in `chatmesh chat`, on the MLS SDK (`chatmesh-e2ee`): one
//! device per user on this machine, its state in `--device-dir` (by default
//! `~/.local/share/chatmesh/devices/<user>`), published to the directory the first time it
//! is used (identity key, signed device record, KeyPackages).
//!
//! In an e2ee room a line is encrypted and sent with the SDK, and whatever arrives is read
//! from the room's history in seq order (the SDK's catch-up: welcomes, commits, messages) and
//! printed as `[room] user: text`. `/add USER` and `/remove USER` change who is in the room
//! and in its group; `/fingerprint` prints this device's identity fingerprint to compare.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use chatmesh_client::{Client, ErrorCode};
use chatmesh_e2ee::{
    catch_up, claim, commit, hand_over_group, publish, send_text, Change, Device, Event,
};
use tokio::sync::Mutex;

/// KeyPackages a new device publishes (plus a last-resort one).
const KEY_PACKAGES: usize = 20;

/// This machine's device of the signed-in user, shared by the input loop and the printer.
#[derive(Clone)]
pub struct Sealed {
    device: Arc<Mutex<Device>>,
}

impl Sealed {
    /// Opens the user's device in `dir`, or creates and publishes it.
    pub async fn open(client: &Client, dir: Option<PathBuf>, name: &str) -> anyhow::Result<Self> {
        let dir = match dir {
            Some(dir) => dir,
            None => default_dir(client.user())?,
        };
        let device = if Device::exists(&dir) {
            let device = Device::open(&dir)
                .with_context(|| format!("opening the device in {}", dir.display()))?;
            anyhow::ensure!(
                device.user() == client.user(),
                "the device in {} is {}'s, not {}'s",
                dir.display(),
                device.user(),
                client.user()
            );
            device
        } else {
            let mut device = Device::create(&dir, client.user(), name, None)
                .with_context(|| format!("creating a device in {}", dir.display()))?;
            publish(&mut device, &client.http(), KEY_PACKAGES)
                .await
                .context("publishing the device to the directory")?;
            device
        };
        Ok(Self {
            device: Arc::new(Mutex::new(device)),
        })
    }

    /// Creates the room's group (its creator, right after creating the room) and hands it
    /// to the server, which then checks the room's commits.
    pub async fn create_group(&self, client: &Client, room: &str) -> anyhow::Result<()> {
        let mut device = self.device.lock().await;
        if device.epoch(room).is_none() {
            device.create_group(room)?;
        }
        if device.epoch(room) == Some(0) {
            hand_over_group(&mut device, &client.http(), room)
                .await
                .context("handing the room's group to the server")?;
        }
        Ok(())
    }

    /// Encrypts and sends `text` to `room`, after catching up (a welcome may be waiting).
    pub async fn send(
        &self,
        client: &Client,
        room: &str,
        text: &str,
    ) -> anyhow::Result<Vec<String>> {
        let mut device = self.device.lock().await;
        let seen = catch_up(&mut device, client, room).await?;
        if device.epoch(room).is_none() {
            anyhow::bail!("this device is not in {room}'s group yet: a member must /add you");
        }
        send_text(&mut device, client, room, text).await?;
        Ok(lines(room, &seen))
    }

    /// What arrived in `room` since the device's cursor, as lines to print.
    pub async fn read(&self, client: &Client, room: &str) -> anyhow::Result<Vec<String>> {
        let mut device = self.device.lock().await;
        let seen = catch_up(&mut device, client, room).await?;
        Ok(lines(room, &seen))
    }

    /// Adds `user` to the room on the server and to its group (one device each).
    pub async fn add(&self, client: &Client, room: &str, user: &str) -> anyhow::Result<()> {
        match client.http().add_member(room, user, false).await {
            Err(e) if e.code() != Some(ErrorCode::Conflict) => return Err(e.into()),
            _ => {}
        }
        let mut device = self.device.lock().await;
        catch_up(&mut device, client, room).await?;
        let packages = claim(&mut device, &client.http(), room, &[user]).await?;
        commit(&mut device, client, room, &Change::Add(packages)).await?;
        Ok(())
    }

    /// Removes `user` from the group (so it cannot read on) and then from the room.
    pub async fn remove(&self, client: &Client, room: &str, user: &str) -> anyhow::Result<()> {
        let mut device = self.device.lock().await;
        catch_up(&mut device, client, room).await?;
        commit(
            &mut device,
            client,
            room,
            &Change::Remove(vec![user.to_owned()]),
        )
        .await?;
        drop(device);
        client.http().remove_member(room, user).await?;
        Ok(())
    }

    pub async fn fingerprint(&self) -> String {
        self.device.lock().await.fingerprint()
    }

    /// The room's group epoch and its code (to compare with the other members': a
    /// different code at the same epoch means the group was forked), after catching up.
    pub async fn epoch_code(&self, client: &Client, room: &str) -> anyhow::Result<String> {
        let mut device = self.device.lock().await;
        catch_up(&mut device, client, room).await?;
        let (epoch, code) = device.epoch_code(room)?;
        Ok(format!("{room} at epoch {epoch}: {code}"))
    }
}

/// The lines for what a catch-up saw.
fn lines(room: &str, events: &[Event]) -> Vec<String> {
    let clean = |t: &str| -> String {
        t.chars()
            .map(|c| if c.is_control() { '�' } else { c })
            .collect()
    };
    events
        .iter()
        .filter_map(|e| match e {
            Event::Text { from, text, .. } => {
                Some(format!("[{room}] {}: {}", from.user, clean(text)))
            }
            Event::Deleted { seq, by } => {
                Some(format!("* {} deleted message #{seq} of {room}", clean(by)))
            }
            Event::Joined { by, epoch, .. } => Some(format!(
                "* joined {room}'s encrypted group (added by {by}, epoch {epoch})"
            )),
            Event::Committed {
                by, added, removed, ..
            } if !added.is_empty() || !removed.is_empty() => {
                let names = |m: &[chatmesh_e2ee::MemberId]| {
                    m.iter()
                        .map(|m| m.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                Some(match (added.is_empty(), removed.is_empty()) {
                    (false, true) => format!("* {by} added {} to {room}", names(added)),
                    (true, false) => format!("* {by} removed {} from {room}", names(removed)),
                    _ => format!(
                        "* {by} added {} and removed {} in {room}",
                        names(added),
                        names(removed)
                    ),
                })
            }
            Event::Removed { by } => Some(format!("* {by} removed you from {room}'s group")),
            _ => None,
        })
        .collect()
}

/// `$XDG_DATA_HOME/chatmesh/devices/<user>`, or under `~/.local/share`.
fn default_dir(user: &str) -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set: give --device-dir")?)
            .join(".local/share"),
    };
    Ok(base.join("chatmesh/devices").join(user))
}
