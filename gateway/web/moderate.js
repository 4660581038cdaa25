// chatmesh web client — moderate.js: the owner's and admins' forms of "Manage room" that
// act through the moderation extension (docs/PROTOCOL.md): the room's display name, and
// ban, unban, mute and unmute. What they change comes back to every member as a room event
// (events.js), so nothing here draws the result beyond a short confirmation.
"use strict";

import { NAME_RE } from "./api.js";
import { $ } from "./dom.js";
import { describe, notice, render } from "./render.js";
import { app } from "./state.js";

const HOUR_SECS = 3600;

/** Words for a refusal of a moderation request (see docs/PROTOCOL.md, "Who moderates whom"). */
function refusal(e, user) {
  if (e.status === 403) return `You may not do that to ${user} here (${e.message}).`;
  if (e.status === 404) return e.message || `${user} is not affected.`;
  if (e.status === 409) return `${user} is banned already.`;
  if (e.status === 400) return `Refused: ${e.message}`;
  return `cannot moderate ${user}: ${describe(e)}`;
}

async function onRename(ev) {
  ev.preventDefault();
  const r = app.current;
  if (!r || !r.canManage) return;
  const name = $("name-input").value.trim();
  if (Array.from(name).length > 64) return notice("Room names have at most 64 characters.");
  try {
    const res = await app.api.setRoomName(r.id, name || null);
    r.name = res && typeof res.name === "string" && res.name ? res.name : null;
    if (res && typeof res.seq === "number") r.eventSeq.name = Math.max(r.eventSeq.name || 0, res.seq);
    $("name-input").value = r.name || "";
    render("pane", "rooms", "messages");
  } catch (e) {
    notice(e.status === 403 ? "Only the owner and admins can rename the room." : `cannot rename the room: ${describe(e)}`);
  }
}

async function onModerate(ev, onMembersChanged) {
  ev.preventDefault();
  const r = app.current;
  if (!r || !r.canManage) return;
  const user = $("moderate-user").value.trim();
  const action = $("moderate-action").value;
  const reason = $("moderate-reason").value.trim();
  if (!NAME_RE.test(user)) return notice("User names are 1–64 letters, digits, _ or -.");
  try {
    if (action === "ban") await app.api.ban(r.id, user, reason || undefined);
    else if (action === "unban") await app.api.unban(r.id, user);
    else if (action === "mute") await app.api.mute(r.id, user);
    else if (action === "mute-hour") await app.api.mute(r.id, user, Math.floor(Date.now() / 1000) + HOUR_SECS);
    else if (action === "unmute") await app.api.unmute(r.id, user);
    else return;
    $("moderate-user").value = "";
    $("moderate-reason").value = "";
    notice("");
    onMembersChanged(r);
  } catch (e) {
    notice(refusal(e, user));
  }
}

/** Wires the forms; `onMembersChanged(room)` reloads a room's member list. */
export function initModeration({ onMembersChanged }) {
  $("name-form").addEventListener("submit", onRename);
  $("moderate-form").addEventListener("submit", (ev) => onModerate(ev, onMembersChanged));
}
