//! Files in the embedded default: a folder in the data dir.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{
    error_code, fast_config, files_under, start_mesh, Api, Client, ErrorCode, ServerFrame,
};
use crate::support::{crc32, pdf, png, send_with, Files};

const KIB: u64 = 1024;

#[tokio::test]
async fn members_share_an_image_and_a_pdf() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let (ann, bob, carl) = (
        api.user("ann").await?,
        api.user("bob").await?,
        api.user("carl").await?,
    );
    api.room(&ann, "docs", "private").await?;
    api.room(&ann, "other", "private").await?;
    let (s, _) = api
        .call(
            "POST",
            "/v1/rooms/docs/members",
            Some(&ann),
            Some(json!({"user": "bob"})),
        )
        .await?;
    assert_eq!(s, 204);

    // An image: sniffed, measured, thumbnailed.
    let image = png(640, 480);
    let info = files.stored(&ann, "docs", "cat.png", image.clone()).await?;
    assert_eq!(info["content_type"], "image/png");
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(640), Some(480))
    );
    assert_eq!(info["size"].as_u64(), Some(image.len() as u64));
    assert_eq!(info["by"], "ann");
    assert_eq!(info["room"], "docs");
    let img_id = info["id"].as_str().unwrap().to_owned();
    let thumb = image::load_from_memory(&files.thumbnail_ready(&bob, "docs", &img_id).await?)?;
    assert_eq!((thumb.width(), thumb.height()), (320, 240));
    let resp = files.get(&bob, "docs", &img_id, "", None).await?;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-security-policy"], "sandbox");
    assert_eq!(
        h["cache-control"], "private, no-store",
        "a cached copy would skip the access check"
    );
    assert!(h["content-disposition"].to_str()?.starts_with("inline"));
    assert_eq!(resp.bytes().await?.to_vec(), image);

    // A PDF: named by its bytes, never shown inline; ranges.
    let doc = pdf();
    let info = files
        .stored(&ann, "docs", "Q3 report.pdf", doc.clone())
        .await?;
    assert_eq!(info["content_type"], "application/pdf");
    assert_eq!(info["thumbnail"], "none");
    assert!(info.get("width").is_none());
    let pdf_id = info["id"].as_str().unwrap().to_owned();
    let resp = files.get(&bob, "docs", &pdf_id, "", None).await?;
    let cd = resp.headers()["content-disposition"].to_str()?.to_owned();
    assert!(
        cd.starts_with("attachment") && cd.contains("Q3%20report.pdf"),
        "{cd}"
    );
    assert_eq!(resp.bytes().await?.to_vec(), doc);
    let resp = files
        .get(&bob, "docs", &pdf_id, "", Some("bytes=0-3"))
        .await?;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 0-3/{}", doc.len()).as_str()
    );
    assert_eq!(resp.bytes().await?.as_ref(), b"%PDF");
    let tail = files
        .get(&bob, "docs", &pdf_id, "", Some("bytes=-6"))
        .await?;
    assert_eq!(tail.bytes().await?.as_ref(), b"%%EOF\n");
    let past = format!("bytes={}-", doc.len());
    let resp = files.get(&bob, "docs", &pdf_id, "", Some(&past)).await?;
    assert_eq!(resp.status(), 416);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes */{}", doc.len()).as_str()
    );
    let resp = files.get(&bob, "docs", &pdf_id, "/thumbnail", None).await?;
    assert_eq!(resp.status(), 404);

    // Outsiders: no upload, no download, no info; ids of another room or made up: 404.
    let (s, v) = files.upload(&carl, "docs", "x.txt", b"hi".to_vec()).await?;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    for suffix in ["", "/info", "/thumbnail"] {
        assert_eq!(
            files
                .get(&carl, "docs", &img_id, suffix, None)
                .await?
                .status(),
            403
        );
    }
    assert_eq!(
        files.get(&ann, "other", &img_id, "", None).await?.status(),
        404
    );
    let forged = format!("f{}", "0".repeat(32));
    assert_eq!(
        files.get(&ann, "docs", &forged, "", None).await?.status(),
        404
    );
    assert_eq!(
        files
            .get(&ann, "docs", "..%2F..%2Fetc", "", None)
            .await?
            .status(),
        404
    );

    // A message carries both; live, in history and in a replay.
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    a.join("docs").await?;
    b.join("docs").await?;
    let ack = a
        .request_json(send_with("docs", "m1", "", &[&img_id, &pdf_id]))
        .await?;
    assert!(matches!(ack, ServerFrame::Ack { .. }), "{ack:?}");
    let got = b.messages("docs", 1).await?.remove(0);
    assert_eq!(got.body, "");
    let names: Vec<_> = got.attachments.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["cat.png", "Q3 report.pdf"]);
    assert_eq!(
        (got.attachments[0].width, got.attachments[0].height),
        (Some(640), Some(480))
    );
    assert_eq!(got.attachments[1].content_type, "application/pdf");
    assert_eq!(got.attachments[1].size, doc.len() as u64);
    let (s, page) = api
        .call("GET", "/v1/rooms/docs/messages", Some(&bob), None)
        .await?;
    assert_eq!(s, 200);
    assert_eq!(page["messages"][0]["attachments"][0]["id"], img_id.as_str());
    let mut replay = Client::login(&mesh.ws_url(), &bob).await?;
    replay
        .send_json(json!({"type":"join","room":"docs","since":0}))
        .await?;
    let again = replay.messages("docs", 1).await?.remove(0);
    assert_eq!(again.attachments, got.attachments);

    // Files of another room, made up or malformed: refused, nothing sent.
    let other = files
        .stored(&ann, "other", "o.txt", b"other".to_vec())
        .await?;
    let foreign = other["id"].as_str().unwrap();
    for ids in [
        vec![foreign],
        vec![forged.as_str()],
        vec!["nope"],
        vec![img_id.as_str(), img_id.as_str()],
    ] {
        let f = a.request_json(send_with("docs", "m2", "x", &ids)).await?;
        assert!(error_code(&f).is_some(), "{ids:?}: {f:?}");
    }
    let too_many: Vec<&str> = std::iter::repeat_n(img_id.as_str(), 11).collect();
    let f = a
        .request_json(send_with("docs", "m3", "x", &too_many))
        .await?;
    assert_eq!(error_code(&f), Some(ErrorCode::BadRequest));

    // A removed member loses the room's files at once.
    let (s, _) = api
        .call("DELETE", "/v1/rooms/docs/members/bob", Some(&ann), None)
        .await?;
    assert_eq!(s, 204);
    assert_eq!(
        files.get(&bob, "docs", &pdf_id, "", None).await?.status(),
        403
    );
    mesh.stop().await
}

