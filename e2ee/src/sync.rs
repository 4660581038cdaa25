//! The SDK's calls that talk to the server: publishing a device, sending, catching up, and
//! committing with the retry that keeps a room's group from forking. Two members that commit
//! in the same epoch both send; the server stores one and refuses the other with `conflict`;
//! the loser processes the room's newer messages (the winner's commit among them, whose
//! merge drops its staged one), stages its change again on the new epoch and sends it again,
//! a bounded number of times. A staged commit is merged only once the server acked it or its
//! history shows it stored; it is dropped only once history shows it was not.

use std::future::Future;

use crate::device::Device;
use crate::directory::{Directory, VerifiedKeyPackage};
use crate::error::{Error, TransportError, TransportErrorKind};
use crate::event::Event;
use crate::group::Staged;
use crate::wire::{check_handshake_size, Mls, Stored};

/// How many times a commit is staged and sent before the SDK gives up on an epoch race.
pub const MAX_COMMIT_ATTEMPTS: u32 = 5;
/// Most sends of one welcome (see [`commit`]).
pub const MAX_WELCOME_ATTEMPTS: u32 = 5;

/// The room calls the SDK makes, over the application's session.
pub trait RoomTransport {
    /// `send {room, id, body: "", mls}`: the seq of the `ack`, or the refusal
    /// ([`TransportErrorKind::Conflict`](crate::TransportErrorKind::Conflict) for a commit
    /// that lost its epoch). Resends of one call use one `id`.
    fn send_mls(
        &self,
        room: &str,
        mls: &Mls,
    ) -> impl Future<Output = Result<u64, TransportError>> + Send;
    /// The room's MLS messages and deletions with seq > `after`, oldest first, up to the
    /// newest (history pages, read with [`Stored::from_message`]).
    fn messages_after(
        &self,
        room: &str,
        after: u64,
    ) -> impl Future<Output = Result<Vec<Stored>, TransportError>> + Send;
    /// Waits before commit attempt `attempt` (2, 3, ...) after a `conflict`; a "future
    /// epoch" conflict means the server's worker is behind. No wait by default; an
    /// application on tokio sleeps a little, growing with `attempt`.
    fn pause(&self, attempt: u32) -> impl Future<Output = ()> + Send {
        let _ = attempt;
        std::future::ready(())
    }
}

/// A change to a room's group.
#[derive(Debug, Clone)]
pub enum Change {
    /// Add these (verified) devices.
    Add(Vec<VerifiedKeyPackage>),
    /// Remove every device of these users.
    Remove(Vec<String>),
    /// Renew this device's keys.
    SelfUpdate,
}

/// What a commit did: its seq, and the events of the messages processed to win the race.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub seq: u64,
    pub epoch: u64,
    pub attempts: u32,
    pub caught_up: Vec<Event>,
}

/// Registers the device with the directory: the identity key, the signed device record and
/// `n` KeyPackages plus a last-resort one.
pub async fn publish(device: &mut Device, dir: &impl Directory, n: usize) -> Result<(), Error> {
    dir.put_identity(&device.identity_public()).await?;
    let record = device.device_record();
    dir.put_device(device.device(), &record.signature_key, &record.signature)
        .await?;
    let upload = device.key_packages(n, true)?;
    dir.upload_key_packages(device.device(), &upload).await?;
    Ok(())
}

/// Creates the room's group with this device alone in it (epoch 0) and hands it to the
/// server, which from then on checks every commit of the room before ordering it
/// (docs/E2EE.md, "Checked commits"). The room must be of kind `e2ee`, created by this user,
/// with no commit yet. If the hand-over fails the group exists on the device; calling
/// [`hand_over_group`] again finishes it.
pub async fn create_group(
    device: &mut Device,
    dir: &impl Directory,
    room: &str,
) -> Result<(), Error> {
    device.create_group(room)?;
    hand_over_group(device, dir, room).await
}

