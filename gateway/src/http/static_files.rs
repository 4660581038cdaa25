//! The web client: static files with no build step, compiled into the binary (or read from
//! `gateway.web_root` when set, for development), served with a strict CSP. `/chatmesh.js` is
//! the JavaScript client package (clients/js), which the page's modules import.
//!
//! **Cacheable anywhere.** Every file is also served under `/assets/{version}/`, where the
//! version is a content hash of all built-in files, with `Cache-Control: immutable` for a
//! year: the page (`/`, never cached: `no-cache`) loads its script and style from there, and
//! the modules import each other by relative paths, so a CDN or a regional cache can keep
//! them forever and a new build is a new name. Another version's path answers 404 (a cache
//! must not keep old names for new bytes). The unversioned paths still work (`no-cache`).

use std::sync::LazyLock;

use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use hyper::Response;
use sha2::{Digest, Sha256};

use super::reply::{self, Body};
use crate::state::AppState;

// `blob:` images: thumbnails and full images of shared files are fetched with the bearer token
// and shown from blob URLs (an `<img src>` cannot send the token).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// (path, content type, contents) of every built-in file.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "/api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/api.js"),
    ),
    (
        "/socket.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/socket.js"),
    ),
    (
        "/state.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/state.js"),
    ),
    (
        "/render.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/render.js"),
    ),
    (
        "/dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/dom.js"),
    ),
    (
        "/markdown.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/markdown.js"),
    ),
    (
        "/format.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/format.js"),
    ),
    (
        "/people.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/people.js"),
    ),
    (
        "/notify.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/notify.js"),
    ),
    (
        "/account.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/account.js"),
    ),
    (
        "/invites.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/invites.js"),
    ),
    (
        "/layout.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/layout.js"),
    ),
    (
        "/files.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/files.js"),
    ),
    (
        "/uploads.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/uploads.js"),
    ),
    (
        "/changes.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/changes.js"),
    ),
    (
        "/complete.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/complete.js"),
    ),
    (
        "/search.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/search.js"),
    ),
    (
        "/events.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/events.js"),
    ),
    (
        "/moderate.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/moderate.js"),
    ),
    (
        "/threads.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/threads.js"),
    ),
    (
        "/attachments.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/attachments.js"),
    ),
    (
        "/push.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/push.js"),
    ),
    // The service worker: at the root, so that its scope (`/`) covers the whole page.
    (
        "/sw.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/sw.js"),
    ),
    (
        "/chatmesh.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../clients/js/chatmesh.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
];

/// Where versioned files are served: `/assets/{version}/{file}`.
const ASSETS: &str = "/assets/";
/// Versioned files: the name changes with the contents.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else: asked again each time (a 200 or a cheap revalidation).
const NO_CACHE: &str = "no-cache";

/// The version of the built-in files: 16 hex digits of the SHA-256 of them all.
pub fn version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        let mut hash = Sha256::new();
        for (path, _, contents) in FILES {
            hash.update(path.as_bytes());
            hash.update((contents.len() as u64).to_le_bytes());
            hash.update(contents.as_bytes());
        }
        hex::encode(&hash.finalize()[..8])
    });
    &VERSION
}

/// The page, loading its script and style from the versioned path.
fn index(html: &str) -> String {
    let base = format!("{ASSETS}{}/", version());
    html.replace("href=\"/style.css\"", &format!("href=\"{base}style.css\""))
        .replace("src=\"/app.js\"", &format!("src=\"{base}app.js\""))
}

pub async fn serve(state: &AppState, path: &str) -> Response<Body> {
    let path = if path == "/" { "/index.html" } else { path };
    let (path, cache) = match path.strip_prefix(ASSETS) {
        Some(rest) => match rest.split_once('/') {
            Some((v, file)) if v == version() && !file.contains('/') => {
                (&rest[v.len()..], IMMUTABLE)
            }
            _ => return reply::error(&chatmesh_protocol::ApiError::not_found("no such file")),
        },
        None => (path, NO_CACHE),
    };
    let Some((name, content_type, builtin)) = FILES.iter().find(|(p, _, _)| *p == path) else {
        return reply::error(&chatmesh_protocol::ApiError::not_found("no such file"));
    };
    let body = match &state.cfg.web_root {
        Some(root) => match tokio::fs::read(root.join(name.trim_start_matches('/'))).await {
            Ok(bytes) => bytes,
            Err(_) => builtin.as_bytes().to_vec(),
        },
        None => builtin.as_bytes().to_vec(),
    };
    let body = match *name {
        "/index.html" => index(&String::from_utf8_lossy(&body)).into_bytes(),
        _ => body,
    };
    // A development web_root changes files under the same version: never cached.
    let cache = if state.cfg.web_root.is_some() {
        NO_CACHE
    } else {
        cache
    };
    let mut resp = super::full(200, content_type, body);
    let headers = resp.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_files_from_the_versioned_path() {
        let page = index(FILES[0].2);
        let v = version();
        assert_eq!(v.len(), 16);
        assert!(
            page.contains(&format!("src=\"/assets/{v}/app.js\"")),
            "{page}"
        );
        assert!(
            page.contains(&format!("href=\"/assets/{v}/style.css\"")),
            "{page}"
        );
    }

    #[test]
    fn modules_import_each_other_by_relative_paths() {
        // An absolute import would leave the versioned path (and its cache headers).
        for (path, _, contents) in FILES.iter().filter(|(p, _, _)| p.ends_with(".js")) {
            for line in contents.lines() {
                let t = line.trim_start();
                if t.starts_with("import ") || t.starts_with("export ") {
                    assert!(!t.contains(" from \"/"), "{path}: {line}");
                }
            }
        }
    }

    #[test]
    fn every_file_of_the_web_folder_is_served() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
        for entry in std::fs::read_dir(dir).expect("gateway/web") {
            let name = entry.expect("an entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                FILES
                    .iter()
                    .any(|(p, _, _)| p.trim_start_matches('/') == name),
                "gateway/web/{name} is not in FILES"
            );
        }
    }
}