/// Sends raw bytes as one HTTP request and returns the status line's code (0 when the
/// connection ended without an answer).
async fn raw(addr: &str, request: &[u8], then_wait: Duration) -> Result<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(request).await?;
    if then_wait.is_zero() {
        s.shutdown().await?;
    }
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(then_wait + Duration::from_secs(10), s.read(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf[..n]);
    Ok(text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

fn head(token: &str, name: &str, extra: &str) -> String {
    format!(
        "POST /v1/rooms/box/files?name={name} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.files.max_file_bytes = 200 * KIB;
    config.files.room_quota_bytes = 300 * KIB;
    config.gateway.body_read_timeout_ms = 500;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let ann = api.user("ann").await?;
    api.room(&ann, "box", "private").await?;

    let bomb = {
        // A PNG header that declares 100,000 x 100,000 pixels.
        let mut v = png(1, 1);
        v[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        v[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&v[12..29]);
        v[29..33].copy_from_slice(&crc.to_be_bytes());
        v
    };
    let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00rest of a zip".to_vec();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("../../etc/passwd", b"x".to_vec(), 400, "file name"),
        ("a\u{1}b.txt", b"x".to_vec(), 400, "file name"),
        ("evil\u{202E}gpj.exe", b"x".to_vec(), 400, "file name"),
        ("..", b"x".to_vec(), 400, "file name"),
        ("bomb.png", zip, 400, "the content is application/zip"),
        (
            "fake.png",
            b"\x89PNG\r\n\x1a\nthis is not a png".to_vec(),
            400,
            "header cannot be read",
        ),
        ("huge.png", bomb, 400, "100000x100000"),
        ("big.bin", vec![7u8; 201 * KIB as usize], 413, "at most"),
    ];
    for (name, bytes, status, says) in cases {
        let (s, v) = files.upload(&ann, "box", name, bytes).await?;
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert_eq!(s, status, "{name:?}: {v}");
        assert!(message.contains(says), "{name:?}: {message}");
    }
    let (s, v) = files
        .upload(&ann, "nosuchroom", "a.txt", b"x".to_vec())
        .await?;
    assert!(s == 403 || s == 404, "{s} {v}");

    let addr = mesh.url().trim_start_matches("http://").to_owned();
    // Over the cap: refused from the header, before any byte of the body is sent.
    let t0 = std::time::Instant::now();
    let code = raw(
        &addr,
        head(&ann, "x.bin", "content-length: 999999999999\r\n").as_bytes(),
        Duration::from_millis(1),
    )
    .await?;
    assert_eq!(code, 413);
    assert!(t0.elapsed() < Duration::from_secs(5));
    // No length: refused.
    let code = raw(
        &addr,
        format!(
            "{}5\r\nhello\r\n0\r\n\r\n",
            head(&ann, "x.txt", "transfer-encoding: chunked\r\n")
        )
        .as_bytes(),
        Duration::ZERO,
    )
    .await?;
    assert_eq!(code, 400);
    // Truncated: the client stops after 100 of 150 KiB and closes its side.
    let mut truncated =
        head(&ann, "t.bin", &format!("content-length: {}\r\n", 150 * KIB)).into_bytes();
    truncated.extend_from_slice(&[1u8; 100 * 1024]);
    let code = raw(&addr, &truncated, Duration::ZERO).await?;
    assert!(code == 400 || code == 0, "{code}");
    // Stalled: 10 bytes, then nothing (the body read timeout is 500 ms).
    let mut stalled = head(&ann, "s.bin", "content-length: 1000\r\n").into_bytes();
    stalled.extend_from_slice(b"0123456789");
    let code = raw(&addr, &stalled, Duration::from_secs(2)).await?;
    assert_eq!(code, 400);

    // Nothing of any of it is left, and the reservations were given back: 150 KiB twice
    // fits the room's 300 KiB quota only if the truncated upload's was.
    let left = files_under(&dir.path().join("files"));
    assert!(left.is_empty(), "left behind: {left:?}");
    files
        .stored(&ann, "box", "one.bin", vec![1u8; 150 * KIB as usize])
        .await?;
    files
        .stored(&ann, "box", "two.bin", vec![2u8; 150 * KIB as usize])
        .await?;
    let (s, v) = files
        .upload(&ann, "box", "three.bin", vec![3u8; 10])
        .await?;
    assert_eq!(s, 413, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("quota"),
        "{v}"
    );

    // Members who may not send may not share files either: a muted member, and a user
    // blocked by the other member of a DM (each 403, the file's bytes never read).
    let bob = api.user("bob").await?;
    api.room(&bob, "yard", "private").await?;
    api.add(&bob, "yard", "ann").await?;
    let (s, v) = files.upload(&ann, "yard", "ok.txt", b"x".to_vec()).await?;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api
        .call(
            "POST",
            "/v1/rooms/yard/mutes",
            Some(&bob),
            Some(serde_json::json!({"user": "ann"})),
        )
        .await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = files.upload(&ann, "yard", "no.txt", b"x".to_vec()).await?;
    assert_eq!(s, 403, "muted: {v}");
    let (s, v) = api.call("POST", "/v1/dm/bob", Some(&ann), None).await?;
    assert_eq!(s, 200, "{v}");
    let dm = v["room"].as_str().unwrap_or_default().to_owned();
    let (s, v) = files.upload(&ann, &dm, "hi.txt", b"x".to_vec()).await?;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api
        .call("PUT", "/v1/users/me/blocks/ann", Some(&bob), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = files.upload(&ann, &dm, "hi.txt", b"x".to_vec()).await?;
    assert_eq!(s, 403, "blocked: {v}");
    mesh.stop().await
}

/// One client address holds at most four upload slots, whatever its accounts: a fifth
/// upload from it is refused at once (429), one from another address goes through.
#[tokio::test]
async fn one_address_holds_at_most_four_upload_slots() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.body_read_timeout_ms = 5_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "box", "private").await?;
    let addr = mesh.url().trim_start_matches("http://").to_owned();
    let mut tokens = Vec::new();
    for name in ["u0", "u1", "u2"] {
        let token = api.user(name).await?;
        api.add(&ann, "box", name).await?;
        tokens.push(token);
    }
    let big = format!("content-length: {}\r\n", 4096 * KIB);
    let mut slow = Vec::new();
    for (i, token) in tokens[..2].iter().enumerate() {
        for j in 0..2 {
            let h = head(token, &format!("slow{i}-{j}.bin"), &big);
            slow.push(tokio::spawn(trickle(addr.clone(), h)));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = head(&tokens[2], "fifth.bin", &big);
    let (code, took) = trickle(addr.clone(), h).await?;
    assert_eq!(code, 429, "a fifth upload from one address, after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let h = head(&tokens[2], "other.bin", "content-length: 1\r\n");
    let (code, _) = trickle_from([127, 0, 0, 2], addr, h).await?;
    assert_eq!(code, 201, "an upload from another address");
    for task in slow {
        assert!(!task.is_finished(), "a slow upload ended early");
        task.abort();
    }
    mesh.stop().await
}

/// An upload whose body trickles in: its head, then a byte every 300 ms (under the idle
/// timeout) until it is answered or 30 s pass. Returns the status code (0: no answer) and
/// how long the answer took.
async fn trickle(addr: String, head: String) -> Result<(u16, Duration)> {
    trickle_from([127, 0, 0, 1], addr, head).await
}

/// [`trickle`] from the loopback address `from`.
async fn trickle_from(from: [u8; 4], addr: String, head: String) -> Result<(u16, Duration)> {
    send_slowly(from, addr, head, b"x", Duration::from_millis(300)).await
}

/// An upload from the loopback address `from`: its head, then `chunk` every `every` until
/// it is answered or 30 s pass. The status code (0: no answer) and how long it took.
async fn send_slowly(
    from: [u8; 4],
    addr: String,
    head: String,
    chunk: &[u8],
    every: Duration,
) -> Result<(u16, Duration)> {
    let t0 = std::time::Instant::now();
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((std::net::Ipv4Addr::from(from), 0).into())?;
    let mut s = socket.connect(addr.parse()?).await?;
    s.write_all(head.as_bytes()).await?;
    let mut buf = vec![0u8; 4096];
    while t0.elapsed() < Duration::from_secs(30) {
        tokio::select! {
            read = s.read(&mut buf) => {
                let n = read?;
                let text = String::from_utf8_lossy(&buf[..n]);
                let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                return Ok((code, t0.elapsed()));
            }
            () = tokio::time::sleep(every) => {
                if s.write_all(chunk).await.is_err() {
                    break;
                }
            }
        }
    }
    Ok((0, t0.elapsed()))
}

/// A mesh in `dir` with a 500 ms idle timeout for upload bodies, ann's private room `box`,
/// and the gateway's address for [`trickle`].
async fn trickle_mesh(
    dir: &std::path::Path,
) -> Result<(chatmesh::Mesh, Api, Files, String, String)> {
    let mut config = fast_config();
    config.gateway.body_read_timeout_ms = 500;
    let mesh = start_mesh(dir, config).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let ann = api.user("ann").await?;
    api.room(&ann, "box", "private").await?;
    let addr = mesh.url().trim_start_matches("http://").to_owned();
    Ok((mesh, api, files, ann, addr))
}

/// One user trickling uploads (a byte every 300 ms, under the 500 ms idle timeout) cannot
/// hold the gateway's 16 upload slots: they hold at most two, each only until it falls the
/// idle timeout behind the minimum rate, and another user's upload goes through meanwhile.
#[tokio::test]
async fn a_trickling_uploader_cannot_hold_the_upload_slots() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mesh, api, files, ann, addr) = trickle_mesh(dir.path()).await?;
    let bob = api.user("bob").await?;
    api.room(&bob, "bobs", "private").await?;

    // 16 uploads of 1 MiB (a minute at the minimum rate) and one of 1,000 bytes.
    let mut slow = Vec::new();
    for i in 0..16 {
        let h = head(
            &ann,
            &format!("slow{i}.bin"),
            &format!("content-length: {}\r\n", 1024 * KIB),
        );
        slow.push(tokio::spawn(trickle(addr.clone(), h)));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, v) = files
        .upload(&bob, "bobs", "note.txt", b"hello".to_vec())
        .await?;
    assert_eq!(s, 201, "another user's upload beside the trickles: {v}");

    let mut refused = 0;
    let mut still_open = Vec::new();
    for task in slow {
        if task.is_finished() {
            let (code, _) = task.await??;
            // 429: no slot for ann; 400: one of her two, cut for falling behind the rate.
            assert!(
                matches!(code, 429 | 400),
                "a trickled upload was answered {code}"
            );
            refused += usize::from(code == 429);
        } else {
            still_open.push(task);
        }
    }
    assert_eq!(refused, 14, "ann's uploads refused at once");
    for task in still_open {
        task.abort();
    }
    // A small upload that trickles is cut once its size at the minimum rate has passed
    // (1,000 bytes: 0.5 s idle + 61 ms), not after 1,000 trickled bytes (5 minutes).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let h = head(&ann, "small.bin", "content-length: 1000\r\n");
    let (code, took) = trickle(addr, h).await?;
    assert_eq!(code, 400, "after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    mesh.stop().await
}

/// Eight accounts on four addresses trickling two uploads each (a byte every 300 ms, under
/// the 500 ms idle timeout) take all 16 upload slots, but only until each falls the idle
/// timeout behind the minimum rate, not for as long as its whole size would take at that
/// rate (4 MiB: over four minutes): every one is cut within seconds, and the slots are free
/// again.
#[tokio::test]
async fn trickling_uploads_of_many_accounts_are_cut_early() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mesh, api, files, ann, addr) = trickle_mesh(dir.path()).await?;
    let mut slow = Vec::new();
    for u in 0..8 {
        let name = format!("u{u}");
        let token = api.user(&name).await?;
        let (s, v) = api
            .call(
                "POST",
                "/v1/rooms/box/members",
                Some(&ann),
                Some(json!({"user": name})),
            )
            .await?;
        assert_eq!(s, 204, "{v}");
        let from = [127, 0, 0, 1 + u / 2];
        for i in 0..2 {
            let h = head(
                &token,
                &format!("slow{u}-{i}.bin"),
                &format!("content-length: {}\r\n", 4096 * KIB),
            );
            slow.push(tokio::spawn(trickle_from(from, addr.clone(), h)));
        }
    }
    for task in slow {
        let (code, took) = task.await??;
        assert_eq!(code, 400, "a trickled upload after {took:?}");
        assert!(took < Duration::from_secs(5), "cut only after {took:?}");
    }
    let (s, v) = files
        .upload(&ann, "box", "note.txt", b"hello".to_vec())
        .await?;
    assert_eq!(s, 201, "{v}");
    mesh.stop().await
}

/// Uploads above the minimum rate but slow (40 KiB a second, 4 MiB each: well over a
/// minute) from eight accounts on four addresses take all 16 upload slots. A new upload does
/// not wait for them: the slowest one, all being behind 256 KiB/s, gives its slot way
/// (answered 503, to be sent again) and the new one goes through; the others go on.
#[tokio::test]
async fn slow_uploads_give_way_to_a_new_one_when_every_slot_is_taken() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.body_read_timeout_ms = 3_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "box", "private").await?;
    let addr = mesh.url().trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for u in 0..8u8 {
        let name = format!("u{u}");
        let token = api.user(&name).await?;
        api.add(&ann, "box", &name).await?;
        let from = [127, 0, 0, 1 + u / 2];
        for i in 0..2 {
            let h = head(
                &token,
                &format!("slow{u}-{i}.bin"),
                &format!("content-length: {}\r\n", 4096 * KIB),
            );
            slow.push(tokio::spawn(stream_from(from, addr.clone(), h)));
        }
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        slow.iter().all(|t| !t.is_finished()),
        "every slow upload holds its slot"
    );
    // From an address of its own (its own slot counts are free).
    let bob = api.user("bob").await?;
    api.add(&ann, "box", "bob").await?;
    let h = head(&bob, "note.bin", "content-length: 1\r\n");
    let (code, took) = trickle_from([127, 0, 0, 9], addr, h).await?;
    assert_eq!(
        code, 201,
        "a new upload with every slot taken, after {took:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut cut = 0;
    for task in slow {
        if task.is_finished() {
            let (code, _) = task.await??;
            assert_eq!(code, 503, "a slow upload was answered {code}");
            cut += 1;
        } else {
            task.abort();
        }
    }
    assert_eq!(cut, 1, "one slow upload gave way");
    mesh.stop().await
}

/// An upload from the loopback address `from` whose body arrives at 40 KiB a second (4 KiB
/// every 100 ms), as [`send_slowly`].
async fn stream_from(from: [u8; 4], addr: String, head: String) -> Result<(u16, Duration)> {
    send_slowly(from, addr, head, &[b'x'; 4096], Duration::from_millis(100)).await
}

/// One client address starts at most `upload_starts_per_minute` uploads after its burst,
/// over all its accounts: the next is 429 `rate_limited`, saying so.
#[tokio::test]
async fn upload_starts_are_limited_per_address() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.files.upload_starts_per_minute = 1;
    config.files.upload_start_burst = 2;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "q", "public").await?;
    api.add(&ann, "q", "bob").await?;
    files.stored(&ann, "q", "a1", vec![1; 10]).await?;
    files.stored(&bob, "q", "b1", vec![2; 10]).await?;
    let (s, v) = files.upload(&bob, "q", "b2", vec![3; 10]).await?;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("limited to 1 a minute"), "{v}");
    mesh.stop().await
}

