//! The MLS group of each room a device is in: create, stage a commit (add, remove,
//! self-update), merge it once the server acked it or drop it when it lost the epoch,
//! encrypt, and process the room's messages in seq order (`process.rs`).
//!
//! A commit is staged, not merged: the server orders commits per epoch and only the one it
//! stored may move the group on ([`Device::confirm_commit`] after the ack,
//! [`Device::abort_commit`] after a `conflict`). The SDK's loop around that is `sync.rs`.
//! A staged commit is saved with the device, so that after a crash between the send and the
//! ack its echo in the room's history still merges it (`process.rs`).

use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;

use crate::device::{group_id, Device, MemberId, CIPHERSUITE};
use crate::directory::VerifiedKeyPackage;
use crate::error::Error;
use crate::state::Provider;
use crate::wire::{check_size, encode, mls_message, GroupBody, Mls, MlsKind};

/// Epochs whose secrets a group keeps, so that an application message sent just before a
/// commit (and ordered after it) still decrypts.
const PAST_EPOCHS: usize = 5;

/// A staged commit, to send: the commit, and a welcome when it adds members.
#[derive(Debug, Clone)]
pub struct Staged {
    pub commit: Mls,
    pub welcome: Option<Mls>,
}

/// Handshake messages (commits, proposals) go out as MLS `PublicMessage`s, so that the
/// server can check a commit's sender before ordering it (docs/E2EE.md, "Checked commits");
/// both kinds come in (groups made before kept ciphertext handshakes). Application messages
/// are always encrypted.
const WIRE_FORMAT: WireFormatPolicy = MIXED_PLAINTEXT_WIRE_FORMAT_POLICY;

pub(crate) fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(WIRE_FORMAT)
        .max_past_epochs(PAST_EPOCHS)
        .use_ratchet_tree_extension(true)
        .build()
}

fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(WIRE_FORMAT)
        .max_past_epochs(PAST_EPOCHS)
        .use_ratchet_tree_extension(true)
        .build()
}

pub(crate) fn out_bytes(msg: &MlsMessageOut) -> Result<Vec<u8>, Error> {
    msg.to_bytes().map_err(|e| Error::mls("serialize", e))
}

/// A commit made at `epoch` (with its welcome, when it adds members), ready to send.
fn staged(epoch: u64, commit: &MlsMessageOut, welcome: Option<Mls>) -> Result<Staged, Error> {
    Ok(Staged {
        commit: mls_message(MlsKind::Commit, epoch, &out_bytes(commit)?),
        welcome,
    })
}

