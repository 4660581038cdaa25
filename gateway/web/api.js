// chatmesh web client — api.js: the HTTP half of protocol v1 (auth, rooms, members, DMs)
// and the login session kept in sessionStorage. No DOM access here.
"use strict";

const SESSION_KEY = "chatmesh.session";

/** An HTTP error answer: `{"error":{"code","message"}}` plus the HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || "http_" + status;
  }
}

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
 * Thin JSON client of the `/v1` HTTP API. `onUnauthorized` is called when an authenticated
 * call answers 401 (token expired or revoked).
 */
export class Api {
  constructor(onUnauthorized) {
    this.token = null;
    this.onUnauthorized = onUnauthorized || (() => {});
  }

  async call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = "Bearer " + this.token;
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "network", "cannot reach the server");
    }
    let data = null;
    const text = await resp.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = null;
      }
    }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      if (resp.status === 401 && this.token) this.onUnauthorized();
      throw new ApiError(resp.status, err.code, err.message || resp.statusText);
    }
    return data;
  }

  register(username, password) {
    return this.call("POST", "/v1/auth/register", { username, password });
  }

  /** Resolves to {token, expires_at}. */
  login(username, password) {
    return this.call("POST", "/v1/auth/login", { username, password });
  }

  /** Resolves to [{room, kind, role, last_seq, unread}]. */
  async rooms() {
    const data = await this.call("GET", "/v1/rooms");
    return (data && Array.isArray(data.rooms)) ? data.rooms : [];
  }

  createRoom(room, kind) {
    return this.call("POST", "/v1/rooms", { room, kind });
  }

  addMember(room, user, role) {
    return this.call("POST", `/v1/rooms/${encodeURIComponent(room)}/members`, { user, role });
  }

  removeMember(room, user) {
    return this.call(
      "DELETE",
      `/v1/rooms/${encodeURIComponent(room)}/members/${encodeURIComponent(user)}`,
    );
  }

  /** Resolves to {messages, more}: up to `limit` messages, newest last, older than `before`. */
  messages(room, limit, before) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before) q.set("before", String(before));
    return this.call("GET", `/v1/rooms/${encodeURIComponent(room)}/messages?${q}`);
  }

  /** Resolves to {room}: the one DM room of the caller and `user`. */
  dm(user) {
    return this.call("POST", `/v1/dm/${encodeURIComponent(user)}`);
  }
}

/** Room ids and user names: `[A-Za-z0-9_-]{1,64}`. */
export const NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
