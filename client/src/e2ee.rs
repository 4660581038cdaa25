//! The server's half of end-to-end encrypted rooms (docs/E2EE.md), for an MLS library to
//! build on: the key-package directory over HTTP and sends that carry an MLS message. This
//! crate holds no keys and does no cryptography; `chatmesh-e2ee` does.

use chatmesh_protocol::e2ee::{
    Claimed, DeviceInfo, GroupBody, Identity, KeyPackageCount, KeyPackagesBody, Mls, RoomGroup,
    UserDevices,
};
use chatmesh_protocol::frames::ClientFrame;
use serde_json::json;

use crate::client::{Ack, Client};
use crate::error::Result;
use crate::http::Http;

impl Http {
    /// `PUT /v1/e2ee/identity`: sets the caller's identity key (Ed25519 public key, base64),
    /// once; another key later is `conflict`.
    pub async fn e2ee_set_identity(&self, key: &str) -> Result<Identity> {
        let body = json!({ "key": key });
        self.call(reqwest::Method::PUT, "/v1/e2ee/identity", Some(body))
            .await
    }

    /// `PUT /v1/e2ee/devices/{device}`: registers a device's MLS signature key with the
    /// identity key's signature over `chatmesh_protocol::e2ee::device_statement` (base64).
    pub async fn e2ee_put_device(
        &self,
        device: &str,
        signature_key: &str,
        signature: &str,
    ) -> Result<DeviceInfo> {
        let path = format!("/v1/e2ee/devices/{device}");
        let body = json!({ "signature_key": signature_key, "signature": signature });
        self.call(reqwest::Method::PUT, &path, Some(body)).await
    }

    /// `DELETE /v1/e2ee/devices/{device}`: removes the device and its KeyPackages.
    pub async fn e2ee_delete_device(&self, device: &str) -> Result<()> {
        let path = format!("/v1/e2ee/devices/{device}");
        self.call_empty(reqwest::Method::DELETE, &path, None).await
    }

    /// `POST /v1/e2ee/devices/{device}/key-packages`: uploads KeyPackages (base64; a request
    /// body is at most 64 KiB, so upload many in several calls) and maybe a last-resort one.
    pub async fn e2ee_upload_key_packages(
        &self,
        device: &str,
        packages: &KeyPackagesBody,
    ) -> Result<KeyPackageCount> {
        let path = format!("/v1/e2ee/devices/{device}/key-packages");
        let body = serde_json::to_value(packages)
            .map_err(|e| crate::error::Error::Protocol(format!("encoding key packages: {e}")))?;
        self.call(reqwest::Method::POST, &path, Some(body)).await
    }

    /// `GET /v1/e2ee/users/{user}`: the user's identity key and devices.
    pub async fn e2ee_devices(&self, user: &str) -> Result<UserDevices> {
        let path = format!("/v1/e2ee/users/{user}");
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// `POST /v1/e2ee/users/{user}/claim`: one KeyPackage per device of `user`, each
    /// claimed once (a device's last-resort package when it has no other).
    pub async fn e2ee_claim(&self, user: &str) -> Result<Claimed> {
        let path = format!("/v1/e2ee/users/{user}/claim");
        self.call(reqwest::Method::POST, &path, None).await
    }

    /// `POST /v1/e2ee/users/{user}/claim?room={room}`: [`Http::e2ee_claim`] for `room`, an
    /// e2ee room the caller and `user` are both members of (needed for a user who takes adds
    /// by invitation only).
    pub async fn e2ee_claim_for(&self, user: &str, room: &str) -> Result<Claimed> {
        let path = format!("/v1/e2ee/users/{user}/claim?room={room}");
        self.call(reqwest::Method::POST, &path, None).await
    }

    /// `PUT /v1/e2ee/rooms/{room}/group`: hands the room's new group (epoch 0) to the
    /// server, which then checks every commit of the room (the room's creator, before its
    /// first commit).
    pub async fn e2ee_put_group(&self, room: &str, group: &GroupBody) -> Result<RoomGroup> {
        let path = format!("/v1/e2ee/rooms/{room}/group");
        let body = json!({ "group_info": group.group_info, "ratchet_tree": group.ratchet_tree });
        self.call(reqwest::Method::PUT, &path, Some(body)).await
    }

    /// `GET /v1/e2ee/rooms/{room}/group`: whether the server checks the room's commits, and
    /// the group's epoch and members as it tracks them.
    pub async fn e2ee_group(&self, room: &str) -> Result<RoomGroup> {
        let path = format!("/v1/e2ee/rooms/{room}/group");
        self.call(reqwest::Method::GET, &path, None).await
    }
}

impl Client {
    /// Sends an MLS message to an `e2ee` room with a fresh id; the ack means it is stored.
    /// A commit for another epoch than the room's is `conflict` (see docs/E2EE.md).
    pub async fn send_mls(&self, room: &str, mls: Mls) -> Result<Ack> {
        self.send_mls_with_id(room, &self.ids.next(), mls).await
    }

    /// [`Client::send_mls`] with the caller's id: a resend with the same id is stored once.
    pub async fn send_mls_with_id(&self, room: &str, id: &str, mls: Mls) -> Result<Ack> {
        let frame = ClientFrame::send_mls(room, id, mls);
        self.ack_of(frame).await
    }
}