impl Device {
    /// Creates the group of `room` with this device alone in it, at epoch 0 (the room must
    /// be of kind `e2ee` and this user its creator).
    pub fn create_group(&mut self, room: &str) -> Result<(), Error> {
        if self.groups.contains_key(room) {
            return Err(Error::RoomExists(room.to_owned()));
        }
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &create_config(),
            group_id(room),
            self.credential(),
        )
        .map_err(|e| Error::mls("create group", e))?;
        self.groups.insert(room.to_owned(), group);
        self.meta.rooms.entry(room.to_owned()).or_default().member = true;
        self.save()
    }

    /// The room's group as the server needs it to check commits (`PUT
    /// /v1/e2ee/rooms/{room}/group`): its GroupInfo, signed by this device, and its ratchet
    /// tree. Handed over by the creator at epoch 0 ([`crate::create_group`] does it).
    pub fn group_body(&self, room: &str) -> Result<GroupBody, Error> {
        let group = self.group(room)?;
        let info = group
            .export_group_info(self.provider.crypto(), &self.signer, false)
            .map_err(|e| Error::mls("export group info", e))?;
        let tree = group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .map_err(|e| Error::mls("serialize", e))?;
        Ok(GroupBody {
            group_info: encode(&out_bytes(&info)?),
            ratchet_tree: encode(&tree),
        })
    }

    pub(crate) fn group(&self, room: &str) -> Result<&MlsGroup, Error> {
        self.groups
            .get(room)
            .ok_or_else(|| Error::UnknownRoom(room.to_owned()))
    }

    /// The room's group's epoch and a short code of it (the first 8 bytes of MLS's epoch
    /// authenticator, hex in groups of four): members who see the same code at the same
    /// epoch are in the same group; a server that showed them different commits (a fork of
    /// the group) gives them different codes. Compared out of band, like fingerprints.
    pub fn epoch_code(&self, room: &str) -> Result<(u64, String), Error> {
        let group = self.group(room)?;
        let auth = group.epoch_authenticator().as_slice();
        let hex = hex::encode(&auth[..auth.len().min(8)]);
        let groups: Vec<&str> = (0..hex.len())
            .step_by(4)
            .map(|i| &hex[i..(i + 4).min(hex.len())])
            .collect();
        Ok((group.epoch().as_u64(), groups.join(" ")))
    }

    /// The group's epoch, if this device is in the room's group.
    pub fn epoch(&self, room: &str) -> Option<u64> {
        self.groups.get(room).map(|g| g.epoch().as_u64())
    }

    /// Whether a staged commit of this device waits for the server's answer (also after a
    /// restart: staged commits are saved, so that the echo of one the server stored before
    /// a crash still merges).
    pub fn has_pending_commit(&self, room: &str) -> bool {
        self.groups
            .get(room)
            .is_some_and(|g| g.pending_commit().is_some())
    }

    /// The last seq of `room` this device processed (0: none).
    pub fn last_seq(&self, room: &str) -> u64 {
        self.meta.rooms.get(room).map_or(0, |r| r.last_seq)
    }

    /// The group's members, as their credentials name them.
    pub fn members(&self, room: &str) -> Result<Vec<MemberId>, Error> {
        self.group(room)?
            .members()
            .map(|m| MemberId::from_credential(&m.credential))
            .collect()
    }

    /// Runs an operation on the room's group with this device's provider and signer, then
    /// saves the device (the group's storage changed, or a staged commit must survive a
    /// crash).
    fn change_group<T>(
        &mut self,
        room: &str,
        op: impl FnOnce(&Provider, &SignatureKeyPair, &mut MlsGroup) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let (provider, signer, group) = self.group_parts(room)?;
        let out = op(provider, signer, group)?;
        self.save()?;
        Ok(out)
    }

    /// The room's group, beside what operations on it need.
    fn group_parts(
        &mut self,
        room: &str,
    ) -> Result<(&Provider, &SignatureKeyPair, &mut MlsGroup), Error> {
        let group = self
            .groups
            .get_mut(room)
            .ok_or_else(|| Error::UnknownRoom(room.to_owned()))?;
        Ok((&self.provider, &self.signer, group))
    }

    /// Stages a commit adding `packages` (verified against the directory).
    pub fn stage_add(
        &mut self,
        room: &str,
        packages: &[VerifiedKeyPackage],
    ) -> Result<Staged, Error> {
        let kps: Vec<KeyPackage> = packages.iter().map(|p| p.key_package.clone()).collect();
        self.change_group(room, |provider, signer, group| {
            let epoch = group.epoch().as_u64();
            let (commit, welcome, _) = group
                .add_members(provider, signer, &kps)
                .map_err(|e| Error::mls("add members", e))?;
            let welcome = mls_message(MlsKind::Welcome, epoch + 1, &out_bytes(&welcome)?);
            staged(epoch, &commit, Some(welcome))
        })
    }

    /// Stages a commit removing every device of `users` from the group.
    pub fn stage_remove(&mut self, room: &str, users: &[&str]) -> Result<Staged, Error> {
        self.change_group(room, |provider, signer, group| {
            let own = group.own_leaf_index();
            let mut leaves = Vec::new();
            for m in group.members() {
                let id = MemberId::from_credential(&m.credential)?;
                if users.contains(&id.user.as_str()) && m.index != own {
                    leaves.push(m.index);
                }
            }
            if leaves.is_empty() {
                return Err(Error::NotMember {
                    room: room.to_owned(),
                    who: users.join(", "),
                });
            }
            let epoch = group.epoch().as_u64();
            let (commit, _, _) = group
                .remove_members(provider, signer, &leaves)
                .map_err(|e| Error::mls("remove members", e))?;
            staged(epoch, &commit, None)
        })
    }

    /// Stages a commit that renews this device's leaf keys (post-compromise security).
    pub fn stage_self_update(&mut self, room: &str) -> Result<Staged, Error> {
        self.change_group(room, |provider, signer, group| {
            let epoch = group.epoch().as_u64();
            let bundle = group
                .self_update(provider, signer, LeafNodeParameters::default())
                .map_err(|e| Error::mls("self update", e))?;
            staged(epoch, bundle.commit(), None)
        })
    }

    /// The server stored the staged commit at `seq`: merge it (the group moves on one epoch).
    pub fn confirm_commit(&mut self, room: &str, seq: u64) -> Result<(), Error> {
        let (provider, _, group) = self.group_parts(room)?;
        group
            .merge_pending_commit(provider)
            .map_err(|e| Error::mls("merge commit", e))?;
        self.advance(room, seq);
        self.save()
    }

    /// The staged commit was refused (or is given up): forget it, the group stays as it was.
    pub fn abort_commit(&mut self, room: &str) -> Result<(), Error> {
        self.change_group(room, |provider, _, group| {
            group
                .clear_pending_commit(provider.storage())
                .map_err(|e| Error::mls("clear pending commit", e))
        })
    }

    /// Encrypts a chat message for the room's group. Refused when it would be larger than
    /// the server relays.
    pub fn encrypt(&mut self, room: &str, text: &str) -> Result<Mls, Error> {
        self.change_group(room, |provider, signer, group| {
            let epoch = group.epoch().as_u64();
            let msg = group
                .create_message(provider, signer, text.as_bytes())
                .map_err(|e| Error::mls("encrypt", e))?;
            let mls = mls_message(MlsKind::App, epoch, &out_bytes(&msg)?);
            check_size(&mls)?;
            Ok(mls)
        })
    }

    /// Records that `room` was processed up to `seq`.
    pub(crate) fn advance(&mut self, room: &str, seq: u64) {
        let state = self.meta.rooms.entry(room.to_owned()).or_default();
        state.last_seq = state.last_seq.max(seq);
    }
}
