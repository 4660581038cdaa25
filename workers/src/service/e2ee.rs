//! The key-package directory of end-to-end encrypted rooms (docs/E2EE.md), served by the
//! worker that owns the user's partition, and a room's epoch as stored.
//!
//! A user sets its identity key once; only its password replaces it (with every device and
//! KeyPackage the old key vouched for), so a key set with a stolen token is not set for good
//! and a token alone never changes one. A device is registered with its MLS signature key and
//! the identity key's Ed25519 signature over [`device_statement`]: checked here, so the
//! directory only lists devices the identity key vouched for (clients check again: the
//! server is not trusted with that). Each device uploads KeyPackages, claimed once each,
//! oldest first, and may keep one last-resort package, handed out (and kept) when none is
//! left. Every change of a user's records runs under the user's lock, so two claims never
//! get the same package.

use chatmesh_protocol::e2ee::{
    decode, device_statement, encode, identity_key_bytes, AddKeyPackagesRequest, Claimed,
    ClaimedPackage, CommitRef, DeviceInfo, DeviceRequest, Identity, KeyPackageCount, MlsKind,
    PutDeviceRequest, ReplaceIdentityRequest, RoomEpoch, RoomEpochRequest, SetIdentityRequest,
    UserDevices, ED25519_SIGNATURE_BYTES, MAX_DEVICES, MAX_KEY_PACKAGES, MAX_SIGNATURE_KEY_BYTES,
};
use chatmesh_protocol::message::now_ms;
use chatmesh_protocol::service::Done;
use chatmesh_protocol::{ApiError, ErrorCode};
use ed25519_dalek::{Signature, VerifyingKey};

use super::auth::MAX_PASSWORD_BYTES;
use super::{valid, Service, LOCK_USER};
use crate::model::e2ee::{DeviceRecord, IdentityRecord};
use crate::model::{Model, RoomStats};
use crate::store::WriteBatch;

impl Service {
    /// Sets the user's identity key; the same key again is fine, another one `conflict`.
    /// `req.user` is the caller the gateway authenticated, with or without an account
    /// record here (an external issuer's users have none).
    pub async fn e2ee_identity(&self, req: SetIdentityRequest) -> Result<Identity, ApiError> {
        valid("user name", &req.user)?;
        identity_key(&req.key)?;
        let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
        match self.model().identity(&req.user).await? {
            Some(rec) if rec.key == req.key => {}
            Some(_) => {
                return Err(ApiError::conflict(
                    "the identity key is set already: only the account's password replaces it (an external issuer's users cannot)",
                ))
            }
            None => {
                let rec = IdentityRecord {
                    key: req.key.clone(),
                    ts: now_ms(),
                };
                let mut batch = WriteBatch::new();
                Model::put_identity(&mut batch, &req.user, &rec);
                self.model().write(batch).await?;
            }
        }
        Ok(Identity {
            user: req.user,
            key: req.key,
        })
    }

    /// Replaces the user's identity key when `req.password` is the account's
    /// (`unauthorized` otherwise): every device and KeyPackage vouched for by the old key is
    /// dropped with it. The same key again changes nothing.
    pub async fn e2ee_identity_replace(
        &self,
        req: ReplaceIdentityRequest,
    ) -> Result<Identity, ApiError> {
        valid("user name", &req.user)?;
        identity_key(&req.key)?;
        let wrong = || ApiError::new(ErrorCode::Unauthorized, "the password is wrong");
        if req.password.len() > MAX_PASSWORD_BYTES {
            return Err(wrong());
        }
        let Some(account) = self.model().user(&req.user).await? else {
            return Err(ApiError::not_found("no such account"));
        };
        let hash = account.hash;
        if !self
            .password_counted(&req.user, req.password, hash.clone())
            .await?
        {
            return Err(wrong());
        }
        let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
        // A password changed since it was checked no longer vouches for anything.
        if self.model().user(&req.user).await?.map(|u| u.hash) != Some(hash) {
            return Err(wrong());
        }
        let old = self.model().identity(&req.user).await?;
        if old.is_none_or(|o| o.key != req.key) {
            let mut batch = WriteBatch::new();
            for (device, _) in self.model().devices(&req.user, MAX_DEVICES).await? {
                self.model()
                    .delete_device(&mut batch, &req.user, &device, MAX_KEY_PACKAGES)
                    .await?;
            }
            let rec = IdentityRecord {
                key: req.key.clone(),
                ts: now_ms(),
            };
            Model::put_identity(&mut batch, &req.user, &rec);
            self.model().write(batch).await?;
        }
        Ok(Identity {
            user: req.user,
            key: req.key,
        })
    }

