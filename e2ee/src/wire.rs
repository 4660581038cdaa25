//! The MLS part of a frame in a room of kind `e2ee`, as the SDK sends and receives it:
//! `send {room, id, body: "", mls: {kind, epoch, data}}` and
//! `message {room, seq, from, .., mls}` (docs/PROTOCOL.md, docs/E2EE.md).
//!
//! The wire types are `chatmesh_protocol::e2ee`'s; this module adds what the SDK needs
//! around them: building an `Mls` from MLS bytes, reading it back, the size check.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
pub use chatmesh_protocol::e2ee::{device_statement, GroupBody, Mls, MlsKind, MAX_MLS_CHARS};
use chatmesh_protocol::message::Message;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Wraps a serialized `MLSMessage`. The size is checked on send ([`check_size`]), not here,
/// so that benches and tests can carry messages of any size.
pub fn mls_message(kind: MlsKind, epoch: u64, bytes: &[u8]) -> Mls {
    Mls {
        kind,
        epoch,
        data: STANDARD.encode(bytes),
        file: None,
    }
}

/// The decoded `MLSMessage` bytes of `mls`.
pub fn mls_bytes(mls: &Mls) -> Result<Vec<u8>, Error> {
    decode(&mls.data, "mls.data")
}

/// Largest commit or welcome the SDK sends, in MLS message bytes. One above
/// [`MAX_MLS_CHARS`] inline travels as a file of the room (`mls.file`, the transport's
/// upload); this bounds what a member must download and process (a welcome to a group of
/// 10,000 in the worst case of a sparse tree is about 3.3 MB).
pub const MAX_HANDSHAKE_BYTES: usize = 8 * 1024 * 1024;

/// Refuses a commit or welcome above [`MAX_HANDSHAKE_BYTES`].
pub fn check_handshake_size(mls: &Mls) -> Result<(), Error> {
    let bytes = mls.data.len() / 4 * 3;
    if bytes > MAX_HANDSHAKE_BYTES {
        return Err(Error::TooLarge {
            len: bytes,
            max: MAX_HANDSHAKE_BYTES,
        });
    }
    Ok(())
}

/// Refuses an application message the server would refuse as `too_large` (those are never
/// sent as files: a chat message is bounded like a body).
pub fn check_size(mls: &Mls) -> Result<(), Error> {
    if mls.data.len() > MAX_MLS_CHARS {
        return Err(Error::TooLarge {
            len: mls.data.len(),
            max: MAX_MLS_CHARS,
        });
    }
    Ok(())
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

/// A deletion in an e2ee room: `message {room, seq, from, delete_of}` without `mls`, sent by
/// the deleted message's author, a room admin or the owner (the server checked who may, and
/// erased the deleted message's ciphertext).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub room: String,
    pub seq: u64,
    /// Who deleted, as the server authenticated it.
    pub from: String,
    /// The seq of the message deleted.
    pub delete_of: u64,
}

/// A stored message of an e2ee room the SDK reads: an MLS message or a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Mls(Incoming),
    Deletion(Deletion),
}

impl Stored {
    /// What the SDK reads of a `message` of an e2ee room: `None` for a message it has no use
    /// for (a deleted message's tombstone, a void marker: a delete or commit the server
    /// refused, a deletion of a seq not before its own).
    pub fn from_message(message: &Message) -> Option<Self> {
        if message.void {
            return None;
        }
        match (message.delete_of, &message.mls) {
            (Some(delete_of), None) if delete_of >= message.seq => None,
            (Some(delete_of), None) => Some(Stored::Deletion(Deletion {
                room: message.room.clone(),
                seq: message.seq,
                from: message.from.clone(),
                delete_of,
            })),
            _ => Incoming::from_message(message).map(Stored::Mls),
        }
    }

    /// Its seq in the room.
    pub fn seq(&self) -> u64 {
        match self {
            Stored::Mls(m) => m.seq,
            Stored::Deletion(d) => d.seq,
        }
    }
}

impl Incoming {
    /// The MLS part of a `message` of an e2ee room: `None` for a message without one, and
    /// for a void marker (a commit the server's epoch rule voided: it changes nothing, and a
    /// client applying the same rule would ignore it anyway).
    pub fn from_message(message: &Message) -> Option<Self> {
        if message.void {
            return None;
        }
        Some(Incoming {
            room: message.room.clone(),
            seq: message.seq,
            from: message.from.clone(),
            mls: message.mls.clone()?,
        })
    }
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
        let mls = mls_message(MlsKind::Welcome, 3, b"abc");
        let json = serde_json::to_string(&mls).unwrap();
        assert_eq!(json, r#"{"kind":"welcome","epoch":3,"data":"YWJj"}"#);
        assert_eq!(serde_json::from_str::<Mls>(&json).unwrap(), mls);
        assert_eq!(mls_bytes(&mls).unwrap(), b"abc");
    }

    #[test]
    fn oversize_is_refused() {
        let mls = mls_message(MlsKind::App, 0, &vec![0; MAX_MLS_CHARS]);
        assert!(matches!(check_size(&mls), Err(Error::TooLarge { .. })));
        assert!(check_size(&mls_message(MlsKind::App, 0, &[0; 45 * 1024])).is_ok());
    }

    #[test]
    fn statement_layout() {
        assert_eq!(
            device_statement("ann", "phone", &[1, 2]),
            b"chatmesh-device-v1\0ann\0phone\0\x01\x02"
        );
    }
}
