// chatmesh web client — app.js: the page itself. Turns server frames and user actions into
// the state (state.js), which render.js draws; logs in and out, keeps the room list, joins,
// loads history, fills gaps and sends. HTTP lives in api.js, the session in socket.js (both
// over /chatmesh.js, the @chatmesh/client package: it re-joins rooms with `since` and
// resends unacked sends with their ids after a reconnect, and delivers each message once).
//
// Other modules: dom.js (helpers), markdown.js (message bodies), format.js (times, days,
// avatars, sizes), people.js (names, avatars, the member list), notify.js (desktop
// notifications, sound), push.js (push notifications through the service worker sw.js),
// account.js (the settings dialog), events.js (room events: moderation, topic, name, shown
// as notices), moderate.js (the room name and ban/mute forms), layout.js (drawers on narrow
// screens, keyboard paths), files.js (file bytes over HTTP), uploads.js (the files of the
// message being written), attachments.js (the files of messages, the image viewer). See
// docs/WEB.md.
//
// Safety: every piece of user content (names, bodies, room ids, topics, file names) goes
// into the page through textContent or attribute values, never as HTML.
"use strict";

import { initSettings, openSettings } from "./account.js";
import { Api, ApiError, NAME_RE, ROOM_RE, clearSession, loadSession, saveSession } from "./api.js";
import { hideViewer, initAttachments } from "./attachments.js";
import { initChanges, onEditKey, resetChanges, submitEdit } from "./changes.js";
import { initCompletion, onCompletionKey, updateCompletion } from "./complete.js";
import { MEMBER_EVENTS, applyRoomEvent, eventKind, eventSubject, isEvent } from "./events.js";
import { initInvitations, loadInvitations, resetInvitations } from "./invites.js";
import { initModeration } from "./moderate.js";
import { initSearch, resetSearch } from "./search.js";
import { cancelReply, initThreads, resetThreads, takeReply } from "./threads.js";
import { $, show } from "./dom.js";
import { forgetFiles } from "./files.js";
import { closeDrawers, initLayout } from "./layout.js";
import * as notify from "./notify.js";
import * as push from "./push.js";
import { NEAR_EDGE_PX, actions, describe, notice, render, renderConn } from "./render.js";
import { createClient } from "./socket.js";
import { app, isChange, newMessageId, readJson, room, storageKey, writeJson } from "./state.js";
import { initUploads, takeUploads, uploading } from "./uploads.js";

const HISTORY_PAGE = 50;
/**
 * Messages held per room (and so in its DOM) while its newest are in view; older ones are
 * dropped and come back with "load older messages". `localStorage["chatmesh.maxHeld"]`
 * sets another cap (at least one history page), for tests and for those who want more.
 */
const MAX_HELD = 500;
const GAP_PAGE = 100;
const GAP_ROUNDS = 20;
const TYPING_SEND_EVERY_MS = 2500;
const TYPING_SHOW_MS = 4000;
const DEFAULT_MAX_BODY = 16 * 1024;
const MEMBERS_RELOAD_MS = 5000;
/** A message written again this long after its first write may be past the server's
 * duplicate window (2 minutes by default): its resend asks the server to look for it. */
const RESEND_CHECK_AFTER_MS = 30_000;

// ---------------------------------------------------------------------------------------
// Small helpers