    /// Registers (or re-keys) a device vouched for by the identity key.
    pub async fn e2ee_device_put(&self, req: PutDeviceRequest) -> Result<DeviceInfo, ApiError> {
        valid("user name", &req.user)?;
        valid("device", &req.device)?;
        let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
        let Some(identity) = self.model().identity(&req.user).await? else {
            return Err(ApiError::conflict("set the identity key first"));
        };
        verify_device(&identity.key, &req)?;
        let old = self.model().device(&req.user, &req.device).await?;
        if old.is_none() && self.model().devices(&req.user, MAX_DEVICES).await?.len() >= MAX_DEVICES
        {
            return Err(ApiError::conflict(format!(
                "at most {MAX_DEVICES} devices per user: remove one first"
            )));
        }
        let mut batch = WriteBatch::new();
        let rec = match old {
            // The same key again keeps the packages; a new key drops them (they were made
            // with the old one).
            Some(old) if old.signature_key == req.signature_key => DeviceRecord {
                signature: req.signature,
                ..old
            },
            Some(_) => {
                self.model()
                    .delete_device(&mut batch, &req.user, &req.device, MAX_KEY_PACKAGES)
                    .await?;
                new_device(req.signature_key, req.signature)
            }
            None => new_device(req.signature_key, req.signature),
        };
        Model::put_device(&mut batch, &req.user, &req.device, &rec);
        self.model().write(batch).await?;
        Ok(info(req.device, &rec))
    }

    /// Removes a device and its packages; `not_found` if there is none.
    pub async fn e2ee_device_delete(&self, req: DeviceRequest) -> Result<Done, ApiError> {
        valid("user name", &req.user)?;
        valid("device", &req.device)?;
        let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
        if self.model().device(&req.user, &req.device).await?.is_none() {
            return Err(ApiError::not_found("no such device"));
        }
        let mut batch = WriteBatch::new();
        self.model()
            .delete_device(&mut batch, &req.user, &req.device, MAX_KEY_PACKAGES)
            .await?;
        self.model().write(batch).await?;
        Ok(Done {})
    }

    /// Stores KeyPackages of one of the user's devices (at most [`MAX_KEY_PACKAGES`]
    /// unclaimed), and its last-resort package if one is given.
    pub async fn e2ee_key_packages(
        &self,
        req: AddKeyPackagesRequest,
    ) -> Result<KeyPackageCount, ApiError> {
        valid("user name", &req.user)?;
        valid("device", &req.device)?;
        req.body.validate()?;
        let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
        let Some(mut rec) = self.model().device(&req.user, &req.device).await? else {
            return Err(ApiError::not_found("no such device: register it first"));
        };
        let room = MAX_KEY_PACKAGES - (rec.unclaimed as usize).min(MAX_KEY_PACKAGES);
        if req.body.key_packages.len() > room {
            return Err(ApiError::conflict(format!(
                "a device holds at most {MAX_KEY_PACKAGES} unclaimed key packages ({} now)",
                rec.unclaimed
            )));
        }
        let mut batch = WriteBatch::new();
        for kp in &req.body.key_packages {
            let bytes = decode(kp, "a key package")?;
            Model::put_key_package(&mut batch, &req.user, &req.device, rec.next, &bytes);
            rec.next += 1;
            rec.unclaimed += 1;
        }
        if let Some(last) = req.body.last_resort {
            rec.last_resort = Some(last);
        }
        Model::put_device(&mut batch, &req.user, &req.device, &rec);
        self.model().write(batch).await?;
        Ok(KeyPackageCount {
            key_packages: rec.unclaimed,
            last_resort: rec.last_resort.is_some(),
        })
    }

    /// The user's identity key and devices.
    pub async fn e2ee_devices(&self, req: DeviceRequest) -> Result<UserDevices, ApiError> {
        valid("user name", &req.user)?;
        let identity = self.model().identity(&req.user).await?.map(|r| r.key);
        // An external issuer's users have no account record, only their identity key.
        if identity.is_none() && self.model().user(&req.user).await?.is_none() {
            return Err(ApiError::not_found("no such user"));
        }
        let devices = self
            .model()
            .devices(&req.user, MAX_DEVICES)
            .await?
            .into_iter()
            .map(|(id, rec)| info(id, &rec))
            .collect();
        Ok(UserDevices {
            user: req.user,
            identity,
            devices,
        })
    }

    /// One KeyPackage per device of the user: the oldest unclaimed one (removed), else the
    /// last-resort one (kept); a device with neither is left out. `not_found` for a user
    /// with no device.
    pub async fn e2ee_claim(&self, req: DeviceRequest) -> Result<Claimed, ApiError> {
        valid("user name", &req.user)?;
        let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
        let devices = self.model().devices(&req.user, MAX_DEVICES).await?;
        if devices.is_empty() {
            return Err(ApiError::not_found("the user has no e2ee device"));
        }
        let mut batch = WriteBatch::new();
        let mut key_packages = Vec::new();
        for (device, mut rec) in devices {
            if let Some((key, bytes)) = self.model().oldest_key_package(&req.user, &device).await? {
                Model::delete_key(&mut batch, key);
                rec.unclaimed = rec.unclaimed.saturating_sub(1);
                Model::put_device(&mut batch, &req.user, &device, &rec);
                key_packages.push(ClaimedPackage {
                    device,
                    key_package: encode(&bytes),
                    last_resort: false,
                });
            } else if let Some(last) = rec.last_resort {
                key_packages.push(ClaimedPackage {
                    device,
                    key_package: last,
                    last_resort: true,
                });
            }
        }
        self.model().write(batch).await?;
        metrics::counter!("chatmesh_worker_key_packages_claimed_total")
            .increment(key_packages.len() as u64);
        Ok(Claimed {
            user: req.user,
            key_packages,
        })
    }

