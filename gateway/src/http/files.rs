//! Shared files over HTTP (docs/PROTOCOL.md, "Files"): `POST /v1/rooms/{room}/files`
//! streams an upload into object storage, `GET .../files/{id}` serves it (one byte range, or
//! a redirect to a presigned URL), `.../thumbnail` and `.../info` the rest.
//!
//! An upload is judged before a byte of it is stored: the caller may post, the declared
//! `Content-Length` fits the size cap and the worker reserves it against the quotas; then
//! the first bytes (up to `sniff::HEAD_BYTES`) are read and sniffed. Whatever goes wrong
//! after the reservation (bad bytes, a short body, a stalled client, storage trouble) aborts
//! the multipart upload and gives the reservation back, so nothing partial is ever visible.
//! Every download checks the reader's access to the room first (so a removed member loses
//! access at once).

use std::ops::Range;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{
    HeaderValue, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, RANGE, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Request, Response, StatusCode};

use chatmesh_files::object_store::path::Path as ObjectPath;
use chatmesh_files::sniff::{self, is_inline_image, HEAD_BYTES};
use chatmesh_files::{FilesError, Upload};
use chatmesh_protocol::files::{
    new_file_id, validate_file_id, validate_file_name, FileBeginRequest, FileCommitRequest,
    FileInfo, FileRequest, Thumbnail,
};
use chatmesh_protocol::service::{FileAbort, FileBegin, FileCommit, FileGet};
use chatmesh_protocol::{ApiError, ErrorCode};

use super::reply::{self, Body};
use super::request::{caller, name, Answer, Refusal};
use crate::files::{
    upload_deadline, GatewayFiles, NoSlot, UploadSlot, MAX_UPLOADS_PER_USER,
    MIN_UPLOAD_BYTES_PER_SEC,
};
use crate::state::AppState;

/// Which part of a file a GET asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Bytes,
    Thumbnail,
    Info,
}

fn enabled(state: &AppState) -> Result<&GatewayFiles, ApiError> {
    state
        .files
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("file sharing is not enabled on this gateway"))
}

