//! Unit tests of the MLS core and the SDK's flows against an in-memory stand-in of the
//! server (`fake.rs`): no gateway, no NATS.

mod fake;
mod files;
mod groups;
mod trust;
