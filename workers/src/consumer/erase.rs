//! Erasing deleted messages (and their edits) from the stream once the store holds their
//! tombstones: resumes and gap fills then never read their bodies again. Best effort: what
//! fails here (or a crash first) stays in the stream until it ages out, and is logged.
//!
//! A stored message's seq is the stream seq it was stored from, but a room imported from
//! another deployment keeps its seqs (docs/STORAGE.md), which in this stream may belong to
//! other rooms' messages. So a seq is erased only when the stream's message there is on the
//! room's subject.

use async_nats::jetstream::stream::Stream;
use chatmesh_protocol::error::Chain;
use chatmesh_protocol::subjects::in_subject;
use metrics::counter;
use tracing::{debug, warn};

use crate::metrics as m;

/// Erases each `(room, seq)` from `stream` whose message at `seq` is `room`'s.
pub(super) async fn erase(stream: Stream, partitions: u32, seqs: Vec<(String, u64)>) {
    for (room, seq) in seqs {
        let subject = in_subject(partitions, &room);
        match stream.get_raw_message(seq).await {
            Ok(msg) if msg.subject.as_str() == subject => {}
            Ok(msg) => {
                debug!(seq, room, subject = %msg.subject, "not erased: the stream's message there is another room's");
                continue;
            }
            // Already gone (aged out, or erased by an earlier attempt): nothing to erase.
            Err(e) => {
                debug!(seq, error = %Chain(&e), "deleted message not in the stream");
                continue;
            }
        }
        match stream.delete_message(seq).await {
            Ok(_) => counter!(m::ERASED).increment(1),
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::stream::DeleteMessageErrorKind::JetStream(_)
                ) =>
            {
                debug!(seq, error = %Chain(&e), "deleted message not in the stream");
            }
            Err(e) => {
                warn!(seq, error = %Chain(&e), "could not erase a deleted message from the stream")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream;
    use chatmesh_protocol::MeshConfig;

    use super::*;

    /// A seq erased for a room is erased only where the stream holds that room's message:
    /// an imported room's seq that is another room's message here leaves it alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_rooms_own_message_is_erased() {
        let server = natsd::NatsServer::start_temp().await.unwrap();
        let nats = server.connect().await.unwrap();
        let js = jetstream::new(nats);
        let mesh = MeshConfig::default();
        let stream = crate::streams::ensure_stream(&js, &mesh).await.unwrap();
        let mut seqs = Vec::new();
        for room in ["other", "mine"] {
            let subject = in_subject(mesh.partitions, room);
            let ack = js
                .publish(subject, "{}".into())
                .await
                .unwrap()
                .await
                .unwrap();
            seqs.push(ack.sequence);
        }
        let (theirs, mine) = (seqs[0], seqs[1]);
        let erased = vec![("mine".to_owned(), theirs), ("mine".to_owned(), mine)];
        erase(stream.clone(), mesh.partitions, erased).await;
        assert!(
            stream.get_raw_message(theirs).await.is_ok(),
            "another room's message"
        );
        assert!(
            stream.get_raw_message(mine).await.is_err(),
            "the room's own"
        );
    }
}
