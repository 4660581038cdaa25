//! The chatmesh gateway: terminates WebSockets (protocol v1), maps rooms to NATS subjects,
//! publishes sends to JetStream and fans out each room's live messages to local sessions.
//! It holds no durable state: accounts, rooms and history live behind the workers' services.
//!
//! Start it with [`serve`] on a bound listener; tests bind `127.0.0.1:0`.

pub mod access;
pub mod admission;
pub mod auth;
pub mod catchup;
pub mod config;
pub mod counts;
pub mod cursors;
pub mod error;
pub mod eventlog;
pub mod fanout;
pub mod files;
pub mod http;
pub mod jsread;
pub mod late;
pub mod link;
pub mod presence;
pub mod procstat;
pub mod publish;
pub mod receipts;
pub mod reconnects;
pub mod replay_slots;
pub mod reply_share;
pub mod revocation;
pub mod room_events;
pub mod services;
pub mod session;
pub mod state;
pub mod supervise;
pub mod throttle;
pub mod tls;

pub use config::GatewayConfig;
pub use error::GatewayError;
pub use http::serve;
pub use state::AppState;