#[tokio::test]
async fn quotas_hold_per_room_and_per_user() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.files.room_quota_bytes = 100 * KIB;
    config.files.user_quota_bytes = 60 * KIB;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "q", "public").await?;
    api.call(
        "POST",
        "/v1/rooms/q/members",
        Some(&ann),
        Some(json!({"user": "bob"})),
    )
    .await?;
    let kib = |n: u64| vec![0u8; (n * KIB) as usize];
    files.stored(&ann, "q", "a1", kib(50)).await?;
    let (s, v) = files.upload(&ann, "q", "a2", kib(20)).await?;
    assert_eq!(s, 413);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("your quota"),
        "{v}"
    );
    files.stored(&bob, "q", "b1", kib(50)).await?;
    let (s, v) = files.upload(&bob, "q", "b2", kib(10)).await?;
    assert_eq!(s, 413);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("its quota"),
        "{v}"
    );
    // A reader of a public room who is not a member reads files but does not upload.
    let carl = api.user("carl").await?;
    let (s, _) = files.upload(&carl, "q", "c1", kib(1)).await?;
    assert_eq!(s, 403);

    // Empty files count 4 KiB each (a block on disk, a record in the store): a member's
    // loop of them stops at the quota instead of piling up records forever.
    let dan = api.user("dan").await?;
    api.call(
        "POST",
        "/v1/rooms/q/members",
        Some(&ann),
        Some(json!({"user": "dan"})),
    )
    .await?;
    let addr = mesh.url().trim_start_matches("http://").to_owned();
    let mut stored = 0;
    let refused = loop {
        let empty = format!(
            "POST /v1/rooms/q/files?name=e{stored} HTTP/1.1\r\nhost: x\r\n\
             authorization: Bearer {dan}\r\ncontent-length: 0\r\n\r\n"
        );
        let code = raw(&addr, empty.as_bytes(), Duration::from_millis(1)).await?;
        if code != 201 {
            break code;
        }
        stored += 1;
        assert!(stored <= 100, "100 empty files and no end");
    };
    assert_eq!(refused, 413);
    assert_eq!(stored, 0, "the room had no 4 KiB left: {stored} stored");
    mesh.stop().await
}

