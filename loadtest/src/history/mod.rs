//! The `history` scenario and the history half of `mixed`: rooms filled with messages during
//! setup (through the normal `send` path), then readers paging each room backwards with the
//! protocol's `history` frame, from the newest message to the first and again, at a fixed
//! total rate in an open model: page request `i` of reader `g` (of `N`, total rate `R`) is due
//! at `t0 + g/R + i·N/R`. A reader has one request in flight (the next `before` is the oldest
//! seq of the last answer), so when answers are slow the next request goes out as soon as the
//! answer is in, and its latency still counts from its scheduled time: a stall shows up as
//! latency of every page scheduled during it, not as fewer pages.
//!
//! Every page is checked ([`Walker`]): oldest first with increasing seqs and an intact `prev`
//! chain, joined to the page before it (its newest message's seq is the `prev` of the oldest
//! message already read), `more` false exactly when the room's first message (`prev` 0) is in
//! it, full pages while `more`, and the fill messages' own indices (`h<k>` bodies) counting
//! down to 0 without a hole. A violation is counted as an error (`history_gap`,
//! `history_order`, `history_more`, `history_size`, `history_stale`, `history_fill`,
//! `history_count`) and the walk starts again from the newest message.
//!
//! Its parts, imports pointing one way: `plan` (schedules and the plan) ← `fill` (setup:
//! rooms filled through `send`, and the fill bodies) ← `scroll` (a reader's requests and
//! answers) → `walker` (the page checks, no I/O).

mod fill;
mod plan;
mod scroll;
mod walker;

pub use crate::plan::{Expect, ReadPlan};
pub use fill::{fill, fill_body, fill_k, filled_rooms, setup};
pub use plan::{history_plan, schedule, RoomFill};
pub use scroll::{is_answer, scroll, PageRx, PageTx};
pub use walker::{Outcome, PageMsg, Walker};
