//! The key-package directory as the SDK sees it (`/v1/e2ee/...`): a small trait the
//! application implements over its HTTP client, the records it answers, and the checks a
//! device makes before it adds anyone: each claimed KeyPackage must belong to a device record
//! that the user's identity key signed, with the same signature key and credential, and the
//! identity key must be the one this device saw before for that user.
//! The records are `chatmesh_protocol::e2ee`'s; `client.rs` implements [`Directory`] over
//! `chatmesh_client::Http`.

use std::future::Future;

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;

use chatmesh_protocol::e2ee::{ClaimedPackage, GroupBody, KeyPackagesBody, UserDevices};

use crate::device::{Device, MemberId};
use crate::error::{Error, TransportError};
use crate::identity::{fingerprint, verify_device};
use crate::wire::decode;

/// A KeyPackage that passed [`Device::verify_claims`].
#[derive(Debug, Clone)]
pub struct VerifiedKeyPackage {
    pub member: MemberId,
    pub key_package: KeyPackage,
}

/// The directory calls the SDK makes, over whatever HTTP client the application uses.
pub trait Directory {
    /// `PUT /v1/e2ee/identity`.
    fn put_identity(&self, key: &str) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// `PUT /v1/e2ee/devices/{device}`.
    fn put_device(
        &self,
        device: &str,
        signature_key: &str,
        signature: &str,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// `POST /v1/e2ee/devices/{device}/key-packages`.
    fn upload_key_packages(
        &self,
        device: &str,
        upload: &KeyPackagesBody,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// `GET /v1/e2ee/users/{user}`.
    fn user(&self, user: &str) -> impl Future<Output = Result<UserDevices, TransportError>> + Send;
    /// `POST /v1/e2ee/users/{user}/claim?room={room}`: for `room`, which the caller and
    /// `user` are both members of.
    fn claim(
        &self,
        room: &str,
        user: &str,
    ) -> impl Future<Output = Result<Vec<ClaimedPackage>, TransportError>> + Send;
    /// `PUT /v1/e2ee/rooms/{room}/group`: hands the room's new group to the server, which
    /// then checks the room's commits.
    fn put_group(
        &self,
        room: &str,
        group: &GroupBody,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
}

impl Device {
    /// Checks `user`'s identity key against the one this device saw first (trust on first
    /// use; remembered and saved), then each claimed KeyPackage against its signed device
    /// record. Any failure refuses the whole user.
    pub fn verify_claims(
        &mut self,
        record: &UserDevices,
        claims: &[ClaimedPackage],
    ) -> Result<Vec<VerifiedKeyPackage>, Error> {
        let user = record.user.as_str();
        let identity_b64 = record
            .identity
            .as_deref()
            .ok_or_else(|| Error::NoIdentity(user.to_owned()))?;
        let identity = decode(identity_b64, "identity key")?;
        self.remember_identity(user, identity_b64, &identity)?;
        let mut out = Vec::with_capacity(claims.len());
        for claim in claims {
            let bad = |reason| Error::BadDevice {
                user: user.to_owned(),
                device: claim.device.clone(),
                reason,
            };
            let info = record
                .devices
                .iter()
                .find(|d| d.device == claim.device)
                .ok_or_else(|| bad("no device record"))?;
            let signature_key = decode(&info.signature_key, "signature key")?;
            let signature = decode(&info.signature, "device signature")?;
            verify_device(&identity, user, &info.device, &signature_key, &signature)?;
            let key_package =
                KeyPackageIn::tls_deserialize_exact(decode(&claim.key_package, "key package")?)
                    .map_err(|e| Error::Decode {
                        what: "key package",
                        source: e.into(),
                    })?
                    .validate(self.provider.crypto(), ProtocolVersion::Mls10)
                    .map_err(|e| Error::mls("key package", e))?;
            let leaf = key_package.leaf_node();
            if leaf.signature_key().as_slice() != signature_key.as_slice() {
                return Err(bad("the key package's signature key is not the device's"));
            }
            let member = MemberId::from_credential(leaf.credential())?;
            if member.user != user || member.device != claim.device {
                return Err(bad("the key package's credential names another device"));
            }
            out.push(VerifiedKeyPackage {
                member,
                key_package,
            });
        }
        Ok(out)
    }

    fn remember_identity(&mut self, user: &str, b64: &str, key: &[u8]) -> Result<(), Error> {
        match self.meta.known_identities.get(user) {
            Some(known) if known == b64 => Ok(()),
            Some(known) => Err(Error::IdentityChanged {
                user: user.to_owned(),
                was: fingerprint(&decode(known, "identity key")?),
                now: fingerprint(key),
            }),
            None => {
                self.meta
                    .known_identities
                    .insert(user.to_owned(), b64.to_owned());
                self.save()
            }
        }
    }

    /// Checks that `member` of the room's group is a device `record`'s identity key signed,
    /// with the signature key its leaf uses: what a member that did not make an add commit
    /// can check of the devices it added (`Event::Committed { added }`, `Event::Joined`).
    pub fn verify_member(
        &mut self,
        room: &str,
        record: &UserDevices,
        member: &MemberId,
    ) -> Result<(), Error> {
        let bad = |reason| Error::BadDevice {
            user: member.user.clone(),
            device: member.device.clone(),
            reason,
        };
        if record.user != member.user {
            return Err(bad("the directory answered for another user"));
        }
        let identity_b64 = record
            .identity
            .as_deref()
            .ok_or_else(|| Error::NoIdentity(member.user.clone()))?;
        let identity = decode(identity_b64, "identity key")?;
        self.remember_identity(&member.user, identity_b64, &identity)?;
        let leaf_key = self
            .group(room)?
            .members()
            .find(|m| MemberId::from_credential(&m.credential).is_ok_and(|id| id == *member))
            .map(|m| m.signature_key)
            .ok_or_else(|| Error::NotMember {
                room: room.to_owned(),
                who: member.to_string(),
            })?;
        let info = record
            .devices
            .iter()
            .find(|d| d.device == member.device)
            .ok_or_else(|| bad("no device record"))?;
        let signature_key = decode(&info.signature_key, "signature key")?;
        let signature = decode(&info.signature, "device signature")?;
        verify_device(
            &identity,
            &member.user,
            &member.device,
            &signature_key,
            &signature,
        )?;
        if signature_key != leaf_key {
            return Err(bad("the group's leaf uses another signature key"));
        }
        Ok(())
    }

    /// Forgets the identity key pinned for `user`, after the users compared the new
    /// fingerprint out of band: the next check pins the key the directory has then.
    pub fn forget_identity(&mut self, user: &str) -> Result<(), Error> {
        if self.meta.known_identities.remove(user).is_some() {
            self.save()?;
        }
        Ok(())
    }

    /// The fingerprint of `user`'s identity key as this device knows it, if it saw one.
    pub fn known_fingerprint(&self, user: &str) -> Option<String> {
        let key = decode(self.meta.known_identities.get(user)?, "identity key").ok()?;
        Some(fingerprint(&key))
    }
}
