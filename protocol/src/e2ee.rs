//! End-to-end encrypted rooms (extension of v1, docs/E2EE.md and docs/PROTOCOL.md "End-to-end
//! encrypted rooms"): the MLS part of a message in a room of kind `e2ee`, and the key-package
//! directory (identity keys, devices, KeyPackages).
//!
//! The server never holds a key: it relays MLS messages (RFC 9420) as opaque base64 and keeps
//! one rule about them, the order of commits. A commit names the epoch it was made in; the
//! room's epoch starts at 0 and a commit for the current epoch moves it on by one. The worker
//! applies that rule in stream order (a commit for another epoch is stored as a void marker),
//! and the gateway refuses a commit for a stale or future epoch before it is published, with
//! `conflict`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};
use crate::names::validate_name;

/// Longest `mls.data`, in base64 characters (about 45 KiB of MLS message): a `send` must
/// still fit one WebSocket message (`max_message_bytes`, 64 KiB). A larger MLS message (the
/// welcome or a commit of a large group) travels as a file of the room: `mls.file`.
pub const MAX_MLS_CHARS: usize = 60 * 1024;
/// Most devices a user may register.
pub const MAX_DEVICES: usize = 16;
/// Most unclaimed KeyPackages stored per device.
pub const MAX_KEY_PACKAGES: usize = 100;
/// Largest KeyPackage, decoded bytes.
pub const MAX_KEY_PACKAGE_BYTES: usize = 16 * 1024;
/// Length of an Ed25519 public key.
pub const ED25519_KEY_BYTES: usize = 32;
/// Length of an Ed25519 signature.
pub const ED25519_SIGNATURE_BYTES: usize = 64;
/// Longest MLS signature public key a device may register, decoded bytes.
pub const MAX_SIGNATURE_KEY_BYTES: usize = 256;

/// What an MLS message in a room is, as its sender declares it. Only `commit` matters to the
/// server (epoch order); the others are relayed as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MlsKind {
    /// An application message (the encrypted chat message).
    App,
    /// A proposal (add, remove, update) for a later commit.
    Proposal,
    /// A commit: ends epoch `epoch` and starts `epoch + 1`.
    Commit,
    /// A Welcome for members a commit added (`epoch`: the epoch it starts them in).
    Welcome,
}

impl MlsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MlsKind::App => "app",
            MlsKind::Proposal => "proposal",
            MlsKind::Commit => "commit",
            MlsKind::Welcome => "welcome",
        }
    }

    /// Whether a message of this kind may travel as a file of the room (`mls.file`): a
    /// commit or a welcome, which grow with the group. An application message is bounded
    /// like a body and a proposal by its KeyPackage, so they always fit inline; a file on
    /// them would only make every member download it.
    pub fn may_be_a_file(self) -> bool {
        matches!(self, MlsKind::Commit | MlsKind::Welcome)
    }
}

/// The MLS part of a message of an `e2ee` room: `send {room, id, body: "", mls}` and
/// `message {.., body: "", mls}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mls {
    pub kind: MlsKind,
    /// The group epoch the message was made in (a welcome: the epoch it starts in).
    pub epoch: u64,
    /// The TLS-serialized `MLSMessage`, base64 (standard alphabet, padded); empty when it is
    /// in `file`.
    #[serde(default)]
    pub data: String,
    /// A file of the room (uploaded with `POST /v1/rooms/{room}/files`) holding the
    /// `MLSMessage` bytes, for one larger than [`MAX_MLS_CHARS`] allows inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Mls {
    /// The checks a gateway makes before it relays one: size and base64, and a file only
    /// for a kind that may need one ([`MlsKind::may_be_a_file`]).
    pub fn validate(&self) -> Result<(), ApiError> {
        if let Some(file) = &self.file {
            if !self.data.is_empty() {
                return Err(ApiError::bad_request("mls has data or a file, not both"));
            }
            if !self.kind.may_be_a_file() {
                return Err(ApiError::bad_request(
                    "only a commit or a welcome may travel as a file (mls.file)",
                ));
            }
            return crate::files::validate_file_id(file);
        }
        if self.data.is_empty() {
            return Err(ApiError::bad_request("mls.data is empty"));
        }
        if self.data.len() > MAX_MLS_CHARS {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("mls.data is longer than {MAX_MLS_CHARS} characters"),
            ));
        }
        decode(&self.data, "mls.data").map(|_| ())
    }
}