pub(super) async fn upload(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let files = enabled(state)?;
    let actor = caller(state, &req).await?;
    name("room", room)?;
    let file_name = upload_name(&req)?;
    let access = state.access.get(room, &actor).await?;
    if !access.can_post() {
        return Err(ApiError::forbidden("only members may share files in this room").into());
    }
    // A file is shared to be sent: who may not send may not fill the room's quota either.
    if access.muted(crate::auth::now_secs()) {
        return Err(ApiError::forbidden("muted in this room").into());
    }
    if access.blocked {
        return Err(ApiError::forbidden("the other member of this DM has blocked you").into());
    }
    let size = declared_length(&req)?;
    if size > files.cfg.max_file_bytes {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "the file has {size} bytes; at most {} are accepted",
                files.cfg.max_file_bytes
            ),
        )
        .into());
    }
    // A trusted proxy that named no client carries many: it is not counted as one address.
    let ip = super::client_ip(&req);
    let ip = (!state.cfg.trusted_proxies.contains(&ip)).then_some(ip);
    let slot = match files.upload_slot(&actor, ip).await {
        Ok(slot) => slot,
        Err(why) => {
            let (what, message) = match why {
                NoSlot::Gateway => (
                    "uploads",
                    "too many uploads in progress on this gateway, retry shortly".to_owned(),
                ),
                NoSlot::User => (
                    "uploads_per_user",
                    format!(
                        "you have {MAX_UPLOADS_PER_USER} uploads in progress; retry when one ends"
                    ),
                ),
                NoSlot::Address => (
                    "uploads_per_address",
                    format!(
                        "{} uploads are in progress from your address; retry when one ends",
                        files.cfg.uploads_per_address
                    ),
                ),
                NoSlot::Starts(wait) => {
                    metrics::counter!("chatmesh_throttled_total", "what" => "upload_starts")
                        .increment(1);
                    let message = format!(
                        "upload starts from your address are limited to {} a minute; retry in {} ms",
                        files.cfg.upload_starts_per_minute,
                        wait.as_millis().max(1)
                    );
                    return Err(Refusal::rate_limited(message, wait));
                }
            };
            metrics::counter!("chatmesh_throttled_total", "what" => what).increment(1);
            return Err(ApiError::new(ErrorCode::RateLimited, message).into());
        }
    };
    let id = new_file_id();
    let begin = FileBeginRequest {
        room: room.to_owned(),
        id: id.clone(),
        actor,
        name: file_name.clone(),
        size,
    };
    state.services.ask::<FileBegin>(room, &begin).await?;
    let idle = Duration::from_millis(state.cfg.body_read_timeout_ms);
    let path = files.store.object(room, &id);
    let body = req.into_body();
    let received = receive(
        files,
        &slot,
        &path,
        &file_name,
        body,
        size,
        idle,
        &state.drain,
    )
    .await;
    // The slot is free from here: a cut upload's successor is waiting for it.
    drop(slot);
    match received {
        Ok(sniffed) => {
            let commit = FileCommitRequest {
                room: room.to_owned(),
                id: id.clone(),
                content_type: sniffed.content_type.to_owned(),
                width: sniffed.dimensions.map(|d| d.0),
                height: sniffed.dimensions.map(|d| d.1),
            };
            match state.services.call::<FileCommit>(room, &commit).await {
                Ok(Ok(info)) => {
                    metrics::counter!("chatmesh_file_uploads_total", "outcome" => "stored")
                        .increment(1);
                    metrics::counter!("chatmesh_file_upload_bytes_total").increment(size);
                    Ok(reply::json(201, &info))
                }
                // The worker answered no: nothing was committed, nothing will be.
                Ok(Err(e)) => {
                    give_up(state, files, room, &id).await;
                    Err(e.into())
                }
                // No answer in time: the worker may have committed it all the same.
                Err(e) => {
                    tracing::warn!(op = "file_commit", error = %crate::error::Chain(&e), "worker service call failed");
                    give_up_unknown(state, files, room, &id).await;
                    Err(e.api().into())
                }
            }
        }
        Err(e) => {
            metrics::counter!("chatmesh_file_uploads_total", "outcome" => "refused").increment(1);
            give_up(state, files, room, &id).await;
            Err(e.into())
        }
    }
}

