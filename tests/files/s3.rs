//! Files on S3: a real S3 server (s3s-fs over a temp folder, SigV4 signatures checked:
//! [`GatedS3`], nothing held) that the test starts on a loopback port; the mesh reaches it
//! with `[files] url = "s3://..."`.

use anyhow::Result;
use serde_json::json;

use crate::common::{fast_config, files_under, start_mesh, Api, Client, ServerFrame};
use crate::gate::{GatedS3, BUCKET};
use crate::support::{pdf, png, Files};

/// The mesh's config on `s3`, its downloads answered in place or redirected.
fn s3_config(s3: &GatedS3, redirect: bool) -> chatmesh::Config {
    let mut config = s3.config(fast_config());
    config.files.redirect = redirect;
    config
}

#[tokio::test]
async fn files_live_on_s3() -> Result<()> {
    let s3_root = tempfile::tempdir()?;
    let s3 = GatedS3::start(s3_root.path()).await?;
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), s3_config(&s3, false)).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let (ann, carl) = (api.user("ann").await?, api.user("carl").await?);
    api.room(&ann, "docs", "private").await?;

    // Larger than one multipart part: streamed in parts.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let info = files.stored(&ann, "docs", "big.bin", big.clone()).await?;
    let big_id = info["id"].as_str().unwrap().to_owned();
    let resp = files.get(&ann, "docs", &big_id, "", None).await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await?.to_vec(), big);
    let resp = files
        .get(&ann, "docs", &big_id, "", Some("bytes=6000000-6000009"))
        .await?;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await?.to_vec(), big[6_000_000..6_000_010]);

    let image = png(800, 400);
    let info = files
        .stored(&ann, "docs", "wide.png", image.clone())
        .await?;
    let img_id = info["id"].as_str().unwrap().to_owned();
    let thumb = image::load_from_memory(&files.thumbnail_ready(&ann, "docs", &img_id).await?)?;
    assert_eq!((thumb.width(), thumb.height()), (320, 160));
    let doc = files.stored(&ann, "docs", "a.pdf", pdf()).await?;
    assert_eq!(doc["content_type"], "application/pdf");
    assert_eq!(
        files.get(&carl, "docs", &img_id, "", None).await?.status(),
        403
    );

    // The bytes are in the bucket, under the prefix, not in the data dir.
    let in_bucket = files_under(
        &s3_root
            .path()
            .join(BUCKET)
            .join("shared")
            .join("rooms")
            .join("docs"),
    );
    assert!(in_bucket.len() >= 4, "{in_bucket:?}");
    assert!(files_under(&dir.path().join("files")).is_empty());

    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("docs").await?;
    let ack = a
        .request_json(
            json!({"type":"send","room":"docs","id":"m1","body":"see","attachments":[img_id]}),
        )
        .await?;
    assert!(matches!(ack, ServerFrame::Ack { .. }), "{ack:?}");
    let m = a.messages("docs", 1).await?.remove(0);
    assert_eq!(m.attachments[0].name, "wide.png");
    mesh.stop().await
}

#[tokio::test]
async fn downloads_redirect_to_presigned_urls() -> Result<()> {
    let s3_root = tempfile::tempdir()?;
    let s3 = GatedS3::start(s3_root.path()).await?;
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), s3_config(&s3, true)).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let (ann, carl) = (api.user("ann").await?, api.user("carl").await?);
    api.room(&ann, "docs", "private").await?;
    let doc = pdf();
    let info = files.stored(&ann, "docs", "a.pdf", doc.clone()).await?;
    let id = info["id"].as_str().unwrap().to_owned();

    let resp = files.get(&ann, "docs", &id, "", None).await?;
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str()?.to_owned();
    assert!(
        location.starts_with(&format!("http://{}/", s3.addr)),
        "{location}"
    );
    assert!(location.contains("X-Amz-Signature="), "{location}");
    // The presigned URL works without credentials...
    let plain = reqwest::Client::new();
    let got = plain.get(&location).send().await?;
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await?.to_vec(), doc);
    // ...and the server checks its signature.
    let at = location.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &location[at..=at] == "0" { "1" } else { "0" };
    let tampered = format!("{}{flipped}{}", &location[..at], &location[at + 1..]);
    assert_eq!(plain.get(&tampered).send().await?.status(), 403);
    // `proxy=1`: the bytes through the gateway all the same (what the web client asks for).
    let proxied = files
        .get(&ann, "docs", &format!("{id}?proxy=1"), "", None)
        .await?;
    assert_eq!(proxied.status(), 200);
    assert_eq!(proxied.headers()["x-content-type-options"], "nosniff");
    assert_eq!(proxied.bytes().await?.to_vec(), doc);
    let bad = files
        .get(&ann, "docs", &format!("{id}?proxy=maybe"), "", None)
        .await?;
    assert_eq!(bad.status(), 400);
    // Access is checked before any URL is handed out.
    assert_eq!(files.get(&carl, "docs", &id, "", None).await?.status(), 403);
    mesh.stop().await
}
