// chatmesh web client — uploads.js: the files of the message being written. They come from
// the attach button, a drop on the conversation or a paste into the message box; each is
// uploaded at once (files.js) into the room shown, with a progress bar in the tray above the
// composer, and the next send takes those finished as its attachments (at most 10). A file
// the server refuses stays in the tray with the reason until it is removed.
"use strict";

import { MAX_ATTACHMENTS } from "./chatmesh.js";
import { $, h, show } from "./dom.js";
import { attachmentOf, fileError, upload } from "./files.js";
import { humanSize } from "./format.js";
import { app } from "./state.js";

let nextKey = 1;

/** Starts uploading `files` (a FileList or File[]) into room `r`. */
export function addFiles(r, files) {
  if (!r || !r.member) return;
  for (const file of Array.from(files)) {
    const u = { key: nextKey++, name: file.name, size: file.size, loaded: 0, state: "uploading", info: null, error: null, abort: null, node: null };
    r.uploads.push(u);
    if (r.uploads.filter((x) => x.state !== "failed").length > MAX_ATTACHMENTS) {
      fail(u, `at most ${MAX_ATTACHMENTS} files go with one message; send these first`);
      continue;
    }
    const started = upload(app.api, r.id, file, (loaded, total) => {
      u.loaded = Math.min(loaded, total);
      u.size = total || u.size;
      update(u);
    });
    u.abort = started.abort;
    started.promise.then((info) => {
      u.state = "done";
      u.info = info;
      u.loaded = u.size;
      update(u);
    }, (e) => {
      if (e.code !== "aborted") fail(u, fileError(e));
    });
  }
  renderUploads();
}

function fail(u, why) {
  u.state = "failed";
  u.error = why;
  update(u);
}

/** True while a file of `r` is still on its way. */
export function uploading(r) {
  return r.uploads.some((u) => u.state === "uploading");
}

/** Takes the finished uploads of `r` out of the tray: their attachment records. */
export function takeUploads(r) {
  const done = r.uploads.filter((u) => u.state === "done").slice(0, MAX_ATTACHMENTS);
  r.uploads = r.uploads.filter((u) => !done.includes(u));
  renderUploads();
  return done.map((u) => attachmentOf(u.info));
}

function remove(r, u) {
  if (u.state === "uploading" && u.abort) u.abort();
  const i = r.uploads.indexOf(u);
  if (i < 0) return;
  r.uploads.splice(i, 1);
  renderUploads();
  // Focus stays in the tray (the next file's remove button) or goes back to the composer.
  const next = r.uploads[Math.min(i, r.uploads.length - 1)];
  (next && next.node ? next.node.querySelector("button") : $("message-input")).focus();
}

// ---------------------------------------------------------------------------------------
// The tray: one item per file, built once and updated in place (so focus survives progress)

function itemOf(r, u) {
  if (u.node) return u.node;
  const progress = h("progress", { max: 1, value: 0, attrs: { "aria-label": `Uploading ${u.name}` }, dataset: { testid: "upload-progress" } });
  const removeButton = h("button", { type: "button", className: "icon", textContent: "✕", attrs: { "aria-label": `Remove ${u.name}` } });
  removeButton.addEventListener("click", () => remove(r, u));
  u.node = h(
    "li",
    { className: "upload", dataset: { testid: "upload-item", key: String(u.key) } },
    h("span", { className: "upload-name", textContent: u.name, title: u.name }),
    h("span", { className: "upload-size muted small" }),
    progress,
    h("span", { className: "upload-state small" }),
    removeButton,
  );
  update(u);
  return u.node;
}

function update(u) {
  const node = u.node;
  if (!node) return;
  node.dataset.state = u.state;
  node.querySelector(".upload-size").textContent = humanSize(u.size);
  const progress = node.querySelector("progress");
  progress.max = Math.max(1, u.size);
  progress.value = u.state === "done" ? progress.max : u.loaded;
  show(progress, u.state === "uploading");
  const state = node.querySelector(".upload-state");
  state.classList.toggle("error", u.state === "failed");
  if (u.state === "failed") state.setAttribute("role", "alert");
  state.textContent = u.state === "uploading" ? `${Math.floor((100 * u.loaded) / Math.max(1, u.size))}%`
    : u.state === "done" ? "ready to send" : `not uploaded: ${u.error}`;
  node.querySelector("button").setAttribute("aria-label", `${u.state === "uploading" ? "Cancel" : "Remove"} ${u.name}`);
}

/** Draws the tray of the room shown. */
export function renderUploads() {
  const r = app.current;
  const list = $("upload-list");
  const items = r ? r.uploads.map((u) => itemOf(r, u)) : [];
  list.replaceChildren(...items);
  show(list, items.length > 0);
  $("attach-button").disabled = !r || !r.member;
}

// ---------------------------------------------------------------------------------------
// Where files come from

function hasFiles(ev) {
  return !!ev.dataTransfer && Array.from(ev.dataTransfer.types || []).includes("Files");
}

/** Wires the attach button, drag and drop onto the conversation, and pasting files. */
export function initUploads() {
  const input = $("file-input");
  $("attach-button").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    addFiles(app.current, input.files);
    input.value = "";
  });
  const pane = $("room-pane");
  let depth = 0; // dragenter/leave pairs of the children
  const accepts = (ev) => hasFiles(ev) && app.current && app.current.member;
  pane.addEventListener("dragenter", (ev) => {
    if (!accepts(ev)) return;
    ev.preventDefault();
    depth += 1;
    pane.classList.add("drop-target");
  });
  pane.addEventListener("dragover", (ev) => {
    if (!accepts(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = "copy";
  });
  pane.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) pane.classList.remove("drop-target");
  });
  pane.addEventListener("drop", (ev) => {
    depth = 0;
    pane.classList.remove("drop-target");
    if (!accepts(ev)) return;
    ev.preventDefault();
    addFiles(app.current, ev.dataTransfer.files);
  });
  // A file dropped anywhere else must not replace the page.
  for (const type of ["dragover", "drop"]) {
    document.addEventListener(type, (ev) => {
      if (hasFiles(ev)) ev.preventDefault();
    });
  }
  $("message-input").addEventListener("paste", (ev) => {
    const files = ev.clipboardData ? Array.from(ev.clipboardData.files || []) : [];
    if (!files.length || !app.current || !app.current.member) return;
    ev.preventDefault();
    addFiles(app.current, files);
  });
}
