//! Names of the worker's metrics, recorded through the `metrics` facade. The library never
//! installs a recorder: the binary decides where metrics go (Prometheus in chatmesh).

/// Store-writer batches committed.
pub const BATCHES: &str = "chatmesh_worker_batches_total";
/// Messages per committed batch (histogram).
pub const BATCH_SIZE: &str = "chatmesh_worker_batch_messages";
/// Writes (store-writer batches, service updates) merged into one group commit (histogram).
pub const GROUP_SIZE: &str = "chatmesh_worker_group_commit_batches";
/// Seconds one batch commit took, fsync included (histogram).
pub const STORE_COMMIT: &str = "chatmesh_worker_store_commit_seconds";
/// Messages stored.
pub const STORED: &str = "chatmesh_worker_messages_stored_total";
/// Deliveries skipped because they were already stored (redeliveries).
pub const SKIPPED: &str = "chatmesh_worker_messages_skipped_total";
pub const CHANGES_VOID: &str = "chatmesh_worker_changes_void_total";
/// Commits of checked e2ee rooms refused before ordering, label `why` (`malformed`,
/// `private`, `refused`; `proposal` for a standalone proposal).
pub const MLS_COMMITS_REFUSED: &str = "chatmesh_worker_mls_commits_refused_total";
/// Welcomes of e2ee rooms refused, label `why` (`sender`: not from the member whose commit
/// started its epoch; `no_commit`: no such commit found).
pub const MLS_WELCOMES_REFUSED: &str = "chatmesh_worker_mls_welcomes_refused_total";
/// Rooms whose MLS group record was dropped because it could not follow the room: their
/// commits are no longer checked.
pub const MLS_GROUPS_UNTRACKED: &str = "chatmesh_worker_mls_groups_untracked_total";
pub const ERASED: &str = "chatmesh_worker_erased_total";
/// Rooms whose subject was full, trimmed of what the store holds (`room_trim`).
pub const ROOM_TRIMS: &str = "chatmesh_worker_room_trims_total";
/// Batches the search index could not take (missing from search), and unreadable indexes.
pub const SEARCH_ERRORS: &str = "chatmesh_worker_search_errors_total";
/// Search hits of messages the store no longer holds, left out and removed from the index.
pub const SEARCH_STALE_HITS: &str = "chatmesh_worker_search_stale_hits_total";
/// Stream messages that could not be decoded (skipped and acked).
pub const DECODE_ERRORS: &str = "chatmesh_worker_decode_errors_total";
/// Store-writer restarts from the checkpoint, label `reason`.
pub const WRITER_RESTARTS: &str = "chatmesh_worker_writer_restarts_total";
/// Service requests, labels `op` and `outcome` (`ok` or an error code).
pub const REQUESTS: &str = "chatmesh_worker_requests_total";
/// Seconds a service request took, label `op` (histogram).
pub const REQUEST_SECONDS: &str = "chatmesh_worker_request_seconds";
/// Messages deleted by retention.
pub const RETENTION_DELETED: &str = "chatmesh_worker_retention_deleted_total";
/// Rooms a retention step skipped because a record of theirs cannot be read (logged with
/// the key): they keep their old messages until the record is repaired.
pub const RETENTION_SKIPPED: &str = "chatmesh_worker_retention_skipped_total";
/// Requests refused while waiting for a room's or a user's lock, label `why` (`busy`: a
/// quarter of the service slots already waited for it; `deadline`: the caller stopped
/// waiting).
pub const LOCK_REFUSED: &str = "chatmesh_worker_lock_refused_total";
/// Files the sweeper skipped because their record cannot be read (logged with the room
/// and id): they are kept until the record is repaired.
pub const FILES_SWEEP_SKIPPED: &str = "chatmesh_worker_file_sweep_skipped_total";
/// 1 while this worker waits as a standby for the embedded store's lock, 0 once it runs.
pub const STANDBY: &str = "chatmesh_worker_standby";
/// Cache lookups, labels `cache` (`room`, `access`, `stats`, `page`) and `result` (`hit` or
/// `miss`): the hit ratio of each of the worker's caches.
pub const CACHE_REQUESTS: &str = "chatmesh_worker_cache_requests_total";
/// Pushes a provider accepted, label `provider` (`web_push`, `fcm`).
pub const PUSH_SENT: &str = "chatmesh_push_sent_total";
/// Pushes given up, label `reason` (`gave_up`, `rejected`, `unusable`, `unsupported`).
pub const PUSH_FAILED: &str = "chatmesh_push_failed_total";
/// Targets removed because their push service said they are gone (404/410).
pub const PUSH_REMOVED: &str = "chatmesh_push_targets_removed_total";
/// Seconds from a message stored in the stream to its push accepted (histogram).
pub const PUSH_LATENCY: &str = "chatmesh_push_latency_seconds";
/// Attempts answered 429/5xx or failed in transit, then retried.
pub const PUSH_RETRIES: &str = "chatmesh_push_retries_total";
/// Messages that push nobody or a recipient skipped, label `why`.
pub const PUSH_SKIPPED: &str = "chatmesh_push_skipped_total";
/// Users with a notification waiting for its collapse window (gauge).
pub const PUSH_PENDING: &str = "chatmesh_push_pending_users";
/// Pushes to origins not known to answer waiting for one of the slots they share (gauge):
/// high while others go out means origins that stall hold those slots (docs/PUSH.md).
pub const PUSH_UNPROVEN_WAITING: &str = "chatmesh_push_unproven_waiting";