function byteLength(s) {
  return new TextEncoder().encode(s).length;
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
  show($("search-open"), true);
  show($("menu-toggle"), true);
  app.names = new Map();
  app.profile = null;
  app.blocked = new Set();
  renderMe();
  loadProfile();
  loadBlocks();
  loadInvitations();
  const client = createClient({
    token: session.token,
    user: session.user,
    onState: (state, info) => {
      if (app.conn === client) onConnState(state, info);
    },
    onUnauthorized: () => {
      // A password change revokes this token on purpose; its fresh login replaces the client.
      if (app.conn !== client) return;
      if (app.renewing) app.revokedWhileRenewing = true;
      else endSession("Your session has expired. Please log in again.");
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
    // Our role changed: so may what we see (removed: nothing to load any more).
    if (r && ev.room === r.id && ev.role) loadMembers(r);
  });
  // Invited to a room (the user takes invitations): the list above the rooms follows.
  on("invitation", () => loadInvitations());
  on("topic", onTopic);
  on("error", onServerError);
  app.conn = client;
  onConnState("connecting", {});
  client.start();
  clearInterval(app.tickTimer);
  app.tickTimer = setInterval(tick, 500);
  render("conn", "rooms", "pane", "messages", "typing", "presence");
  refreshRooms().then(() => {
    // A clicked push notification opened this page at its room (sw.js, `?room=`).
    const wanted = app.wantedRoom;
    app.wantedRoom = null;
    const last = sessionStorage.getItem(storageKey("current"));
    if (wanted && app.rooms.has(wanted)) selectRoom(wanted);
    else if (last && app.rooms.has(last) && !app.current) selectRoom(last);
  });
  // Push turned on in this browser: tell the server the subscription again (it may have
  // dropped the target, or the push service replaced the endpoint).
  push.sync(app.api, session.user).catch(() => {});
}

/** A push notification of `id` was clicked while this tab was open. */
async function openRoomFromPush(id) {
  if (!app.session) {
    app.wantedRoom = id;
    return;
  }
  if (!app.rooms.has(id)) await refreshRooms();
  selectRoom(id);
}

/** Logs out (explicitly, or because the token was refused). */
function endSession(message) {
  resetChanges();
  resetThreads();
  resetInvitations();
  const client = app.conn;
  app.conn = null;
  if (client) client.close();
  clearInterval(app.tickTimer);
  if (!message && app.session) {
    sessionStorage.removeItem(storageKey("outbox"));
    sessionStorage.removeItem(storageKey("current"));
    // Logging out turns push off here: a shared browser must not show this user's messages.
    const was = new Api();
    was.token = app.session.token;
    push.forget(was, app.session.user).catch(() => {});
  }
  clearSession();
  closeDrawers(false);
  if ($("settings").open) $("settings").close();
  hideViewer();
  for (const r of app.rooms.values()) for (const u of r.uploads) if (u.abort) u.abort();
  forgetFiles();
  show($("settings-open"), false);
  show($("search-open"), false);
  resetSearch();
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
    // "pane" too: the composer follows whether the user is muted.
    if (r === app.current) render("presence", "pane");
  }
}

