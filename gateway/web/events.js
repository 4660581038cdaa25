// chatmesh web client — events.js: room events (the moderation extension of
// docs/PROTOCOL.md). A topic or name change, a ban, an unban, a mute or an unmute comes as a
// message of the room's order with an empty body and `event`; it is shown as a one-line
// notice, never a bubble, and topic and name events update the room as they arrive. A kind
// this page does not know gets a generic notice. Pure functions and state only; no DOM.
"use strict";

import { formatTime } from "./format.js";

/** Event kinds that change the member list (who is in it, who is muted). */
export const MEMBER_EVENTS = ["ban", "unban", "mute", "unmute"];

/** Is `m` a room event rather than something a user wrote? */
export function isEvent(m) {
  return Boolean(m && m.event && typeof m.event === "object" && !Array.isArray(m.event));
}

/** The event's kind (its one key: "topic", "ban", …), or "" when it has none. */
export function eventKind(m) {
  return isEvent(m) ? Object.keys(m.event)[0] || "" : "";
}

/** The user an event is about, when it names one (`{ban: {user}}` …), else "". */
function subject(detail) {
  return detail && typeof detail === "object" && typeof detail.user === "string" ? detail.user : "";
}

/** The user event message `m` is about (the banned, the muted …), or "" when none. */
export function eventSubject(m) {
  const kind = eventKind(m);
  return kind ? subject(m.event[kind]) : "";
}

/**
 * What the notice of event message `m` says, e.g. "ann banned bob (spam)". `nameOf(user)`
 * is how a user is shown (a display name, or the user name). Always text, never markup.
 */
export function eventText(m, nameOf) {
  const who = nameOf(m.from);
  const kind = eventKind(m);
  const detail = kind ? m.event[kind] : undefined;
  const user = subject(detail);
  const whom = user ? nameOf(user) : "someone";
  switch (kind) {
    case "topic":
      return typeof detail === "string" && detail ? `${who} set the topic to “${detail}”` : `${who} cleared the topic`;
    case "name":
      return typeof detail === "string" && detail ? `${who} renamed the room to “${detail}”` : `${who} cleared the room's name`;
    case "ban": {
      const why = detail && typeof detail.reason === "string" && detail.reason ? ` (${detail.reason})` : "";
      return `${who} banned ${whom}${why}`;
    }
    case "unban":
      return `${who} unbanned ${whom}`;
    case "mute": {
      const until = detail && typeof detail.until === "number" ? formatTime(detail.until * 1000) : "";
      return until ? `${who} muted ${whom} until ${until}` : `${who} muted ${whom}`;
    }
    case "unmute":
      return `${who} unmuted ${whom}`;
    default:
      return `${who} changed the room${kind ? ` (${kind})` : ""}`;
  }
}

/**
 * Applies a topic or name event to room `r` when it is newer than the last one applied
 * (replays and history pages may bring older ones). True when the room changed.
 */
export function applyRoomEvent(r, m) {
  const kind = eventKind(m);
  if (kind !== "topic" && kind !== "name") return false;
  if (typeof m.seq !== "number" || m.seq <= (r.eventSeq[kind] || 0)) return false;
  r.eventSeq[kind] = m.seq;
  const value = typeof m.event[kind] === "string" && m.event[kind] ? m.event[kind] : null;
  if (r[kind] === value) return false;
  r[kind] = value;
  return true;
}
