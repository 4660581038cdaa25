//! The MLS part of a frame in a room of kind `e2ee`, as the SDK sends and receives it:
//! `send {room, id, body: "", mls: {kind, epoch, data}}` and
//! `message {room, seq, from, .., mls}` (docs/PROTOCOL.md, docs/E2EE.md).
//!
//! TODO(lead): these mirror `chatmesh_protocol::e2ee` on the lead's branch; once that is on
//! main this module re-exports `Mls`, `MlsKind`, `device_statement` and `MAX_MLS_CHARS` from
//! there instead of defining them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Longest `mls.data` the server relays, in base64 characters (a `send` must fit one
/// WebSocket message of 64 KiB).
pub const MAX_MLS_CHARS: usize = 60 * 1024;

/// What an MLS message is, as its sender declares it to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MlsKind {
    App,
    Proposal,
    Commit,
    Welcome,
}

/// The `mls` object of a `send` or a `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mls {
    pub kind: MlsKind,
    /// The epoch the message was made in (a commit: the epoch it ends; a welcome: the epoch
    /// it starts its new members in).
    pub epoch: u64,
    /// The TLS-serialized `MLSMessage`, standard padded base64.
    pub data: String,
}

impl Mls {
    /// Wraps a serialized `MLSMessage`. The size is checked on send ([`Mls::check_size`]), not
    /// here, so that benches and tests can carry messages of any size.
    pub fn new(kind: MlsKind, epoch: u64, bytes: &[u8]) -> Self {
        Mls {
            kind,
            epoch,
            data: STANDARD.encode(bytes),
        }
    }

    /// The decoded `MLSMessage` bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, Error> {
        decode(&self.data, "mls.data")
    }

    /// Refuses a message the server would refuse as `too_large`.
    pub fn check_size(&self) -> Result<(), Error> {
        if self.data.len() > MAX_MLS_CHARS {
            return Err(Error::TooLarge {
                len: self.data.len(),
                max: MAX_MLS_CHARS,
            });
        }
        Ok(())
    }
}

/// A `message` frame of an e2ee room, the part the SDK reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incoming {
    pub room: String,
    pub seq: u64,
    /// The sender's user name as the server authenticated it.
    pub from: String,
    pub mls: Mls,
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

/// Standard padded base64.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard padded base64; `what` names the field in the error.
pub fn decode(text: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    STANDARD
        .decode(text)
        .map_err(|source| Error::Base64 { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mls_round_trips_as_the_wire_spells_it() {
        let mls = Mls::new(MlsKind::Welcome, 3, b"abc");
        let json = serde_json::to_string(&mls).unwrap();
        assert_eq!(json, r#"{"kind":"welcome","epoch":3,"data":"YWJj"}"#);
        assert_eq!(serde_json::from_str::<Mls>(&json).unwrap(), mls);
        assert_eq!(mls.bytes().unwrap(), b"abc");
    }

    #[test]
    fn oversize_is_refused() {
        let mls = Mls::new(MlsKind::App, 0, &vec![0; MAX_MLS_CHARS]);
        assert!(matches!(mls.check_size(), Err(Error::TooLarge { .. })));
        assert!(Mls::new(MlsKind::App, 0, &[0; 45 * 1024])
            .check_size()
            .is_ok());
    }

    #[test]
    fn statement_layout() {
        assert_eq!(
            device_statement("ann", "phone", &[1, 2]),
            b"chatmesh-device-v1\0ann\0phone\0\x01\x02"
        );
    }
}
