//! Files a delete detaches: when a batch's deletes take the last message that carries a
//! file, the file is marked detached in the same store write, and from then on it cannot
//! be read or attached again and the sweeper deletes it at its next pass. Without the mark
//! a moderator's delete was undone by sending the file's id again (the file lived on until
//! `unattached_grace_secs` after its upload, downloadable meanwhile).

use std::collections::{HashMap, HashSet};

use crate::model::Model;
use crate::store::StoreError;

/// The (room, file) pairs of `unrefs` (room, file, seq of a deleted message) that no other
/// stored message carries and that no new message of the batch (`carried`) carries.
pub(super) async fn detached<'a>(
    model: &Model,
    unrefs: &'a [(String, String, u64)],
    carried: &HashSet<(String, String)>,
) -> Result<Vec<(&'a str, &'a str)>, StoreError> {
    let mut deleted: HashMap<(&str, &str), Vec<u64>> = HashMap::new();
    for (room, file, seq) in unrefs {
        deleted
            .entry((room.as_str(), file.as_str()))
            .or_default()
            .push(*seq);
    }
    let mut out = Vec::new();
    for ((room, file), seqs) in deleted {
        if carried.contains(&(room.to_owned(), file.to_owned())) {
            continue;
        }
        if !model.file_carried_besides(room, file, &seqs).await? {
            out.push((room, file));
        }
    }
    Ok(out)
}
