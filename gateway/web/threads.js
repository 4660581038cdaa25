// chatmesh web client — threads.js: reactions, replies and threads (docs/PROTOCOL.md
// "Reactions", "Replies and threads"). "React" on a message opens a palette; a reaction
// under a message toggles one's own. "Reply" puts the composer in reply mode (the send
// carries `reply_to`); a root's "N replies" opens the thread in a dialog, paged from
// `GET …/thread`, with its own reply box, and marks it read up to its last reply.
// Reactions and replies are sends the server orders; they show when their message frames
// arrive (state.js counts them on the messages they refer to).
"use strict";

import { $, h, show } from "./dom.js";
import { formatTime } from "./format.js";
import { actions, describe, notice, render } from "./render.js";
import { app, newMessageId } from "./state.js";

const THREAD_PAGE = 50;

/** The thread shown in the dialog. */
const thread = { room: null, root: null, after: null, last: 0 };

function snippet(m) {
  if (!m) return "a message";
  const who = app.names.get(m.from) || m.from;
  const body = m.deleted ? "(deleted)" : m.body.length > 60 ? `${m.body.slice(0, 59)}…` : m.body;
  return `${who}: ${body}`;
}

/** Adds `key` to message `m`, or takes it off when it is one's own already. */
function toggleReaction(r, m, key) {
  const me = app.session && app.session.user;
  if (!app.conn || !me) return;
  app.palette = null;
  render("messages");
  const mine = (m.reactions || []).some((x) => x.key === key && (x.users || []).includes(me));
  const sent = mine ? app.conn.unreact(r.id, m.seq, key) : app.conn.react(r.id, m.seq, key);
  sent.catch((e) => {
    if (e.code === "closed") return;
    if (e.code === "forbidden") notice("That message has as many reactions as it can take.");
    else notice(`Could not react: ${describe(e)}`);
  });
}

/** Puts the composer in reply mode for message `m`. */
export function startReply(r, m) {
  app.replying = { room: r.id, seq: m.seq };
  $("reply-text").textContent = `Replying to ${snippet(m)}`;
  show($("reply-banner"), true);
  $("message-input").focus();
}

/** Leaves reply mode. */
export function cancelReply() {
  app.replying = null;
  show($("reply-banner"), false);
}

/** The seq the composer's next message replies to in room `r`, if any (and leaves reply mode). */
export function takeReply(r) {
  const at = app.replying;
  if (!at || !r || at.room !== r.id) return null;
  cancelReply();
  return at.seq;
}

/** Scrolls to message `seq` of the room shown, when it is loaded. */
function showMessage(r, seq) {
  const node = r.nodes.get(`m:${seq}`);
  if (!node || !node.isConnected) {
    notice("That message is older than what is loaded here: scroll up to find it.");
    return;
  }
  node.scrollIntoView({ block: "center" });
  node.classList.add("found");
  setTimeout(() => node.classList.remove("found"), 3000);
}

function threadItem(m) {
  const who = app.names.get(m.from) || m.from;
  return h(
    "li",
    { className: `thread-msg${m.deleted ? " deleted" : ""}`, dataset: { testid: "thread-message", seq: String(m.seq) } },
    h("span", { className: "search-where", textContent: `${who} · ${formatTime(m.ts)}` }),
    h("span", { className: "search-body", textContent: m.deleted ? "This message was deleted." : m.body }),
  );
}

async function loadThread(more) {
  const list = $("thread-list");
  $("thread-status").textContent = "Loading…";
  try {
    const options = { limit: THREAD_PAGE };
    if (more && thread.after) options.after = thread.after;
    const page = await app.api.call((http) => http.thread(thread.room, thread.root, options));
    if (!more) {
      list.replaceChildren();
      $("thread-root").replaceChildren(page.root ? threadItem(page.root) : h("li", { className: "muted", textContent: "The first message is no longer kept." }));
    }
    list.append(...page.messages.map(threadItem));
    if (page.messages.length) {
      thread.after = page.messages[page.messages.length - 1].seq;
      thread.last = Math.max(thread.last, thread.after);
    }
    show($("thread-more"), page.more);
    const n = list.children.length;
    $("thread-status").textContent = `${n === 1 ? "1 reply" : `${n} replies`}${page.unread ? `, ${page.unread} unread` : ""}.`;
    $("thread-status").dataset.unread = String(page.unread);
    if (thread.last > page.read) {
      await app.api.call((http) => http.readThread(thread.room, thread.root, thread.last));
    }
  } catch (e) {
    $("thread-status").textContent = `Could not load the thread: ${describe(e)}`;
  }
}

/** Opens the thread of `root` in room `r`. */
export function openThread(r, root) {
  thread.room = r.id;
  thread.root = root;
  thread.after = null;
  thread.last = 0;
  $("thread-input").value = "";
  const dialog = $("thread");
  if (!dialog.open) dialog.showModal();
  loadThread(false);
  $("thread-input").focus();
}

/**
 * The reply last written and not confirmed: sending the same text again in the same thread
 * reuses its id, so a retry after a timeout (stored, its ack lost) is stored once.
 * @type {{room: string, root: number, body: string, id: string} | null}
 */
let unconfirmed = null;

async function onThreadReply(ev) {
  ev.preventDefault();
  const body = $("thread-input").value;
  if (!body.trim() || !app.conn || !thread.room) return;
  $("thread-input").value = "";
  const same = unconfirmed && unconfirmed.room === thread.room && unconfirmed.root === thread.root && unconfirmed.body === body;
  const id = same && unconfirmed ? unconfirmed.id : newMessageId();
  unconfirmed = { room: thread.room, root: thread.root, body, id };
  try {
    await app.conn.sendWithId(thread.room, id, body, { replyTo: thread.root });
    unconfirmed = null;
    await loadThread(false);
  } catch (e) {
    $("thread-status").textContent = `Not confirmed: ${describe(e)}`;
    $("thread-input").value = body;
  }
}

/** Forgets reply mode and closes the thread (another room, or the session ended). */
export function resetThreads() {
  cancelReply();
  app.palette = null;
  if ($("thread").open) $("thread").close();
}

export function initThreads() {
  actions.react = toggleReaction;
  actions.palette = (r, m) => {
    const at = `${r.id}:${m.seq}`;
    app.palette = app.palette === at ? null : at;
    render("messages");
  };
  actions.reply = (r, m) => startReply(r, m);
  actions.openThread = (r, root) => openThread(r, root);
  actions.showMessage = showMessage;
  $("reply-cancel").addEventListener("click", () => {
    cancelReply();
    $("message-input").focus();
  });
  $("thread-close").addEventListener("click", () => $("thread").close());
  $("thread-more").addEventListener("click", () => loadThread(true));
  $("thread-form").addEventListener("submit", onThreadReply);
}