#[tokio::test]
async fn the_sweeper_deletes_unattached_and_trimmed_files() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.files.sweep_interval_secs = 1;
    config.files.unattached_grace_secs = 3;
    config.worker.retention.max_messages = 1;
    config.worker.retention.interval_ms = 50;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let ann = api.user("ann").await?;
    api.room(&ann, "s", "private").await?;
    let lonely = files
        .stored(&ann, "s", "lonely.txt", b"nobody attaches me".to_vec())
        .await?;
    let kept = files.stored(&ann, "s", "kept.png", png(10, 10)).await?;
    let (lonely, kept) = (lonely["id"].as_str().unwrap(), kept["id"].as_str().unwrap());
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("s").await?;
    let ack = a
        .request_json(send_with("s", "m1", "look", &[kept]))
        .await?;
    assert!(matches!(ack, ServerFrame::Ack { .. }), "{ack:?}");
    files.thumbnail_ready(&ann, "s", kept).await?;

    // The unattached file goes after its grace; the attached one stays.
    let gone = |id| files.gone(&ann, "s", id);
    assert!(gone(lonely).await?, "the unattached file was not swept");
    assert_eq!(files.get(&ann, "s", kept, "", None).await?.status(), 200);
    let objects = files_under(&dir.path().join("files"));
    assert_eq!(
        objects.len(),
        2,
        "the kept file and its thumbnail: {objects:?}"
    );

    // Retention keeps one message: two more trim the one that carries it.
    a.post("s", "m2", "one").await?;
    a.post("s", "m3", "two").await?;
    assert!(
        gone(kept).await?,
        "the trimmed message's file was not swept"
    );
    let left = files_under(&dir.path().join("files"));
    assert!(left.is_empty(), "left behind: {left:?}");
    mesh.stop().await
}

