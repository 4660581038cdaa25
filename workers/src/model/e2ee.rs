//! The key-package directory of end-to-end encrypted rooms: a user's identity key, its
//! devices and their unclaimed KeyPackages (numbered in upload order, claimed oldest first).
//! Opaque bytes to the server: it checks only a device's signature by the identity key
//! (`crate::service::e2ee`). Beside them, per room, the public state of the room's MLS group
//! when the server checks its commits (`crate::groups`).

use serde::{Deserialize, Serialize};

use super::records::{self};
use super::{keys, Model};
use crate::store::{Direction, KvStore, StoreError, WriteBatch};

/// A user's identity key (Ed25519, base64), set once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    pub key: String,
    /// When it was set, ms since the Unix epoch.
    pub ts: u64,
}

/// A device of a user: its MLS signature key, the identity key's signature over it, its
/// last-resort KeyPackage, and the number the next uploaded package gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub signature_key: String,
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_resort: Option<String>,
    /// Packages stored and not claimed.
    #[serde(default)]
    pub unclaimed: u32,
    /// The number of the next package uploaded.
    #[serde(default)]
    pub next: u64,
    pub ts: u64,
}

impl Model {
    /// The public state of an e2ee room's MLS group, when the server checks its commits.
    pub async fn mls_group(&self, room: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(&keys::mls_group(room)).await
    }

    pub fn put_mls_group(batch: &mut WriteBatch, room: &str, state: Vec<u8>) {
        batch.put(keys::mls_group(room), state);
    }

    pub fn delete_mls_group(batch: &mut WriteBatch, room: &str) {
        batch.delete(keys::mls_group(room));
    }

    /// The group state a commit was checked to lead to, by [`keys::mls_next`]'s hash.
    pub async fn mls_next(
        &self,
        room: &str,
        hash: &[u8; 32],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(&keys::mls_next(room, hash)).await
    }

    /// How many checked next states `room` keeps, counted up to `max`.
    pub async fn mls_nexts(&self, room: &str, max: usize) -> Result<usize, StoreError> {
        let found = self
            .store
            .scan(keys::mls_nexts_of(room), Direction::Forward, max)
            .await?;
        Ok(found.len())
    }

    pub fn put_mls_next(batch: &mut WriteBatch, room: &str, hash: &[u8; 32], state: Vec<u8>) {
        batch.put(keys::mls_next(room, hash), state);
    }

    /// Forgets every checked next state of `room` (its group moved on, or is gone).
    pub async fn delete_mls_nexts(&self, room: &str) -> Result<(), StoreError> {
        self.store
            .delete_range(keys::mls_nexts_of(room))
            .await
            .map(drop)
    }

    pub async fn identity(&self, user: &str) -> Result<Option<IdentityRecord>, StoreError> {
        self.get_json(&keys::identity(user)).await
    }

    pub fn put_identity(batch: &mut WriteBatch, user: &str, rec: &IdentityRecord) {
        batch.put(keys::identity(user), records::encode(rec));
    }

    pub async fn device(
        &self,
        user: &str,
        device: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        self.get_json(&keys::device(user, device)).await
    }

    /// Up to `limit` devices of `user`, by device id.
    pub async fn devices(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<(String, DeviceRecord)>, StoreError> {
        self.scan_named(keys::devices_of(user), limit).await
    }

    pub fn put_device(batch: &mut WriteBatch, user: &str, device: &str, rec: &DeviceRecord) {
        batch.put(keys::device(user, device), records::encode(rec));
    }

    /// Adds the deletes of a device and of up to `max_packages` of its packages to `batch`.
    pub async fn delete_device(
        &self,
        batch: &mut WriteBatch,
        user: &str,
        device: &str,
        max_packages: usize,
    ) -> Result<(), StoreError> {
        batch.delete(keys::device(user, device));
        let packages = self
            .store
            .scan(
                keys::key_packages_of(user, device),
                Direction::Forward,
                max_packages,
            )
            .await?;
        for (k, _) in packages {
            batch.delete(k);
        }
        Ok(())
    }

    pub fn put_key_package(batch: &mut WriteBatch, user: &str, device: &str, n: u64, kp: &[u8]) {
        batch.put(keys::key_package(user, device, n), kp.to_vec());
    }

    /// The oldest unclaimed package of `device` of `user`: its key and bytes.
    pub async fn oldest_key_package(
        &self,
        user: &str,
        device: &str,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        let mut found = self
            .store
            .scan(keys::key_packages_of(user, device), Direction::Forward, 1)
            .await?;
        Ok(found.pop())
    }

    pub fn delete_key(batch: &mut WriteBatch, key: Vec<u8>) {
        batch.delete(key);
    }
}