/// Streams the body into the store; the sniffed type once all of it is stored. A drain
/// (`drain`) ends it at once, aborted: the connection is dropped soon after, and a dropped
/// upload would leave its multipart parts in the bucket and its reservation held until
/// `upload_timeout_secs`.
#[allow(clippy::too_many_arguments)]
async fn receive(
    files: &GatewayFiles,
    slot: &UploadSlot,
    path: &ObjectPath,
    file_name: &str,
    mut body: Incoming,
    size: u64,
    idle: Duration,
    drain: &tokio_util::sync::CancellationToken,
) -> Result<sniff::Sniffed, ApiError> {
    let head_len = usize::try_from(size).map_or(HEAD_BYTES, |s| s.min(HEAD_BYTES));
    let mut head = BytesMut::with_capacity(head_len);
    let mut received = 0u64;
    let mut upload: Option<(Upload, sniff::Sniffed)> = None;
    let started = tokio::time::Instant::now();
    loop {
        // What has arrived must keep up with the minimum rate all along, not only on the
        // whole: a byte every few seconds would otherwise hold an upload slot for hours.
        let due = started + upload_deadline(received, idle);
        let wait = idle.min(due.saturating_duration_since(tokio::time::Instant::now()));
        // Only this wait counts when the slots judge the upload, not the store's writes.
        slot.waiting();
        let next = tokio::select! {
            biased;
            () = drain.cancelled() => {
                slot.idle();
                abort(upload).await;
                return Err(ApiError::unavailable(
                    "the gateway is shutting down: send the upload again",
                ));
            }
            () = slot.cut() => {
                slot.idle();
                abort(upload).await;
                return Err(ApiError::unavailable(format!(
                    "every upload slot of this gateway was taken and this upload was the \
                     slowest ({} bytes a second): it gave its slot to another; send it again",
                    slot.rate()
                )));
            }
            next = tokio::time::timeout(wait, body.frame()) => next,
        };
        slot.idle();
        let frame = match next {
            Err(_) if wait < idle => {
                abort(upload).await;
                return Err(ApiError::bad_request(format!(
                    "the upload arrived too slowly: {received} of its {size} bytes in {} ms \
                     (at least {MIN_UPLOAD_BYTES_PER_SEC} bytes a second are needed)",
                    started.elapsed().as_millis()
                )));
            }
            Err(_) => {
                abort(upload).await;
                return Err(ApiError::bad_request(format!(
                    "no bytes of the upload arrived for {} ms",
                    idle.as_millis()
                )));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                abort(upload).await;
                tracing::debug!(error = %e, "upload body ended early");
                return Err(ApiError::bad_request(format!(
                    "the upload ended after {received} of its {size} bytes"
                )));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received += data.len() as u64;
        slot.received(received);
        if received > size {
            abort(upload).await;
            return Err(ApiError::bad_request(
                "the body is longer than its Content-Length",
            ));
        }
        match &mut upload {
            Some((up, _)) => {
                if let Err(e) = up.write(data).await {
                    // A part the store refused: the parts already stored (up to the whole
                    // size cap) would stay in the bucket, unseen, until a lifecycle rule
                    // freed them, unless the multipart upload is aborted here. (`finish`
                    // aborts by itself when it fails; `write` does not.)
                    abort(upload.take()).await;
                    return Err(storage(e));
                }
            }
            None => {
                head.extend_from_slice(&data);
                if head.len() >= head_len {
                    upload = Some(start(files, path, file_name, head.split().freeze()).await?);
                }
            }
        }
    }
    if received != size {
        abort(upload).await;
        return Err(ApiError::bad_request(format!(
            "the upload ended after {received} of its {size} bytes"
        )));
    }
    let (up, sniffed) = match upload {
        Some(started) => started,
        // Only an empty file gets here (any other reaches its head length first).
        None => start(files, path, file_name, head.freeze()).await?,
    };
    up.finish().await.map_err(storage)?;
    Ok(sniffed)
}

/// Judges the head of an upload, then starts storing it.
async fn start(
    files: &GatewayFiles,
    path: &ObjectPath,
    file_name: &str,
    head: Bytes,
) -> Result<(Upload, sniff::Sniffed), ApiError> {
    let sniffed =
        sniff::sniff(file_name, &head).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let disposition = disposition(sniffed.content_type, file_name);
    let mut up = files
        .store
        .upload(path, sniffed.content_type, &disposition)
        .await
        .map_err(storage)?;
    if !head.is_empty() {
        if let Err(e) = up.write(head).await {
            up.abort().await;
            return Err(storage(e));
        }
    }
    Ok((up, sniffed))
}

async fn abort(upload: Option<(Upload, sniff::Sniffed)>) {
    if let Some((up, _)) = upload {
        up.abort().await;
    }
}

/// After a failed upload that was never committed: its bytes (if any made it) and its
/// reservation go.
async fn give_up(state: &AppState, files: &GatewayFiles, room: &str, id: &str) {
    delete_object(files, room, id).await;
    if let Err(e) = abort_reservation(state, room, id).await {
        // The sweeper deletes it after files.upload_timeout_secs.
        tracing::warn!(room, id, error = %e, "could not give back a failed upload's reservation");
    }
}

/// After a `file_commit` whose answer did not come: the worker may have committed the file,
/// or may yet (a request it reached before the deadline runs, however late its answer).
/// Only a `file_abort` the worker grants settles it: from then on no commit can find the
/// upload, and the bytes can go. Anything else keeps them: a committed file's record must
/// never point at deleted bytes, and what is not committed the sweeper deletes after
/// `upload_timeout_secs` (bytes included).
async fn give_up_unknown(state: &AppState, files: &GatewayFiles, room: &str, id: &str) {
    match abort_reservation(state, room, id).await {
        Ok(()) => delete_object(files, room, id).await,
        Err(e) => {
            tracing::warn!(room, id, error = %e, "an upload's commit is in doubt: its bytes are kept");
        }
    }
}

async fn delete_object(files: &GatewayFiles, room: &str, id: &str) {
    if let Err(e) = files.store.delete(&files.store.object(room, id)).await {
        tracing::warn!(room, id, error = %chatmesh_protocol::error::Chain(&e), "could not delete a failed upload");
    }
}

/// Gives an unfinished upload's reservation back (`file_abort`).
async fn abort_reservation(state: &AppState, room: &str, id: &str) -> Result<(), ApiError> {
    let req = FileRequest {
        room: room.to_owned(),
        id: id.to_owned(),
    };
    state.services.ask::<FileAbort>(room, &req).await.map(drop)
}

fn storage(e: FilesError) -> ApiError {
    tracing::warn!(error = %chatmesh_protocol::error::Chain(&e), "object storage failed");
    ApiError::unavailable("file storage is unavailable, retry later")
}

/// The `name` query parameter, percent-decoded and checked.
fn upload_name(req: &Request<Incoming>) -> Result<String, ApiError> {
    let mut found = None;
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "name" if found.is_none() => found = Some(v.into_owned()),
            "name" => return Err(ApiError::bad_request("name is given twice")),
            other => return Err(ApiError::bad_request(format!("unknown parameter {other}"))),
        }
    }
    let file_name = found.ok_or_else(|| ApiError::bad_request("the name parameter is required"))?;
    validate_file_name(&file_name)?;
    Ok(file_name)
}

