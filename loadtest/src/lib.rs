//! chatmesh's load-test harness. goose runs the attack (one user per shard of connections,
//! every timing recorded with `record_custom_request_duration`); this crate drives the
//! WebSockets itself, schedules sends in an open model, checks loss and duplicates through
//! `seq`/`prev` and room-local message indices, keeps HdrHistograms for the tail, and writes
//! a versioned JSON summary, a Markdown summary and goose's HTML report.
//!
//! Modules in layers, each importing only from its own layer and those above it in this list
//! (`ops/check-cycles` fails CI on any import cycle):
//! 1. data: `body`, `clock`, `stats`, `summary`, `threshold`, `regression`;
//! 2. plan: `tracker`, `changes` (edits and reactions among the sends), `plan`;
//! 3. net: `ws`, `setup` (HTTP accounts and rooms), `tokens`;
//! 4. coordination: `coord` (several generators), `cli`;
//! 5. engine: `engine`, `control`;
//! 6. scenarios: `conn`, `resume`, `history`, `natsws`, `mixed`, `search`, `files`, `attack`;
//! 7. `report`, then `run`.
//!
//! Frames on the wire are the protocol crate's (`chatmesh_protocol::frames`): sends and
//! requests are `ClientFrame`s, every received frame is read through the one-pass
//! `FrameView`, and history pages are decoded in full as `ServerFrame`s.

// 1. data
pub mod body;
pub mod clock;
pub mod regression;
pub mod stats;
pub mod summary;
pub mod threshold;
// 2. plan
pub mod changes;
pub mod plan;
pub mod tracker;
// 3. net
pub mod setup;
pub mod tokens;
pub mod ws;
// 4. coordination
pub mod cli;
pub mod coord;
// 5. engine
pub mod control;
pub mod engine;
// 6. scenarios
pub mod attack;
pub mod conn;
pub mod files;
pub mod history;
pub mod mixed;
pub mod natsws;
pub mod resume;
pub mod search;
// 7. report and run
pub mod report;
pub mod run;
