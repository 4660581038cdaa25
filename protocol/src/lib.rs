//! The chatmesh wire contract shared by every service and client: names and their validation,
//! client and server frames (protocol v1), free text (display names, topics), NATS subject names and partitioning, the messages
//! gateways and workers exchange over NATS request-reply, push notification targets and
//! settings, and the limits in force.
//!
//! Nothing here does I/O; every other crate depends on this one, so it stays small and fast to
//! build.

pub mod admin;
pub mod backoff;
pub mod blocks;
pub mod bus;
pub mod config;
pub mod e2ee;
pub mod error;
pub mod files;
pub mod frames;
pub mod invitations;
pub mod limits;
pub mod mentions;
pub mod message;
pub mod moderation;
pub mod names;
pub mod push;
pub mod reactions;
pub mod regions;
pub mod search;
pub mod service;
pub mod subjects;
pub mod text;
pub mod threads;

pub use config::{MeshConfig, Secret};
pub use error::{ApiError, ErrorCode};
pub use limits::Limits;
pub use names::{validate_msg_id, validate_name, NameError};
