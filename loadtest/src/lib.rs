//! chatmesh's load-test harness. goose runs the attack (one user per shard of connections,
//! every timing recorded with `record_custom_request_duration`); this crate drives the
//! WebSockets itself, schedules sends in an open model, checks loss and duplicates through
//! `seq`/`prev` and room-local message indices, keeps HdrHistograms for the tail, and writes
//! a versioned JSON summary, a Markdown summary and goose's HTML report.

pub mod attack;
pub mod body;
pub mod cli;
pub mod clock;
pub mod conn;
pub mod control;
pub mod coord;
pub mod engine;
pub mod history;
pub mod mixed;
pub mod natsws;
pub mod plan;
pub mod regression;
pub mod report;
pub mod resume;
pub mod run;
pub mod setup;
pub mod stats;
pub mod summary;
pub mod threshold;
pub mod tokens;
pub mod tracker;
pub mod ws;