fn declared_length(req: &Request<Incoming>) -> Result<u64, ApiError> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad_request("an upload needs a Content-Length header"))
}

pub(super) async fn download(
    state: &AppState,
    req: Request<Incoming>,
    room: &str,
    id: &str,
    part: Part,
) -> Answer {
    let files = enabled(state)?;
    let user = caller(state, &req).await?;
    name("room", room)?;
    validate_file_id(id)?;
    if !state.access.get(room, &user).await?.can_read() {
        return Err(ApiError::forbidden("only members may read this room's files").into());
    }
    let get = FileRequest {
        room: room.to_owned(),
        id: id.to_owned(),
    };
    let info = state.services.ask::<FileGet>(room, &get).await?;
    match part {
        Part::Info => Ok(reply::json(200, &info)),
        Part::Thumbnail => thumbnail(files, &info).await,
        Part::Bytes => bytes(files, &req, &info).await,
    }
}

async fn thumbnail(files: &GatewayFiles, info: &FileInfo) -> Answer {
    if info.thumbnail != Thumbnail::Ready {
        let why = match info.thumbnail {
            Thumbnail::Pending => "the thumbnail is not made yet",
            Thumbnail::Failed => "the image could not be decoded for a thumbnail",
            _ => "the file is not an image",
        };
        return Err(ApiError::not_found(why).into());
    }
    let got = files
        .store
        .get(&files.store.thumbnail(&info.room, &info.id), None)
        .await
        .map_err(|e| match e {
            FilesError::NotFound => ApiError::not_found("no thumbnail"),
            e => storage(e),
        })?;
    let len = got.meta.size;
    let mut resp = stream(got.into_stream(), 200);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("image/png"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    safe_headers(h, "inline".into());
    Ok(resp)
}

async fn bytes(files: &GatewayFiles, req: &Request<Incoming>, info: &FileInfo) -> Answer {
    let path = files.store.object(&info.room, &info.id);
    if files.cfg.redirect && !proxied(req)? {
        let valid = Duration::from_secs(files.cfg.redirect_secs);
        if let Some(url) = files.store.presigned(&path, valid).await.map_err(storage)? {
            let mut resp = reply::empty(302);
            if let Ok(v) = HeaderValue::from_str(&url) {
                resp.headers_mut().insert(LOCATION, v);
            }
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Ok(resp);
        }
    }
    let range = match req.headers().get(RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(spec) => match parse_range(spec, info.size) {
            Some(r) => Some(r),
            None => {
                let mut resp = reply::error(&ApiError::bad_request("range not satisfiable"));
                *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", info.size)) {
                    resp.headers_mut().insert(CONTENT_RANGE, v);
                }
                return Ok(resp);
            }
        },
    };
    let got = files
        .store
        .get(&path, range.clone().filter(|r| !r.is_empty()))
        .await
        .map_err(|e| match e {
            FilesError::NotFound => ApiError::not_found("no such file"),
            e => storage(e),
        })?;
    let (status, len) = match &range {
        Some(r) => (206, r.end - r.start),
        None => (200, got.meta.size),
    };
    let mut resp = stream(got.into_stream(), status);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&info.content_type) {
        h.insert(CONTENT_TYPE, v);
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(r) = &range {
        let spec = format!(
            "bytes {}-{}/{}",
            r.start,
            r.end.saturating_sub(1),
            info.size
        );
        if let Ok(v) = HeaderValue::from_str(&spec) {
            h.insert(CONTENT_RANGE, v);
        }
    }
    safe_headers(h, disposition(&info.content_type, &info.name));
    metrics::counter!("chatmesh_file_downloads_total").increment(1);
    Ok(resp)
}