/// History reads that found the store behind the stream, label `outcome` (`caught_up`
/// after a wait, `timed_out`, `stream_error`, `too_many_waiting`: half the service slots
/// were already waiting): the refusals are answered `unavailable`;
/// `no_leader`: the stream's leader did not answer, a direct get (the stream or its local
/// mirror) told the room's last seq.
pub const HISTORY_WAITS: &str = "chatmesh_worker_history_waits_total";

/// Registers descriptions of every metric with whatever recorder is installed.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(BATCHES, "store-writer batches committed");
    describe_gauge!(
        "chatmesh_event_log_unstored",
        "membership and account events the event log has not confirmed storing yet"
    );
    describe_counter!(
        "chatmesh_event_log_retries_total",
        "late copies published of events the event log had not confirmed"
    );
    describe_counter!(
        "chatmesh_event_log_given_up_total",
        "events given up storing in the event log (too many waiting)"
    );
    describe_histogram!(BATCH_SIZE, Unit::Count, "messages per committed batch");
    describe_histogram!(STORE_COMMIT, Unit::Seconds, "duration of one batch commit");
    describe_histogram!(
        GROUP_SIZE,
        Unit::Count,
        "writes merged into one group commit (one store write)"
    );
    describe_counter!(STORED, "messages stored");
    describe_counter!(RETENTION_DELETED, "messages deleted by retention");
    describe_counter!(
        FILES_SWEEP_SKIPPED,
        "files the sweeper skipped: their record cannot be read"
    );
    describe_counter!(
        RETENTION_SKIPPED,
        "rooms retention skipped: a record of theirs cannot be read"
    );
    describe_counter!(SKIPPED, "redelivered messages skipped as already stored");
    describe_counter!(
        CHANGES_VOID,
        "edits and deletes refused when stored (kept as void markers)"
    );
    describe_counter!(
        MLS_COMMITS_REFUSED,
        "commits of checked e2ee rooms refused before ordering (no member could have made them)"
    );
    describe_counter!(
        MLS_WELCOMES_REFUSED,
        "welcomes of e2ee rooms refused (not from the sender of the commit that started their epoch)"
    );
    describe_counter!(
        MLS_GROUPS_UNTRACKED,
        "e2ee rooms whose group record could not follow the room (commits no longer checked)"
    );
    describe_counter!(
        ERASED,
        "deleted messages and their edits erased from the stream"
    );
    describe_counter!(DECODE_ERRORS, "stream messages that could not be decoded");
    describe_counter!(
        ROOM_TRIMS,
        "full rooms trimmed from the stream (what the store held of them)"
    );
    describe_counter!(
        SEARCH_ERRORS,
        "stored batches the search index could not take, and unreadable indexes"
    );
    describe_counter!(
        SEARCH_STALE_HITS,
        "search hits of messages the store no longer holds (left out, removed from the index)"
    );
    describe_counter!(WRITER_RESTARTS, "store-writer restarts from the checkpoint");
    describe_counter!(REQUESTS, "service requests by op and outcome");
    describe_counter!(
        HISTORY_WAITS,
        "history reads that waited for the store writer, by outcome"
    );
    describe_gauge!(
        STANDBY,
        "1 while waiting as a standby for the store lock, 0 when running"
    );
    describe_counter!(
        CACHE_REQUESTS,
        "worker cache lookups by cache and result (hit or miss)"
    );
    describe_counter!(PUSH_SENT, "pushes accepted by a provider, by provider");
    describe_counter!(PUSH_FAILED, "pushes given up, by reason");
    describe_counter!(PUSH_REMOVED, "push targets removed as gone (404/410)");
    describe_counter!(PUSH_RETRIES, "push attempts retried (429, 5xx, transport)");
    describe_counter!(PUSH_SKIPPED, "push recipients skipped, by reason");
    describe_gauge!(
        PUSH_PENDING,
        "users with a notification in its collapse window"
    );
    describe_histogram!(
        PUSH_LATENCY,
        Unit::Seconds,
        "from a message stored in the stream to its push accepted"
    );
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "service request duration by op"
    );
}
