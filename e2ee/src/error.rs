//! The SDK's errors: one enum whose variants keep their cause, and a [`ErrorKind`] to branch
//! on (retry, resync, show the user, give up).

use std::path::PathBuf;

/// A boxed cause from openmls or a transport (their error types are generic or foreign).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a caller does about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Reading or writing the device's state directory.
    Storage,
    /// A message or key material that does not decode or verify, or a welcome replayed to
    /// a device it already let in: drop it, keep going.
    Rejected,
    /// Someone is not who the server or the directory says: show it to the user.
    Untrusted,
    /// The local group is behind the room: catch up from history first.
    OutOfSync,
    /// The call does not fit the local state (unknown room, not a member).
    Usage,
    /// Refused before sending: larger than the server relays.
    TooLarge,
    /// The server or the network; see [`TransportErrorKind`].
    Transport,
}

/// Errors of the SDK.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} does not parse: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("a device state already exists in {0}")]
    Exists(PathBuf),
    #[error("{what} is not base64 (standard, padded): {source}")]
    Base64 {
        what: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    #[error("{what} does not decode: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: Cause,
    },
    /// An openmls operation failed.
    #[error("MLS {op}: {source}")]
    Mls {
        op: &'static str,
        #[source]
        source: Cause,
    },
    #[error("the MLS sender {claimed:?} is not the server-attested sender {from:?}")]
    ForgedSender { claimed: String, from: String },
    #[error("credential {0:?} is not of the form user/device")]
    BadCredential(String),
    #[error("device {user}/{device} does not verify: {reason}")]
    BadDevice {
        user: String,
        device: String,
        reason: &'static str,
    },
    #[error("the identity key of {user} changed (was {was}, is {now})")]
    IdentityChanged {
        user: String,
        was: String,
        now: String,
    },
    #[error("{0} has no identity key in the directory")]
    NoIdentity(String),
    #[error("no key package could be claimed for {0}")]
    NoKeyPackages(String),
    #[error("a welcome for room {room:?}, which this device is already in")]
    WelcomeReplay { room: String },
    #[error("a welcome names group {got:?}, not room {room:?}")]
    WelcomeRoom { room: String, got: String },
    /// The server orders and checks a room's commits by their label (`mls.kind`); one that
    /// carries something else is not applied (a commit labelled `app` would skip the epoch
    /// order, and could be deleted from history like an application message).
    #[error("room {room:?}: message {seq} is labelled {label} but carries {content}")]
    Mislabeled {
        room: String,
        seq: u64,
        label: &'static str,
        content: &'static str,
    },
    /// The message's MLS part is in a file the catch-up refused to read: only a commit's or
    /// a welcome's is read, at most [`crate::MAX_HANDSHAKE_BYTES`] (files.rs).
    #[error("room {room:?}: message {seq} ({label}) names a file that is not read")]
    FileRefused {
        room: String,
        seq: u64,
        label: &'static str,
    },
    /// The message's MLS part is in a file not downloaded yet (a live `message`): a
    /// [`crate::catch_up`] reads it.
    #[error("room {room:?}: message {seq} is in a file; catch up to read it")]
    FileNotRead { room: String, seq: u64 },
    #[error("room {0:?}: this device has no group for it")]
    UnknownRoom(String),
    #[error("room {0:?}: this device already has a group for it")]
    RoomExists(String),
    #[error("room {room:?}: {who} is not a member")]
    NotMember { room: String, who: String },
    #[error("room {room:?} is at epoch {have} here but a commit for epoch {got} arrived: messages are missing")]
    EpochGap { room: String, have: u64, got: u64 },
    #[error("room {room:?}: the server stored a commit of this device that it no longer has; the device must be added again")]
    OwnCommitLost { room: String },
    #[error("mls.data of {len} characters is over the server's {max}")]
    TooLarge { len: usize, max: usize },
    #[error("room {room:?}: the commit lost {attempts} races for its epoch; giving up")]
    CommitRaces { room: String, attempts: u32 },
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } | Error::State { .. } | Error::Exists(_) => ErrorKind::Storage,
            Error::Base64 { .. }
            | Error::Decode { .. }
            | Error::Mls { .. }
            | Error::BadCredential(_)
            | Error::WelcomeRoom { .. }
            | Error::WelcomeReplay { .. }
            | Error::Mislabeled { .. }
            | Error::FileRefused { .. } => ErrorKind::Rejected,
            Error::ForgedSender { .. }
            | Error::BadDevice { .. }
            | Error::IdentityChanged { .. }
            | Error::NoIdentity(_) => ErrorKind::Untrusted,
            Error::EpochGap { .. }
            | Error::CommitRaces { .. }
            | Error::OwnCommitLost { .. }
            | Error::FileNotRead { .. } => ErrorKind::OutOfSync,
            Error::NoKeyPackages(_)
            | Error::UnknownRoom(_)
            | Error::RoomExists(_)
            | Error::NotMember { .. } => ErrorKind::Usage,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::Transport(_) => ErrorKind::Transport,
        }
    }

    pub(crate) fn mls(op: &'static str, source: impl Into<Cause>) -> Self {
        Error::Mls {
            op,
            source: source.into(),
        }
    }
}

/// What went wrong talking to the server, as far as the SDK branches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportErrorKind {
    /// `conflict`: a commit for a stale or future epoch, or another commit won the epoch
    /// (also a 409 of the directory).
    Conflict,
    /// `rate_limited` or `unavailable`: the same request may be taken a little later.
    Busy,
    /// Any other refusal or failure.
    Other,
}

/// A transport failure, with its cause (a `chatmesh_client` error, an HTTP status, ...).
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}: {source}")]
pub struct TransportError {
    pub kind: TransportErrorKind,
    #[source]
    pub source: Cause,
}

impl TransportError {
    pub fn new(kind: TransportErrorKind, source: impl Into<Cause>) -> Self {
        TransportError {
            kind,
            source: source.into(),
        }
    }

    pub fn is_conflict(&self) -> bool {
        self.kind == TransportErrorKind::Conflict
    }
}
