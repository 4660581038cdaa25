//! The client side of chatmesh's end-to-end encrypted rooms (issue 16, docs/E2EE.md): MLS
//! (RFC 9420, openmls) groups, one per room of kind `e2ee`, held by a [`Device`] that saves
//! its state to a directory. The server relays MLS messages as opaque base64 and orders
//! commits per epoch; everything secret happens here.
//!
//! Layers, bottom up: `wire` (the `mls` object of frames), `identity` (Ed25519 identity keys,
//! fingerprints), `state` (the provider and the state file), `device` (keys, credential,
//! KeyPackages), `group` and `process` (the MLS core, no I/O), `directory` and `sync` (the
//! calls that need the server, over two small traits), `client` (those traits over
//! `chatmesh_client`'s `Http` and `Client`).

mod client;
mod device;
mod directory;
mod error;
mod event;
mod files;
mod group;
mod identity;
mod kept;
mod process;
mod state;
mod sync;
mod wire;

#[cfg(test)]
mod tests;

pub use device::{Device, MemberId, CIPHERSUITE};
pub use directory::{Directory, VerifiedKeyPackage};
pub use error::{Cause, Error, ErrorKind, TransportError, TransportErrorKind};
pub use event::{Event, Ignored};
pub use group::Staged;
pub use identity::{fingerprint, same_fingerprint, verify_device, IdentityKey};
pub use sync::{
    catch_up, claim, commit, create_group, hand_over_group, publish, send_text, verify_members,
    Change, Committed, RoomTransport, MAX_COMMIT_ATTEMPTS, MAX_WELCOME_ATTEMPTS,
};
pub use wire::{
    check_handshake_size, check_size, device_statement, mls_bytes, mls_message, Deletion, Incoming,
    Mls, MlsKind, Stored, MAX_HANDSHAKE_BYTES, MAX_MLS_CHARS,
};
// the directory's records, re-exported for callers of this crate
pub use chatmesh_protocol::e2ee::{
    ClaimedPackage, DeviceBody, DeviceInfo, GroupBody, KeyPackagesBody, RoomGroup, UserDevices,
};
