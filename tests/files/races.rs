//! Files at the edges of their lifecycle: an answer that comes too late, a sweeper that
//! meets an attach or a thumbnail in progress, a gateway stopping mid-upload. Each test
//! forces its interleaving with real parts: a gateway whose answers from NATS are held
//! ([`crate::hold`]), or an S3 server whose requests are held ([`crate::gate`]).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use hyper::Method;
use serde_json::Value;

use crate::common::{error_code, fast_config, files_under, start_mesh, Api, Client, ErrorCode};
use crate::gate::{GatedS3, When, BUCKET};
use crate::hold::HeldGateway;
use crate::support::{pdf, png, send_with, Files};

/// How long a test waits for any one expected event.
const WAIT: Duration = Duration::from_secs(20);

/// An upload sent by hand: the head of the body first, the rest when the test says.
struct RawUpload {
    sock: TcpStream,
}

impl RawUpload {
    /// Sends the request's head and the first `first` bytes of `body`.
    async fn start(base: &str, token: &str, room: &str, name: &str, body: &[u8]) -> Result<Self> {
        let addr = base.trim_start_matches("http://");
        let mut sock = TcpStream::connect(addr).await?;
        let head = format!(
            "POST /v1/rooms/{room}/files?name={name} HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        sock.write_all(head.as_bytes()).await?;
        Ok(Self { sock })
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.sock.write_all(bytes).await?;
        Ok(())
    }

    /// The answer's status code.
    async fn status(mut self) -> Result<u16> {
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, self.sock.read_to_end(&mut answer))
            .await
            .context("no answer to the upload")??;
        let text = String::from_utf8_lossy(&answer);
        let code = text.split(' ').nth(1).and_then(|c| c.parse().ok());
        code.with_context(|| format!("not an HTTP answer: {text}"))
    }
}

