// chatmesh web client — attachments.js: the files a message carries, as the page shows
// them: images (PNG, JPEG, GIF, WebP) as thumbnails that open the full image in a dialog,
// everything else as a download button with the name and size. Bytes come through files.js
// as blob: URLs; a failed download says why next to the file (or in the dialog).
"use strict";

import { $, h, show } from "./dom.js";
import { fileError, fileUrl, isImage, saveFile, thumbnailUrl } from "./files.js";
import { humanSize } from "./format.js";
import { app } from "./state.js";

/** Thumbnails are at most this many pixels a side (the server's size). */
const THUMB_PX = 320;

const viewer = { room: null, attachment: null, opener: null, url: null };

/** The list of `attachments` of a message of `room`. */
export function attachmentList(room, attachments) {
  return h(
    "ul",
    { className: "attachments", dataset: { testid: "attachments" }, attrs: { "aria-label": "Files" } },
    ...attachments.map((a) => (isImage(a) ? imageItem(room, a) : fileItem(room, a))),
  );
}

/** The size a thumbnail will have, so that the layout does not jump when it arrives. */
function thumbSize(a) {
  if (!(a.width > 0 && a.height > 0)) return {};
  const scale = Math.min(1, THUMB_PX / Math.max(a.width, a.height));
  return { width: String(Math.max(1, Math.round(a.width * scale))), height: String(Math.max(1, Math.round(a.height * scale))) };
}

function imageItem(room, a) {
  const img = h("img", { alt: "", hidden: true, attrs: thumbSize(a), dataset: { testid: "thumbnail" } });
  const wait = h("span", { className: "thumb-wait", textContent: a.name });
  const button = h(
    "button",
    {
      type: "button",
      className: "thumb",
      title: `${a.name} (${humanSize(a.size)})`,
      attrs: { "aria-label": `Open image ${a.name}, ${humanSize(a.size)}` },
      dataset: { testid: "attachment-image", file: a.id, thumb: "loading" },
    },
    img,
    wait,
  );
  button.addEventListener("click", () => openViewer(room, a, button));
  thumbnailUrl(app.api, room, a.id).then((url) => {
    button.dataset.thumb = url ? "ready" : "none";
    if (!url) return; // the name stays; a click still opens the image
    img.src = url;
    show(img, true);
    wait.remove();
  }, () => {
    button.dataset.thumb = "failed";
  });
  return h("li", { className: "attachment", dataset: { kind: "image" } }, button);
}

function fileItem(room, a) {
  const error = h("span", { className: "error small", attrs: { role: "alert" }, dataset: { testid: "attachment-error" }, hidden: true });
  const button = h(
    "button",
    { type: "button", className: "file-link", dataset: { testid: "attachment-file", file: a.id } },
    h("span", { className: "visually-hidden", textContent: "Download " }),
    h("span", { className: "file-name", textContent: a.name }),
    h("span", { className: "file-size", textContent: humanSize(a.size) }),
  );
  button.addEventListener("click", async () => {
    button.disabled = true;
    show(error, false);
    try {
      await saveFile(app.api, room, a);
    } catch (e) {
      error.textContent = `Cannot download ${a.name}: ${fileError(e)}.`;
      show(error, true);
    } finally {
      button.disabled = false;
    }
  });
  return h("li", { className: "attachment", dataset: { kind: "file" } }, button, error);
}

// ---------------------------------------------------------------------------------------
// The image viewer (a modal dialog: Escape or ✕ closes it, focus goes back to the thumbnail)

function viewerStatus(text) {
  const node = $("viewer-status");
  node.textContent = text;
  show(node, !!text);
}

function openViewer(room, a, opener) {
  const dialog = $("viewer");
  closeViewer();
  Object.assign(viewer, { room, attachment: a, opener, url: null });
  $("viewer-title").textContent = a.name;
  const dims = a.width && a.height ? ` · ${a.width} × ${a.height}` : "";
  $("viewer-meta").textContent = `${humanSize(a.size)}${dims}`;
  const img = $("viewer-image");
  img.removeAttribute("src");
  img.alt = a.name;
  show(img, false);
  viewerStatus("Loading the image…");
  if (!dialog.open) dialog.showModal();
  fileUrl(app.api, room, a.id).then((url) => {
    if (viewer.attachment !== a || !dialog.open) {
      URL.revokeObjectURL(url);
      return;
    }
    viewer.url = url;
    img.src = url;
    show(img, true);
    viewerStatus("");
  }, (e) => {
    if (viewer.attachment === a) viewerStatus(`Cannot open ${a.name}: ${fileError(e)}.`);
  });
}

function closeViewer() {
  if (viewer.url) URL.revokeObjectURL(viewer.url);
  viewer.url = null;
  viewer.attachment = null;
  $("viewer-image").removeAttribute("src");
}

/** Wires the viewer dialog once. */
export function initAttachments() {
  const dialog = $("viewer");
  $("viewer-close").addEventListener("click", () => dialog.close());
  $("viewer-download").addEventListener("click", async () => {
    const { room, attachment } = viewer;
    if (!attachment) return;
    try {
      await saveFile(app.api, room, attachment);
    } catch (e) {
      viewerStatus(`Cannot download ${attachment.name}: ${fileError(e)}.`);
    }
  });
  dialog.addEventListener("close", () => {
    const opener = viewer.opener;
    closeViewer();
    viewer.opener = null;
    if (opener && opener.isConnected) opener.focus();
  });
  // A click on the backdrop (outside the dialog's box) closes it too.
  dialog.addEventListener("click", (ev) => {
    if (ev.target === dialog) dialog.close();
  });
}

/** Closes the viewer (at logout). */
export function hideViewer() {
  if ($("viewer").open) $("viewer").close();
}