/// `?proxy=1`: the bytes through the gateway even with `redirect` on (a web page's CSP
/// and the bucket's CORS need not allow the store's origin).
fn proxied(req: &Request<Incoming>) -> Result<bool, ApiError> {
    let mut proxy = false;
    for (k, v) in super::request::query_pairs(req) {
        match (k, v) {
            ("proxy", "1" | "true") => proxy = true,
            ("proxy", "0" | "false") => proxy = false,
            ("proxy", _) => return Err(ApiError::bad_request("proxy must be 1 or 0")),
            (other, _) => return Err(ApiError::bad_request(format!("unknown parameter {other}"))),
        }
    }
    Ok(proxy)
}

/// The headers that keep a shared file from acting as a page of the gateway's origin, and
/// out of the browser's cache: a cached copy would be served without the room's access
/// check (to the next user of a shared browser, or to a member removed since).
fn safe_headers(h: &mut hyper::HeaderMap, disposition: String) {
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(CONTENT_DISPOSITION, v);
    }
}

/// `inline` for images browsers may show, else `attachment` with the name (RFC 6266/8187).
fn disposition(content_type: &str, file_name: &str) -> String {
    let kind = if is_inline_image(content_type) {
        "inline"
    } else {
        "attachment"
    };
    let ascii: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = form_urlencoded::byte_serialize(file_name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// One range of `bytes=A-B`, `bytes=A-` or `bytes=-N` within `size`; `None` when it cannot
/// be satisfied (or is not one range of bytes).
fn parse_range(spec: &str, size: u64) -> Option<Range<u64>> {
    let spec = spec.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>().ok()?.saturating_add(1).min(size)
        };
        start..end
    };
    (range.start < range.end && range.end <= size).then_some(range)
}

/// A response streaming `chunks`; a storage error ends the body early, which the client sees
/// as a body shorter than its `Content-Length`.
fn stream(
    chunks: futures::stream::BoxStream<'static, chatmesh_files::object_store::Result<Bytes>>,
    status: u16,
) -> Response<Body> {
    let frames = chunks
        .take_while(|r| {
            if let Err(e) = r {
                tracing::warn!(error = %e, "object storage failed while serving a file");
            }
            std::future::ready(r.is_ok())
        })
        .filter_map(|r| std::future::ready(r.ok().map(|b| Ok(Frame::data(b)))));
    // Response bodies are Sync; an object store's stream is only Send.
    let frames = sync_wrapper::SyncStream::new(frames);
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Some(90..100));
        assert_eq!(parse_range("bytes=-5", 100), Some(95..100));
        assert_eq!(parse_range("bytes=95-200", 100), Some(95..100));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-4", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=-0", 100), None);
    }

    #[test]
    fn dispositions() {
        assert_eq!(
            disposition("application/pdf", "Q3 \"final\".pdf"),
            "attachment; filename=\"Q3 _final_.pdf\"; filename*=UTF-8''Q3%20%22final%22.pdf"
        );
        assert!(disposition("image/png", "cat.png").starts_with("inline;"));
        assert!(disposition("text/html", "x.html").starts_with("attachment;"));
    }
}