/// Polls `f` until it is true, or fails with `what` after [`WAIT`].
async fn until(what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        if tokio::time::Instant::now() > deadline {
            bail!("{what}: not within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A gateway stops waiting for the answer to its `file_commit`, which the worker gave: the
/// file was committed. The upload is answered 503, but the committed file keeps its bytes
/// (before, the gateway deleted them as a failed upload's, and the record pointed at
/// nothing: info 200, download 404).
#[tokio::test]
async fn a_late_commit_answer_does_not_delete_the_committed_files_bytes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let ann = api.user("ann").await?;
    api.room(&ann, "late", "private").await?;
    let held = HeldGateway::start(&mesh, 1_000).await?;

    let body: Vec<u8> = (0..600 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut up = RawUpload::start(&held.url(), &ann, "late", "late.bin", &body).await?;
    up.send(&body[..300 * 1024]).await?;
    // The worker reserved it and the gateway started storing it: its multipart upload shows.
    let store = dir.path().join("files");
    until("the upload's first part in the store", || {
        !files_under(&store).is_empty()
    })
    .await?;
    // The folder store stages an upload as `<id>#<n>` beside where the object will be.
    let staged = files_under(&store).remove(0);
    let staged = staged.file_name().unwrap().to_string_lossy().into_owned();
    let id = staged.split('#').next().unwrap().to_owned();
    // From here the worker's answers wait: the commit runs, its answer comes too late.
    held.hold();
    up.send(&body[300 * 1024..]).await?;
    let status = up.status().await?;
    held.release();
    assert_eq!(status, 503, "the commit's answer never came in time");

    // The worker committed the file, so its bytes must be there.
    let info = files.get(&ann, "late", &id, "/info", None).await?;
    assert_eq!(info.status(), 200, "the worker committed the file");
    let resp = files.get(&ann, "late", &id, "", None).await?;
    assert_eq!(resp.status(), 200, "a committed file lost its bytes");
    assert_eq!(resp.bytes().await?.to_vec(), body);
    held.stop().await;
    mesh.stop().await
}

/// A mesh's config on `s3` whose sweeper runs every second and takes an unattached file at
/// once.
fn sweeping_at_once(s3: &GatedS3) -> chatmesh::Config {
    let mut config = s3.config(fast_config());
    config.files.sweep_interval_secs = 1;
    config.files.unattached_grace_secs = 0;
    config
}

/// The sweeper takes an unattached file past its grace while a member attaches it to a
/// message: the message is refused (the file is going), never stored carrying a file whose
/// bytes and record the sweeper then deletes.
#[tokio::test]
async fn an_attach_at_the_grace_limit_never_leaves_a_message_with_a_deleted_file() -> Result<()> {
    let s3_root = tempfile::tempdir()?;
    let s3 = GatedS3::start(s3_root.path()).await?;
    let config = sweeping_at_once(&s3);
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let ann = api.user("ann").await?;
    api.room(&ann, "edge", "private").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("edge").await?;

    // The sweeper's delete of the file's bytes waits: it has decided, and not finished.
    let mut deletes = s3.hold(When::Before, Method::DELETE, |p| !p.ends_with(".thumb.png"));
    let info = files.stored(&ann, "edge", "notes.pdf", pdf()).await?;
    let id = info["id"].as_str().unwrap().to_owned();
    let sweeping = deletes.next(WAIT).await?;
    assert!(sweeping.path.ends_with(&id), "{}", sweeping.path);
    let sent = a.request_json(send_with("edge", "m1", "", &[&id])).await?;
    drop(sweeping);
    match error_code(&sent) {
        Some(ErrorCode::NotFound) => {}
        None => {
            // Stored: then the file must stay whole.
            assert!(
                !files.gone(&ann, "edge", &id).await?,
                "a stored message carries a file the sweeper deleted"
            );
        }
        other => bail!("unexpected answer {other:?}: {sent:?}"),
    }
    mesh.stop().await
}

/// The sweeper deletes an image's objects while its thumbnail is being made: the
/// thumbnail, stored after the sweeper's delete of it, goes too (before, it stayed in the
/// bucket with no record pointing at it).
#[tokio::test]
async fn a_thumbnail_made_while_the_sweeper_deletes_its_file_is_not_left_behind() -> Result<()> {
    let s3_root = tempfile::tempdir()?;
    let s3 = GatedS3::start(s3_root.path()).await?;
    let config = sweeping_at_once(&s3);
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let ann = api.user("ann").await?;
    api.room(&ann, "pics", "private").await?;

    let image = |p: &str| p.contains("/rooms/pics/") && !p.ends_with(".thumb.png");
    let thumb = |p: &str| p.ends_with(".thumb.png");
    // The thumbnail maker has read the image (its answer waits); the sweeper's delete of the
    // image waits until then, and the answer to its delete of the thumbnail after it.
    let mut reads = s3.hold(When::After, Method::GET, image);
    let mut deletes = s3.hold(When::Before, Method::DELETE, image);
    let mut thumb_deletes = s3.hold(When::After, Method::DELETE, thumb);
    let info = files.stored(&ann, "pics", "cat.png", png(64, 64)).await?;
    let id = info["id"].as_str().unwrap().to_owned();
    let read = reads.next(WAIT).await?;
    drop(deletes.next(WAIT).await?);
    let swept = thumb_deletes.next(WAIT).await?;
    // Now the maker stores the thumbnail, after the sweeper deleted it.
    let mut puts = s3.hold(When::After, Method::PUT, thumb);
    let mut own_deletes = s3.hold(When::After, Method::DELETE, thumb);
    drop(read);
    drop(puts.next(WAIT).await?);
    // The maker settles: it records the thumbnail ready, or deletes it as its file's.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if own_deletes.caught().is_some() {
            break;
        }
        let info: Value = files
            .get(&ann, "pics", &id, "/info", None)
            .await?
            .json()
            .await?;
        if info["thumbnail"] == "ready" {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the thumbnail maker never settled: {info}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(swept);

    assert!(
        files.gone(&ann, "pics", &id).await?,
        "the file was not swept"
    );
    let room = s3_root.path().join(BUCKET).join("shared/rooms/pics");
    let left = until("nothing of the file left in the bucket", || {
        files_under(&room).is_empty()
    })
    .await;
    left.with_context(|| format!("left behind: {:?}", files_under(&room)))?;
    mesh.stop().await
}

/// A gateway that stops with an upload in progress aborts its multipart upload (no parts
/// left in the bucket) and gives its quota reservation back at once, not only after
/// `upload_timeout_secs`.
#[tokio::test]
async fn a_gateway_stopping_mid_upload_leaves_no_parts_and_no_reservation() -> Result<()> {
    const MIB: usize = 1024 * 1024;
    let s3_root = tempfile::tempdir()?;
    let s3 = GatedS3::start(s3_root.path()).await?;
    let mut config = s3.config(fast_config());
    config.files.room_quota_bytes = 10 * MIB as u64;
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let ann = api.user("ann").await?;
    api.room(&ann, "big", "private").await?;
    let far = HeldGateway::start(&mesh, 5_000).await?;

    let body = vec![7u8; 8 * MIB];
    let mut up = RawUpload::start(&far.url(), &ann, "big", "big.bin", &body).await?;
    up.send(&body[..6 * MIB]).await?;
    let uploads = |p: &std::path::PathBuf| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".upload"))
    };
    until("a part of the upload in the bucket", || {
        files_under(s3_root.path()).iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".part-"))
        })
    })
    .await?;
    far.stop().await;

    let left = until("the upload's parts gone from the bucket", || {
        !files_under(s3_root.path()).iter().any(uploads)
    })
    .await;
    left.with_context(|| format!("left behind: {:?}", files_under(s3_root.path())))?;
    // Its 8 MiB are no longer reserved: 8 MiB more fit the room's 10 MiB.
    let (s, v) = files.upload(&ann, "big", "again.bin", body).await?;
    assert_eq!(s, 201, "{v}");
    drop(up);
    mesh.stop().await
}
