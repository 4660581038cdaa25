//! A Rust client for chatmesh protocol v1.
//!
//! [`Client`] is one session with a gateway. It logs in (or takes a token), opens the
//! WebSocket and then keeps it: when the connection breaks it reconnects with backoff, joins
//! every room again from the last message it delivered, and resends every send still
//! without its `ack` under the same id, so that each message reaches the application once,
//! in order, and each send is stored once (a message whose `prev` is above the last one
//! delivered makes it join the room again from that one, which brings what was missed first;
//! what even that cannot bring is an [`Event::Gap`]); given fallback gateways
//! ([`Builder::fallback`], e.g. another region's) it reconnects through the next one when
//! one cannot be reached. What it writes is paced within the gateway's flood guard and
//! send rate, so a reconnect that re-joins hundreds of rooms is not closed with 4008; the
//! reconnect delay starts over only after a connection held 10 s; a re-join refused for now
//! is retried as long as the connection lasts. [`Http`] is the HTTP half (accounts, rooms, DMs,
//! shared files: [`Http::upload`], then [`Client::send_files`]; [`Http::download`] reads at
//! most [`MAX_DOWNLOAD_BYTES`], [`Http::download_max`] the caller's bound, and every JSON answer
//! at most [`MAX_ANSWER_BYTES`]); it waits out a 429 with a
//! short `Retry-After` and sends the call again ([`Http::with_rate_limit_wait`]). Gateways
//! behind TLS are reached over https:// and wss:// (rustls with ring, the system's roots;
//! `SSL_CERT_FILE` names others).
//!
//! ```no_run
//! use chatmesh_client::{Client, Event, Http, RoomKind};
//!
//! # async fn run() -> Result<(), chatmesh_client::Error> {
//! let base = "http://127.0.0.1:8080";
//! Http::new(base)?.register("ann", "correct horse").await.ok(); // once
//! let mut client = Client::builder(base).login("ann", "correct horse").connect().await?;
//! client.http().create_room("general", RoomKind::Public).await.ok();
//! let mut events = client.events().expect("first call");
//! client.join("general").await?;
//! let ack = client.send("general", "hello").await?;
//! println!("stored as seq {}", ack.seq);
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(m) = event {
//!         println!("{}: {}", m.from, m.body);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Runnable examples: `cargo run -p chatmesh-client --example echo_bot -- http://127.0.0.1:8080`.

mod admin;
mod blocks;
mod client;
mod download;
mod driver;
mod e2ee;
mod error;
mod event;
mod http;
mod invitations;
mod moderation;
mod pace;

/// Makes ring the process's TLS crypto provider (https:// and wss:// gateways), unless the
/// application chose one first.
pub(crate) fn tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub use admin::ExportSummary;
pub use chatmesh_protocol::admin::{
    AccountInfo, AccountState, AuditEntry, AuditPage, DeleteProgress, UserPage,
};
pub use chatmesh_protocol::backoff::Backoff;
pub use chatmesh_protocol::blocks::{BlockInfo, BlockPage};
pub use chatmesh_protocol::e2ee::{
    Claimed, ClaimedPackage, DeviceInfo, Identity, KeyPackageCount, KeyPackagesBody, Mls, MlsKind,
    UserDevices,
};
pub use chatmesh_protocol::frames::{ClientFrame, ServerFrame};
pub use chatmesh_protocol::invitations::{Adds, Invitation, InvitationPage};
pub use chatmesh_protocol::message::{Change, Edited, Message};
pub use chatmesh_protocol::moderation::{BanInfo, BanPage, RoomEvent};
pub use chatmesh_protocol::reactions::Reaction;
pub use chatmesh_protocol::search::{SearchHit, SearchResults};
pub use chatmesh_protocol::service::Role;
pub use chatmesh_protocol::service::{EditHistory, ThreadPage, Version};
pub use chatmesh_protocol::threads::ThreadSummary;
pub use chatmesh_protocol::{ApiError, ErrorCode};
pub use client::{Ack, Builder, Client};
pub use download::{MAX_ANSWER_BYTES, MAX_DOWNLOAD_BYTES};
pub use error::{Error, Result};
pub use event::{Event, Events};
pub use http::{
    Http, Login, Page, RoomInfo, RoomKind, SearchQuery, RATE_LIMIT_RETRIES, RATE_LIMIT_WAIT,
};
pub use invitations::Added;