    /// The room's epoch as stored: commits for other epochs are refused by gateways. A
    /// commit for this epoch, when the request carries it, is checked against the room's
    /// group when the server tracks it (`groups.rs`). For a commit not already stale the
    /// epoch is told only once the store holds every message the stream has of the room
    /// ([`Service::commit_stats`]).
    pub async fn room_epoch(&self, req: RoomEpochRequest) -> Result<RoomEpoch, ApiError> {
        valid("room", &req.room)?;
        let mut stats = self.caches().stats(self.model(), &req.room).await?;
        if let Some(m) = &req.commit {
            if m.kind == MlsKind::Commit && m.epoch >= stats.epoch {
                stats = self.commit_stats(&req.room, stats).await?;
            }
        }
        match &req.commit {
            Some(m) if m.kind == MlsKind::Proposal => self.check_proposal(&req.room).await?,
            Some(m) if m.kind == MlsKind::Welcome && m.epoch <= stats.epoch => {
                self.check_welcome(&req.room, &req.user, &stats, m.epoch)
                    .await?;
            }
            Some(commit) if commit.kind == MlsKind::Commit && commit.epoch == stats.epoch => {
                self.check_commit(&req.room, &req.user, &stats, commit)
                    .await?;
            }
            _ => {}
        }
        let commit = match stats.commit {
            0 => None,
            seq => self
                .model()
                .message(&req.room, seq)
                .await?
                .map(|m| CommitRef {
                    seq,
                    from: m.from,
                    id: m.id,
                    ts: m.ts,
                }),
        };
        Ok(RoomEpoch {
            room: req.room,
            epoch: stats.epoch,
            commit,
        })
    }

    /// The room's stats once the store holds every message of the room the stream held
    /// when asked (the history's wait, `fresh.rs`), `unavailable` if it does not catch up
    /// in time (`worker.history_wait_ms`). A gateway publishes a commit under an id shared
    /// by every commit for its epoch, so that of two racing commits JetStream takes one;
    /// but an id leaves the duplicate window (`mesh.duplicate_window_secs`), and a store
    /// further behind than that could tell epoch E while an earlier commit for E waits in
    /// the stream: a commit for E then checked here would be acked and stored void. With
    /// the wait, a commit the epoch told here does not reflect reached the stream after the
    /// leader was asked, which is within the window of the gateway's publish (while the
    /// window is longer than this wait).
    async fn commit_stats(&self, room: &str, stats: RoomStats) -> Result<RoomStats, ApiError> {
        let Some(tail) = self.inner.tail.get() else {
            return Ok(stats);
        };
        match tail.caught_up(room, None, stats.last_seq).await {
            Ok(false) => Ok(stats),
            Ok(true) => Ok(self.caches().stats(self.model(), room).await?),
            Err(e) if e.code == ErrorCode::Unavailable => Err(ApiError::unavailable(
                "the room's store is catching up with recent messages: send the commit again shortly",
            )),
            Err(e) => Err(e),
        }
    }
}

fn new_device(signature_key: String, signature: String) -> DeviceRecord {
    DeviceRecord {
        signature_key,
        signature,
        last_resort: None,
        unclaimed: 0,
        next: 0,
        ts: now_ms(),
    }
}

fn info(device: String, rec: &DeviceRecord) -> DeviceInfo {
    DeviceInfo {
        device,
        signature_key: rec.signature_key.clone(),
        signature: rec.signature.clone(),
        key_packages: rec.unclaimed,
        last_resort: rec.last_resort.is_some(),
    }
}

/// An Ed25519 public key, base64.
fn identity_key(key: &str) -> Result<VerifyingKey, ApiError> {
    VerifyingKey::from_bytes(&identity_key_bytes(key)?)
        .map_err(|_| ApiError::bad_request("key is not an Ed25519 public key"))
}

/// Checks the identity key's signature over the device's statement.
fn verify_device(identity: &str, req: &PutDeviceRequest) -> Result<(), ApiError> {
    let key = identity_key(identity).map_err(|_| ApiError::internal())?;
    let signature_key = decode(&req.signature_key, "signature_key")?;
    if signature_key.is_empty() || signature_key.len() > MAX_SIGNATURE_KEY_BYTES {
        return Err(ApiError::bad_request(format!(
            "signature_key is 1 to {MAX_SIGNATURE_KEY_BYTES} bytes"
        )));
    }
    let sig: [u8; ED25519_SIGNATURE_BYTES] = decode(&req.signature, "signature")?
        .try_into()
        .map_err(|_| ApiError::bad_request("signature is not a 64-byte Ed25519 signature"))?;
    let statement = device_statement(&req.user, &req.device, &signature_key);
    key.verify_strict(&statement, &Signature::from_bytes(&sig))
        .map_err(|_| ApiError::bad_request("signature does not verify with the identity key"))
}
