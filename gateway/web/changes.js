// chatmesh web client — changes.js: editing and deleting one's messages (the edits extension
// of the protocol, docs/PROTOCOL.md "Edits and deletes"). An edit goes through the composer:
// "Edit" (or ↑ in an empty composer) puts the message's body there, Enter saves it, Esc
// leaves it as it was. A delete asks to be confirmed in place. Both are sends the server
// orders like any message; the change shows when its message frame arrives (state.js
// applies it to the message it changes), so every tab sees the same thing in the same order.
"use strict";

import { $, show } from "./dom.js";
import { actions, describe, notice, render } from "./render.js";
import { app } from "./state.js";

/** What a refused change says, by error code. */
function refusal(e, what) {
  if (e.code === "forbidden") return `You may not ${what} that message.`;
  if (e.code === "not_found") return `That message is gone; it cannot be ${what === "edit" ? "edited" : "deleted"}.`;
  if (e.code === "too_large") return "That edit is too long.";
  return `Could not ${what} the message: ${describe(e)}`;
}

/** Puts message `m` of room `r` in the composer to be edited. */
export function startEdit(r, m) {
  if (!r || !m || !m.seq) return;
  app.confirmDelete = null;
  app.editing = { room: r.id, seq: m.seq, draft: $("message-input").value };
  const input = $("message-input");
  input.value = m.body;
  input.dispatchEvent(new Event("input")); // autosize
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
  renderBanner();
  render("messages");
}

/** Leaves edit mode; the composer gets back what was being written before. */
export function cancelEdit() {
  if (!app.editing) return;
  const draft = app.editing.draft || "";
  app.editing = null;
  const input = $("message-input");
  input.value = draft;
  input.dispatchEvent(new Event("input"));
  renderBanner();
  render("messages");
}

/**
 * The composer was submitted while editing a message of `r`: sends the edit (an unchanged
 * body only leaves edit mode). False when the composer is not editing in this room.
 */
export function submitEdit(r, body) {
  const at = app.editing;
  if (!at || !r || at.room !== r.id) return false;
  const m = r.msgs.get(at.seq);
  if (!body.trim()) {
    notice("An edit cannot be empty; delete the message instead.");
    return true;
  }
  const max = (app.limits && app.limits.max_body_bytes) || 0;
  if (max && new TextEncoder().encode(body).length > max) {
    notice(`That edit is too long (at most ${max} bytes).`);
    return true;
  }
  const unchanged = m && m.body === body;
  app.editing = { ...at, draft: "" };
  cancelEdit();
  if (unchanged || !app.conn) return true;
  app.conn.edit(r.id, at.seq, body).catch((e) => {
    if (e.code !== "closed") notice(refusal(e, "edit"));
  });
  return true;
}

/** Escape cancels an edit, ↑ in an empty composer edits one's last message. True if handled. */
export function onEditKey(ev, r) {
  if (ev.key === "Escape" && app.editing) {
    ev.preventDefault();
    cancelEdit();
    return true;
  }
  if (ev.key === "ArrowUp" && !app.editing && r && r.member && !ev.target.value && app.session) {
    const last = r.lastShown(app.session.user);
    if (!last) return false;
    ev.preventDefault();
    startEdit(r, last);
    return true;
  }
  return false;
}

/** Another room was opened or the session ended: no edit or confirmation carries over. */
export function resetChanges() {
  app.confirmDelete = null;
  if (app.editing) cancelEdit();
}

function renderBanner() {
  const banner = $("edit-banner");
  show(banner, !!app.editing);
  $("send-button").textContent = app.editing ? "Save" : "Send";
}

export function initChanges() {
  actions.edit = (r, m) => startEdit(r, m);
  actions.askDelete = (r, m) => {
    app.confirmDelete = `${r.id}:${m.seq}`;
    render("messages");
  };
  actions.cancelDelete = () => {
    app.confirmDelete = null;
    render("messages");
  };
  actions.confirmDelete = (r, m) => {
    app.confirmDelete = null;
    if (app.editing && app.editing.room === r.id && app.editing.seq === m.seq) cancelEdit();
    render("messages");
    if (!app.conn) return;
    app.conn.delete(r.id, m.seq).catch((e) => {
      if (e.code !== "closed") notice(refusal(e, "delete"));
    });
  };
  $("edit-cancel").addEventListener("click", () => {
    cancelEdit();
    $("message-input").focus();
  });
}
