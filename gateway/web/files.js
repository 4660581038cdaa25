// chatmesh web client — files.js: the bytes of shared files (the files extension of
// protocol v1). Uploads go with XMLHttpRequest, since fetch reports no upload progress;
// thumbnails, full images and downloads are fetched with the bearer token (an <img src> or a
// link cannot send one) and handed to the page as blob: URLs, which the CSP allows for
// images. Also the one place that words file errors for people. The DOM is attachments.js's
// and uploads.js's; this module only makes the invisible link a download needs.
"use strict";

import { ApiError } from "./api.js";

/** What the server makes thumbnails of (and reports width and height for). */
const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
/** Waits between tries while a thumbnail is still being made (about 15 s in all). */
const THUMBNAIL_WAITS_MS = [250, 500, 1000, 1500, 2500, 4000, 5000];
/** A download's blob URL is kept this long: revoking it at once can cut the download. */
const DOWNLOAD_URL_MS = 60_000;

const thumbnails = new Map(); // file id -> Promise<blob URL | null>

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function isImage(attachment) {
  return IMAGE_TYPES.has(attachment.content_type);
}

/** The attachment record a message carries, from a file's info. */
export function attachmentOf(info) {
  const a = { id: info.id, name: info.name, size: info.size, content_type: info.content_type };
  if (typeof info.width === "number") a.width = info.width;
  if (typeof info.height === "number") a.height = info.height;
  return a;
}

/** Why a file request failed, for people. */
export function fileError(e) {
  if (!(e instanceof ApiError)) return (e && e.message) || String(e);
  switch (e.status) {
    case 0: return e.code === "aborted" ? "cancelled" : "cannot reach the server";
    case 400: return e.message || "the server refused this file";
    case 403: return "you may not share or see files in this room";
    case 404: return "the file (or the room) no longer exists";
    case 413: return `too large: ${e.message && e.message !== e.code ? e.message : "over the size limit or the room's quota"}`;
    case 429: return "too many requests; try again in a moment";
    default: return e.message || e.code;
  }
}

/** The ChatmeshError of an XMLHttpRequest answer that is not a success. */
function xhrError(xhr) {
  let err = {};
  try {
    const data = JSON.parse(xhr.responseText);
    if (data && data.error && typeof data.error === "object") err = data.error;
  } catch (_) {
    // no JSON body: the status says it
  }
  const retry = Number(xhr.getResponseHeader("retry-after"));
  return new ApiError(
    typeof err.code === "string" ? err.code : `http_${xhr.status}`,
    typeof err.message === "string" && err.message ? err.message : `HTTP ${xhr.status}`,
    { status: xhr.status, retryAfter: retry > 0 ? retry : undefined },
  );
}

/**
 * Uploads `file` (a File) to `room` with the token of `api` (api.js). `onProgress(loaded,
 * total)` follows the bytes sent. Returns {promise, abort}: the promise resolves to the
 * file's info, or rejects with an ApiError (`aborted` after abort(), `network` with status 0
 * when the server cannot be reached). A 401 ends the session through the api.
 */
export function upload(api, room, file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open("POST", `/v1/rooms/${encodeURIComponent(room)}/files?name=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader("Authorization", `Bearer ${api.token}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (ev) => onProgress(ev.loaded, ev.lengthComputable ? ev.total : file.size);
    xhr.onload = () => {
      if (xhr.status < 200 || xhr.status > 299) {
        if (xhr.status === 401) api.onUnauthorized();
        reject(xhrError(xhr));
        return;
      }
      try {
        resolve(JSON.parse(xhr.responseText));
      } catch (_) {
        reject(new ApiError("protocol", "the upload's answer is not JSON", { status: xhr.status }));
      }
    };
    xhr.onerror = () => reject(new ApiError("network", "cannot reach the server", { status: 0 }));
    xhr.onabort = () => reject(new ApiError("aborted", "cancelled", { status: 0 }));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

/**
 * A blob URL of the file's thumbnail, or null when it has none (not an image, could not be
 * decoded, or still not made after ~15 s). While the thumbnail answers 404 and the info says
 * `pending`, it is asked for again with a growing wait. One request chain per file.
 */
export function thumbnailUrl(api, room, id) {
  let p = thumbnails.get(id);
  if (!p) {
    p = loadThumbnail(api, room, id);
    thumbnails.set(id, p);
    p.catch(() => thumbnails.delete(id)); // a network failure is tried again next time
  }
  return p;
}

async function loadThumbnail(api, room, id) {
  for (let attempt = 0; ; attempt++) {
    try {
      const got = await api.thumbnail(room, id);
      return URL.createObjectURL(got.blob);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404) throw e;
    }
    let info;
    try {
      info = await api.fileInfo(room, id);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null; // the file is gone
      throw e;
    }
    // "ready" too: the worker may finish between the two requests.
    if ((info.thumbnail !== "pending" && info.thumbnail !== "ready") || attempt >= THUMBNAIL_WAITS_MS.length) return null;
    await sleep(THUMBNAIL_WAITS_MS[attempt]);
  }
}

/** A blob URL of the whole file (for the image viewer); the caller revokes it. */
export async function fileUrl(api, room, id) {
  const got = await api.download(room, id);
  return URL.createObjectURL(got.blob);
}

/** Downloads the file to the user's disk under its name. */
export async function saveFile(api, room, attachment) {
  const url = await fileUrl(api, room, attachment.id);
  const link = document.createElement("a");
  link.href = url;
  link.download = attachment.name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), DOWNLOAD_URL_MS);
}

/** Forgets every thumbnail (at logout: the next user must not see them). */
export function forgetFiles() {
  for (const p of thumbnails.values()) {
    p.then((url) => url && URL.revokeObjectURL(url), () => {});
  }
  thumbnails.clear();
}
