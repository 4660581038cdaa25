// chatmesh web client — app.js: the page itself. Owns the client state (rooms, messages,
// pending sends, typing, presence, receipts), turns server frames into that state, and
// renders it into the DOM built by index.html. HTTP lives in api.js, the session in socket.js
// (both over /chatmesh.js, the @chatmesh/client package: it re-joins rooms with `since` and
// resends unacked sends with their ids after a reconnect, and delivers each message once).
//
// Other modules: dom.js (helpers), markdown.js (message bodies), format.js (times, days,
// avatars), people.js (names, avatars, the member list), notify.js (desktop notifications,
// sound), account.js (the settings dialog), layout.js (drawers on narrow screens, keyboard
// paths).
//
// Safety: every piece of user content (names, bodies, room ids, topics) goes into the page
// through textContent or attribute values, never as HTML.
"use strict";

import { initSettings, openSettings } from "/account.js";
import { Api, ApiError, NAME_RE, clearSession, loadSession, saveSession } from "/api.js";
import { $, h, show } from "/dom.js";
import { dayKey, dayLabel, formatTime } from "/format.js";
import { closeDrawers, initLayout } from "/layout.js";
import { renderBody } from "/markdown.js";
import * as notify from "/notify.js";
import { avatar, nameNodes, renderMemberList } from "/people.js";
import { createClient } from "/socket.js";

const HISTORY_PAGE = 50;
const GAP_PAGE = 100;
const GAP_ROUNDS = 20;
const TYPING_SEND_EVERY_MS = 2500;
const TYPING_SHOW_MS = 4000;
const GROUP_WITHIN_MS = 5 * 60_000;
const NEAR_EDGE_PX = 48;
const DEFAULT_MAX_BODY = 16 * 1024;

// ---------------------------------------------------------------------------------------
// Small helpers

function byteLength(s) {
  return new TextEncoder().encode(s).length;
}