async function refreshRooms() {
  let list;
  let unavailable;
  try {
    ({ rooms: list, unavailable } = await app.api.roomList());
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
    const serverLast = Number(info.last_seq) || 0;
    // A live topic or name event newer than this list wins over what the list says.
    if (!(r.eventSeq.topic > serverLast)) r.topic = typeof info.topic === "string" ? info.topic : null;
    if (!(r.eventSeq.name > serverLast)) r.name = typeof info.name === "string" && info.name ? info.name : null;
    // Not in protocol v1's room list; used if a server adds the other user of a DM.
    if (r.kind === "dm" && !r.peer && typeof info.peer === "string") r.peer = info.peer;
    // Closed (a DM we closed): not listed unless a message newer than the list came live.
    r.closed = info.closed === true && !(r.lastSeq > serverLast);
    r.lastSeq = Math.max(r.lastSeq, serverLast);
    const unread = Number(info.unread) || 0;
    const mentions = Number(info.mentions) || 0;
    if (r === app.current || r.seen >= serverLast) [r.unread, r.mentions] = [0, 0];
    else [r.unread, r.mentions] = [unread, mentions];
    ids.push(r.id);
    keep.add(r.id);
  }
  // Rooms we are no longer in (and that are not public) disappear; so does a public one
  // shown that we were removed or banned from.
  for (const [id, r] of app.rooms) {
    if (keep.has(id) || r.joining || (r === app.current && r.kind === "public" && !r.removed)) continue;
    // A region did not answer: its rooms are missing from this list, not left; keep them.
    if (unavailable.length) {
      ids.push(id);
      continue;
    }
    if (r.joined && app.conn) app.conn.leave(id).catch(() => {});
    app.rooms.delete(id);
    if (app.current === r) app.current = null;
  }
  app.roomOrder = ids;
  if (unavailable.length) notice(`region ${unavailable.join(", ")} is unreachable: its rooms may be out of date`, "side");
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
  if (app.current !== r) {
    resetChanges();
    resetThreads();
    // The room left goes back to its newest messages.
    if (app.current) app.current.trimOldest(heldCap());
  }
  app.current = r;
  r.unread = 0;
  r.mentions = 0;
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
  // The message list shows the change as a notice (its room event); this frame keeps a
  // server without room events up to date too.
  r.topic = f.topic;
  render("pane", "rooms");
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

/** The users this user has blocked (one page: at most 1,000 can be). */
async function loadBlocks() {
  const session = app.session;
  try {
    const { blocks } = await app.api.blocks({ limit: 1000 });
    if (app.session !== session) return;
    app.blocked = new Set(blocks.map((b) => b.user));
    render("pane");
  } catch (_) {
    // An older server without blocks: the button is there, and says so when used.
  }
}

/** Blocks or unblocks the other user of the open DM. */
async function onBlockPeer() {
  const r = app.current;
  const peer = r && r.kind === "dm" ? r.peer : null;
  if (!peer) return;
  const blocked = app.blocked.has(peer);
  try {
    if (blocked) await app.api.unblock(peer);
    else await app.api.block(peer);
  } catch (e) {
    if (!(blocked && e.status === 404)) {
      notice(`cannot ${blocked ? "unblock" : "block"} ${peer}: ${describe(e)}`);
      return;
    }
  }
  if (blocked) app.blocked.delete(peer);
  else app.blocked.add(peer);
  notice(blocked
    ? `You unblocked ${peer}.`
    : `You blocked ${peer}: they can no longer write to you here, open a DM with you or add you to rooms.`);
  render("pane");
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
  app.revokedWhileRenewing = false;
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
    // Homed in the region of the gateway serving this page (regions; one region: as named).
    const res = await app.api.createRoom(name, kind, "here");
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
    r.closed = false; // opening a closed DM opens it again (the server forgets the close)
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
    const added = await app.api.addMember(r.id, user, role);
    $("member-user").value = "";
    // A user who takes invitations (extension) is invited, and a member once it accepts.
    if (added && added.invited) notice(`${user} takes invitations: they were invited to ${r.title} as ${role}.`);
    else notice(`${user} was added to ${r.title} as ${role}.`);
    loadMembers(r);
  } catch (e) {
    if (e.status === 404) notice(`There is no user ${user}.`);
    else if (e.status === 403 && /does not accept/.test(e.message || "")) notice(`${user} does not accept being added by you.`);
    else if (e.status === 403) notice("Only the owner and admins can add members.");
    else notice(`cannot add ${user}: ${describe(e)}`);
  }
}

async function onLeave() {
  const r = app.current;
  if (!r || !app.session) return;
  if (r.kind === "dm") return onCloseDm(r);
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
  for (const u of r.uploads) if (u.abort) u.abort();
  r.uploads = [];
  saveOutbox();
  app.current = null;
  sessionStorage.removeItem(storageKey("current"));
  if (r.kind !== "public") app.rooms.delete(r.id);
  render("rooms", "pane", "messages", "typing", "presence");
  refreshRooms();
}

/**
 * Closes DM `r` (a DM cannot be left): it leaves the list and stays joined, so its next
 * message brings it back (and the server lists it again from then on).
 */
async function onCloseDm(r) {
  const peer = r.peer;
  if (!peer) return notice("cannot close this DM yet: its other user is not known", "side");
  try {
    await app.api.closeDm(peer);
  } catch (e) {
    notice(`cannot close the DM with ${peer}: ${describe(e)}`);
    return;
  }
  r.closed = true;
  app.current = null;
  sessionStorage.removeItem(storageKey("current"));
  render("rooms", "pane", "messages", "typing", "presence");
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
  r.role = null; // no member any more: nothing of the room is asked for until it is joined again
  r.removed = true; // the next room list drops it unless it still lists it, even while shown
  if (r === app.current) notice(`You are no longer a member of ${r.title}.`, "side");
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
    r.removed = false;
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
  const fresh = r.insert(m, false);
  // Our own message, stored, may come by history only (its live frame was before the join):
  // its pending bubble goes, or it would show twice.
  settleOwn(r, m);
  return fresh;
}