/// Hands the room's group to the server: a new room's at epoch 0 (again: the same group
/// twice is fine), or, by the room's owner, an older room's at the room's epoch (this device
/// caught up) while the server has none on record. From then on the server checks the
/// room's commits.
pub async fn hand_over_group(
    device: &mut Device,
    dir: &impl Directory,
    room: &str,
) -> Result<(), Error> {
    let body = device.group_body(room)?;
    dir.put_group(room, &body).await?;
    Ok(())
}

/// Claims one KeyPackage per device of each of `users` for `room` and checks them (see
/// [`Device::verify_claims`]). The users must already be members of the room server-side
/// (a user who takes adds by invitation only is claimed only for a room it is in).
pub async fn claim(
    device: &mut Device,
    dir: &impl Directory,
    room: &str,
    users: &[&str],
) -> Result<Vec<VerifiedKeyPackage>, Error> {
    let mut out = Vec::new();
    for user in users {
        let record = dir.user(user).await?;
        let claims = dir.claim(room, user).await?;
        if claims.is_empty() {
            return Err(Error::NoKeyPackages((*user).to_owned()));
        }
        out.extend(device.verify_claims(&record, &claims)?);
    }
    Ok(out)
}

/// Checks every member of the room's group against the directory (see
/// [`Device::verify_member`]); the first that fails is the error. Cost: one directory call
/// per user.
pub async fn verify_members(
    device: &mut Device,
    dir: &impl Directory,
    room: &str,
) -> Result<(), Error> {
    let members = device.members(room)?;
    let mut users: Vec<&str> = members.iter().map(|m| m.user.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    for user in users {
        let record = dir.user(user).await?;
        for member in members.iter().filter(|m| m.user == user) {
            device.verify_member(room, &record, member)?;
        }
    }
    Ok(())
}

/// Encrypts and sends a chat message; its seq.
pub async fn send_text(
    device: &mut Device,
    room: &impl RoomTransport,
    name: &str,
    text: &str,
) -> Result<u64, Error> {
    let mls = device.encrypt(name, text)?;
    Ok(room.send_mls(name, &mls).await?)
}

/// Processes the room's messages after this device's cursor, in order. A message at fault
/// (undecryptable, forged) is logged and skipped; an error that means this device cannot go
/// on (an epoch gap, storage, the transport) stops the catch-up.
pub async fn catch_up(
    device: &mut Device,
    room: &impl RoomTransport,
    name: &str,
) -> Result<Vec<Event>, Error> {
    let read = read_on(device, room, name).await?;
    Ok(read.into_iter().map(|(_, event)| event).collect())
}

/// [`catch_up`], each event with the seq of its message.
async fn read_on(
    device: &mut Device,
    room: &impl RoomTransport,
    name: &str,
) -> Result<Vec<(u64, Event)>, Error> {
    let messages = room.messages_after(name, device.last_seq(name)).await?;
    let mut events = Vec::with_capacity(messages.len());
    for msg in &messages {
        match device.process_in_order(msg) {
            Ok(event) => events.push((msg.seq(), event)),
            Err(e)
                if matches!(
                    e.kind(),
                    crate::ErrorKind::Rejected | crate::ErrorKind::Untrusted
                ) =>
            {
                tracing::warn!(room = name, seq = msg.seq(), error = %e, "e2ee message skipped");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(events)
}

/// Commits `change` to the room's group: stage, send, merge after the ack; on `conflict`
/// catch up and try again, at most [`MAX_COMMIT_ATTEMPTS`] times. A welcome (for added
/// members) is sent after the commit is stored. On any other error the commit may be stored
/// (a lost ack): it stays pending, and the next `commit` or [`catch_up`] merges it from
/// history, or drops it when history shows it was not stored.
pub async fn commit(
    device: &mut Device,
    room: &impl RoomTransport,
    name: &str,
    change: &Change,
) -> Result<Committed, Error> {
    let mut caught_up = Vec::new();
    if device.has_pending_commit(name) {
        // left by a restart or a send that failed: merged if the server stored it
        settle(device, room, name, &mut caught_up).await?;
    }
    for attempt in 1..=MAX_COMMIT_ATTEMPTS {
        if attempt > 1 {
            room.pause(attempt).await;
        }
        let staged = stage(device, name, change)?;
        let size = check_handshake_size(&staged.commit).and_then(|()| match &staged.welcome {
            Some(w) => check_handshake_size(w),
            None => Ok(()),
        });
        if let Err(e) = size {
            device.abort_commit(name)?;
            return Err(e);
        }
        let Some(seq) = send_commit(device, room, name, &staged.commit, &mut caught_up).await?
        else {
            if device.epoch(name).is_none() {
                // the winner removed this device
                return Err(Error::UnknownRoom(name.to_owned()));
            }
            tracing::debug!(room = name, attempt, "commit lost its epoch; trying again");
            continue;
        };
        if let Some(welcome) = &staged.welcome {
            send_welcome(room, name, welcome).await?;
        }
        let epoch = device.epoch(name).unwrap_or_default();
        return Ok(Committed {
            seq,
            epoch,
            attempts: attempt,
            caught_up,
        });
    }
    Err(Error::CommitRaces {
        room: name.to_owned(),
        attempts: MAX_COMMIT_ATTEMPTS,
    })
}

/// Sends the staged commit: the seq it was stored at (merged), or `None` when another commit
/// took its epoch (this device caught up; its commit is dropped).
async fn send_commit(
    device: &mut Device,
    room: &impl RoomTransport,
    name: &str,
    commit: &Mls,
    caught_up: &mut Vec<Event>,
) -> Result<Option<u64>, Error> {
    match room.send_mls(name, commit).await {
        Ok(seq) => {
            device.confirm_commit(name, seq)?;
            Ok(Some(seq))
        }
        // a resend (same id) after a lost ack can be refused so once another commit came on
        // top of this one: history says which
        Err(e) if e.is_conflict() => settle(device, room, name, caught_up).await,
        // the server may have stored it (a lost ack, a timeout, a closed connection): it
        // stays pending until history says
        Err(e) => Err(e.into()),
    }
}

/// Settles this device's pending commit of the room from the room's history: read on with
/// it pending, it merges if the server stored it (its seq is returned) and goes with the
/// merge of another commit for its epoch; one still pending after that was never stored and
/// is dropped. The events read are added to `caught_up`.
async fn settle(
    device: &mut Device,
    room: &impl RoomTransport,
    name: &str,
    caught_up: &mut Vec<Event>,
) -> Result<Option<u64>, Error> {
    let me = device.id();
    let mut stored = None;
    for (seq, event) in read_on(device, room, name).await? {
        // only a pending commit of this device merges as committed by it
        if matches!(&event, Event::Committed { by, .. } if *by == me) {
            stored = Some(seq);
        }
        caught_up.push(event);
    }
    if device.has_pending_commit(name) {
        device.abort_commit(name)?;
    }
    Ok(stored)
}

/// Sends a commit's welcome. The server takes it once the room's worker has stored the
/// commit (`conflict` "future epoch" until then, after a wait of its own) and within the
/// sender's budgets (`rate_limited`), so it is sent again on those answers and on
/// `unavailable`, after [`RoomTransport::pause`], at most [`MAX_WELCOME_ATTEMPTS`] times: the
/// commit is merged already, and a welcome never sent leaves the added members in the
/// group with no way in (the application must then remove and add them again).
async fn send_welcome(room: &impl RoomTransport, name: &str, welcome: &Mls) -> Result<(), Error> {
    let mut attempt = 1;
    loop {
        match room.send_mls(name, welcome).await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind != TransportErrorKind::Other && attempt < MAX_WELCOME_ATTEMPTS => {
                tracing::debug!(room = name, attempt, error = %e, "welcome not taken yet; sending it again");
                attempt += 1;
                room.pause(attempt).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn stage(device: &mut Device, name: &str, change: &Change) -> Result<Staged, Error> {
    match change {
        Change::Add(packages) => device.stage_add(name, packages),
        Change::Remove(users) => {
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            device.stage_remove(name, &users)
        }
        Change::SelfUpdate => device.stage_self_update(name),
    }
}