/// The epoch rule, as the worker applies it in stream order and clients do too: a commit for
/// the room's current epoch moves it on; any other commit is void; other kinds change nothing.
/// Returns the room's epoch after `mls`, and whether `mls` is void.
pub fn next_epoch(current: u64, mls: &Mls) -> (u64, bool) {
    match mls.kind {
        MlsKind::Commit if mls.epoch == current => (current + 1, false),
        MlsKind::Commit => (current, true),
        _ => (current, false),
    }
}

/// The `Nats-Msg-Id` of the commit that ends `epoch` of `room`: two commits for one epoch
/// share it, so JetStream stores only the first (within its duplicate window) and the
/// second is answered `conflict`. A `!` never starts a user's dedupe id.
pub fn commit_msg_id(room: &str, epoch: u64) -> String {
    format!("!mls:{room}:{epoch}")
}

/// The bytes a user's identity key signs to vouch for one of its devices:
/// `"chatmesh-device-v1" 00 user 00 device 00 signature_key`.
pub fn device_statement(user: &str, device: &str, signature_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(22 + user.len() + device.len() + signature_key.len());
    out.extend_from_slice(b"chatmesh-device-v1\0");
    out.extend_from_slice(user.as_bytes());
    out.push(0);
    out.extend_from_slice(device.as_bytes());
    out.push(0);
    out.extend_from_slice(signature_key);
    out
}

/// Decodes standard base64, `bad_request` naming `what` otherwise.
pub fn decode(text: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(text)
        .map_err(|_| ApiError::bad_request(format!("{what} is not base64 (standard, padded)")))
}

/// The bytes of an identity key (base64 of a 32-byte Ed25519 public key), checked for their
/// shape only: whether they are a point of the curve is the worker's check.
pub fn identity_key_bytes(key: &str) -> Result<[u8; ED25519_KEY_BYTES], ApiError> {
    decode(key, "key")?
        .try_into()
        .map_err(|_| ApiError::bad_request("key is not a 32-byte Ed25519 public key"))
}

/// Encodes standard base64.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A device id: the rules of a name.
pub fn validate_device(device: &str) -> Result<(), ApiError> {
    validate_name("device", device).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `PUT /v1/e2ee/identity`: the caller's identity key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityBody {
    /// Ed25519 public key, base64.
    pub key: String,
    /// The account's password: replaces an identity key that is set (with every device
    /// and KeyPackage it vouched for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A user's identity key, as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user: String,
    pub key: String,
}

/// `identity_set`: sets `user`'s identity key (once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetIdentityRequest {
    pub user: String,
    pub key: String,
}

/// `e2ee_identity_replace`: replaces `user`'s identity key on the strength of its password
/// (`unauthorized` when wrong); the devices and KeyPackages of the old key are dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceIdentityRequest {
    pub user: String,
    pub key: String,
    pub password: String,
}

// The password is never printed (logs, panics), as for `Credentials`.
impl std::fmt::Debug for IdentityBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityBody")
            .field("key", &self.key)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl std::fmt::Debug for ReplaceIdentityRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplaceIdentityRequest")
            .field("user", &self.user)
            .field("key", &self.key)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `PUT /v1/e2ee/devices/{device}`: a device's MLS signature key, vouched for by the
/// identity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceBody {
    /// The device's MLS signature public key, base64.
    pub signature_key: String,
    /// Ed25519 signature of [`device_statement`] by the user's identity key, base64.
    pub signature: String,
}

/// `device_put`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutDeviceRequest {
    pub user: String,
    pub device: String,
    pub signature_key: String,
    pub signature: String,
}

/// A device as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub device: String,
    pub signature_key: String,
    pub signature: String,
    /// Unclaimed KeyPackages stored.
    pub key_packages: u32,
    /// A last-resort KeyPackage is stored.
    pub last_resort: bool,
}

/// `GET /v1/e2ee/users/{user}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDevices {
    pub user: String,
    /// The identity key, base64; `None` until set.
    pub identity: Option<String>,
    pub devices: Vec<DeviceInfo>,
}