/** Our own message `m` is stored: its pending bubble (if any) becomes it. */
function settleOwn(r, m) {
  if (!app.session || m.from !== app.session.user || !r.pending.has(m.id)) return;
  const node = r.nodes.get(`p:${m.id}`);
  r.pending.delete(m.id);
  r.nodes.delete(`p:${m.id}`);
  if (node && !r.nodes.has(`m:${m.seq}`)) r.nodes.set(`m:${m.seq}`, node);
  saveOutbox();
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
  // Bounded while the newest are in view (or the room is not shown); a reader scrolled up
  // keeps what they loaded until they come back down.
  if (fresh && (r !== app.current || atBottom())) r.trimOldest(heldCap());
  // An MLS handshake message (commit, proposal, welcome) is no news, like a room event.
  const event = isEvent(m) || Boolean(m.mls && m.mls.kind !== "app");
  if (fresh && applyRoomEvent(r, m)) render("rooms", "pane");
  // A ban, a mute or their end changes the member list: shown, it follows. Not for our own
  // ban: the room is no longer ours to read (its `left` frame follows).
  const kind = eventKind(m);
  const ownBan = kind === "ban" && eventSubject(m) === me;
  if (fresh && r === app.current && MEMBER_EVENTS.includes(kind) && !ownBan) loadMembers(r);
  // Our own message came back: the pending bubble becomes the stored message.
  settleOwn(r, m);
  learnPeer(r, m);
  r.typing.delete(m.from);
  if (r.head !== null) advanceHead(r);
  if (fresh && m.from !== me && !isChange(m) && !event) {
    const concerns = r.kind === "dm" || mentionsMe(m) || notify.mentions(m.body, me, app.profile && app.profile.display_name);
    const who = app.names.get(m.from) || m.from;
    notify.onIncoming(
      { title: r.kind === "dm" ? who : `${who} in ${r.title}`, body: m.mls ? "🔒 encrypted message" : m.body || filesLine(m), tag: `chatmesh-${r.id}`, concerns },
      () => selectRoom(r.id),
    );
  }
  if (fresh && m.seq > r.lastSeq) {
    r.lastSeq = m.seq;
    // A closed DM is listed again by its next message.
    if (r.closed && !event) {
      r.closed = false;
      render("rooms");
    }
    if (m.from !== me && !event && m.seq > r.seen && !isVisible(r)) {
      r.unread += 1;
      if (mentionsMe(m)) r.mentions += 1;
      render("rooms");
    }
  }
  if (r === app.current) render("messages", "typing");
}

/** Does the server's `mentions` of `m` name this user, or the whole room? */
function mentionsMe(m) {
  const me = app.session && app.session.user;
  const at = m.mentions;
  return Boolean(at && (at.room || (Array.isArray(at.users) && at.users.includes(me))));
}

/** What a message of files only says in a notification: "📎 cat.png, notes.pdf". */
function filesLine(m) {
  return m.attachments && m.attachments.length ? `📎 ${m.attachments.map((a) => a.name).join(", ")}` : "";
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
  // Someone new came online here (joined a public room): the member list is stale. At most
  // one reload per MEMBERS_RELOAD_MS, so a stream of joins costs few requests.
  if (r.members && (f.joined || []).some((u) => !r.members.some((m) => m.user === u))) {
    const wait = (r.membersReloadAt || 0) - Date.now();
    if (wait <= 0) {
      r.membersReloadAt = Date.now() + MEMBERS_RELOAD_MS;
      loadMembers(r);
    } else if (!r.membersReloadTimer) {
      r.membersReloadTimer = setTimeout(() => {
        r.membersReloadTimer = null;
        r.membersReloadAt = Date.now() + MEMBERS_RELOAD_MS;
        loadMembers(r);
      }, wait);
    }
  }
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
  return r === app.current && document.visibilityState === "visible" && atBottom();
}

/** Is the message list scrolled to its newest end? */
function atBottom() {
  const list = $("message-list");
  return list.scrollHeight - list.scrollTop - list.clientHeight < NEAR_EDGE_PX;
}

/** Messages held per room: [`MAX_HELD`], or the page's own setting. */
function heldCap() {
  const own = Number(readJson(localStorage, "chatmesh.maxHeld", 0));
  return own >= HISTORY_PAGE ? Math.floor(own) : MAX_HELD;
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
  if (r.unread || r.mentions) {
    r.unread = 0;
    r.mentions = 0;
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
      if (p.state !== "acked") out.push({ room: r.id, id: p.id, body: p.body, files: p.files, created: p.created, replyTo: p.replyTo, after: p.after });
    }
  }
  writeJson(sessionStorage, storageKey("outbox"), out);
}

