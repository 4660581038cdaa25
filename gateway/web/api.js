// chatmesh web client — api.js: the HTTP half of protocol v1 (auth, rooms, members, DMs,
// topics, room names, bans and mutes, the profile, password changes, file info and bytes, push targets and settings;
// uploads, which need progress, are files.js's), over the Http of /chatmesh.js (the
// @chatmesh/client package of clients/js), and the login session kept in sessionStorage.
// No DOM access here.
"use strict";

import { ChatmeshError as ApiError, Http, NAME_RE, ROOM_RE } from "./chatmesh.js";

export { ApiError, NAME_RE, ROOM_RE };

const SESSION_KEY = "chatmesh.session";
/** Where this browser keeps its device token of each account (`.<user>` appended). */
const DEVICE_KEY = "chatmesh.device";

/** The stored login ({user, token, expires_at}) or null when absent or expired. */
export function loadSession() {
  try {
    const raw = sessionStorage.getItem(SESSION_KEY);
    if (!raw) return null;
    const s = JSON.parse(raw);
    if (!s || typeof s.token !== "string" || typeof s.user !== "string") return null;
    // expires_at is unix seconds; drop a token that expires within the next 10 s.
    if (typeof s.expires_at === "number" && s.expires_at * 1000 < Date.now() + 10_000) {
      sessionStorage.removeItem(SESSION_KEY);
      return null;
    }
    return s;
  } catch (_) {
    return null;
  }
}

export function saveSession(session) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function clearSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

/**
 * The `/v1` HTTP API of this page's gateway: the package's Http (/chatmesh.js) with the
 * current token. `onUnauthorized` is called when an authenticated call answers 401 (token
 * expired or revoked). Errors are ChatmeshErrors (`ApiError` here) with `status` and `code`.
 */
export class Api {
  constructor(onUnauthorized) {
    this.token = null;
    this.onUnauthorized = onUnauthorized || (() => {});
  }

  async call(f) {
    try {
      return await f(new Http(location.origin, { token: this.token }));
    } catch (e) {
      if (e instanceof ApiError && e.status === 401 && this.token) this.onUnauthorized();
      throw e;
    }
  }

  register(username, password) {
    return this.call((h) => h.register(username, password));
  }

  /**
   * Resolves to {token, expires_at}. Brings back this browser's device token of the account
   * (a known device logs in while guessing from elsewhere holds the account) and keeps the
   * new one.
   */
  async login(username, password) {
    const key = `${DEVICE_KEY}.${username}`;
    let device;
    try {
      device = localStorage.getItem(key) || undefined;
    } catch (_) {
      device = undefined;
    }
    const answer = await this.call((h) => h.login(username, password, device));
    if (answer && typeof answer.device === "string") {
      try {
        localStorage.setItem(key, answer.device);
      } catch (_) {
        // Storage full or refused: the next login is an unknown device's.
      }
    }
    return answer;
  }

  /** Resolves to [{room, kind, role, last_seq, unread, peer?}]. */
  rooms() {
    return this.call((h) => h.rooms());
  }

  /** Resolves to {rooms, unavailable}: `unavailable` names regions whose rooms are missing. */
  roomList() {
    return this.call((h) => h.roomList());
  }

  createRoom(room, kind, home) {
    return this.call((h) => h.createRoom(room, kind, home));
  }

  addMember(room, user, role) {
    return this.call((h) => h.addMember(room, user, role));
  }

  removeMember(room, user) {
    return this.call((h) => h.removeMember(room, user));
  }

  /** Resolves to {messages, more}: up to `limit` messages, newest last, older than `before`. */
  messages(room, limit, before) {
    return this.call((h) => h.history(room, before || null, limit));
  }

  /** Resolves to {members: [{user, role, display_name?}], more} (members only). */
  members(room, after) {
    return this.call((h) => h.members(room, { after, limit: 200 }));
  }

