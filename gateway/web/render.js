// chatmesh web client — render.js: draws the state (state.js) into the DOM of index.html,
// batched: state changes mark parts dirty with render(...), one microtask redraws them.
// What a click in the drawn parts does (select a room, retry a send, load older messages, mark
// read) is app.js's: it registers those in `actions`.
"use strict";

import { ApiError } from "./api.js";
import { attachmentList } from "./attachments.js";
import { $, h, show } from "./dom.js";
import { eventKind, eventText, isEvent } from "./events.js";
import { dayKey, dayLabel, formatTime } from "./format.js";
import { renderBody } from "./markdown.js";
import { avatar, nameNodes, renderMemberList } from "./people.js";
import { app, isChange } from "./state.js";
import { renderUploads } from "./uploads.js";

const GROUP_WITHIN_MS = 5 * 60_000;
export const NEAR_EDGE_PX = 48;

/**
 * Set by app.js: selectRoom(id), retry(r, p), discard(r, p), loadOlder(r), maybeRead(r); by
 * changes.js: edit(r, m), askDelete(r, m), confirmDelete(r, m), cancelDelete(); by
 * threads.js: react(r, m, key), palette(r, m), reply(r, m), openThread(r, root),
 * showMessage(r, seq).
 */
export const actions = {};

// ---------------------------------------------------------------------------------------
// Rendering (batched: state changes mark parts dirty, one microtask redraws them)

export function render(...parts) {
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

export function renderConn() {
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
  const mention = h("span", {
    className: "badge mention",
    textContent: "@",
    hidden: !(r.mentions > 0) || active,
    dataset: { testid: "mentions" },
    attrs: { "aria-hidden": "true" },
  });
  const icon = r.kind === "dm" ? "@" : r.kind === "private" ? "" : "#";
  const name = r.kind === "dm" ? (r.peer || "direct message") : r.name || r.id;
  const btn = h(
    "button",
    {
      type: "button",
      className: "room-btn",
      title: r.member ? (r.topic ? `#${r.id}: ${r.topic}` : `#${r.id}`) : `Join #${r.id}`,
      attrs: { "aria-label": roomLabel(r, name) },
    },
    h("span", { className: `kind ${r.kind}`, textContent: icon, attrs: { "aria-hidden": "true" } }),
    h("span", { className: "name", textContent: name }),
    " ", // read as "lobby 2", not "lobby2" (see roomLabel)
    r.member ? mention : "",
    r.member ? badge : h("span", { className: "join-hint", textContent: "join" }),
  );
  if (active) btn.setAttribute("aria-current", "true");
  btn.addEventListener("click", () => actions.selectRoom(r.id));
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
        mentions: String(r.mentions),
      },
    },
    btn,
  );
}

/** What a screen reader says for a room button: kind, name, unread, join. */
function roomLabel(r, name) {
  const kind = r.kind === "dm" ? "direct message with" : r.kind === "private" ? "private room" : "room";
  let label = `${kind} ${name}`;
  // The visible text comes in the label in order ("lobby 2", "lobby join"), for speech input.
  if (!r.member) label += ": join (not joined yet)";
  else if (r.unread > 0 && app.current !== r) {
    label += `, ${r.unread > 99 ? "99+" : r.unread} unread`;
    if (r.mentions > 0) label += `, ${r.mentions > 99 ? "99+" : r.mentions} mentioning you`;
  }
  return label;
}