function loadOutbox() {
  const out = readJson(sessionStorage, storageKey("outbox"), []);
  if (!Array.isArray(out)) return;
  for (const p of out) {
    if (!p || !ROOM_RE.test(p.room) || typeof p.id !== "string" || typeof p.body !== "string") continue;
    const r = room(p.room);
    r.role = r.role || "member"; // corrected by the room list
    const files = Array.isArray(p.files) ? p.files.filter((a) => a && typeof a.id === "string") : [];
    r.pending.set(p.id, {
      id: p.id,
      body: p.body,
      attachments: files.map((a) => a.id),
      files,
      state: "pending",
      created: p.created || Date.now(),
      // It may have been sent before the page was left: its resends say since when.
      tried: true,
      after: Number.isSafeInteger(p.after) && p.after >= 0 ? p.after : 0,
      ...(Number.isSafeInteger(p.replyTo) && p.replyTo > 0 ? { replyTo: p.replyTo } : {}),
    });
  }
}

function onComposerSubmit(ev) {
  ev.preventDefault();
  const r = app.current;
  const input = $("message-input");
  const body = input.value;
  if (!r || !r.member) return;
  if (submitEdit(r, body)) return;
  if (uploading(r)) {
    notice("Wait until the files are uploaded (or remove them), then send.");
    return;
  }
  const hasFiles = r.uploads.some((u) => u.state === "done");
  if (!body.trim() && !hasFiles) return;
  const max = (app.limits && app.limits.max_body_bytes) || DEFAULT_MAX_BODY;
  if (byteLength(body) > max) {
    notice(`That message is too long (at most ${max} bytes).`);
    return;
  }
  const files = takeUploads(r);
  const p = {
    id: newMessageId(),
    body: body.trim() ? body : "",
    attachments: files.map((a) => a.id),
    files,
    state: "pending",
    created: Date.now(),
    after: r.lastSeq, // what the room had when it was written: a resend is looked for after it
  };
  const replyTo = takeReply(r);
  if (replyTo) p.replyTo = replyTo;
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
        const options = p.attachments && p.attachments.length ? { attachments: p.attachments } : {};
        if (p.replyTo) options.replyTo = p.replyTo;
        // Written before (its ack lost with a connection, or a retry) long enough ago that the
        // server's duplicate window may be over: the server looks for it among what the room
        // stored since, so it is stored once however late this is.
        if (p.tried && Date.now() - p.created > RESEND_CHECK_AFTER_MS) options.resendAfter = p.after || 0;
        p.tried = true;
        ack = await conn.sendWithId(r.id, p.id, p.body, options);
      } catch (e) {
        if (e.code === "closed" || app.conn !== conn) return; // logged out
        if (["timeout", "rate_limited", "unavailable", "internal", "disconnected", "overflow"].includes(e.code)) {
          // Transient: retry the same id shortly; the server dedupes it.
          setTimeout(() => pumpPending(r), 2000);
          return;
        }
        p.state = "failed";
        p.error = sendError(e, p);
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

/** Why a send was refused, for the "not sent" line. */
function sendError(e, p) {
  if (e.code === "too_large") return "too large";
  // The server says "muted in this room" for a mute (docs/PROTOCOL.md, "Moderation").
  if (e.code === "forbidden" && /\bblocked you\b/.test(e.message || "")) return "they have blocked you";
  if (e.code === "forbidden") return /\bmuted\b/.test(e.message || "") ? "you are muted in this room" : "you may not post here";
  // The files of a send must be uploads of the room that are still there.
  if (e.code === "not_found" && p.attachments && p.attachments.length) return "a file of it is no longer available";
  return describe(e);
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

/** Opens a search result: its room, scrolled to the message when it is loaded there. */
function showFound(roomId, seq) {
  if (!app.rooms.has(roomId)) {
    notice("That room is not in your list any more.", "side");
    return;
  }
  selectRoom(roomId);
  const r = app.rooms.get(roomId);
  const reveal = () => {
    const node = r.nodes.get(`m:${seq}`);
    if (!node || !node.isConnected) return false;
    node.scrollIntoView({ block: "center" });
    node.classList.add("found");
    setTimeout(() => node.classList.remove("found"), 3000);
    return true;
  };
  // The room's messages are drawn in a microtask (and its first page may still load).
  let tries = 0;
  const again = () => {
    if (reveal() || app.current !== r) return;
    tries += 1;
    if (tries < 20) setTimeout(again, 100);
    else notice("That message is older than what is loaded here: scroll up to find it.");
  };
  setTimeout(again, 0);
}

function autosize() {
  const input = $("message-input");
  input.rows = Math.min(6, Math.max(1, input.value.split("\n").length));
}

function onComposerInput() {
  autosize();
  updateCompletion();
  const r = app.current;
  const input = $("message-input");
  if (!r || !r.joined || !input.value || app.features.typing === "unsupported") return;
  const now = Date.now();
  if (now - r.lastTypingSent < TYPING_SEND_EVERY_MS) return;
  r.lastTypingSent = now;
  app.conn.typing(r.id).catch(() => {}); // a refusal comes as an error event
}

function onComposerKey(ev) {
  if (onCompletionKey(ev) || onEditKey(ev, app.current)) return;
  if (ev.key === "Escape" && app.replying) {
    ev.preventDefault();
    cancelReply();
    return;
  }
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
  actions.selectRoom = selectRoom;
  actions.loadOlder = loadOlder;
  actions.maybeRead = maybeRead;
  actions.retry = (r, p) => {
    p.state = "pending";
    p.error = null;
    saveOutbox();
    render("messages");
    pumpPending(r);
  };
  actions.discard = (r, p) => {
    r.pending.delete(p.id);
    r.nodes.delete(`p:${p.id}`);
    saveOutbox();
    render("messages");
  };
  app.api = new Api(() => {
    if (app.renewing) app.revokedWhileRenewing = true;
    else endSession("Your session has expired. Please log in again.");
  });
  $("login-form").addEventListener("submit", onLoginSubmit);
  $("logout").addEventListener("click", () => endSession());
  $("new-room-form").addEventListener("submit", onCreateRoom);
  $("dm-form").addEventListener("submit", onStartDm);
  $("member-form").addEventListener("submit", onAddMember);
  $("topic-form").addEventListener("submit", onSetTopic);
  $("settings-open").addEventListener("click", () => {
    const r = app.current;
    openSettings(app.session && app.session.user, app.profile, r && r.member ? { id: r.id, title: r.title } : null);
  });
  initInvitations({
    api: () => app.api,
    notice: (text) => notice(text, "side"),
    describe,
    onAccepted: () => refreshRooms(),
  });
  initSettings({
    api: () => app.api,
    onProfile,
    onNewLogin,
    renewing: (on) => {
      app.renewing = on;
      if (on) app.revokedWhileRenewing = false;
      // The change went through on the server (our tokens were revoked) but its answer was
      // lost: without a fresh token the session is over.
      else if (app.revokedWhileRenewing) endSession("Your password was changed. Please log in again.");
    },
  });
  initLayout();
  initAttachments();
  initUploads();
  initChanges();
  initSearch({ openMessage: showFound });
  initThreads();
  initCompletion();
  initModeration({ onMembersChanged: (r) => loadMembers(r) });
  $("leave-room").addEventListener("click", onLeave);
  $("block-peer").addEventListener("click", onBlockPeer);
  $("refresh-rooms").addEventListener("click", () => refreshRooms());
  $("composer").addEventListener("submit", onComposerSubmit);
  $("message-input").addEventListener("input", onComposerInput);
  $("message-input").addEventListener("keydown", onComposerKey);
  $("message-list").addEventListener("scroll", onScroll, { passive: true });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && app.current) maybeRead(app.current);
  });
  push.listen({
    openRoom: (id) => openRoomFromPush(id),
    resync: () => {
      if (app.session) push.sync(app.api, app.session.user).catch(() => {});
    },
  });
  const wanted = new URLSearchParams(location.search).get("room");
  if (wanted) {
    app.wantedRoom = wanted;
    history.replaceState(null, "", location.pathname);
  }
  const session = loadSession();
  if (session) startSession(session);
  else showLogin();
}

main();