  /** Resolves to {room, topic}; owner or admin. */
  setTopic(room, topic) {
    return this.call((h) => h.setTopic(room, topic));
  }

  /** Resolves to {room, name, seq}: the room's display name (null clears it); owner or admin. */
  setRoomName(room, name) {
    return this.call((h) => h.setRoomName(room, name));
  }

  /** Bans `user` from `room` (and removes it); owner or admin. */
  ban(room, user, reason) {
    return this.call((h) => h.ban(room, user, reason));
  }

  unban(room, user) {
    return this.call((h) => h.unban(room, user));
  }

  /** Mutes member `user` until `until` (unix seconds) or, without it, until unmuted. */
  mute(room, user, until) {
    return this.call((h) => h.mute(room, user, until));
  }

  unmute(room, user) {
    return this.call((h) => h.unmute(room, user));
  }

  /** Resolves to {user, display_name}. */
  me() {
    return this.call((h) => h.me());
  }

  setDisplayName(name) {
    return this.call((h) => h.setDisplayName(name));
  }

  /** Resolves to a fresh {token, expires_at}: every earlier token is revoked. */
  changePassword(oldPassword, newPassword) {
    return this.call((h) => h.changePassword(oldPassword, newPassword));
  }

  /** Resolves to the one DM room of the caller and `user`. */
  dm(user) {
    return this.call((h) => h.dm(user));
  }

  /** Closes the caller's DM with `user` (closing-DMs extension): listed `closed` until news. */
  closeDm(user) {
    return this.call((h) => h.closeDm(user));
  }

  /** Blocks `user` (blocks extension): no adds, no DM, no sends in the DM with the caller. */
  block(user) {
    return this.call((h) => h.block(user));
  }

  unblock(user) {
    return this.call((h) => h.unblock(user));
  }

  /** Resolves to {blocks: [{user, ts}], more}: the caller's blocked users, by name. */
  blocks(options) {
    return this.call((h) => h.blocks(options));
  }

  /** Resolves to "anyone" or "invitations": who may add the caller to rooms (invitations extension). */
  adds() {
    return this.call((h) => h.adds());
  }

  setAdds(adds) {
    return this.call((h) => h.setAdds(adds));
  }

  /** Resolves to {invitations: [{room, by, role, ts}], more}: the caller's invitations, by room. */
  invitations(options) {
    return this.call((h) => h.invitations(options));
  }

  acceptInvitation(room) {
    return this.call((h) => h.acceptInvitation(room));
  }

  declineInvitation(room) {
    return this.call((h) => h.declineInvitation(room));
  }

  /** Resolves to the file's info {id, name, size, content_type, thumbnail, …}. */
  fileInfo(room, id) {
    return this.call((h) => h.fileInfo(room, id));
  }

  /** Resolves to {status, contentType, blob}: the file's bytes. */
  download(room, id) {
    return this.call((h) => h.download(room, id));
  }

  /** Resolves to {status, contentType, blob}: the PNG thumbnail; not_found while none. */
  thumbnail(room, id) {
    return this.call((h) => h.thumbnail(room, id));
  }

  /** Resolves to the VAPID public key (base64url); 503 where the server has push off. */
  pushVapidKey() {
    return this.call((h) => h.pushVapidKey());
  }

  /** Resolves to {id, kind, label, created}; the same subscription again is the same id. */
  addPushTarget(target) {
    return this.call((h) => h.addPushTarget(target));
  }

  /** Resolves to [{id, kind, label, created}]. */
  pushTargets() {
    return this.call((h) => h.pushTargets());
  }

  removePushTarget(id) {
    return this.call((h) => h.removePushTarget(id));
  }

  /** Resolves to {mute_all, muted_rooms, dms_only, preview}. */
  pushSettings() {
    return this.call((h) => h.pushSettings());
  }

  /** Resolves to the settings after the patch. */
  setPushSettings(patch) {
    return this.call((h) => h.setPushSettings(patch));
  }
}
