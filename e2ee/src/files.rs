//! The files of large MLS messages on the way in (docs/E2EE.md, "Large MLS messages travel
//! as files of the room"): a page of stored messages becomes the [`Stored`] messages the SDK
//! processes, each `mls.file` it may read downloaded into `mls.data`.
//!
//! Only a commit or a welcome travels as a file, and the SDK sends none larger than
//! [`crate::MAX_HANDSHAKE_BYTES`]. Any room member can name a file of the room on any
//! message, so a file is downloaded only for those kinds, and only when the message's
//! attachment (the server's record of the file) is within the bound. Anything else is left
//! unread and handed over with neither `data` nor `file`, which [`crate::Device::process`]
//! rejects ([`crate::Error::FileRefused`]) so the cursor moves past it (a message that still
//! names its file was never offered to this module, a live one: [`crate::Error::FileNotRead`]).

use std::future::Future;

use chatmesh_protocol::message::Message;

use crate::error::TransportError;
use crate::wire::{encode, Incoming, MlsKind, Stored};

/// Reads a room's files (`GET /v1/rooms/{room}/files/{id}`).
pub(crate) trait RoomFiles {
    /// The bytes of file `id` of `room` if there are at most `max` of them; `None` when there
    /// are more, found without reading past `max` (a lying or endless server holds no more
    /// than that here).
    fn download(
        &self,
        room: &str,
        id: &str,
        max: usize,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, TransportError>> + Send;
}

/// Why a message's file is left unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("a message of kind {} never travels as a file", .0.as_str())]
    Kind(MlsKind),
    #[error("the message carries no attachment for its file")]
    NoAttachment,
    #[error("the file has {size} bytes, over the {max} taken")]
    TooLarge { size: u64, max: usize },
    #[error("the file turned out longer than the {max} bytes taken (its attachment said less)")]
    Longer { max: usize },
}

/// The messages of `messages` (one room's, oldest first) the SDK reads
/// ([`Stored::from_message`]), with each MLS file of at most `max` bytes it may read
/// downloaded.
pub(crate) async fn read_messages(
    room: &str,
    messages: Vec<Message>,
    files: &impl RoomFiles,
    max: usize,
) -> Result<Vec<Stored>, TransportError> {
    let mut out = Vec::with_capacity(messages.len());
    for message in &messages {
        let Some(mut stored) = Stored::from_message(message) else {
            continue;
        };
        if let Stored::Mls(msg) = &mut stored {
            if let Err(why) = fetch(message, msg, files, max).await? {
                tracing::warn!(room, seq = msg.seq, %why, "e2ee file not read");
                msg.mls.file = None;
            }
        }
        out.push(stored);
    }
    Ok(out)
}

/// Downloads the file `msg` names (if any) into its `data`, or says why not. The outer error
/// is the transport's.
async fn fetch(
    message: &Message,
    msg: &mut Incoming,
    files: &impl RoomFiles,
    max: usize,
) -> Result<Result<(), Refusal>, TransportError> {
    let Some(file) = msg.mls.file.as_deref() else {
        return Ok(Ok(()));
    };
    if let Err(why) = check_file(message, msg.mls.kind, file, max) {
        return Ok(Err(why));
    }
    let Some(bytes) = files.download(&msg.room, file, max).await? else {
        return Ok(Err(Refusal::Longer { max }));
    };
    msg.mls.data = encode(&bytes);
    msg.mls.file = None;
    Ok(Ok(()))
}

/// Whether `file`, named by a message of `kind`, may be downloaded: a commit's or a
/// welcome's whose attachment is at most `max` bytes.
fn check_file(message: &Message, kind: MlsKind, file: &str, max: usize) -> Result<(), Refusal> {
    if !kind.may_be_a_file() {
        return Err(Refusal::Kind(kind));
    }
    let attachment = message
        .attachments
        .iter()
        .find(|a| a.id == file)
        .ok_or(Refusal::NoAttachment)?;
    if attachment.size > max as u64 {
        return Err(Refusal::TooLarge {
            size: attachment.size,
            max,
        });
    }
    Ok(())
}
