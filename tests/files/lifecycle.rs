//! What ends a file besides the sweeper's clock: a moderator deleting the message that
//! carried it, and an admin deleting its room.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::common::{
    acked, error_code, fast_config, files_under, frame, start_mesh, with_admins, Api, Client,
    ErrorCode, ServerFrame,
};
use crate::support::{pdf, png, send_with, Files};

const KIB: usize = 1024;

/// A room owner deletes a member's message with an image and a document: the image, which
/// no other message carries, goes with it. Its id cannot be attached again (404), it cannot
/// be downloaded (404), and the sweeper deletes its bytes at its next pass, without waiting
/// for `unattached_grace_secs`. The document, which an earlier message carries too, stays.
#[tokio::test]
async fn a_moderated_message_takes_its_file_with_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.files.sweep_interval_secs = 1;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "mod", "private").await?;
    let (s, v) = api
        .call(
            "POST",
            "/v1/rooms/mod/members",
            Some(&ann),
            Some(json!({"user": "bob"})),
        )
        .await?;
    assert_eq!(s, 204, "{v}");
    let info = files.stored(&bob, "mod", "abuse.png", png(64, 64)).await?;
    let id = info["id"].as_str().unwrap();
    files.thumbnail_ready(&bob, "mod", id).await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    a.join("mod").await?;
    b.join("mod").await?;
    // A document that another message carries too.
    let doc = files.stored(&bob, "mod", "notes.pdf", pdf()).await?;
    let doc = doc["id"].as_str().unwrap();
    acked(&b.request_json(send_with("mod", "m0", "", &[doc])).await?);
    let sent = acked(
        &b.request_json(send_with("mod", "m1", "", &[id, doc]))
            .await?,
    );

    acked(&a.request(frame::delete("mod", "d1", sent.seq)).await?);
    assert!(
        files.gone(&bob, "mod", id).await?,
        "the deleted message's file can still be read"
    );
    assert_eq!(files.get(&bob, "mod", id, "", None).await?.status(), 404);
    let again = b.request_json(send_with("mod", "m2", "", &[id])).await?;
    assert_eq!(error_code(&again), Some(ErrorCode::NotFound), "{again:?}");
    // The document another message carries stays.
    assert_eq!(files.get(&bob, "mod", doc, "", None).await?.status(), 200);
    acked(&b.request_json(send_with("mod", "m3", "", &[doc])).await?);

    // The sweeper deletes the image's bytes and thumbnail at its next pass.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = files_under(&dir.path().join("files"));
        if left.len() == 1 && left[0].ends_with(doc) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mesh.stop().await
}

/// An admin deletes a room with a file attached in it; another user creates the name
/// again at once. The old file's id is unknown in the new room (404, download and attach),
/// its bytes are gone, and the new room's file quota starts from zero.
#[tokio::test]
async fn a_deleted_rooms_files_do_not_come_back_with_its_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = with_admins(fast_config(), &["root"]);
    config.files.room_quota_bytes = 100 * KIB as u64;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let root = api.server_admin("root").await?;
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "doomed", "private").await?;
    let old = files
        .stored(&ann, "doomed", "big.bin", vec![1u8; 80 * KIB])
        .await?;
    let old = old["id"].as_str().unwrap();
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("doomed").await?;
    let ack = a
        .request_json(send_with("doomed", "m1", "here", &[old]))
        .await?;
    assert!(matches!(ack, ServerFrame::Ack { .. }), "{ack:?}");

    let (s, v) = api
        .call("DELETE", "/v1/admin/rooms/doomed", Some(&root), None)
        .await?;
    assert_eq!((s, v["done"].as_bool()), (200, Some(true)), "{v}");
    api.room(&bob, "doomed", "private").await?;

    for suffix in ["", "/info"] {
        let resp = files.get(&bob, "doomed", old, suffix, None).await?;
        assert_eq!(resp.status(), 404, "the old file{suffix} in the new room");
    }
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    b.join("doomed").await?;
    let again = b
        .request_json(send_with("doomed", "m1", "", &[old]))
        .await?;
    assert_eq!(error_code(&again), Some(ErrorCode::NotFound), "{again:?}");
    let left = files_under(&dir.path().join("files"));
    assert!(left.is_empty(), "the old room's bytes are left: {left:?}");
    // The old room's 80 KiB are not counted against the new room's 100 KiB.
    let (s, v) = files
        .upload(&bob, "doomed", "new.bin", vec![2u8; 80 * KIB])
        .await?;
    assert_eq!(s, 201, "{v}");
    mesh.stop().await
}