/// `device_delete`, `devices` (`device` empty) and `claim` (`device` empty; `user` the owner
/// of the packages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRequest {
    pub user: String,
    #[serde(default)]
    pub device: String,
}

/// `POST /v1/e2ee/devices/{device}/key-packages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPackagesBody {
    /// KeyPackages to claim once each, base64.
    #[serde(default)]
    pub key_packages: Vec<String>,
    /// The package handed out when none is left (kept, replaced by the next one uploaded).
    #[serde(default)]
    pub last_resort: Option<String>,
}

impl KeyPackagesBody {
    /// Counts, sizes and base64.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.key_packages.is_empty() && self.last_resort.is_none() {
            return Err(ApiError::bad_request("no key package"));
        }
        if self.key_packages.len() > MAX_KEY_PACKAGES {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_KEY_PACKAGES} key packages per upload"
            )));
        }
        for kp in self.key_packages.iter().chain(&self.last_resort) {
            let bytes = decode(kp, "a key package")?;
            if bytes.is_empty() || bytes.len() > MAX_KEY_PACKAGE_BYTES {
                return Err(ApiError::new(
                    ErrorCode::TooLarge,
                    format!("a key package is 1 to {MAX_KEY_PACKAGE_BYTES} bytes"),
                ));
            }
        }
        Ok(())
    }
}

/// `key_packages_add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddKeyPackagesRequest {
    pub user: String,
    pub device: String,
    #[serde(flatten)]
    pub body: KeyPackagesBody,
}

/// What a device holds after an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPackageCount {
    pub key_packages: u32,
    pub last_resort: bool,
}

/// One claimed KeyPackage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedPackage {
    pub device: String,
    pub key_package: String,
    /// The device's last-resort package (kept; others may get it too).
    pub last_resort: bool,
}

/// `POST /v1/e2ee/users/{user}/claim`: one package per device of `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimed {
    pub user: String,
    pub key_packages: Vec<ClaimedPackage>,
}

/// `room_epoch`: the room's epoch as its worker has stored it, and the commit that started
/// it (so that a sender's resend of that commit is answered with its seq, not refused). Asked
/// with a commit that is not stale, the worker answers once its store holds every message
/// of the room the stream held when asked (`unavailable` if it does not catch up in time):
/// a commit checked against a store far behind could be acked and then stored void.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEpoch {
    pub room: String,
    pub epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitRef>,
}

/// `room_epoch`'s request: the room, the caller and, for a commit, the commit itself, which
/// the worker checks against the room's group when the room has one on record
/// ([`GroupBody`]) and the commit is for the room's epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEpochRequest {
    pub room: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<Mls>,
}

/// Largest `group_info` or `ratchet_tree` of [`GroupBody`], in base64 characters (a group
/// of one device at epoch 0 needs about 1,000; a ratchet tree takes about 440 per member,
/// and the whole request is at most 64 KiB).
pub const MAX_GROUP_CHARS: usize = 60 * 1024;

/// `PUT /v1/e2ee/rooms/{room}/group`: the room's MLS group at the room's epoch, from its
/// owner (at creation: epoch 0, one member): the TLS-serialized `MLSMessage` of its
/// GroupInfo and its ratchet tree, in base64. With it on record the server checks every
/// commit's sender before ordering it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupBody {
    pub group_info: String,
    pub ratchet_tree: String,
}

impl GroupBody {
    /// Checks the sizes (the bytes are checked by the room's worker).
    pub fn validate(&self) -> Result<(), ApiError> {
        for (what, text) in [
            ("group_info", &self.group_info),
            ("ratchet_tree", &self.ratchet_tree),
        ] {
            if text.is_empty() || text.len() > MAX_GROUP_CHARS {
                return Err(ApiError::bad_request(format!(
                    "{what} is 1 to {MAX_GROUP_CHARS} base64 characters"
                )));
            }
        }
        Ok(())
    }
}

/// `e2ee_group_put`: [`GroupBody`] for `room`, from `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPutRequest {
    pub room: String,
    pub user: String,
    #[serde(flatten)]
    pub body: GroupBody,
}

/// `GET /v1/e2ee/rooms/{room}/group`: whether the server checks the room's commits, the
/// epoch it tracks the group at, and the group's members as their credentials name them
/// (`user/device`; empty when not checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomGroup {
    pub room: String,
    pub checked: bool,
    pub epoch: u64,
    pub members: Vec<String>,
}