#[tokio::test]
async fn the_rust_sdk_uploads_attaches_and_downloads() -> Result<()> {
    use chatmesh_client::{Client as Sdk, Event, Http};
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "sdk", "private").await?;
    let mut client = Sdk::builder(mesh.url()).token(&ann).connect().await?;
    let mut events = client.events().expect("first call");
    client.join("sdk").await?;
    let http: Http = client.http();
    let info = http
        .upload("sdk", "notes.txt", b"plain notes\n".to_vec())
        .await?;
    assert_eq!(info.content_type, "text/plain; charset=utf-8");
    client
        .send_files("sdk", "my notes", std::slice::from_ref(&info.id))
        .await?;
    let message = loop {
        match tokio::time::timeout(Duration::from_secs(15), events.recv()).await? {
            Some(Event::Message(m)) => break m,
            Some(_) => continue,
            None => anyhow::bail!("events ended"),
        }
    };
    assert_eq!(message.attachments, vec![info.attachment()]);
    assert_eq!(http.download("sdk", &info.id).await?, b"plain notes\n");
    mesh.stop().await
}

/// `[files] enabled = false`: the endpoints and attachments say so; chat goes on.
#[tokio::test]
async fn file_sharing_can_be_turned_off() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.files.enabled = false;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let ann = api.user("ann").await?;
    api.room(&ann, "off", "private").await?;
    let (s, v) = files.upload(&ann, "off", "a.txt", b"x".to_vec()).await?;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{v}"
    );
    let forged = format!("f{}", "0".repeat(32));
    assert_eq!(
        files.get(&ann, "off", &forged, "", None).await?.status(),
        503
    );
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("off").await?;
    let f = a
        .request_json(send_with("off", "m1", "x", &[&forged]))
        .await?;
    assert_eq!(error_code(&f), Some(ErrorCode::Unavailable));
    a.post("off", "m2", "plain chat").await?;
    assert!(
        !dir.path().join("files").exists(),
        "no files folder when off"
    );
    mesh.stop().await
}

