//! Pages bounded by bytes as well as by count. A page travels as one NATS reply, and
//! nats-server refuses payloads over its `max_payload` (1 MiB by default): 100 messages at
//! the 16 KiB body limit, or 20 of control characters (6 bytes each once JSON-escaped), are
//! already over it. So a page (of history, of a thread, of search hits, of the room list)
//! holds as many items as fit in the byte budget, at least one (paging always progresses),
//! and says `more` when it had to stop early.

use std::io;

use serde::Serialize;

/// Room left in a reply for the envelope around the messages (`{"ok":{"messages":[..]}}`).
const ENVELOPE: usize = 4 * 1024;

/// The byte budget of a page: the configured one, within what the server accepts.
pub(super) fn page_budget(configured: usize, max_payload: usize) -> usize {
    if max_payload == 0 {
        // Not connected (or unknown): the configured budget is checked at start.
        return configured;
    }
    configured.min(max_payload.saturating_sub(ENVELOPE))
}

/// Cuts `msgs` (in page order) to the items that fit in `budget` bytes of JSON, keeping
/// the last ones when `keep_last` (a history page read backwards from `before`, oldest
/// first) and the first ones otherwise (a page read on from `after`); never fewer than one.
/// Returns the page and its `more`.
pub(super) fn fit<T: Serialize>(
    mut msgs: Vec<T>,
    more: bool,
    budget: usize,
    keep_last: bool,
) -> (Vec<T>, bool) {
    // In the order messages are kept: from the end the page is read from.
    let mut sizes: Vec<usize> = msgs.iter().map(|m| encoded_len(m) + 1).collect();
    if keep_last {
        sizes.reverse();
    }
    let mut used = 0usize;
    let mut fits = 0usize;
    for size in sizes {
        used = used.saturating_add(size);
        if used > budget && fits > 0 {
            break;
        }
        fits += 1;
    }
    if fits == msgs.len() {
        return (msgs, more);
    }
    if keep_last {
        msgs.drain(..msgs.len() - fits);
    } else {
        msgs.truncate(fits);
    }
    (msgs, true)
}

/// Bytes `m` takes as JSON.
pub(super) fn encoded_len<T: Serialize>(m: &T) -> usize {
    let mut count = Count(0);
    // Writing to a counter cannot fail, and the replies' types always serialise.
    let _ = serde_json::to_writer(&mut count, m);
    count.0
}

/// A writer that only counts.
struct Count(usize);

impl io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmesh_protocol::message::Message;

    fn msg(seq: u64, body: &str) -> Message {
        Message {
            room: "r".into(),
            seq,
            prev: seq.saturating_sub(1),
            id: seq.to_string(),
            from: "a".into(),
            ts: 1,
            body: body.into(),
            attachments: Vec::new(),
            mentions: Default::default(),
            ..Default::default()
        }
    }

    fn seqs(page: &(Vec<Message>, bool)) -> (Vec<u64>, bool) {
        (page.0.iter().map(|m| m.seq).collect(), page.1)
    }

    /// Escaping counts: a control character costs six bytes.
    #[test]
    fn sizes_are_those_of_the_json() {
        let m = msg(1, "\u{1}\u{1}");
        assert_eq!(encoded_len(&m), serde_json::to_vec(&m).unwrap().len());
        assert_eq!(encoded_len(&m) - encoded_len(&msg(1, "")), 12);
    }

    /// Backward pages keep the newest, forward pages the oldest, and both keep at least one
    /// message even when it alone is over the budget.
    #[test]
    fn pages_are_cut_at_the_far_end_and_never_empty() {
        let body = "x".repeat(1000);
        let page: Vec<Message> = (1..=5).map(|s| msg(s, &body)).collect();
        let two = 2 * (encoded_len(&page[0]) + 1);
        assert_eq!(
            seqs(&fit(page.clone(), false, two, true)),
            (vec![4, 5], true)
        );
        assert_eq!(
            seqs(&fit(page.clone(), false, two, false)),
            (vec![1, 2], true)
        );
        assert_eq!(seqs(&fit(page.clone(), false, 10, true)), (vec![5], true));
        assert_eq!(
            seqs(&fit(page.clone(), true, usize::MAX, true)),
            (vec![1, 2, 3, 4, 5], true)
        );
        assert!(
            !fit(page, false, usize::MAX, false).1,
            "a page that fits keeps its more"
        );
        assert_eq!(page_budget(512 << 10, 1 << 20), 512 << 10);
        assert_eq!(page_budget(4 << 20, 1 << 20), (1 << 20) - ENVELOPE);
        assert_eq!(page_budget(512 << 10, 0), 512 << 10);
    }
}