function renderRooms() {
  const mine = [];
  const others = [];
  for (const id of app.roomOrder) {
    const r = app.rooms.get(id);
    if (!r || (r.closed && r !== app.current)) continue;
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
  const bits = r.name ? [`#${r.id}`, r.kind] : [r.kind];
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
  const nameForm = $("name-form");
  if (nameForm.hidden !== !r.canManage || nameForm.dataset.room !== r.id) {
    $("name-input").value = r.name || "";
    nameForm.dataset.room = r.id;
  }
  show(nameForm, r.canManage);
  show($("moderate-form"), r.canManage);
  show($("member-form"), r.canManage);
  const manage = $("manage-room");
  if (!r.canManage) manage.open = false;
  show(manage, r.canManage);
  show($("leave-room"), r.member);
  // A DM cannot be left: it is closed (listed again by its next message).
  $("leave-room").textContent = r.kind === "dm" ? "Close" : "Leave";
  // A DM's other user can be blocked (blocks extension) once the DM knows who that is.
  const block = $("block-peer");
  const peer = r.kind === "dm" && r.member ? r.peer : null;
  show(block, !!peer);
  if (peer) {
    const blocked = app.blocked.has(peer);
    block.textContent = blocked ? `Unblock @${peer}` : `Block @${peer}`;
    block.setAttribute("aria-pressed", String(blocked));
    block.dataset.peer = peer;
  }
  const input = $("message-input");
  // An end-to-end encrypted room needs an MLS client (the Rust SDK, `chatmesh-e2ee`); this
  // one reads and writes plaintext rooms only (docs/E2EE.md).
  const sealed = r.kind === "e2ee";
  const muted = mutedNow(r);
  input.disabled = !r.member || sealed || muted;
  $("send-button").disabled = !r.member || sealed || muted;
  input.placeholder = sealed
    ? "End-to-end encrypted: use an MLS client (this web client cannot read or write it)"
    : muted ? "You are muted in this room"
    : r.member ? `Message ${r.title}` : "Join this room to write";
  renderUploads();
}

/** Is the signed-in user muted in `r` now (from the member list, once loaded)? */
function mutedNow(r) {
  const me = r.members && app.session && r.members.find((m) => m.user === app.session.user);
  if (!me || !me.muted) return false;
  return typeof me.muted_until !== "number" || me.muted_until * 1000 > Date.now();
}

function seenMap(r) {
  // user -> the newest held message at or before their receipt; shown under that message.
  const out = new Map();
  if (!r.receipts.size || !r.order.length) return out;
  for (const [user, seq] of r.receipts) {
    if (app.session && user === app.session.user) continue;
    let i = r.firstIndexAfter(seq) - 1;
    // Changes have no line of their own, and a notice has no "seen by".
    while (i >= 0 && (isChange(r.msgs.get(r.order[i])) || isEvent(r.msgs.get(r.order[i])))) i -= 1;
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
      h("div", { className: "reply-quote", hidden: true }),
      h("div", { className: "body" }),
      h("div", { className: "files" }),
      h("div", { className: "reactions", hidden: true, attrs: { role: "group", "aria-label": "Reactions" } }),
      h("div", { className: "thread-link", hidden: true }),
      h("div", { className: "seen", hidden: true }),
      h("div", { className: "actions", attrs: { role: "group", "aria-label": "Message actions" } }),
    );
    r.nodes.set(key, node);
  }
  // The body as it is now: edits and deletes change a node already drawn.
  const version = m.deleted ? "deleted" : m.edited ? `edited:${m.edited.seq}` : "";
  if (node.dataset.version !== version || !node.dataset.drawn) {
    node.dataset.drawn = "1";
    node.dataset.version = version;
    node.classList.toggle("deleted", !!m.deleted);
    const body = node.querySelector(".body");
    if (m.deleted) {
      body.replaceChildren(h("span", { className: "tombstone", textContent: "This message was deleted." }));
    } else {
      body.replaceChildren(...renderBody(m.body));
      if (m.edited) {
        const when = new Date(m.edited.ts || 0);
        body.append(" ", h("span", {
          className: "edited",
          textContent: "(edited)",
          title: Number.isNaN(when.getTime()) || !m.edited.ts ? "edited" : `edited ${when.toLocaleString()}`,
          dataset: { testid: "edited" },
        }));
      }
    }
    const files = node.querySelector(".files");
    files.replaceChildren(...(!m.deleted && m.attachments && m.attachments.length ? [attachmentList(r.id, m.attachments)] : []));
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
  messageActions(r, m, node, state);
  replyQuote(r, m, node);
  reactionChips(r, m, node, state);
  threadLink(r, m, node, state);
  return node;
}

/** "↪ alice: the start of what she wrote" above a reply; a click shows that message. */
function replyQuote(r, m, node) {
  const quote = node.querySelector(".reply-quote");
  const to = m.reply_to || (m.replyTo && Number(m.replyTo));
  if (!to) {
    quote.hidden = true;
    return;
  }
  const target = r.msgs.get(to);
  const text = !target ? "a message not loaded here" : target.deleted ? "a deleted message"
    : `${app.names.get(target.from) || target.from}: ${target.body.length > 80 ? `${target.body.slice(0, 79)}…` : target.body}`;
  const key = `${to}|${text}`;
  if (quote.dataset.key === key) return;
  quote.dataset.key = key;
  const b = h("button", { type: "button", className: "link", textContent: `↪ ${text}`, dataset: { testid: "reply-quote" }, attrs: { "aria-label": `In reply to ${text}` } });
  b.addEventListener("click", () => actions.showMessage(r, to));
  quote.replaceChildren(b);
  quote.hidden = false;
}

/** The reactions under a message: one toggle per key ("👍 2", pressed when one reacted). */
function reactionChips(r, m, node, state) {
  const row = node.querySelector(".reactions");
  const me = app.session && app.session.user;
  const list = state === "acked" && !m.deleted && Array.isArray(m.reactions) ? m.reactions.filter((x) => x.count > 0) : [];
  const key = JSON.stringify(list.map((x) => [x.key, x.count, (x.users || []).includes(me)]));
  if (row.dataset.key === key) return;
  row.dataset.key = key;
  row.replaceChildren(...list.map((x) => {
    const mine = (x.users || []).includes(me);
    const who = (x.users || []).join(", ");
    const b = h("button", {
      type: "button",
      className: `chip${mine ? " mine" : ""}`,
      textContent: `${x.key} ${x.count}`,
      title: who + (x.count > (x.users || []).length ? " and others" : ""),
      disabled: !r.member,
      dataset: { testid: "reaction", key: x.key, count: String(x.count) },
      attrs: { "aria-pressed": String(mine), "aria-label": `${x.key} ${x.count}${mine ? ", yours: take it off" : ": add yours"}` },
    });
    b.addEventListener("click", () => actions.react(r, m, x.key));
    return b;
  }));
  row.hidden = list.length === 0;
}

/** "3 replies" under a thread's root: opens the thread. */
function threadLink(r, m, node, state) {
  const box = node.querySelector(".thread-link");
  const n = state === "acked" && m.thread ? m.thread.count : 0;
  const key = String(n);
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  if (!n) {
    box.replaceChildren();
    box.hidden = true;
    return;
  }
  const b = h("button", { type: "button", className: "link", textContent: n === 1 ? "1 reply" : `${n} replies`, dataset: { testid: "thread-link" } });
  b.addEventListener("click", () => actions.openThread(r, m.seq));
  box.replaceChildren(b);
  box.hidden = false;
}

/**
 * The edit and delete buttons of a stored message: edit for its author, delete for its
 * author and the room's owner and admins; a delete asks to be confirmed in place.
 */
function messageActions(r, m, node, state) {
  const bar = node.querySelector(".actions");
  const me = app.session && app.session.user;
  const mine = !!me && m.from === me;
  const mayDelete = mine || r.role === "owner" || r.role === "admin";
  if (state !== "acked" || !m.seq || m.deleted || !r.member) {
    bar.replaceChildren();
    bar.hidden = true;
    return;
  }
  bar.hidden = false;
  const button = (text, label, testid, onClick, extra = "") => {
    const b = h("button", { type: "button", className: `link ${extra}`.trim(), textContent: text, dataset: { testid }, attrs: { "aria-label": label } });
    b.addEventListener("click", () => onClick(r, m));
    return b;
  };
  if (app.confirmDelete === `${r.id}:${m.seq}`) {
    bar.classList.add("confirm");
    bar.replaceChildren(
      h("span", { textContent: "Delete this message? " }),
      button("Delete", "Delete this message for everyone", "confirm-delete", actions.confirmDelete, "danger"),
      " ",
      button("Cancel", "Keep this message", "cancel-delete", actions.cancelDelete),
    );
    return;
  }
  bar.classList.remove("confirm");
  const editing = app.editing && app.editing.room === r.id && app.editing.seq === m.seq;
  node.classList.toggle("editing", !!editing);
  const paletteOpen = app.palette === `${r.id}:${m.seq}`;
  bar.classList.toggle("confirm", paletteOpen);
  const react = button("React", "Add a reaction", "react-message", actions.palette);
  react.setAttribute("aria-expanded", String(paletteOpen));
  bar.replaceChildren(
    react,
    button("Reply", "Reply to this message", "reply-message", actions.reply),
    mine ? button("Edit", "Edit this message", "edit-message", actions.edit) : "",
    mayDelete ? button("Delete", "Delete this message", "delete-message", actions.askDelete) : "",
    paletteOpen ? h("span", { className: "palette", attrs: { role: "group", "aria-label": "Reactions to add" } },
      ...PALETTE.map((key) => {
        const b = h("button", { type: "button", className: "chip", textContent: key, dataset: { testid: "palette-key", key } });
        b.addEventListener("click", () => actions.react(r, m, key));
        return b;
      })) : "",
  );
}

/** The reactions offered by "React". */
const PALETTE = ["👍", "❤️", "😂", "🎉", "😮", "😢"];

function failedControls(r, p) {
  const retry = h("button", { type: "button", className: "link", textContent: "retry" });
  retry.addEventListener("click", () => actions.retry(r, p));
  const drop = h("button", { type: "button", className: "link", textContent: "discard" });
  drop.addEventListener("click", () => actions.discard(r, p));
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
    btn.addEventListener("click", () => actions.loadOlder(r));
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
    if (isChange(m)) continue; // an edit or delete shows on the message it changes
    daySep(m.ts);
    if (isEvent(m)) {
      items.push(eventNode(r, m));
      prevFrom = null; // the next message starts a group of its own
      continue;
    }
    if (m.mls) {
      // An MLS message: the web client holds no keys. Commits, proposals and welcomes are
      // not shown; an application message is a notice that one was sent.
      if (m.mls.kind === "app") items.push(sealedNode(r, m));
      prevFrom = null;
      continue;
    }
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
    const m = { id: p.id, from: app.session.user, ts: p.ts || p.created, body: p.body, attachments: p.files, seq: p.seq, error: p.error, replyTo: p.replyTo };
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
  actions.maybeRead(r);
}

/**
 * An end-to-end encrypted message as a one-line notice (the web client cannot read it). Its
 * author and the room's owner and admins may delete it (a plain delete: the server drops the
 * ciphertext), confirmed in place as any message's delete.
 */
function sealedNode(r, m) {
  const key = `x:${m.seq}`;
  const who = app.names.get(m.from) || m.from || "someone";
  const text = `🔒 ${who} sent an encrypted message`;
  const me = app.session && app.session.user;
  const mayDelete = r.member && (m.from === me || r.role === "owner" || r.role === "admin");
  const confirming = app.confirmDelete === `${r.id}:${m.seq}`;
  const version = `${text}|${mayDelete ? (confirming ? "confirm" : "delete") : ""}`;
  let node = r.nodes.get(key);
  if (node && node.dataset.version === version) return node;
  const button = (label, aria, testid, onClick, extra = "") => {
    const b = h("button", { type: "button", className: `link ${extra}`.trim(), textContent: label, dataset: { testid }, attrs: { "aria-label": aria } });
    b.addEventListener("click", () => onClick(r, m));
    return b;
  };
  const controls = !mayDelete ? [] : confirming
    ? [" ", h("span", { textContent: "Delete this message? " }),
      button("Delete", "Delete this message for everyone", "confirm-delete", actions.confirmDelete, "danger"), " ",
      button("Cancel", "Keep this message", "cancel-delete", actions.cancelDelete)]
    : [" ", button("Delete", "Delete this encrypted message", "delete-message", actions.askDelete)];
  node = h(
    "li",
    { className: "event muted small", dataset: { testid: "sealed-message", seq: String(m.seq), from: m.from || "", text, version } },
    h("span", { className: "event-text", textContent: text }),
    " ",
    h("time", { className: "ts", textContent: formatTime(m.ts || 0) }),
    ...controls,
  );
  r.nodes.set(key, node);
  return node;
}

/**
 * A room event (a topic or name change, a ban, a mute…) as a one-line notice: no bubble, no
 * actions. Rebuilt when the names it shows change (display names learnt later).
 */
function eventNode(r, m) {
  const key = `e:${m.seq}`;
  const text = eventText(m, (u) => app.names.get(u) || u);
  let node = r.nodes.get(key);
  if (node && node.dataset.text === text) return node;
  const when = new Date(m.ts || 0);
  node = h(
    "li",
    { className: "event muted small", dataset: { testid: "room-event", kind: eventKind(m), seq: String(m.seq), from: m.from || "", text } },
    h("span", { className: "event-text", textContent: text }),
    " ",
    h("time", {
      className: "ts",
      textContent: formatTime(m.ts || 0),
      dateTime: Number.isNaN(when.getTime()) ? "" : when.toISOString(),
      title: when.toLocaleString(),
    }),
  );
  r.nodes.set(key, node);
  return node;
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
export function notice(text, where) {
  const node = $(where === "side" ? "side-error" : "room-notice");
  node.textContent = text;
  show(node, !!text);
  clearTimeout(node.hideTimer);
  if (text) node.hideTimer = setTimeout(() => show(node, false), 6000);
}

export function describe(err) {
  if (err instanceof ApiError) {
    if (err.status === 0) return "cannot reach the server";
    if (err.status === 429) return "too many requests; try again in a moment";
    return err.message || err.code;
  }
  return (err && err.message) || String(err);
}