/// A download whose client stops reading is cut once its body has made no progress for
/// `body_write_timeout_ms`: the connection (and the file it streams) is not held forever.
#[tokio::test]
async fn a_download_nobody_reads_is_cut() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.body_write_timeout_ms = 1_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let files = Files::new(&mesh.url());
    let ann = api.user("ann").await?;
    api.room(&ann, "box", "private").await?;
    // Far more than the socket buffers on both sides and hyper's own can hold.
    let size = 32 * 1024 * KIB as usize;
    let info = files
        .stored(&ann, "box", "big.bin", vec![9u8; size])
        .await?;
    let id = info["id"].as_str().unwrap_or_default();

    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(16 * 1024)?;
    let addr = mesh.url().trim_start_matches("http://").to_owned();
    let mut s = socket.connect(addr.parse()?).await?;
    let get = format!(
        "GET /v1/rooms/box/files/{id} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ann}\r\n\r\n"
    );
    s.write_all(get.as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The client reads nothing for three times the timeout, then all it can.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = n;
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => got += n,
            }
        }
    };
    let ended = tokio::time::timeout(Duration::from_secs(30), read_all).await;
    assert_eq!(ended, Ok(true), "the server closed the connection");
    assert!(
        got < size,
        "the body was cut: {got} bytes of {size} came (headers included)"
    );
    mesh.stop().await
}