/// A stored commit: its seq, sender, client id and ts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRef {
    pub seq: u64,
    pub from: String,
    pub id: String,
    pub ts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mls(kind: MlsKind, epoch: u64) -> Mls {
        Mls {
            kind,
            epoch,
            data: encode(b"x"),
            file: None,
        }
    }

    #[test]
    fn only_a_commit_for_the_current_epoch_moves_it() {
        assert_eq!(next_epoch(0, &mls(MlsKind::Commit, 0)), (1, false));
        assert_eq!(next_epoch(3, &mls(MlsKind::Commit, 2)), (3, true));
        assert_eq!(next_epoch(3, &mls(MlsKind::Commit, 4)), (3, true));
        assert_eq!(next_epoch(3, &mls(MlsKind::App, 1)), (3, false));
        assert_eq!(next_epoch(3, &mls(MlsKind::Welcome, 3)), (3, false));
    }

    #[test]
    fn mls_wire_shape_and_checks() {
        let m: Mls = serde_json::from_str(r#"{"kind":"commit","epoch":2,"data":"AAEC"}"#).unwrap();
        assert_eq!((m.kind, m.epoch), (MlsKind::Commit, 2));
        assert!(m.validate().is_ok());
        let bad = Mls {
            data: "not base64!".into(),
            ..m.clone()
        };
        assert_eq!(bad.validate().unwrap_err().code, ErrorCode::BadRequest);
        let big = Mls {
            data: "A".repeat(MAX_MLS_CHARS + 4),
            ..m
        };
        assert_eq!(big.validate().unwrap_err().code, ErrorCode::TooLarge);
        assert!(serde_json::from_str::<Mls>(r#"{"kind":"x","epoch":0,"data":"AA=="}"#).is_err());
        let filed: Mls = serde_json::from_str(
            r#"{"kind":"welcome","epoch":1,"file":"f0123456789abcdef0123456789abcdef"}"#,
        )
        .unwrap();
        assert!(filed.validate().is_ok(), "{:?}", filed.validate());
        let both = Mls {
            data: "AA==".into(),
            ..filed.clone()
        };
        assert!(both.validate().is_err());
        let bad_id = Mls {
            file: Some("../x".into()),
            ..filed
        };
        assert!(bad_id.validate().is_err());
    }

    /// Only a commit or a welcome may travel as a file (they alone outgrow a message); an
    /// application message or a proposal naming one is refused `bad_request`, so no member
    /// can make the others download a file with a message that never needs one.
    #[test]
    fn a_file_is_taken_only_for_a_commit_or_a_welcome() {
        let filed = |kind| Mls {
            kind,
            epoch: 0,
            data: String::new(),
            file: Some("f0123456789abcdef0123456789abcdef".into()),
        };
        for kind in [MlsKind::Commit, MlsKind::Welcome] {
            assert!(filed(kind).validate().is_ok(), "{kind:?}");
        }
        for kind in [MlsKind::App, MlsKind::Proposal] {
            let err = filed(kind).validate().unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{kind:?}");
        }
    }

    #[test]
    fn device_statement_separates_its_fields() {
        assert_ne!(
            device_statement("ab", "c", b"k"),
            device_statement("a", "bc", b"k")
        );
        assert!(device_statement("a", "b", b"k").starts_with(b"chatmesh-device-v1\0a\0b\0"));
    }

    #[test]
    fn key_package_uploads_are_bounded() {
        let ok = KeyPackagesBody {
            key_packages: vec![encode(&[1; 300])],
            last_resort: Some(encode(&[2; 300])),
        };
        assert!(ok.validate().is_ok());
        assert!(KeyPackagesBody::default().validate().is_err());
        let many = KeyPackagesBody {
            key_packages: vec![encode(&[1; 8]); MAX_KEY_PACKAGES + 1],
            last_resort: None,
        };
        assert!(many.validate().is_err());
        let huge = KeyPackagesBody {
            key_packages: vec![encode(&vec![1; MAX_KEY_PACKAGE_BYTES + 1])],
            last_resort: None,
        };
        assert_eq!(huge.validate().unwrap_err().code, ErrorCode::TooLarge);
    }
}
