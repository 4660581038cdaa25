// chatmesh web client — state.js: the page's state: the rooms (messages held, pending
// sends, uploads, typing, presence, receipts, members, topic) and the session-wide bits,
// plus what is kept per user in the browser's storage. No DOM, no I/O beyond storage.
"use strict";

import { isEvent } from "./events.js";

// ---------------------------------------------------------------------------------------
// Per-user bits kept in the browser: unsent messages, what was seen, DM partners.

/** A client message id: time plus 64 random bits, printable ASCII, unique per sender. */
export function newMessageId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${Date.now().toString(36)}-${hex}`;
}

export function storageKey(what) {
  return `chatmesh.${what}.${app.session ? app.session.user : ""}`;
}

export function readJson(store, key, fallback) {
  try {
    const raw = store.getItem(key);
    return raw ? JSON.parse(raw) : fallback;
  } catch (_) {
    return fallback;
  }
}

export function writeJson(store, key, value) {
  try {
    store.setItem(key, JSON.stringify(value));
  } catch (_) {
    // Storage full or disabled: the page still works, it just forgets more on reload.
  }
}

// ---------------------------------------------------------------------------------------
// State

export class Room {
  constructor(id) {
    this.id = id;
    this.kind = "public";
    this.role = null; // null: not a member (a public room we could join)
    this.lastSeq = 0; // server's last seq as far as we know
    this.unread = 0;
    this.mentions = 0; // unread messages that mention the user (by name or @room)
    this.joined = false; // joined on the current socket
    this.joining = false;
    this.joinError = null;
    this.removed = false; // the server removed us (left without asking): drop it from the list
    this.msgs = new Map(); // seq -> message
    this.order = []; // held seqs, ascending
    this.head = null; // newest seq up to which the prev chain is complete (null: not loaded)
    this.more = false; // older history exists
    this.loaded = false; // the first history page was fetched
    this.loadingInitial = false;
    this.loadingOlder = false;
    this.filling = false;
    this.gapGivenUp = 0;
    this.notes = []; // {at: seq, text}
    this.pending = new Map(); // client id -> {id, body, attachments, files, state, seq, ts, error, created}
    this.uploads = []; // files of the message being written (uploads.js)
    this.sending = false;
    this.typing = new Map(); // user -> time until shown
    this.lastTypingSent = 0;
    this.online = null; // Set of users, null while unknown
    this.receipts = new Map(); // user -> seq
    this.readSent = 0;
    this.seen = 0; // newest seq this user has seen here
    this.nodes = new Map(); // "m:<seq>" / "p:<id>" -> <li>
    this.peer = null; // the other user of a DM, when known
    this.closed = false; // a DM we closed, with nothing newer in it: joined, not listed
    this.topic = null;
    this.name = null; // the room's display name (moderation extension), shown instead of the id
    this.eventSeq = {}; // "topic" / "name" -> seq of the last such room event applied (events.js)
    this.members = null; // [{user, role, display_name?}] once loaded (members only)
    this.membersMore = false;
    this.membersError = null;
    this.membersLoading = false;
  }

  get member() {
    return this.role !== null && this.role !== undefined;
  }

  get canManage() {
    return (this.role === "owner" || this.role === "admin") && this.kind !== "dm";
  }

  get title() {
    if (this.kind === "dm") return this.peer ? `@${this.peer}` : "direct message";
    return this.name || `#${this.id}`;
  }

  newest() {
    return this.order.length ? this.order[this.order.length - 1] : 0;
  }

  /**
   * Inserts a message frame; false when that seq was already held. `live`: it came as a
   * `message` frame (a history page's messages carry their reactions and thread counts
   * already, so those are only counted for live ones).
   */
  insert(m, live = true) {
    const have = this.msgs.get(m.seq);
    if (have) {
      // A message known only from its ack learns its prev from the real frame.
      if (have.prev === undefined && typeof m.prev === "number") have.prev = m.prev;
      return false;
    }
    this.msgs.set(m.seq, m);
    this.applyChange(m);
    if (live) {
      this.applyReaction(m);
      this.countReply(m);
    }
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.order[mid] < m.seq) lo = mid + 1;
      else hi = mid;
    }
    this.order.splice(lo, 0, m.seq);
    return true;
  }

  /**
   * Applies an edit or a delete (`m`) to its target when it is held, with the rules of
   * docs/PROTOCOL.md ("Edits and deletes"): only to a normal message that is not deleted, an
   * edit only by the target's author and only if newer than what the target shows. History
   * brings targets in their current version, so applying a change twice changes nothing.
   */
  applyChange(m) {
    const at = m.edit_of || m.delete_of;
    if (m.react_to || m.unreact_to) return false;
    if (!at || m.void) return false;
    const t = this.msgs.get(at);
    if (!t || isChange(t) || t.deleted) return false;
    if (m.delete_of) {
      t.deleted = true;
      t.body = "";
      delete t.attachments;
      delete t.mls; // an e2ee room's ciphertext goes with it
      return true;
    }
    if (t.from !== m.from || (t.edited && t.edited.seq >= m.seq)) return false;
    t.body = m.body;
    t.edited = { seq: m.seq, ts: m.ts };
    return true;
  }

  /**
   * Applies a live reaction or unreaction (`m`) to its target's `reactions` when the target
   * is held, with the protocol's rules: a user's key once, only one's own taken off.
   */
  applyReaction(m) {
    const at = m.react_to || m.unreact_to;
    if (!at || m.void) return false;
    const t = this.msgs.get(at);
    if (!t || isChange(t) || t.deleted) return false;
    const list = (t.reactions || []).map((x) => ({ key: x.key, count: x.count, users: [...(x.users || [])] }));
    let r = list.find((x) => x.key === m.body);
    if (m.react_to) {
      if (r && r.users.includes(m.from)) return false;
      if (!r) {
        r = { key: m.body, count: 0, users: [] };
        list.push(r);
      }
      r.count += 1;
      if (r.users.length < MAX_REACTION_USERS) r.users.push(m.from);
    } else {
      if (!r || !r.users.includes(m.from)) return false;
      r.count -= 1;
      r.users = r.users.filter((u) => u !== m.from);
      if (r.count <= 0) list.splice(list.indexOf(r), 1);
    }
    t.reactions = list;
    return true;
  }

  /** Counts a live reply on its thread's root, when the root is held. */
  countReply(m) {
    const root = m.thread_root && this.msgs.get(m.thread_root);
    if (!root || m.void || isChange(m)) return false;
    const count = ((root.thread && root.thread.count) || 0) + 1;
    root.thread = { count, last_seq: m.seq, last_ts: m.ts };
    return true;
  }

  /** The newest held message shown as a message of its own (not a change), or null. */
  lastShown(from) {
    for (let i = this.order.length - 1; i >= 0; i -= 1) {
      const m = this.msgs.get(this.order[i]);
      if (!isChange(m) && !isEvent(m) && !m.deleted && (!from || m.from === from)) return m;
    }
    return null;
  }

  /**
   * Drops the oldest messages beyond `max`, with their DOM nodes, so a tab left open holds a
   * bounded number per room; they come back from history ("load older messages"). Answers
   * how many went.
   */
  trimOldest(max) {
    const excess = this.order.length - max;
    if (excess <= 0) return 0;
    const gone = this.order.splice(0, excess);
    for (const seq of gone) {
      this.msgs.delete(seq);
      for (const kind of ["m", "x", "e"]) this.nodes.delete(`${kind}:${seq}`);
    }
    const last = gone[gone.length - 1];
    // The prev chain is not checked again below what is held.
    if (this.head !== null && this.head < last) this.head = last;
    this.notes = this.notes.filter((n) => n.at > last);
    this.more = true;
    return excess;
  }

  firstIndexAfter(seq) {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.order[mid] <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * Is `m` a change of another message (an edit, a delete, or a change the server voided)
 * rather than a message shown of its own?
 */
export function isChange(m) {
  return Boolean(m && (m.edit_of || m.delete_of || m.react_to || m.unreact_to || m.void));
}

/** Users a reaction lists (the server's bound; beyond it only the count grows). */
const MAX_REACTION_USERS = 20;

export const app = {
  session: null,
  api: null,
  conn: null,
  connInfo: { state: "stopped" },
  limits: null,
  rooms: new Map(),
  roomOrder: [],
  current: null,
  features: { typing: "unknown", read: "unknown", presence: "unknown" },
  dmPeers: {},
  seen: {},
  tickTimer: null,
  noticeTimer: null,
  renderQueued: false,
  dirty: new Set(),
  stickToBottom: false,
  profile: null, // {user, display_name}
  renewing: false, // a password change is in flight: a 4001 / 401 is expected, not the end
  revokedWhileRenewing: false, // …and one came: the change's answer must bring a fresh token
  names: new Map(), // user -> display name, from member lists and the profile
  blocked: new Set(), // users the signed-in user has blocked (blocks extension)
  wantedRoom: null, // the room a clicked push notification asked for, opened once rooms load
  editing: null, // {room, seq} of the message the composer edits (changes.js), or null
  replying: null, // {room, seq} of the message the composer replies to (threads.js), or null
  palette: null, // "room:seq" of the message whose reaction palette is open
  confirmDelete: null, // "room:seq" of the message whose delete asks to be confirmed
};

export function room(id) {
  let r = app.rooms.get(id);
  if (!r) {
    r = new Room(id);
    r.seen = app.seen[id] || 0;
    r.peer = app.dmPeers[id] || null;
    app.rooms.set(id, r);
  }
  return r;
}
