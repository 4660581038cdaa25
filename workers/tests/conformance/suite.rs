//! `conformance_suite!(fresh)` writes one `#[tokio::test]` per check of the suite. `fresh` is
//! an async fn returning `Option<Harness>`: a new, empty store, or `None` when the backend
//! is not available here (the test then prints why and checks nothing).

use chatmesh_workers::store::Store;

/// A fresh store and whatever must live as long as it (a temp dir).
pub struct Harness {
    pub store: Store,
    pub _guard: Box<dyn std::any::Any + Send>,
}

macro_rules! conformance_suite {
    ($fresh:path) => {
        conformance_suite!(@one $fresh, point_ops, "Point reads, overwrites, deletes and in-batch ordering.",
            |s| conformance::point_ops(&s));
        conformance_suite!(@one $fresh, scans, "Half-open bounds, both directions, limits, byte order.",
            |s| conformance::scans(&s));
        conformance_suite!(@one $fresh, boundaries, "Inclusive start, exclusive end, adjacent and 0x00/0xFF keys.",
            |s| conformance::edges::boundaries(&s));
        conformance_suite!(@one $fresh, forward_scan_past_the_last_key, "Pitfall 1: a short forward scan past the last key returns only in-range keys.",
            |s| conformance::edges::forward_scan_past_the_last_key(&s));
        conformance_suite!(@one $fresh, empty_ranges_terminate, "Pitfall 2: scans and deletes of empty ranges end and find nothing.",
            |s| conformance::edges::empty_ranges_terminate(&s));
        conformance_suite!(@one $fresh, paging_both_ways, "Paging 3,000 keys backwards and forwards sees each key once.",
            |s| conformance::edges::paging_both_ways(&s));
        conformance_suite!(@one $fresh, large_batches, "A 50,000-key batch lands whole; large scans see it.",
            |s| conformance::large_batches(&s));
        conformance_suite!(@one $fresh, delete_ranges, "Range deletes remove exactly their range, over many chunks.",
            |s| conformance::delete_ranges(&s));
        conformance_suite!(@one $fresh, idempotent_rewrite, "Writing a batch again leaves the store as it was.",
            |s| conformance::edges::idempotent_rewrite(&s));
        conformance_suite!(@one $fresh, staged_batches, "A reader that sees a later stage of a batch sees the earlier ones.",
            |s| conformance::edges::staged_batches(s));
        conformance_suite!(@one $fresh, racing_writers, "Writers racing on the same keys leave one written value per key.",
            |s| conformance::edges::racing_writers(s));
        conformance_suite!(@one $fresh, concurrent_writers, "Concurrent batch writers all land; on atomic backends no reader sees half a batch.",
            |s| async move {
                if s.atomic_batches() {
                    conformance::concurrent_writers(std::sync::Arc::new(s)).await;
                } else {
                    println!("atomic-read check not applicable: batches are staged, not atomic");
                }
            });
        conformance_suite!(@one $fresh, chat_history_paging, "History pages both ways with an intact prev chain.",
            |s| conformance::chat::history_paging(s));
        conformance_suite!(@one $fresh, chat_redelivery, "Redelivery from an older checkpoint stores every message once, unchanged.",
            |s| conformance::chat::redelivery(s));
        conformance_suite!(@one $fresh, chat_large_writer_batch, "A 5,000-message writer batch lands whole.",
            |s| conformance::chat::large_writer_batch(s));
        conformance_suite!(@one $fresh, chat_members_and_cursors, "Members, their mirror index and cursors.",
            |s| conformance::chat::members_and_cursors(s));
    };
    (@one $fresh:path, $name:ident, $doc:literal, |$s:ident| $body:expr) => {
        #[doc = $doc]
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(h) = $fresh().await else { return };
            let $s = h.store.clone();
            $body.await;
            drop(h);
        }
    };
}
