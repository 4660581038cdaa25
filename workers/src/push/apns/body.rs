//! What an APNs push carries: `aps` (the alert iOS shows, the room as `thread-id`,
//! `mutable-content` so the app's notification service extension may rewrite it) and
//! `chatmesh`, the same push JSON a Web Push carries. Both are built from the
//! [`PushPayload`], so an alert never says more than the user's `preview` setting let into
//! it: without a preview, the room and the count only.

use chatmesh_protocol::push::PushPayload;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Largest body APNs takes for an alert push, bytes.
pub const MAX_BODY: usize = 4096;

/// The request body for `p`. Rooms beyond the latest are left out of `chatmesh.rooms`
/// while the body is over [`MAX_BODY`] (the counts stay right).
pub fn request(p: &PushPayload) -> Vec<u8> {
    let mut p = p.clone();
    loop {
        let body = json!({
            "aps": {
                "alert": alert(&p),
                "thread-id": p.room,
                "mutable-content": 1,
            },
            "chatmesh": p,
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        if bytes.len() <= MAX_BODY || p.rooms.len() <= 1 {
            return bytes;
        }
        p.rooms.truncate(p.rooms.len() / 2);
    }
}

/// The alert: sender and body with a preview, otherwise where and how many.
fn alert(p: &PushPayload) -> Value {
    let rooms = p.rooms.len().max(1);
    let plural = if p.count == 1 { "" } else { "s" };
    let count = if rooms > 1 {
        format!("{} new message{plural} in {rooms} rooms", p.count)
    } else {
        format!("{} new message{plural}", p.count)
    };
    match (&p.from, &p.body) {
        (Some(from), Some(body)) => json!({"title": from, "subtitle": p.room, "body": body}),
        (Some(from), None) => json!({"title": from, "subtitle": p.room, "body": count}),
        _ => json!({"title": p.room, "body": count}),
    }
}

/// `apns-collapse-id`: the same for every attempt of one notification (a retry after an
/// answer lost in transit replaces the first on the device instead of adding a second),
/// different for the next; 32 bytes, under APNs's 64.
pub fn collapse_id(p: &PushPayload) -> String {
    let digest = Sha256::new()
        .chain_update(p.room.as_bytes())
        .chain_update([0])
        .chain_update(p.seq.to_be_bytes())
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmesh_protocol::push::RoomCount;

    fn payload(preview: bool, rooms: usize) -> PushPayload {
        PushPayload {
            kind: "messages".into(),
            room: "club".into(),
            count: 3,
            rooms: (0..rooms)
                .map(|i| RoomCount {
                    room: format!("room-{i:0>60}"),
                    count: 1,
                    last_seq: 7,
                })
                .collect(),
            from: preview.then(|| "ann".into()),
            body: preview.then(|| "secret plans".into()),
            seq: 7,
        }
    }

    #[test]
    fn the_alert_says_no_more_than_the_preview_allows() {
        let full: Value = serde_json::from_slice(&request(&payload(true, 1))).unwrap();
        assert_eq!(
            full["aps"],
            json!({"alert": {"title": "ann", "subtitle": "club", "body": "secret plans"},
                   "thread-id": "club", "mutable-content": 1})
        );
        assert_eq!(full["chatmesh"]["body"], "secret plans");
        let bare = request(&payload(false, 2));
        let text = String::from_utf8(bare.clone()).unwrap();
        assert!(!text.contains("secret") && !text.contains("ann"), "{text}");
        let bare: Value = serde_json::from_slice(&bare).unwrap();
        assert_eq!(
            bare["aps"]["alert"],
            json!({"title": "club", "body": "3 new messages in 2 rooms"})
        );
    }

    #[test]
    fn bodies_fit_and_collapse_ids_are_stable_per_notification() {
        let many = payload(true, 200);
        let body = request(&many);
        assert!(body.len() <= MAX_BODY, "{}", body.len());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["chatmesh"]["count"], 3);
        let id = collapse_id(&many);
        assert_eq!(id.len(), 32);
        assert_eq!(id, collapse_id(&payload(false, 1)), "same room and seq");
        let next = PushPayload { seq: 8, ..many };
        assert_ne!(id, collapse_id(&next));
    }
}
