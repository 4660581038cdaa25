//! [`Directory`] over `chatmesh_client::Http` and [`RoomTransport`] over
//! `chatmesh_client::Client`: what an application on the Rust client SDK passes to the
//! calls of `sync.rs`. `conflict` from the server is [`TransportErrorKind::Conflict`].

use chatmesh_client::{Client, ErrorCode, Http};
use chatmesh_protocol::e2ee::{ClaimedPackage, KeyPackagesBody, Mls, UserDevices};

use crate::directory::Directory;
use crate::error::{TransportError, TransportErrorKind};
use crate::sync::RoomTransport;
use crate::wire::Incoming;

/// History page size when catching up (the server's maximum).
const PAGE: u32 = 100;

fn transport(e: chatmesh_client::Error) -> TransportError {
    let kind = match e.code() {
        Some(ErrorCode::Conflict) => TransportErrorKind::Conflict,
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

    async fn claim(&self, user: &str) -> Result<Vec<ClaimedPackage>, TransportError> {
        Ok(self.e2ee_claim(user).await.map_err(transport)?.key_packages)
    }
}

impl RoomTransport for Client {
    async fn send_mls(&self, room: &str, mls: &Mls) -> Result<u64, TransportError> {
        let ack = Client::send_mls(self, room, mls.clone())
            .await
            .map_err(transport)?;
        Ok(ack.seq)
    }

    /// Pages back from the newest message until the page that reaches `after`, then hands
    /// the MLS messages above `after` over oldest first.
    async fn messages_after(
        &self,
        room: &str,
        after: u64,
    ) -> Result<Vec<Incoming>, TransportError> {
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
        Ok(pages
            .into_iter()
            .rev()
            .flatten()
            .filter(|m| m.seq > after)
            .filter_map(|m| Incoming::from_message(&m))
            .collect())
    }
}
