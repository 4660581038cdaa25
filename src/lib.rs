//! The `chatmesh` command: configuration loading, the embedded one-machine mesh
//! (`chatmesh up`: nats-server child + worker + gateway + fjall store) and the standalone
//! `gateway` and `worker` services of a real deployment, and `chatmesh chat`, the terminal
//! client on the SDK, and `chatmesh admin`, the admin API's client. `main.rs` only parses arguments and calls in here, so tests start the
//! same mesh the command does.

pub mod admin;
pub mod bus;
pub mod chat;
mod chat_e2ee;
mod chat_line;
pub mod commands;
pub mod config;
pub mod embedded_nats;
pub mod export;
pub mod mesh;
pub mod nats;
pub mod services;
pub mod signal;
pub mod telemetry;

pub use config::Config;
pub use mesh::{Mesh, MeshOptions};
