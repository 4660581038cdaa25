//! [`Directory`] over `chatmesh_client::Http` and [`RoomTransport`] over
//! `chatmesh_client::Client`: what an application on the Rust client SDK passes to the
//! calls of `sync.rs`. `conflict` from the server is [`TransportErrorKind::Conflict`].
//!
//! An MLS message longer than the server takes inline ([`MAX_MLS_CHARS`]: a welcome or a
//! commit of a large group) is uploaded as a file of the room and sent as `mls.file`; on the
//! way in, such a message's file is downloaded (a commit's or a welcome's within
//! [`MAX_HANDSHAKE_BYTES`] only, `files.rs`), so the SDK sees `data`.

use chatmesh_client::{Client, ErrorCode, Http};
use chatmesh_protocol::e2ee::{
    ClaimedPackage, GroupBody, KeyPackagesBody, Mls, UserDevices, MAX_MLS_CHARS,
};

use crate::directory::Directory;
use crate::error::{TransportError, TransportErrorKind};
use crate::files::{read_messages, RoomFiles};
use crate::sync::RoomTransport;
use crate::wire::{decode, Stored, MAX_HANDSHAKE_BYTES};

/// History page size when catching up (the server's maximum).
const PAGE: u32 = 100;

fn transport(e: chatmesh_client::Error) -> TransportError {
    let kind = match e.code() {
        Some(ErrorCode::Conflict) => TransportErrorKind::Conflict,
        Some(ErrorCode::RateLimited | ErrorCode::Unavailable) => TransportErrorKind::Busy,
        _ => TransportErrorKind::Other,
    };
    TransportError::new(kind, e)
}

impl Directory for Http {
    async fn put_identity(&self, key: &str) -> Result<(), TransportError> {
        self.e2ee_set_identity(key).await.map_err(transport)?;
        Ok(())
    }

    async fn put_device(
        &self,
        device: &str,
        signature_key: &str,
        signature: &str,
    ) -> Result<(), TransportError> {
        self.e2ee_put_device(device, signature_key, signature)
            .await
            .map_err(transport)?;
        Ok(())
    }

    async fn upload_key_packages(
        &self,
        device: &str,
        upload: &KeyPackagesBody,
    ) -> Result<(), TransportError> {
        self.e2ee_upload_key_packages(device, upload)
            .await
            .map_err(transport)?;
        Ok(())
    }

    async fn user(&self, user: &str) -> Result<UserDevices, TransportError> {
        self.e2ee_devices(user).await.map_err(transport)
    }

    async fn claim(&self, room: &str, user: &str) -> Result<Vec<ClaimedPackage>, TransportError> {
        Ok(self
            .e2ee_claim_for(user, room)
            .await
            .map_err(transport)?
            .key_packages)
    }

    async fn put_group(&self, room: &str, group: &GroupBody) -> Result<(), TransportError> {
        self.e2ee_put_group(room, group).await.map_err(transport)?;
        Ok(())
    }
}

/// The bound is kept twice: by the message's attachment before (files.rs), and by a download
/// that stops reading past it.
impl RoomFiles for Http {
    async fn download(
        &self,
        room: &str,
        id: &str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        match Http::download_max(self, room, id, max).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(chatmesh_client::Error::TooLarge { .. }) => Ok(None),
            Err(e) => Err(transport(e)),
        }
    }
}

impl RoomTransport for Client {
    async fn send_mls(&self, room: &str, mls: &Mls) -> Result<u64, TransportError> {
        let mut mls = mls.clone();
        if mls.data.len() > MAX_MLS_CHARS {
            let bytes = decode(&mls.data, "mls.data")
                .map_err(|e| TransportError::new(TransportErrorKind::Other, e))?;
            let name = format!("mls-{}-{}", mls.kind.as_str(), mls.epoch);
            let file = self
                .http()
                .upload(room, &name, bytes)
                .await
                .map_err(transport)?;
            mls.data.clear();
            mls.file = Some(file.id);
        }
        let ack = Client::send_mls(self, room, mls).await.map_err(transport)?;
        Ok(ack.seq)
    }

    /// Between two attempts of a commit or a welcome: 100 ms, doubling, at most 2 s (the
    /// server refuses a welcome until its worker stored the commit, and past the sender's
    /// budgets until they refill).
    async fn pause(&self, attempt: u32) {
        let ms = 100u64 << attempt.saturating_sub(2).min(5);
        tokio::time::sleep(std::time::Duration::from_millis(ms.min(2_000))).await;
    }

    /// Pages back from the newest message until the page that reaches `after`, then hands
    /// the MLS messages and deletions above `after` over oldest first.
    async fn messages_after(&self, room: &str, after: u64) -> Result<Vec<Stored>, TransportError> {
        let mut pages = Vec::new();
        let mut before = None;
        loop {
            let page = self.history(room, before, PAGE).await.map_err(transport)?;
            let Some(first) = page.messages.first().map(|m| m.seq) else {
                break;
            };
            let done = !page.more || first <= after + 1;
            pages.push(page.messages);
            if done {
                break;
            }
            before = Some(first);
        }
        let messages = pages
            .into_iter()
            .rev()
            .flatten()
            .filter(|m| m.seq > after)
            .collect();
        read_messages(room, messages, &self.http(), MAX_HANDSHAKE_BYTES).await
    }
}
