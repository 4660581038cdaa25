//! The frames of protocol v1 in both directions: [`ClientFrame`] (parsed and validated by
//! gateways, encoded by clients) and [`ServerFrame`] (encoded by gateways, decoded by
//! clients; [`FrameView`] is its one-pass borrowed view). docs/PROTOCOL.md describes them; `protocol/tests/wire.rs` pins their JSON.

mod client;
mod server;
mod view;

pub use client::{parse_client_frame, peek_ref, ClientFrame, FrameError};
pub use server::{error_frame, DecodeError, ServerFrame};
pub use view::{FrameType, FrameView};

/// A request's `ref`: echoed verbatim in its reply (a string or a number).
pub type Ref = Option<serde_json::Value>;

/// Largest `history` page.
pub const MAX_HISTORY_LIMIT: u32 = 100;
/// `history` page size when none is given.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