/** A client message id: time plus 64 random bits, printable ASCII, unique per sender. */
function newMessageId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${Date.now().toString(36)}-${hex}`;
}

// ---------------------------------------------------------------------------------------
// Per-user bits kept in the browser: unsent messages, what was seen, DM partners.

function storageKey(what) {
  return `chatmesh.${what}.${app.session ? app.session.user : ""}`;
}

function readJson(store, key, fallback) {
  try {
    const raw = store.getItem(key);
    return raw ? JSON.parse(raw) : fallback;
  } catch (_) {
    return fallback;
  }
}

function writeJson(store, key, value) {
  try {
    store.setItem(key, JSON.stringify(value));
  } catch (_) {
    // Storage full or disabled: the page still works, it just forgets more on reload.
  }
}

// ---------------------------------------------------------------------------------------
// State

class Room {
  constructor(id) {
    this.id = id;
    this.kind = "public";
    this.role = null; // null: not a member (a public room we could join)
    this.lastSeq = 0; // server's last seq as far as we know
    this.unread = 0;
    this.joined = false; // joined on the current socket
    this.joining = false;
    this.joinError = null;
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
    this.pending = new Map(); // client id -> {id, body, state, seq, ts, error, created}
    this.sending = false;
    this.typing = new Map(); // user -> time until shown
    this.lastTypingSent = 0;
    this.online = null; // Set of users, null while unknown
    this.receipts = new Map(); // user -> seq
    this.readSent = 0;
    this.seen = 0; // newest seq this user has seen here
    this.nodes = new Map(); // "m:<seq>" / "p:<id>" -> <li>
    this.peer = null; // the other user of a DM, when known
    this.topic = null;
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
    return `#${this.id}`;
  }

  newest() {
    return this.order.length ? this.order[this.order.length - 1] : 0;
  }

  /** Inserts a message frame; false when that seq was already held. */
  insert(m) {
    const have = this.msgs.get(m.seq);
    if (have) {
      // A message known only from its ack learns its prev from the real frame.
      if (have.prev === undefined && typeof m.prev === "number") have.prev = m.prev;
      return false;
    }
    this.msgs.set(m.seq, m);
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

const app = {
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
  names: new Map(), // user -> display name, from member lists and the profile
};

function room(id) {
  let r = app.rooms.get(id);
  if (!r) {
    r = new Room(id);
    r.seen = app.seen[id] || 0;
    r.peer = app.dmPeers[id] || null;
    app.rooms.set(id, r);
  }
  return r;
}

// ---------------------------------------------------------------------------------------
// Rendering (batched: state changes mark parts dirty, one microtask redraws them)

function render(...parts) {
  for (const p of parts) app.dirty.add(p);
  if (app.renderQueued) return;
  app.renderQueued = true;
  queueMicrotask(() => {
    app.renderQueued = false;
    const d = app.dirty;
    app.dirty = new Set();
    if (d.has("conn")) renderConn();
    if (d.has("rooms")) renderRooms();
    if (d.has("pane")) renderPane();
    if (d.has("messages")) renderMessages();
    if (d.has("typing")) renderTyping();
    if (d.has("presence")) {
      renderPresence();
      renderMembers();
    }
  });
}

function renderConn() {
  const node = $("conn-state");
  const { state, retryAt } = app.connInfo;
  node.dataset.state = state;
  let text = "";
  if (state === "connecting") text = "connecting…";
  else if (state === "connected") text = "connected";
  else if (state === "reconnecting") {
    const secs = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    text = secs > 0 ? `reconnecting in ${secs}s` : "reconnecting…";
  } else if (state === "offline") text = "offline";
  node.textContent = text;
  node.title = app.connInfo.close && app.connInfo.close.code
    ? `last close: ${app.connInfo.close.code} ${app.connInfo.close.reason || ""}`.trim()
    : "";
  node.hidden = state === "stopped";
}

function roomItem(r) {
  const active = app.current === r;
  const badge = h("span", {
    className: "badge",
    textContent: r.unread > 99 ? "99+" : String(r.unread),
    hidden: !(r.unread > 0) || active,
    dataset: { testid: "unread" },
    attrs: { "aria-label": `${r.unread} unread` },
  });
  const icon = r.kind === "dm" ? "@" : r.kind === "private" ? "" : "#";
  const name = r.kind === "dm" ? (r.peer || "direct message") : r.id;
  const btn = h(
    "button",
    {
      type: "button",
      className: "room-btn",
      title: r.member ? (r.topic ? `${r.id}: ${r.topic}` : r.id) : `Join #${r.id}`,
      attrs: { "aria-label": roomLabel(r, name) },
    },
    h("span", { className: `kind ${r.kind}`, textContent: icon, attrs: { "aria-hidden": "true" } }),
    h("span", { className: "name", textContent: name }),
    r.member ? badge : h("span", { className: "join-hint", textContent: "join" }),
  );
  if (active) btn.setAttribute("aria-current", "true");
  btn.addEventListener("click", () => selectRoom(r.id));
  return h(
    "li",
    {
      className: active ? "active" : "",
      dataset: {
        testid: "room-item",
        room: r.id,
        kind: r.kind,
        role: r.role || "",
        member: String(r.member),
        unread: String(r.unread),
      },
    },
    btn,
  );
}

/** What a screen reader says for a room button: kind, name, unread, join. */
function roomLabel(r, name) {
  const kind = r.kind === "dm" ? "direct message with" : r.kind === "private" ? "private room" : "room";
  let label = `${kind} ${name}`;
  if (!r.member) label += ", not joined: join";
  else if (r.unread > 0 && app.current !== r) label += `, ${r.unread} unread`;
  return label;
}

function renderRooms() {
  const mine = [];
  const others = [];
  for (const id of app.roomOrder) {
    const r = app.rooms.get(id);
    if (!r) continue;
    (r.member ? mine : others).push(roomItem(r));
  }
  if (!mine.length) {
    mine.push(h("li", { className: "muted small empty", textContent: "You are in no room yet." }));
  }
  $("room-list").replaceChildren(...mine);
  $("public-room-list").replaceChildren(...others);
  show($("public-empty"), others.length === 0);
  let total = 0;
  for (const r of app.rooms.values()) if (r.member && r !== app.current) total += r.unread;
  document.title = total > 0 ? `(${total}) chatmesh` : "chatmesh";
}

function renderPane() {
  const r = app.current;
  show($("no-room"), !r);
  show($("room-pane"), !!r);
  if (!r) return;
  $("room-title").textContent = r.title;
  const bits = [r.kind];
  if (r.role) bits.push(`you: ${r.role}`);
  if (r.joinError) bits.push(r.joinError);
  else if (r.member && !r.joined && app.conn && app.conn.connected) bits.push("joining…");
  $("room-meta").textContent = bits.join(" · ");
  const topic = $("room-topic");
  topic.textContent = r.topic || "";
  topic.title = r.topic || "";
  show(topic, !!r.topic);
  const topicForm = $("topic-form");
  if (topicForm.hidden !== !r.canManage || topicForm.dataset.room !== r.id) {
    $("topic-input").value = r.topic || "";
    topicForm.dataset.room = r.id;
  }
  show(topicForm, r.canManage);
  show($("member-form"), r.canManage);
  const manage = $("manage-room");
  if (!r.canManage) manage.open = false;
  show(manage, r.canManage);
  show($("leave-room"), r.member);
  const input = $("message-input");
  input.disabled = !r.member;
  $("send-button").disabled = !r.member;
  input.placeholder = r.member ? `Message ${r.title}` : "Join this room to write";
}

function seenMap(r) {
  // user -> the newest held message at or before their receipt; shown under that message.
  const out = new Map();
  if (!r.receipts.size || !r.order.length) return out;
  for (const [user, seq] of r.receipts) {
    if (app.session && user === app.session.user) continue;
    const i = r.firstIndexAfter(seq) - 1;
    if (i < 0) continue;
    const at = r.order[i];
    if (r.msgs.get(at).from === user) continue; // "seen by" its own author says nothing
    if (!out.has(at)) out.set(at, []);
    out.get(at).push(user);
  }
  return out;
}

function messageNode(r, key, m, state) {
  let node = r.nodes.get(key);
  if (!node) {
    const when = new Date(m.ts || Date.now());
    node = h(
      "li",
      { className: "msg", dataset: { testid: "message" } },
      avatar(m.from, app.names.get(m.from)),
      h(
        "div",
        { className: "meta" },
        h("span", { className: "who" }, ...nameNodes(m.from, app.names.get(m.from))),
        h("time", {
          className: "ts",
          textContent: formatTime(m.ts || Date.now()),
          dateTime: Number.isNaN(when.getTime()) ? "" : when.toISOString(),
          title: when.toLocaleString(),
        }),
        h("span", { className: "status" }),
      ),
      h("div", { className: "body" }, ...renderBody(m.body)),
      h("div", { className: "seen", hidden: true }),
    );
    r.nodes.set(key, node);
  }
  node.dataset.id = m.id || "";
  node.dataset.from = m.from || "";
  const shown = app.names.get(m.from) || "";
  if (node.dataset.shownName !== shown) {
    // A display name learnt after the node was built.
    node.dataset.shownName = shown;
    node.querySelector(".who").replaceChildren(...nameNodes(m.from, shown));
    node.querySelector(".avatar").replaceWith(avatar(m.from, shown));
  }
  if (m.seq) node.dataset.seq = String(m.seq);
  node.dataset.state = state;
  node.classList.toggle("mine", !!app.session && m.from === app.session.user);
  const status = node.querySelector(".status");
  if (state === "pending") {
    status.textContent = "sending…";
    status.title = "waiting for the server to store it";
  } else if (state === "failed") {
    status.textContent = "not sent";
    status.title = m.error || "";
  } else if (state === "acked" && node.classList.contains("mine")) {
    status.textContent = "✓";
    status.title = `stored as #${m.seq}`;
  } else {
    status.textContent = "";
    status.title = "";
  }
  return node;
}

function failedControls(r, p) {
  const retry = h("button", { type: "button", className: "link", textContent: "retry" });
  retry.addEventListener("click", () => {
    p.state = "pending";
    p.error = null;
    saveOutbox();
    render("messages");
    pumpPending(r);
  });
  const drop = h("button", { type: "button", className: "link", textContent: "discard" });
  drop.addEventListener("click", () => {
    r.pending.delete(p.id);
    r.nodes.delete(`p:${p.id}`);
    saveOutbox();
    render("messages");
  });
  return h("div", { className: "failed" }, `${p.error || "not sent"} — `, retry, " ", drop);
}

function renderMessages() {
  const r = app.current;
  const list = $("message-list");
  if (!r) {
    list.replaceChildren();
    return;
  }
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < NEAR_EDGE_PX;
  const fromBottom = list.scrollHeight - list.scrollTop;
  const items = [];
  if (r.more || r.loadingOlder) {
    const btn = h("button", {
      type: "button",
      id: "load-older",
      className: "link",
      textContent: r.loadingOlder ? "loading older messages…" : "load older messages",
      disabled: r.loadingOlder,
      dataset: { testid: "load-older" },
    });
    btn.addEventListener("click", () => loadOlder(r));
    items.push(h("li", { className: "older" }, btn));
  } else if (r.loaded && r.order.length) {
    items.push(h("li", { className: "start muted small", textContent: `This is the start of ${r.title}.` }));
  }
  const seen = seenMap(r);
  const notes = r.notes.slice().sort((a, b) => a.at - b.at);
  let ni = 0;
  let prevFrom = null;
  let prevTs = 0;
  let prevDay = null;
  const noteNode = (n) => h("li", { className: "note", textContent: n.text, dataset: { testid: "gap-note" } });
  /** A date separator before the first message of each day; a new day starts a new group. */
  const daySep = (ts) => {
    const day = dayKey(ts);
    if (!day || day === prevDay) return;
    prevDay = day;
    prevFrom = null;
    items.push(h("li", {
      className: "day",
      dataset: { testid: "day-separator", day },
    }, h("span", { textContent: dayLabel(ts) })));
  };
  for (const seq of r.order) {
    while (ni < notes.length && notes[ni].at <= seq) {
      items.push(noteNode(notes[ni++]));
      prevFrom = null;
    }
    const m = r.msgs.get(seq);
    daySep(m.ts);
    const node = messageNode(r, `m:${seq}`, m, "acked");
    node.classList.toggle("cont", m.from === prevFrom && m.ts - prevTs < GROUP_WITHIN_MS);
    prevFrom = m.from;
    prevTs = m.ts;
    const who = seen.get(seq);
    const seenLine = node.querySelector(".seen");
    seenLine.hidden = !who;
    seenLine.textContent = who ? `seen by ${who.sort().join(", ")}` : "";
    items.push(node);
  }
  while (ni < notes.length) items.push(noteNode(notes[ni++]));
  for (const p of r.pending.values()) {
    const m = { id: p.id, from: app.session.user, ts: p.ts || p.created, body: p.body, seq: p.seq, error: p.error };
    daySep(m.ts);
    const node = messageNode(r, `p:${p.id}`, m, p.state);
    node.classList.toggle("cont", m.from === prevFrom && m.ts - prevTs < GROUP_WITHIN_MS);
    prevFrom = m.from;
    prevTs = m.ts;
    const old = node.querySelector(".failed");
    if (old) old.remove();
    if (p.state === "failed") node.append(failedControls(r, p));
    items.push(node);
  }
  if (!items.length || (items.length === 1 && !r.order.length && !r.pending.size)) {
    items.push(h("li", {
      className: "empty muted",
      textContent: r.loaded || !r.member ? "No messages yet. Say hello!" : "loading…",
    }));
  }
  list.replaceChildren(...items);
  if (app.stickToBottom || atBottom) {
    list.scrollTop = list.scrollHeight;
    app.stickToBottom = false;
  } else {
    list.scrollTop = list.scrollHeight - fromBottom;
  }
  maybeRead(r);
}

function renderTyping() {
  const node = $("typing-indicator");
  node.dataset.supported = app.features.typing === "unsupported" ? "false"
    : app.features.typing === "supported" ? "true" : "unknown";
  const r = app.current;
  const now = Date.now();
  const who = [];
  if (r) for (const [user, until] of r.typing) if (until > now) who.push(user);
  who.sort();
  let text = "";
  if (who.length === 1) text = `${who[0]} is typing…`;
  else if (who.length === 2) text = `${who[0]} and ${who[1]} are typing…`;
  else if (who.length > 2) text = `${who.length} people are typing…`;
  node.textContent = text;
  node.dataset.users = who.join(",");
}

function renderPresence() {
  const list = $("presence-list");
  const note = $("presence-note");
  const r = app.current;
  list.dataset.supported = app.features.presence === "unsupported" ? "false"
    : app.features.presence === "supported" ? "true" : "unknown";
  if (app.features.presence === "unsupported") {
    list.replaceChildren();
    note.textContent = "Presence is not available on this server yet.";
    return;
  }
  if (!r || !r.member) {
    list.replaceChildren();
    note.textContent = r ? "Join the room to see who is here." : "";
    return;
  }
  if (!r.online) {
    list.replaceChildren();
    note.textContent = r.joined ? "…" : "";
    return;
  }
  const users = Array.from(r.online).sort();
  list.replaceChildren(...users.map((u) => h(
    "li",
    { dataset: { testid: "presence-item", user: u } },
    h("span", { className: "dot", attrs: { "aria-hidden": "true" } }),
    h("span", { textContent: u }),
    app.session && u === app.session.user ? h("span", { className: "muted", textContent: " (you)" }) : null,
  )));
  note.textContent = users.length ? "" : "Nobody is online here.";
}

function renderMembers() {
  renderMemberList($("member-list"), $("member-note"), app.current, app.session && app.session.user);
}

/** Fetches the member list of `r` (every page, bounded), with display names. */
async function loadMembers(r) {
  if (!r.member || r.membersLoading) return;
  r.membersLoading = true;
  try {
    const all = [];
    let after;
    for (let page = 0; page < 5; page++) {
      const res = await app.api.members(r.id, after);
      all.push(...res.members);
      r.membersMore = res.more;
      if (!res.more || !res.members.length) break;
      after = res.members[res.members.length - 1].user;
    }
    r.members = all;
    r.membersError = null;
    let renamed = false;
    for (const m of all) {
      if (typeof m.display_name === "string" && app.names.get(m.user) !== m.display_name) {
        app.names.set(m.user, m.display_name);
        renamed = true;
      } else if (!m.display_name && app.names.has(m.user)) {
        app.names.delete(m.user);
        renamed = true;
      }
      if (r.kind === "dm" && app.session && m.user !== app.session.user && !r.peer) {
        r.peer = m.user;
        render("rooms", "pane");
      }
    }
    if (renamed && r === app.current) render("messages");
  } catch (e) {
    r.membersError = e instanceof ApiError && e.status === 403 ? "Join the room to see its members." : `cannot load members: ${describe(e)}`;
  } finally {
    r.membersLoading = false;
    if (r === app.current) render("presence");
  }
}

function notice(text, where) {
  const node = $(where === "side" ? "side-error" : "room-notice");
  node.textContent = text;
  show(node, !!text);
  clearTimeout(node.hideTimer);
  if (text) node.hideTimer = setTimeout(() => show(node, false), 6000);
}

function describe(err) {
  if (err instanceof ApiError) {
    if (err.status === 0) return "cannot reach the server";
    if (err.status === 429) return "too many requests; try again in a moment";
    return err.message || err.code;
  }
  return (err && err.message) || String(err);
}

// ---------------------------------------------------------------------------------------
// Login and logout

function showLogin(message) {
  show($("login-view"), true);
  show($("chat-view"), false);
  show($("me"), false);
  show($("logout"), false);
  const err = $("login-error");
  err.textContent = message || "";
  show(err, !!message);
  $("login-username").focus();
}

async function onLoginSubmit(ev) {
  ev.preventDefault();
  const mode = (ev.submitter && ev.submitter.value) || "login";
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  const fail = (text) => {
    const err = $("login-error");
    err.textContent = text;
    show(err, true);
  };
  if (!NAME_RE.test(username)) return fail("User names are 1–64 letters, digits, _ or -.");
  if (mode === "register" && password.length < 8) return fail("Passwords need at least 8 characters.");
  if (!password) return fail("Enter your password.");
  const buttons = [$("login-submit"), $("register-submit")];
  buttons.forEach((b) => { b.disabled = true; });
  try {
    if (mode === "register") {
      try {
        await app.api.register(username, password);
      } catch (e) {
        if (e instanceof ApiError && e.status === 409) return fail("That user name is taken.");
        throw e;
      }
    }
    let answer;
    try {
      answer = await app.api.login(username, password);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return fail("Wrong user name or password.");
      throw e;
    }
    const session = { user: username, token: answer.token, expires_at: answer.expires_at };
    saveSession(session);
    $("login-password").value = "";
    startSession(session);
  } catch (e) {
    fail(describe(e));
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function startSession(session) {
  app.session = session;
  app.api.token = session.token;
  app.rooms = new Map();
  app.roomOrder = [];
  app.current = null;
  app.features = { typing: "unknown", read: "unknown", presence: "unknown" };
  app.dmPeers = readJson(localStorage, storageKey("dmpeers"), {});
  app.seen = readJson(localStorage, storageKey("seen"), {});
  loadOutbox();
  show($("login-view"), false);
  show($("chat-view"), true);
  $("me").textContent = session.user;
  show($("me"), true);
  show($("logout"), true);
  show($("settings-open"), true);
  show($("menu-toggle"), true);
  app.names = new Map();
  app.profile = null;
  renderMe();
  loadProfile();
  const client = createClient({
    token: session.token,
    user: session.user,
    onState: (state, info) => {
      if (app.conn === client) onConnState(state, info);
    },
    onUnauthorized: () => {
      // A password change revokes this token on purpose; its fresh login replaces the client.
      if (app.conn === client && !app.renewing) endSession("Your session has expired. Please log in again.");
    },
  });
  // Events of a client that was replaced (logout) are ignored.
  const on = (type, handler) => client.on(type, (data) => {
    if (app.conn === client) handler(data);
  });
  on("connected", onConnected);
  on("message", onMessage);
  on("typing", onTyping);
  on("receipt", onReceipt);
  on("presence", onPresenceDiff);
  on("gap", onGap);
  on("removed", onRemoved);
  // Added to a room, a new DM, a role changed, removed: the room list follows at once.
  on("membership", (ev) => {
    refreshRooms();
    const r = app.current;
    if (r && ev.room === r.id) loadMembers(r); // our role changed: so may what we see
  });
  on("topic", onTopic);
  on("error", onServerError);
  app.conn = client;
  onConnState("connecting", {});
  client.start();
  clearInterval(app.tickTimer);
  app.tickTimer = setInterval(tick, 500);
  render("conn", "rooms", "pane", "messages", "typing", "presence");
  refreshRooms().then(() => {
    const last = sessionStorage.getItem(storageKey("current"));
    if (last && app.rooms.has(last) && !app.current) selectRoom(last);
  });
}

/** Logs out (explicitly, or because the token was refused). */
function endSession(message) {
  const client = app.conn;
  app.conn = null;
  if (client) client.close();
  clearInterval(app.tickTimer);
  if (!message && app.session) {
    sessionStorage.removeItem(storageKey("outbox"));
    sessionStorage.removeItem(storageKey("current"));
  }
  clearSession();
  closeDrawers(false);
  if ($("settings").open) $("settings").close();
  show($("settings-open"), false);
  show($("menu-toggle"), false);
  show($("me-name"), false);
  app.session = null;
  app.api.token = null;
  app.rooms = new Map();
  app.roomOrder = [];
  app.current = null;
  app.connInfo = { state: "stopped" };
  renderConn();
  $("message-list").replaceChildren();
  showLogin(message);
}

// ---------------------------------------------------------------------------------------
// Rooms over HTTP

async function refreshRooms() {
  let list;
  try {
    list = await app.api.rooms();
  } catch (e) {
    if (app.session) notice(`cannot load rooms: ${describe(e)}`, "side");
    return;
  }
  if (!app.session) return;
  const ids = [];
  const keep = new Set();
  for (const info of list) {
    if (!info || typeof info.room !== "string" || keep.has(info.room)) continue;
    const r = room(info.room);
    r.kind = info.kind || r.kind;
    if (r.role !== (info.role || null)) r.members = null; // what we may see changed
    r.role = info.role || null;
    r.topic = typeof info.topic === "string" ? info.topic : null;
    // Not in protocol v1's room list; used if a server adds the other user of a DM.
    if (r.kind === "dm" && !r.peer && typeof info.peer === "string") r.peer = info.peer;
    const serverLast = Number(info.last_seq) || 0;
    r.lastSeq = Math.max(r.lastSeq, serverLast);
    const unread = Number(info.unread) || 0;
    if (r === app.current) r.unread = 0;
    else r.unread = r.seen >= serverLast ? 0 : unread;
    ids.push(r.id);
    keep.add(r.id);
  }
  // Rooms we are no longer in (and that are not public) disappear.
  for (const [id, r] of app.rooms) {
    if (keep.has(id) || r.joining || (r === app.current && r.kind === "public")) continue;
    if (r.joined && app.conn) app.conn.leave(id).catch(() => {});
    app.rooms.delete(id);
    if (app.current === r) app.current = null;
  }
  app.roomOrder = ids;
  render("rooms", "pane", "messages", "presence", "typing");
  joinMemberRooms();
  for (const r of app.rooms.values()) if (r.kind === "dm" && !r.peer) findPeer(r);
}

/** Names a DM someone else opened with us: its recent messages tell who that is. */
async function findPeer(r) {
  if (r.peerLookedUp) return;
  r.peerLookedUp = true;
  try {
    const page = await app.api.messages(r.id, 20);
    for (const m of (page && page.messages) || []) learnPeer(r, m);
  } catch (_) {
    // Not important: the room is shown as "direct message" until someone writes.
  }
}

/** Joins every room we are in, and the shown one (a public room joins us to it). */
function joinMemberRooms() {
  if (!app.conn || !app.conn.connected) return;
  for (const r of app.rooms.values()) if (r.member && !r.joined && !r.joining) joinRoom(r);
  const cur = app.current;
  if (cur && !cur.joined && !cur.joining && !cur.joinError) joinRoom(cur);
}

function selectRoom(id) {
  const r = app.rooms.get(id);
  if (!r) return;
  app.current = r;
  r.unread = 0;
  app.stickToBottom = true;
  sessionStorage.setItem(storageKey("current"), id);
  render("rooms", "pane", "messages", "typing", "presence");
  if (!r.joined) {
    r.joinError = null; // picking the room again is a retry
    joinRoom(r);
  }
  else {
    loadInitial(r);
    requestPresence(r);
  }
  if (r.member) loadMembers(r);
  closeDrawers(false);
  if (r.member) $("message-input").focus();
}

function onTopic(f) {
  const r = app.rooms.get(f.room);
  if (!r) return;
  r.topic = f.topic;
  render("pane", "rooms");
  if (r === app.current) {
    notice(f.topic ? `${f.by} set the topic: ${f.topic}` : `${f.by} cleared the topic.`);
  }
}

async function onSetTopic(ev) {
  ev.preventDefault();
  const r = app.current;
  if (!r || !r.canManage) return;
  const topic = $("topic-input").value.trim();
  if (Array.from(topic).length > 256) return notice("Topics have at most 256 characters.");
  try {
    const res = await app.api.setTopic(r.id, topic || null);
    r.topic = res.topic;
    $("topic-input").value = res.topic || "";
    const manage = $("manage-room");
    manage.open = false;
    manage.querySelector("summary").focus();
    render("pane", "rooms");
  } catch (e) {
    notice(e.status === 403 ? "Only the owner and admins can set the topic." : `cannot set the topic: ${describe(e)}`);
  }
}

/** The header's name: the display name, when one is set (the user name is beside it). */
function renderMe() {
  const node = $("me-name");
  const name = app.profile && app.profile.display_name;
  node.textContent = name || "";
  show(node, !!name);
}

async function loadProfile() {
  const session = app.session;
  try {
    const profile = await app.api.me();
    if (app.session !== session) return;
    onProfile(profile);
  } catch (_) {
    // An older server without profiles: the user name is shown, as before.
  }
}

function onProfile(profile) {
  app.profile = profile;
  if (profile.display_name) app.names.set(profile.user, profile.display_name);
  else app.names.delete(profile.user);
  renderMe();
  const r = app.current;
  if (r && r.members) {
    const me = r.members.find((m) => m.user === profile.user);
    if (me) me.display_name = profile.display_name || undefined;
  }
  render("messages", "presence");
}

/** A password change answered a fresh login: every older token, ours too, is revoked. */
function onNewLogin(login) {
  const session = { user: app.session.user, token: login.token, expires_at: login.expires_at };
  saveSession(session);
  // The old socket is closed (4001) by the server any moment now: replace it first.
  const old = app.conn;
  app.conn = null;
  if (old) old.close();
  startSession(session);
}

async function onCreateRoom(ev) {
  ev.preventDefault();
  const name = $("new-room-name").value.trim();
  const kind = $("new-room-kind").value;
  if (!NAME_RE.test(name)) return notice("Room names are 1–64 letters, digits, _ or -.", "side");
  try {
    const res = await app.api.createRoom(name, kind);
    const r = room((res && res.room) || name);
    r.kind = (res && res.kind) || kind;
    r.role = "owner";
    if (!app.roomOrder.includes(r.id)) app.roomOrder.unshift(r.id);
    $("new-room-name").value = "";
    notice("", "side");
    selectRoom(r.id);
    refreshRooms();
  } catch (e) {
    notice(e.status === 409 ? `#${name} already exists.` : `cannot create #${name}: ${describe(e)}`, "side");
  }
}

async function onStartDm(ev) {
  ev.preventDefault();
  const user = $("dm-user").value.trim();
  if (!NAME_RE.test(user)) return notice("User names are 1–64 letters, digits, _ or -.", "side");
  if (app.session && user === app.session.user) return notice("That is you.", "side");
  try {
    const r = room(await app.api.dm(user));
    r.kind = "dm";
    if (!r.role) r.role = "member";
    r.peer = user;
    app.dmPeers[r.id] = user;
    writeJson(localStorage, storageKey("dmpeers"), app.dmPeers);
    if (!app.roomOrder.includes(r.id)) app.roomOrder.unshift(r.id);
    $("dm-user").value = "";
    notice("", "side");
    selectRoom(r.id);
    refreshRooms();
  } catch (e) {
    notice(e.status === 404 ? `There is no user ${user}.` : `cannot message ${user}: ${describe(e)}`, "side");
  }
}

async function onAddMember(ev) {
  ev.preventDefault();
  const r = app.current;
  if (!r) return;
  const user = $("member-user").value.trim();
  const role = $("member-role").value;
  if (!NAME_RE.test(user)) return notice("User names are 1–64 letters, digits, _ or -.");
  try {
    await app.api.addMember(r.id, user, role);
    $("member-user").value = "";
    notice(`${user} was added to ${r.title} as ${role}.`);
    loadMembers(r);
  } catch (e) {
    if (e.status === 404) notice(`There is no user ${user}.`);
    else if (e.status === 403) notice("Only the owner and admins can add members.");
    else notice(`cannot add ${user}: ${describe(e)}`);
  }
}

async function onLeave() {
  const r = app.current;
  if (!r || !app.session) return;
  try {
    await app.api.removeMember(r.id, app.session.user);
  } catch (e) {
    if (e.status !== 404) {
      notice(`cannot leave: ${describe(e)}`);
      return;
    }
  }
  if (app.conn && r.joined) app.conn.leave(r.id).catch(() => {});
  r.joined = false;
  r.role = null;
  for (const p of r.pending.values()) r.nodes.delete(`p:${p.id}`);
  r.pending.clear();
  saveOutbox();
  app.current = null;
  sessionStorage.removeItem(storageKey("current"));
  if (r.kind !== "public") app.rooms.delete(r.id);
  render("rooms", "pane", "messages", "typing", "presence");
  refreshRooms();
}

// ---------------------------------------------------------------------------------------
// The socket: joining, history, gaps

// Rooms stay joined across reconnects (the client re-joins them with `since` itself), and
// sends stay pending in it (resent with their ids). Requests of other kinds that were waiting
// fail with `disconnected`, which resets their flags (joining, loading…).
function onConnState(state, info) {
  app.connInfo = { state, ...info };
  if (state !== "connected") {
    for (const r of app.rooms.values()) {
      r.typing.clear();
      r.online = null;
    }
    render("pane", "typing", "presence", "messages");
  }
  render("conn");
}

/** Each time a connection is welcomed (the first one too). */
function onConnected(welcome) {
  app.limits = welcome.limits || null;
  // This gateway may be newer than the one that refused typing, read or presence before.
  for (const k of Object.keys(app.features)) {
    if (app.features[k] === "unsupported") app.features[k] = "unknown";
  }
  // Refresh the list (it may have changed while we were away), join every room we are in
  // and not joined yet, and ask who is online where we look.
  joinMemberRooms();
  refreshRooms();
  const cur = app.current;
  if (cur && cur.joined) {
    requestPresence(cur);
    if (!cur.loaded) loadInitial(cur);
  }
  for (const r of app.rooms.values()) {
    advanceHead(r); // a gap whose filling a disconnect cut short is filled now
    pumpPending(r);
  }
}

/** The server removed our membership of a room (or a resume found it gone). */
function onRemoved({ room: id }) {
  const r = app.rooms.get(id);
  if (!r) return;
  r.joined = false;
  render("pane");
  refreshRooms();
}

async function joinRoom(r) {
  if (!app.conn || !app.conn.connected || r.joined || r.joining) return;
  r.joining = true;
  try {
    const lastSeq = r.head !== null ? await app.conn.joinSince(r.id, r.head) : await app.conn.join(r.id);
    r.joined = true;
    r.joinError = null;
    if (!r.member) {
      r.role = "member"; // joining a public room makes us a member
      refreshRooms();
    }
    r.lastSeq = Math.max(r.lastSeq, lastSeq);
    // The first join anchors the prev chain at last_seq: live messages link to it, and a
    // later re-join asks for everything after it (since). History is fetched when shown.
    if (r.head === null) r.head = lastSeq;
    advanceHead(r);
    render("pane", "rooms");
    if (r === app.current) {
      requestPresence(r);
      if (!r.loaded) loadInitial(r);
    }
    pumpPending(r);
  } catch (e) {
    if (e.code === "disconnected" || e.code === "closed") return; // joined again once connected
    r.joinError = e.code === "forbidden" ? "you are not a member of this room" : describe(e);
    if (r === app.current) notice(`cannot join ${r.title}: ${r.joinError}`);
  } finally {
    r.joining = false;
    render("pane", "messages");
  }
}

/** First page of a room when it is shown: the newest messages older than those held. */
async function loadInitial(r) {
  if (r.loaded || r.loadingInitial || !app.conn || !app.conn.connected) return;
  r.loadingInitial = true;
  try {
    const page = await app.conn.history(r.id, r.order.length ? r.order[0] : null, HISTORY_PAGE);
    for (const m of page.messages || []) learn(r, m);
    r.more = !!page.more;
    r.loaded = true;
  } catch (e) {
    if (e.code !== "disconnected" && e.code !== "closed") notice(`cannot load ${r.title}: ${describe(e)}`);
  } finally {
    r.loadingInitial = false;
    render("messages");
  }
}

/** Inserts a message from a history page; true when it was new. */
function learn(r, m) {
  if (!m || typeof m.seq !== "number") return false;
  learnPeer(r, m);
  return r.insert(m);
}

/** A DM's other user is whoever else writes in it. */
function learnPeer(r, m) {
  if (r.kind !== "dm" || r.peer || !app.session || m.from === app.session.user) return;
  r.peer = m.from;
  app.dmPeers[r.id] = m.from;
  writeJson(localStorage, storageKey("dmpeers"), app.dmPeers);
  render("rooms", "pane");
}

async function loadOlder(r) {
  if (r.loadingOlder || !r.more || !app.conn || !app.conn.connected || !r.order.length) return;
  r.loadingOlder = true;
  render("messages");
  try {
    const page = await app.conn.history(r.id, r.order[0], HISTORY_PAGE);
    for (const m of page.messages || []) learn(r, m);
    r.more = !!page.more && (page.messages || []).length > 0;
  } catch (e) {
    if (e.code !== "disconnected" && e.code !== "closed") notice(`cannot load older messages: ${describe(e)}`);
  } finally {
    r.loadingOlder = false;
    render("messages");
  }
}

/**
 * Moves `head` forward along the prev chain. A message whose prev is newer than head means
 * messages are missing between them: fetch them with `history`.
 */
function advanceHead(r) {
  if (r.head === null) return;
  for (let i = r.firstIndexAfter(r.head); i < r.order.length; i++) {
    const m = r.msgs.get(r.order[i]);
    if (m.prev === undefined) break; // our own message known from its ack only
    if (m.prev <= r.head || m.seq <= r.gapGivenUp) {
      r.head = m.seq;
      continue;
    }
    if (!r.filling) fillGap(r, m.seq);
    break;
  }
}

async function fillGap(r, upto) {
  r.filling = true;
  const stopAt = r.head;
  let before = upto;
  let lost = false;
  try {
    for (let round = 0; round < GAP_ROUNDS; round++) {
      const page = await app.conn.history(r.id, before, GAP_PAGE);
      const msgs = page.messages || [];
      for (const m of msgs) learn(r, m);
      if (!msgs.length || !page.more || msgs[0].seq <= stopAt || msgs[0].prev <= stopAt) break;
      before = msgs[0].seq;
    }
  } catch (e) {
    lost = e.code === "disconnected" || e.code === "closed"; // tried again once connected
    if (!lost) console.warn("chatmesh: gap fill failed", r.id, e);
  }
  r.filling = false;
  if (lost) return;
  // Whatever the history did not link is taken as is, so a broken chain cannot loop.
  r.gapGivenUp = Math.max(r.gapGivenUp, upto);
  advanceHead(r);
  render("messages");
}

/** An error the server sent without a request waiting for it. */
function onServerError(e) {
  if (e.request === "typing") onTypingError(e);
  else if (e.request === "read") onReadError(e);
  else if (e.code === "rate_limited") notice("You are sending too fast; slow down a little.");
  else console.warn("chatmesh: server error", e.code, e.message);
}

function onMessage(m) {
  const r = app.rooms.get(m.room);
  if (!r || typeof m.seq !== "number") return;
  const me = app.session.user;
  const fresh = r.insert(m);
  if (m.from === me && r.pending.has(m.id)) {
    // Our own message came back: the pending bubble becomes the stored message.
    const node = r.nodes.get(`p:${m.id}`);
    r.pending.delete(m.id);
    r.nodes.delete(`p:${m.id}`);
    if (node && !r.nodes.has(`m:${m.seq}`)) r.nodes.set(`m:${m.seq}`, node);
    saveOutbox();
  }
  learnPeer(r, m);
  r.typing.delete(m.from);
  if (r.head !== null) advanceHead(r);
  if (fresh && m.from !== me) {
    const concerns = r.kind === "dm" || notify.mentions(m.body, me, app.profile && app.profile.display_name);
    const who = app.names.get(m.from) || m.from;
    notify.onIncoming(
      { title: r.kind === "dm" ? who : `${who} in ${r.title}`, body: m.body, tag: `chatmesh-${r.id}`, concerns },
      () => selectRoom(r.id),
    );
  }
  if (fresh && m.seq > r.lastSeq) {
    r.lastSeq = m.seq;
    if (m.from !== me && m.seq > r.seen && !isVisible(r)) {
      r.unread += 1;
      render("rooms");
    }
  }
  if (r === app.current) render("messages", "typing");
}

function onTyping(f) {
  app.features.typing = "supported";
  const r = app.rooms.get(f.room);
  if (!r || !app.session || f.user === app.session.user) return;
  r.typing.set(f.user, Date.now() + TYPING_SHOW_MS);
  if (r === app.current) render("typing");
}

function onReceipt(f) {
  app.features.read = "supported";
  const r = app.rooms.get(f.room);
  if (!r || typeof f.seq !== "number") return;
  r.receipts.set(f.user, Math.max(r.receipts.get(f.user) || 0, f.seq));
  if (r === app.current) render("messages");
}

function onPresence(f) {
  app.features.presence = "supported";
  const r = app.rooms.get(f.room);
  if (!r) return;
  r.online = new Set(Array.isArray(f.online) ? f.online : []);
  if (r === app.current) render("presence");
}

function onPresenceDiff(f) {
  app.features.presence = "supported";
  const r = app.rooms.get(f.room);
  if (!r) return;
  if (!r.online) r.online = new Set();
  for (const u of f.joined || []) r.online.add(u);
  if (r.members && (f.joined || []).some((u) => !r.members.some((m) => m.user === u))) loadMembers(r);
  for (const u of f.left || []) {
    r.online.delete(u);
    r.typing.delete(u);
  }
  if (r === app.current) render("presence", "typing");
}

function onGap(f) {
  const r = app.rooms.get(f.room);
  if (!r) return;
  const span = f.from === f.to ? `Message #${f.from} is` : `Messages #${f.from}–#${f.to} are`;
  r.notes.push({ at: f.from, text: `${span} no longer available.` });
  if (r.head !== null && f.to > r.head) r.head = f.to;
  advanceHead(r);
  if (r === app.current) render("messages");
}

function requestPresence(r) {
  if (app.features.presence === "unsupported" || !app.conn || !app.conn.connected || !r.joined) return;
  app.conn.presence(r.id).then((online) => onPresence({ room: r.id, online }), (e) => {
    if (e.code === "bad_request") {
      if (app.features.presence !== "unsupported") {
        console.info(`chatmesh: presence unavailable on this server (${e.message})`);
      }
      app.features.presence = "unsupported";
    }
    render("presence");
  });
}

function isVisible(r) {
  if (r !== app.current || document.visibilityState !== "visible") return false;
  const list = $("message-list");
  return list.scrollHeight - list.scrollTop - list.clientHeight < NEAR_EDGE_PX;
}

/** Tells the server (and so the other members) how far we have read, when we can see it. */
function maybeRead(r) {
  if (!r || !r.member || !isVisible(r)) return;
  const newest = r.newest();
  if (newest > r.seen) {
    r.seen = newest;
    app.seen[r.id] = newest;
    writeJson(localStorage, storageKey("seen"), app.seen);
  }
  if (r.unread) {
    r.unread = 0;
    render("rooms");
  }
  if (newest <= r.readSent || !r.joined || app.features.read === "unsupported") return;
  if (!app.conn || !app.conn.connected) return;
  app.conn.read(r.id, newest).catch(() => {}); // a refusal comes as an error event
  r.readSent = newest;
}

function onReadError(e) {
  if (e.code === "bad_request" && app.features.read !== "unsupported") {
    app.features.read = "unsupported";
    console.info(`chatmesh: read receipts unavailable on this server (${e.message})`);
  }
}

function onTypingError(e) {
  if (e.code === "bad_request" && app.features.typing !== "unsupported") {
    app.features.typing = "unsupported";
    console.info(`chatmesh: typing indicator unavailable on this server (${e.message})`);
    render("typing");
  }
}

// ---------------------------------------------------------------------------------------
// Sending: pending until acked, resent with the same id after a reconnect

function saveOutbox() {
  if (!app.session) return;
  const out = [];
  for (const r of app.rooms.values()) {
    for (const p of r.pending.values()) {
      if (p.state !== "acked") out.push({ room: r.id, id: p.id, body: p.body, created: p.created });
    }
  }
  writeJson(sessionStorage, storageKey("outbox"), out);
}

function loadOutbox() {
  const out = readJson(sessionStorage, storageKey("outbox"), []);
  if (!Array.isArray(out)) return;
  for (const p of out) {
    if (!p || !NAME_RE.test(p.room) || typeof p.id !== "string" || typeof p.body !== "string") continue;
    const r = room(p.room);
    r.role = r.role || "member"; // corrected by the room list
    r.pending.set(p.id, { id: p.id, body: p.body, state: "pending", created: p.created || Date.now() });
  }
}

function onComposerSubmit(ev) {
  ev.preventDefault();
  const r = app.current;
  const input = $("message-input");
  const body = input.value;
  if (!r || !r.member || !body.trim()) return;
  const max = (app.limits && app.limits.max_body_bytes) || DEFAULT_MAX_BODY;
  if (byteLength(body) > max) {
    notice(`That message is too long (at most ${max} bytes).`);
    return;
  }
  const p = { id: newMessageId(), body, state: "pending", created: Date.now() };
  r.pending.set(p.id, p);
  saveOutbox();
  input.value = "";
  autosize();
  app.stickToBottom = true;
  render("messages");
  pumpPending(r);
}

/**
 * Sends the room's pending messages one at a time, in order. A send waiting when the
 * connection breaks (or made while it is down) stays with the client, which writes it (same
 * id) once connected again; the ack comes then.
 */
async function pumpPending(r) {
  if (r.sending || !app.conn || !r.joined) return;
  const conn = app.conn;
  r.sending = true;
  try {
    for (;;) {
      const p = Array.from(r.pending.values()).find((x) => x.state === "pending");
      if (!p || app.conn !== conn || !r.joined) return;
      let ack;
      try {
        ack = await conn.sendWithId(r.id, p.id, p.body);
      } catch (e) {
        if (e.code === "closed" || app.conn !== conn) return; // logged out
        if (["timeout", "rate_limited", "unavailable", "internal", "disconnected", "overflow"].includes(e.code)) {
          // Transient: retry the same id shortly; the server dedupes it.
          setTimeout(() => pumpPending(r), 2000);
          return;
        }
        p.state = "failed";
        p.error = e.code === "too_large" ? "too large" : e.code === "forbidden" ? "you may not post here" : describe(e);
        saveOutbox();
        render("messages");
        continue;
      }
      onAck(r, p, ack);
    }
  } finally {
    r.sending = false;
  }
}

function onAck(r, p, ack) {
  if (!r.pending.has(p.id)) return; // the message frame came first
  if (r.msgs.has(ack.seq)) {
    r.pending.delete(p.id);
    r.nodes.delete(`p:${p.id}`);
  } else {
    p.state = "acked";
    p.seq = ack.seq;
    p.ts = ack.ts;
  }
  saveOutbox();
  if (r === app.current) render("messages");
}

// ---------------------------------------------------------------------------------------
// Composer, typing, timers, wiring

function autosize() {
  const input = $("message-input");
  input.rows = Math.min(6, Math.max(1, input.value.split("\n").length));
}

function onComposerInput() {
  autosize();
  const r = app.current;
  const input = $("message-input");
  if (!r || !r.joined || !input.value || app.features.typing === "unsupported") return;
  const now = Date.now();
  if (now - r.lastTypingSent < TYPING_SEND_EVERY_MS) return;
  r.lastTypingSent = now;
  app.conn.typing(r.id).catch(() => {}); // a refusal comes as an error event
}

function onComposerKey(ev) {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $("composer").requestSubmit();
  }
}

function tick() {
  if (app.connInfo.state === "reconnecting") render("conn");
  const r = app.current;
  if (r && r.typing.size) {
    const now = Date.now();
    let changed = false;
    for (const [u, until] of r.typing) {
      if (until <= now) {
        r.typing.delete(u);
        changed = true;
      }
    }
    if (changed) render("typing");
  }
}

function onScroll() {
  const r = app.current;
  const list = $("message-list");
  if (r && list.scrollTop < NEAR_EDGE_PX && r.more) loadOlder(r);
  if (r) maybeRead(r);
}

function main() {
  app.api = new Api(() => {
    if (!app.renewing) endSession("Your session has expired. Please log in again.");
  });
  $("login-form").addEventListener("submit", onLoginSubmit);
  $("logout").addEventListener("click", () => endSession());
  $("new-room-form").addEventListener("submit", onCreateRoom);
  $("dm-form").addEventListener("submit", onStartDm);
  $("member-form").addEventListener("submit", onAddMember);
  $("topic-form").addEventListener("submit", onSetTopic);
  $("settings-open").addEventListener("click", () => openSettings(app.session && app.session.user, app.profile));
  initSettings({
    api: () => app.api,
    onProfile,
    onNewLogin,
    renewing: (on) => {
      app.renewing = on;
    },
  });
  initLayout();
  $("leave-room").addEventListener("click", onLeave);
  $("refresh-rooms").addEventListener("click", () => refreshRooms());
  $("composer").addEventListener("submit", onComposerSubmit);
  $("message-input").addEventListener("input", onComposerInput);
  $("message-input").addEventListener("keydown", onComposerKey);
  $("message-list").addEventListener("scroll", onScroll, { passive: true });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && app.current) maybeRead(app.current);
  });
  const session = loadSession();
  if (session) startSession(session);
  else showLogin();
}

main();
