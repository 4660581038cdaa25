// @chatmesh/client — a JavaScript client for chatmesh protocol v1 (browsers and node >= 20).
//
// One plain ES module with JSDoc types (checked by `tsc --checkJs`), no dependencies and no
// build step: the gateway serves this very file to the web client as /chatmesh.js.
//
// `Http` is the HTTP half of the protocol (accounts, rooms, members, DMs, history pages).
// `Client` is one WebSocket session that survives broken connections: it reconnects with
// backoff, says `hello` again (logging in again when it has the password and the token is
// refused), re-joins every joined room with `since` = the last message it delivered, and
// resends every send still without its `ack` under the same id. So each message of a joined
// room reaches the application once and in order, and each send is stored once. It mirrors
// the Rust SDK (client/ in the chatmesh repository); README.md describes both halves.
"use strict";

/** The WebSocket subprotocol of protocol v1. */
export const SUBPROTOCOL = "chatmesh.v1";

/** Room ids and user names: `[A-Za-z0-9_-]{1,64}`. */
export const NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
/**
 * Room ids, which may start with their home region (`us~general`, extension: regions);
 * 64 characters in all.
 */
export const ROOM_RE = /^(?=.{1,64}$)(?:[a-z0-9]{1,16}~)?[A-Za-z0-9_-]+$/;

/** A send answered `unavailable` is resent after this, times its attempt (at most 8 times). */
const RESEND_AFTER_MS = 250;
/**
 * The share of the gateway's flood guard the client writes at, per second and in a burst:
 * half (`welcome.limits.frames_per_second`, 100 a second by default, burst twice that, each
 * frame over it a strike towards close 4008), so a reconnect that re-joins hundreds of rooms
 * and resends its waiting sends never trips it. Sends also keep to the session's send rate
 * (`welcome.limits`).
 */
const FRAME_SHARE = 0.5;
/** The flood guard of a gateway that does not report it in `welcome.limits`. */
const DEFAULT_FRAMES_PER_SECOND = 100;
/** `typing` and `read` frames waiting to be written beyond this many are dropped (they are moot). */
const MAX_QUEUED_FIRES = 256;
/** A connection counts as established (the reconnect delay starts over) after this long. */
const STABLE_MS = 10_000;
/**
 * Re-joins of a resume written and not answered yet, at most: the gateway replays four rooms
 * of a session at once by default and refuses the next ones for now, so writing hundreds at
 * once only had most of them refused and retried, crowding out the application's requests.
 */
const MAX_REJOINS_OUT = 4;
/** Attempts of one send (or one re-join of a resume) before its error counts. */
const MAX_ATTEMPTS = 40;
/** How long `close()` waits for the acks of sends in flight, then for the server's close. */
const CLOSE_WAIT_MS = 2000;
/** How many `typing`/`read` refs are remembered to name the request an error refused. */
const FIRE_REFS = 256;
/** The most a history page may hold (protocol v1). */
const MAX_HISTORY_LIMIT = 100;
/** The most files one message may carry (the files extension). */
export const MAX_ATTACHMENTS = 10;

/** The answer each request type expects. */
const ANSWERS = /** @type {const} */ ({
  join: "joined",
  leave: "left",
  send: "ack",
  history: "history",
  presence: "presence",
  ping: "pong",
});

// ---------------------------------------------------------------------------------------
// Types

/**
 * A message of a room: a `message` frame without `type`, and the items of history pages.
 * @typedef {object} Message
 * @property {string} room
 * @property {number} seq increasing within the room (not consecutive)
 * @property {number} prev the seq of the room's previous message (0 for the first)
 * @property {string} id the sender's message id
 * @property {string} from the sender
 * @property {number} ts when the gateway accepted it, ms since the Unix epoch
 * @property {string} body
 * @property {Attachment[]} [attachments] the files it carries (absent when none)
 * @property {{users?: string[], room?: boolean}} [mentions] who the body mentions (`@name`, `@room`; absent when nobody)
 * @property {number} [edit_of] this message edits message `edit_of` of the room: `body` is its new body (edits extension)
 * @property {number} [delete_of] this message deletes message `delete_of` of the room
 * @property {{seq: number, ts: number}} [edited] history only: the message was edited, latest by the edit `seq`; `body` is current
 * @property {boolean} [deleted] history only: a tombstone, the message was deleted (`body` is "")
 * @property {boolean} [void] history only: a change the server refused when it stored it; it changes nothing
 * @property {number} [react_to] a reaction: `body` (the key) put on message `react_to`
 * @property {number} [unreact_to] the sender's reaction `body` taken off message `unreact_to`
 * @property {number} [reply_to] a reply to message `reply_to`
 * @property {number} [thread_root] the root of the thread this reply belongs to
 * @property {{key: string, count: number, users: string[]}[]} [reactions] history only: the reactions on this message
 * @property {{count: number, last_seq: number, last_ts: number}} [thread] history only: the replies to this root
 * @property {RoomEvent} [event] a room event (moderation extension): `body` is "", `from` is who acted
 * @property {Mls} [mls] an MLS message of an `e2ee` room (extension): `body` is ""; this client cannot decrypt it
 */

/**
 * The MLS part of a message of an end-to-end encrypted room (extension, docs/E2EE.md): opaque
 * to this client, which holds no keys.
 * @typedef {object} Mls
 * @property {"app" | "proposal" | "commit" | "welcome"} kind
 * @property {number} epoch the group epoch it was made in
 * @property {string} data the MLS message, base64 ("" when it is in `file`)
 * @property {string} [file] a file of the room holding the MLS message (one too large to send inline)
 */

/**
 * What a room event message says happened (moderation extension): exactly one of its keys
 * is set. A kind this client does not know yet comes through as it was sent.
 * @typedef {object} RoomEvent
 * @property {string | null} [topic] the topic was set (null: cleared)
 * @property {string | null} [name] the room's display name was set (null: cleared)
 * @property {{user: string, reason?: string}} [ban] `user` was banned (and removed)
 * @property {{user: string}} [unban] `user`'s ban was lifted
 * @property {{user: string, until?: number}} [mute] `user` was muted (until `until`, unix seconds)
 * @property {{user: string}} [unmute] `user` was unmuted
 */

/**
 * One blocked user (`GET /v1/users/me/blocks`).
 * @typedef {object} Block
 * @property {string} user
 * @property {number} ts when, ms since the Unix epoch
 */

/**
 * An invitation to a room (extension; `GET /v1/users/me/invitations`, the `invitation` event).
 * @typedef {object} Invitation
 * @property {string} room
 * @property {string} by who invited
 * @property {"member"|"admin"} role the role it is a member with once accepted
 * @property {number} [ts] when, ms since the Unix epoch (not in the event)
 */

/**
 * One ban of a room (`GET /v1/rooms/{room}/bans`).
 * @typedef {object} Ban
 * @property {string} user
 * @property {string} by who banned it
 * @property {string} [reason]
 * @property {number} ts when, ms since the Unix epoch
 */

/**
 * The versions of an edited message (`GET /v1/rooms/{room}/messages/{seq}/edits`), oldest
 * first: the original, then each edit (its own seq and ts); the last is the current body.
 * @typedef {object} EditHistory
 * @property {string} room
 * @property {number} seq
 * @property {{seq: number, ts: number, body: string}[]} versions
 */

/**
 * A page of a thread (`Http.thread`).
 * @typedef {object} ThreadPage
 * @property {string} room
 * @property {Message | null} root the root in its current version (null once retention trimmed it)
 * @property {Message[]} messages replies, oldest first
 * @property {boolean} more further replies follow (page on with `after` = the last seq)
 * @property {number} unread the caller's unread replies (up to 100)
 * @property {number} read the caller's thread cursor
 */

/**
 * What `Http.search` narrows a search to.
 * @typedef {object} SearchOptions
 * @property {string} [room] only this room (one the caller is in)
 * @property {string} [from] only messages from this user
 * @property {number} [since] only messages sent at or after this time (ms since the Unix epoch)
 * @property {number} [until] only messages sent before this time
 * @property {number} [before] only messages older than this seq (the next page)
 * @property {number} [limit] 1–50 hits (20 by default)
 */

/**
 * Messages found by `Http.search`, newest first, each in its current version.
 * @typedef {object} SearchResults
 * @property {{room: string, seq: number, from: string, ts: number, body: string}[]} hits
 * @property {boolean} more the page was cut at `limit`
 * @property {number} [next_before] with `more`: the `before` of the next page (the last hit's
 *   seq, or below it when the server went on past hits it no longer holds: such a page may
 *   be empty and still have a next one)
 */

/**
 * A file a message carries (the files extension): what the message stores of its file.
 * @typedef {object} Attachment
 * @property {string} id `f` and 32 lowercase hex digits
 * @property {string} name what downloads are called
 * @property {number} size bytes
 * @property {string} content_type sniffed from the bytes by the server
 * @property {number} [width] images only
 * @property {number} [height] images only
 */

/**
 * A file of a room (`POST /v1/rooms/{room}/files`, `GET …/files/{id}/info`).
 * @typedef {object} FileInfo
 * @property {string} id
 * @property {string} room
 * @property {string} name
 * @property {number} size
 * @property {string} content_type
 * @property {number} [width]
 * @property {number} [height]
 * @property {"pending" | "ready" | "none" | "failed"} thumbnail whether `…/thumbnail` has one (`ready`) or will (`pending`)
 * @property {string} by the uploader
 * @property {number} ts when it was uploaded, ms since the Unix epoch
 */

/**
 * A file's bytes (`GET /v1/rooms/{room}/files/{id}`, or its thumbnail).
 * @typedef {object} Download
 * @property {number} status 200, or 206 for a range
 * @property {string} contentType
 * @property {string | null} contentRange `bytes A-B/SIZE` for a 206
 * @property {Blob} blob
 */

/**
 * What a send carries besides its body.
 * @typedef {object} SendOptions
 * @property {string[]} [attachments] ids of files uploaded to the room (at most 10); `body` may then be empty
 * @property {number} [editOf] make this send an edit of message `editOf` (its author only; `body` not empty)
 * @property {number} [deleteOf] make this send a delete of message `deleteOf` (its author, room admins, owner; `body` "")
 * @property {number} [replyTo] reply to this message of the room
 * @property {number} [reactTo] put the reaction `body` (an emoji key) on this message
 * @property {number} [unreactTo] take the caller's reaction `body` off this message
 * @property {number} [resendAfter] this id may have been sent already (a connection broke
 *   before its ack), when the room was seen up to this seq: the server looks for it among the
 *   room's messages after it, so a resend is stored once even after the dedupe window
 */

/**
 * The answer to a send: the message is stored as `seq` of its room.
 * @typedef {object} Ack
 * @property {string} room
 * @property {string} id
 * @property {number} seq
 * @property {number} ts ms since the Unix epoch; for a resend, the original's
 */

/**
 * A page of history, oldest first; `more` when older messages exist.
 * @typedef {object} Page
 * @property {Message[]} messages
 * @property {boolean} more
 */

/**
 * A login: the token and when it expires (seconds since the Unix epoch), and a device token
 * to bring back at the next login of this account on this device (extension): such a login
 * is a known device's, not held by the lockouts that guessing from elsewhere sets off.
 * @typedef {object} Login
 * @property {string} token
 * @property {number} expires_at
 * @property {string} [device]
 */

/** @typedef {"public" | "private" | "dm"} RoomKind */

/**
 * One room of `GET /v1/rooms`.
 * @typedef {object} RoomInfo
 * @property {string} room
 * @property {RoomKind} kind
 * @property {"owner" | "admin" | "member" | null} role null for a public room the caller is not in
 * @property {number} last_seq
 * @property {number} unread
 * @property {number} [mentions] unread messages that mention the caller (by name or `@room`, up to 100)
 * @property {string} [peer] the other user of a DM
 * @property {string} [topic] the room's topic, when one is set
 * @property {string} [name] the room's display name, when one is set (moderation extension)
 * @property {boolean} [closed] a DM the caller closed, with nothing newer in it (`closeDm`)
 */

/**
 * One member of a room (`GET /v1/rooms/{room}/members`).
 * @typedef {object} Member
 * @property {string} user
 * @property {"owner" | "admin" | "member"} role
 * @property {string} [display_name] set by the user (`PATCH /v1/users/me`); not unique
 * @property {boolean} [muted] muted in the room (moderation extension)
 * @property {number} [muted_until] when the mute ends, unix seconds (absent: until unmuted)
 */

/**
 * A user's profile.
 * @typedef {object} Profile
 * @property {string} user
 * @property {string | null} display_name
 */

/**
 * A registered push target, as listed (keys and whole tokens are never answered).
 * @typedef {object} PushTarget
 * @property {string} id
 * @property {"web_push" | "fcm" | "apns"} kind
 * @property {string} label the endpoint's origin (Web Push), or `…` and a token's end
 * @property {number} created when it was registered (last), ms since the Unix epoch
 */

/**
 * Who and what pushes say (`GET`/`PATCH /v1/push/settings`).
 * @typedef {object} PushSettings
 * @property {boolean} mute_all
 * @property {string[]} muted_rooms
 * @property {boolean} dms_only
 * @property {boolean} mentions_only only DMs and messages that mention the user push
 * @property {boolean} preview the latest sender and the start of its body, or only counts
 */

/**
 * What a `PATCH /v1/push/settings` may change; absent fields keep their value.
 * @typedef {object} PushSettingsPatch
 * @property {boolean} [mute_all]
 * @property {string[]} [muted_rooms] replaces the list
 * @property {string[]} [mute_rooms] added to it
 * @property {string[]} [unmute_rooms] removed from it
 * @property {boolean} [dms_only]
 * @property {boolean} [mentions_only]
 * @property {boolean} [preview]
 */

/**
 * What `welcome` says: who the session is and the limits in force.
 * @typedef {object} Welcome
 * @property {string} user
 * @property {string} session
 * @property {Record<string, number>} limits
 */

/**
 * The events of a `Client` and what their handlers get.
 * @typedef {object} EventMap
 * @property {Message} message a message of a joined room: each (room, seq) once, in order, across reconnects
 * @property {{room: string, from: number, to: number}} gap messages from..to of the room are no longer retained and will not come
 * @property {{room: string, joined: string[], left: string[]}} presence users came online or went offline in a joined room
 * @property {{room: string, user: string}} typing
 * @property {{room: string, user: string, seq: number}} receipt `user` has read `room` up to `seq`
 * @property {{room: string, role: ("member"|"admin"|"owner"|null)}} membership the user's membership of the room changed (added, invited, a DM opened, a role changed; role null: removed); every session of the user gets it, joined to the room or not: refresh a room list on it
 * @property {Invitation} invitation `by` invited the user to `room` (the user takes invitations: `setAdds("invitations")`); accept with `acceptInvitation(room)`. Every session of the user gets it
 * @property {{room: string, topic: string | null, by: string}} topic `by` set the topic of a joined room (null: cleared)
 * @property {{room: string}} removed the user's membership of the room was removed (or a resume found it gone): no more of its messages come
 * @property {ChatmeshError} error an error the server sent without a request waiting for it (e.g. a refused `typing`: `error.request` says which)
 * @property {Welcome} connected a connection is open and welcomed (the first one too); rooms are being re-joined and unacked sends resent
 * @property {{code: number, reason: string}} disconnected the connection broke (close code; 1006 when there was none); the client reconnects on its own
 * @property {{attempt: number, delay: number}} reconnecting the next connection attempt starts in `delay` ms
 * @property {Welcome} reconnected connected again after a disconnect: every joined room resumes from its last message, unacked sends were resent
 * @property {{code: number, reason: string}} closed the session is over for good (the client was closed, or the token refused: 4001)
 */

/** @typedef {keyof EventMap} EventType */

/**
 * An event as the `events()` iterator yields it.
 * @typedef {{[K in EventType]: {type: K, data: EventMap[K]}}[EventType]} ClientEvent
 */

/** The event types, in the order of EventMap. */
export const EVENT_TYPES = /** @type {const} */ ([
  "message",
  "gap",
  "presence",
  "typing",
  "receipt",
  "membership",
  "invitation",
  "topic",
  "removed",
  "error",
  "connected",
  "disconnected",
  "reconnecting",
  "reconnected",
  "closed",
]);

/**
 * The part of the WebSocket API the client uses: browsers' and node's `WebSocket`, and the
 * `ws` package's, have it. Text frames must arrive as strings in `onmessage`'s `data`.
 * @typedef {{
 *   readyState: number,
 *   send(data: string): void,
 *   close(code?: number, reason?: string): void,
 *   onopen: ((ev: any) => void) | null,
 *   onmessage: ((ev: any) => void) | null,
 *   onclose: ((ev: any) => void) | null,
 *   onerror: ((ev: any) => void) | null,
 * }} WebSocketLike
 */

/** @typedef {new (url: string, protocols?: string | string[]) => WebSocketLike} WebSocketConstructor */

/** @typedef {(input: string, init?: RequestInit) => Promise<Response>} FetchFunction */

/**
 * How a `Client` connects. Give `token`, or `username` and `password`.
 * @typedef {object} ClientOptions
 * @property {string} [token] a token from `POST /v1/auth/login` or an external issuer; refused for good: the session closes (4001)
 * @property {string} [username] log in with this (again whenever the token is refused)
 * @property {string} [password]
 * @property {WebSocketConstructor} [WebSocket] default `globalThis.WebSocket` (in node 20: pass the `ws` package's)
 * @property {FetchFunction} [fetch] default `globalThis.fetch`
 * @property {string} [wsUrl] the WebSocket URL (default: the base URL's `/v1/ws`, ws:// or wss://)
 * @property {string[]} [fallbacks] other gateways' base URLs (e.g. another region's), in order: when a connection attempt fails, the next goes to the next gateway, and the session resumes there; the first connect tries them in order too
 * @property {number} [requestTimeout] ms a request waits for its answer (default 30 s; a send is resent after reconnects and `unavailable` until then)
 * @property {number} [connectTimeout] ms from opening a connection to `welcome` (default 10 s)
 * @property {number} [reconnectMin] first reconnect delay bound, ms (default 100)
 * @property {number} [reconnectMax] largest reconnect delay, ms (default 10 000)
 * @property {number} [pingEvery] ms between pings of an idle connection; three intervals without a frame count as a broken connection (default 15 s)
 * @property {number} [maxPending] requests waiting for their answer at once; one more is refused with `overflow` (default 1 024)
 */

/** @typedef {{type: string, [field: string]: unknown}} Frame */

/**
 * A request waiting for its answer. `call`: the application's; `resume`: a re-join.
 * @typedef {object} Pending
 * @property {"call" | "resume"} kind
 * @property {number} ref
 * @property {Frame} frame
 * @property {number} attempts
 * @property {(value: any) => void} resolve
 * @property {(error: ChatmeshError) => void} reject
 * @property {ReturnType<typeof setTimeout> | null} timer
 * @property {ReturnType<typeof setTimeout> | null} resendTimer
 */

// ---------------------------------------------------------------------------------------
// Errors

/**
 * Every failure of this package. `code` is the protocol's error code (`bad_request`,
 * `unauthorized`, `forbidden`, `not_found`, `too_large`, `rate_limited`, `unavailable`,
 * `internal`; over HTTP also `conflict`, or `http_<status>` for an answer without an error
 * body) or one of the client's own: `network` (HTTP could not reach the server),
 * `disconnected` (the connection broke while the request waited; only sends are resent),
 * `timeout`, `closed` (the session is over), `overflow` (too many requests waiting, or an
 * `events()` reader too slow), `protocol` (an answer protocol v1 does not allow),
 * `invalid` (a bad argument).
 */
export class ChatmeshError extends Error {
  /**
   * @param {string} code
   * @param {string} [message]
   * @param {{status?: number, retryAfter?: number, request?: string, room?: string, closeCode?: number}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = "ChatmeshError";
    /** @type {string} */
    this.code = code;
    /** The HTTP status of an HTTP error (0: the server could not be reached). */
    this.status = extra.status;
    /** Seconds to wait, from a 429's `Retry-After`. */
    this.retryAfter = extra.retryAfter;
    /** For an `error` event answering a `typing` or `read`: that request's type. */
    this.request = extra.request;
    /** For an `error` event answering a `typing` or `read`: its room. */
    this.room = extra.room;
    /** For code `closed`: the close code that ended the session. */
    this.closeCode = extra.closeCode;
  }
}

/** @param {unknown} e @returns {ChatmeshError} */
function asError(e) {
  if (e instanceof ChatmeshError) return e;
  return new ChatmeshError("network", e instanceof Error ? e.message : String(e));
}

// ---------------------------------------------------------------------------------------
// Backoff

/**
 * Exponential backoff with jitter, for reconnects: each delay is drawn uniformly between
 * half the current bound and the bound, which doubles from `min` up to `max`, so clients cut
 * off together do not come back together. The same rule as the Rust SDK's `Backoff`.
 */
export class Backoff {
  /** @param {number} min ms @param {number} max ms */
  constructor(min, max) {
    this.min = Math.max(1, min);
    this.max = Math.max(this.min, max);
    this.bound = this.min;
    /** The floor of the next delay only ([`atLeast`]), ms. */
    this.floor = 0;
  }

  /**
   * The next delay in ms, drawn between half of `min` and the bound (full jitter above a
   * floor), then the bound doubles.
   */
  next() {
    const bound = this.bound;
    this.bound = Math.min(this.bound * 2, this.max);
    const low = Math.min(bound, Math.max(this.min / 2, this.floor));
    this.floor = 0;
    return Math.round(low + Math.random() * (bound - low));
  }

  /** Back to the shortest delay (after a success). */
  reset() {
    this.bound = this.min;
  }

  /**
   * Raises the bound to at least `ms` (capped at `max`), and the next delay to at least half
   * of it, e.g. after close 4008.
   */
  atLeast(/** @type {number} */ ms) {
    this.bound = Math.min(this.max, Math.max(this.bound, ms));
    this.floor = this.bound / 2;
  }
}

// ---------------------------------------------------------------------------------------
// HTTP

/** @param {string} base */
function checkBase(base) {
  const b = String(base).replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]/.test(b)) {
    throw new ChatmeshError("invalid", `invalid base URL ${JSON.stringify(base)}: use http:// or https://`);
  }
  return b;
}

/** The WebSocket URL of a gateway's HTTP base URL. @param {string} base */
export function wsUrlOf(base) {
  return `${checkBase(base).replace(/^http/, "ws")}/v1/ws`;
}

/** @param {string} name @param {string} what */
function seg(name, what) {
  if (typeof name !== "string" || !name) throw new ChatmeshError("invalid", `${what} must be a non-empty string`);
  return encodeURIComponent(name);
}

/** Longest `Retry-After` (seconds) of a 429 that a call waits out by itself, by default. */
export const RATE_LIMIT_WAIT = 5;
/** Times one call is sent again after a 429 before its error is thrown. */
export const RATE_LIMIT_RETRIES = 3;

/**
 * The HTTP API of one gateway. Every call but `register` and `login` needs a token
 * (`new Http(base, {token})` or `withToken`). Errors are `ChatmeshError`s with the code and
 * message of the `{"error":{"code","message"}}` body and the HTTP `status`.
 *
 * A call refused with 429 whose `Retry-After` is at most `rateLimitWait` seconds
 * (`RATE_LIMIT_WAIT` unless given; 0: never) is sent again after that long, up to
 * `RATE_LIMIT_RETRIES` times: the server refuses such a call before doing anything, so any
 * call may be repeated. A longer wait (a login lockout) throws at once, with `retryAfter`.
 */
export class Http {
  /** @type {FetchFunction} */
  #fetch;
  /** @type {number} */
  #rateLimitWait;

  /**
   * @param {string} base `http://host:port` or `https://…`
   * @param {{token?: string | null, fetch?: FetchFunction, rateLimitWait?: number}} [options]
   */
  constructor(base, options = {}) {
    /** The base URL, without a trailing slash. */
    this.base = checkBase(base);
    /** @type {string | null} */
    this.token = options.token ?? null;
    const f = options.fetch;
    this.#fetch = f ?? ((input, init) => globalThis.fetch(input, init));
    this.#rateLimitWait = options.rateLimitWait ?? RATE_LIMIT_WAIT;
  }

  /** The same API, calling with `token`. @param {string | null} token */
  withToken(token) {
    return new Http(this.base, { token, fetch: this.#fetch, rateLimitWait: this.#rateLimitWait });
  }

  /** `POST /v1/auth/register` (password ≥ 8 characters); 409 `conflict` if taken. */
  async register(/** @type {string} */ username, /** @type {string} */ password) {
    await this.#call("POST", "/v1/auth/register", { username, password });
  }

  /**
   * `POST /v1/auth/login`; `device`: the `device` of an earlier login of this account here.
   * @returns {Promise<Login>}
   */
  async login(
    /** @type {string} */ username,
    /** @type {string} */ password,
    /** @type {string | undefined} */ device = undefined,
  ) {
    const body = device ? { username, password, device } : { username, password };
    return /** @type {Login} */ (await this.#call("POST", "/v1/auth/login", body));
  }

  /** `POST /v1/auth/logout_all`: revokes every token of the caller, this one included. */
  async logoutAll() {
    await this.#call("POST", "/v1/auth/logout_all");
  }

  /**
   * `POST /v1/rooms`: the caller becomes the owner; 409 if taken. With `home` (extension:
   * regions) the room lives in that region, `"here"` being the gateway's own (a gateway of a
   * one-region deployment ignores `"here"`); use the returned `room`, which then starts
   * with the region.
   * @param {string} room
   * @param {"public" | "private"} [kind]
   * @param {string} [home]
   * @returns {Promise<{room: string, kind: RoomKind, owner: string}>}
   */
  async createRoom(room, kind = "public", home = undefined) {
    const body = home === undefined ? { room, kind } : { room, kind, home };
    return /** @type {any} */ (await this.#call("POST", "/v1/rooms", body));
  }

  /** `GET /v1/rooms`: the caller's rooms first, then public rooms it is not in. @returns {Promise<RoomInfo[]>} */
  async rooms() {
    return (await this.roomList()).rooms;
  }

  /**
   * `GET /v1/rooms` whole: `rooms` (every page of them, see {@link Http#roomPage}), and
   * `unavailable`, the regions that did not answer (a multi-region deployment whose regions
   * keep their own rooms): their rooms are missing from this list, not left. Empty when
   * every region answered. At most 100 pages are read.
   * @returns {Promise<{rooms: RoomInfo[], unavailable: string[]}>}
   */
  async roomList() {
    /** @type {RoomInfo[]} */
    const rooms = [];
    /** @type {Set<string>} */
    const unavailable = new Set();
    /** @type {string | undefined} */
    let after;
    for (let pages = 0; pages < 100; pages++) {
      const page = await this.roomPage(after);
      rooms.push(...page.rooms);
      for (const r of page.unavailable) unavailable.add(r);
      const last = page.rooms[page.rooms.length - 1];
      if (!page.more || !last) break;
      after = last.room;
    }
    return { rooms, unavailable: [...unavailable] };
  }

  /**
   * One page of `GET /v1/rooms` (extension: pages): a user in more rooms than the server
   * lists at once (1,000 by default) gets `more: true`; the next page is `after` the last
   * room of this one. The public rooms the caller is not in come on the last page.
   * @param {string} [after]
   * @returns {Promise<{rooms: RoomInfo[], more: boolean, unavailable: string[]}>}
   */
  async roomPage(after = undefined) {
    const path = after === undefined ? "/v1/rooms" : `/v1/rooms?after=${encodeURIComponent(after)}`;
    const data = /** @type {{rooms?: RoomInfo[], more?: unknown, unavailable?: unknown[]} | null} */ (
      await this.#call("GET", path)
    );
    const rooms = data && Array.isArray(data.rooms) ? data.rooms : [];
    const missing = data && Array.isArray(data.unavailable) ? data.unavailable : [];
    return {
      rooms,
      more: Boolean(data && data.more === true),
      unavailable: missing.filter((r) => typeof r === "string").map(String),
    };
  }

  /**
   * `POST /v1/rooms/{room}/members` (owner or admin; only the owner grants `admin`). A user
   * who takes invitations (extension) is invited instead: `{invited: true, invitation}`.
   * @param {string} room
   * @param {string} user
   * @param {"member" | "admin"} [role]
   * @returns {Promise<{invited: boolean, invitation?: Invitation}>}
   */
  async addMember(room, user, role = "member") {
    const data = /** @type {{invited?: boolean, invitation?: Invitation} | null} */ (
      await this.#call("POST", `/v1/rooms/${seg(room, "room")}/members`, { user, role })
    );
    // 202 (extension): the user takes invitations, and is invited instead.
    if (data && data.invited === true && data.invitation) {
      return { invited: true, invitation: data.invitation };
    }
    return { invited: false };
  }

  /**
   * `GET /v1/users/me/adds` (extension): who may add the caller to rooms: `anyone` (an owner
   * or admin adds it) or `invitations` (an add is an invitation the caller accepts).
   * @returns {Promise<"anyone" | "invitations">}
   */
  async adds() {
    const data = /** @type {{adds?: string}} */ (await this.#call("GET", "/v1/users/me/adds"));
    return data.adds === "invitations" ? "invitations" : "anyone";
  }

  /**
   * `PUT /v1/users/me/adds` (extension): sets who may add the caller to rooms.
   * @param {"anyone" | "invitations"} adds
   * @returns {Promise<"anyone" | "invitations">}
   */
  async setAdds(adds) {
    const data = /** @type {{adds?: string}} */ (await this.#call("PUT", "/v1/users/me/adds", { adds }));
    return data.adds === "invitations" ? "invitations" : "anyone";
  }

  /**
   * `GET /v1/users/me/invitations` (extension): one page of the caller's invitations by room,
   * after `after`.
   * @param {{after?: string, limit?: number}} [options] limit 1–200 (100 by default)
   * @returns {Promise<{invitations: Invitation[], more: boolean}>}
   */
  async invitations(options = {}) {
    const q = new URLSearchParams();
    if (options.after) q.set("after", options.after);
    if (options.limit) q.set("limit", String(Math.min(200, Math.max(1, Math.floor(options.limit)))));
    const query = q.size ? `?${q}` : "";
    const data = /** @type {{invitations?: Invitation[], more?: boolean}} */ (
      await this.#call("GET", `/v1/users/me/invitations${query}`)
    );
    return { invitations: Array.isArray(data.invitations) ? data.invitations : [], more: !!data.more };
  }

  /**
   * `POST /v1/users/me/invitations/{room}` (extension): accepts the invitation; the caller is
   * a member with its role. 403, 404 or 409 when it is no longer valid (it is gone then).
   * @param {string} room
   * @returns {Promise<void>}
   */
  async acceptInvitation(room) {
    await this.#call("POST", `/v1/users/me/invitations/${seg(room, "room")}`);
  }

  /**
   * `DELETE /v1/users/me/invitations/{room}` (extension): declines the invitation.
   * @param {string} room
   * @returns {Promise<void>}
   */
  async declineInvitation(room) {
    await this.#call("DELETE", `/v1/users/me/invitations/${seg(room, "room")}`);
  }

  /** `DELETE /v1/rooms/{room}/members/{user}` (owner/admin, or the user itself). */
  async removeMember(/** @type {string} */ room, /** @type {string} */ user) {
    await this.#call("DELETE", `/v1/rooms/${seg(room, "room")}/members/${seg(user, "user")}`);
  }

  /** `POST /v1/dm/{user}`: the one DM room of the caller and `user`. @returns {Promise<string>} */
  async dm(/** @type {string} */ user) {
    const data = /** @type {{room: string}} */ (await this.#call("POST", `/v1/dm/${seg(user, "user")}`));
    return data.room;
  }

  /**
   * `DELETE /v1/dm/{user}` (extension): closes the caller's DM with `user`: the caller's
   * room list marks it `closed` until a newer message arrives there or `dm(user)` opens it.
   * @param {string} user
   * @returns {Promise<void>}
   */
  async closeDm(user) {
    await this.#call("DELETE", `/v1/dm/${seg(user, "user")}`);
  }

  /**
   * `PUT /v1/users/me/blocks/{user}` (extension): `user` may no longer add the caller to
   * rooms, open a DM with it or send in the DM they share. Blocking twice is one block.
   * @param {string} user
   * @returns {Promise<void>}
   */
  async block(user) {
    await this.#call("PUT", `/v1/users/me/blocks/${seg(user, "user")}`);
  }

  /**
   * `DELETE /v1/users/me/blocks/{user}`: lifts a block (404 `not_found` if there is none).
   * @param {string} user
   * @returns {Promise<void>}
   */
  async unblock(user) {
    await this.#call("DELETE", `/v1/users/me/blocks/${seg(user, "user")}`);
  }

  /**
   * `GET /v1/users/me/blocks`: one page of the caller's blocked users by name, after `after`.
   * @param {{after?: string, limit?: number}} [options] limit 1–1000 (100 by default)
   * @returns {Promise<{blocks: Block[], more: boolean}>}
   */
  async blocks(options = {}) {
    const q = new URLSearchParams();
    if (options.after) q.set("after", options.after);
    if (options.limit) q.set("limit", String(Math.min(1000, Math.max(1, Math.floor(options.limit)))));
    const query = q.size ? `?${q}` : "";
    const data = /** @type {{blocks?: Block[], more?: boolean}} */ (await this.#call("GET", `/v1/users/me/blocks${query}`));
    return { blocks: Array.isArray(data.blocks) ? data.blocks : [], more: !!data.more };
  }

  /**
   * `GET /v1/rooms/{room}/members`: a page of the room's members by user name, after `after`
   * (members only; 403 otherwise).
   * @param {string} room
   * @param {{after?: string, limit?: number}} [options] limit 1–200 (default 100)
   * @returns {Promise<{members: Member[], more: boolean}>}
   */
  async members(room, options = {}) {
    const q = new URLSearchParams();
    if (options.after) q.set("after", options.after);
    if (options.limit) q.set("limit", String(Math.min(200, Math.max(1, Math.floor(options.limit)))));
    const query = q.size ? `?${q}` : "";
    const data = /** @type {{members?: Member[], more?: boolean}} */ (await this.#call("GET", `/v1/rooms/${seg(room, "room")}/members${query}`));
    return { members: Array.isArray(data.members) ? data.members : [], more: !!data.more };
  }

  /**
   * `PATCH /v1/rooms/{room}`: sets the topic (owner or admin; null or "" clears it).
   * @param {string} room
   * @param {string | null} topic at most 256 characters, one line
   * @returns {Promise<{room: string, topic: string | null, seq: number | null}>} `seq`: the change's event in the room (null if it could not be published)
   */
  async setTopic(room, topic) {
    return /** @type {any} */ (await this.#call("PATCH", `/v1/rooms/${seg(room, "room")}`, { topic }));
  }

  /**
   * `PATCH /v1/rooms/{room}` with `name`: sets the room's display name (owner or admin;
   * null or "" clears it). `seq` is the change's event in the room (null if it could not
   * be published).
   * @param {string} room
   * @param {string | null} name the rules of a display name
   * @returns {Promise<{room: string, name: string | null, seq: number | null}>}
   */
  async setRoomName(room, name) {
    return /** @type {any} */ (await this.#call("PATCH", `/v1/rooms/${seg(room, "room")}`, { name }));
  }

  /**
   * `POST /v1/rooms/{room}/bans`: bans `user` from the room and removes it (owner or admin).
   * @param {string} room
   * @param {string} user
   * @param {string} [reason] one line, at most 256 characters
   * @returns {Promise<void>}
   */
  async ban(room, user, reason) {
    /** @type {{user: string, reason?: string}} */
    const body = { user };
    if (reason !== undefined) body.reason = reason;
    await this.#call("POST", `/v1/rooms/${seg(room, "room")}/bans`, body);
  }

  /**
   * `DELETE /v1/rooms/{room}/bans/{user}`: lifts a ban (the user is not added back).
   * @param {string} room
   * @param {string} user
   * @returns {Promise<void>}
   */
  async unban(room, user) {
    await this.#call("DELETE", `/v1/rooms/${seg(room, "room")}/bans/${seg(user, "user")}`);
  }

  /**
   * `GET /v1/rooms/{room}/bans`: one page of the room's bans by user name, after `after`
   * (owner or admin).
   * @param {string} room
   * @param {{after?: string, limit?: number}} [options] limit 1–200 (100 by default)
   * @returns {Promise<{bans: Ban[], more: boolean}>}
   */
  async bans(room, options = {}) {
    const q = new URLSearchParams();
    if (options.after) q.set("after", options.after);
    if (options.limit) q.set("limit", String(Math.min(200, Math.max(1, Math.floor(options.limit)))));
    const query = q.size ? `?${q}` : "";
    const data = /** @type {{bans?: Ban[], more?: boolean}} */ (await this.#call("GET", `/v1/rooms/${seg(room, "room")}/bans${query}`));
    return { bans: Array.isArray(data.bans) ? data.bans : [], more: !!data.more };
  }

  /**
   * `POST /v1/rooms/{room}/mutes`: member `user` may not send until `until` (unix seconds,
   * within ten years), or until unmuted (owner or admin).
   * @param {string} room
   * @param {string} user
   * @param {number} [until]
   * @returns {Promise<void>}
   */
  async mute(room, user, until) {
    /** @type {{user: string, until?: number}} */
    const body = { user };
    if (until !== undefined) body.until = until;
    await this.#call("POST", `/v1/rooms/${seg(room, "room")}/mutes`, body);
  }

  /**
   * `DELETE /v1/rooms/{room}/mutes/{user}`: lifts a mute.
   * @param {string} room
   * @param {string} user
   * @returns {Promise<void>}
   */
  async unmute(room, user) {
    await this.#call("DELETE", `/v1/rooms/${seg(room, "room")}/mutes/${seg(user, "user")}`);
  }

  /** `GET /v1/users/me`: the caller's profile. @returns {Promise<Profile>} */
  async me() {
    return /** @type {Profile} */ (await this.#call("GET", "/v1/users/me"));
  }

  /**
   * `PATCH /v1/users/me`: sets the caller's display name (null or "" clears it).
   * @param {string | null} displayName at most 64 characters
   * @returns {Promise<Profile>}
   */
  async setDisplayName(displayName) {
    return /** @type {Profile} */ (await this.#call("PATCH", "/v1/users/me", { display_name: displayName }));
  }

  /**
   * `POST /v1/auth/password`: changes the password. Every earlier token of the caller is
   * revoked (open sessions close with 4001); the answer is a fresh login. A wrong old
   * password is 403 `forbidden`.
   * @param {string} oldPassword
   * @param {string} newPassword
   * @returns {Promise<Login>}
   */
  async changePassword(oldPassword, newPassword) {
    return /** @type {Login} */ (await this.#call("POST", "/v1/auth/password", { old_password: oldPassword, new_password: newPassword }));
  }

  /**
   * `GET /v1/rooms/{room}/messages`: up to `limit` (1–100) messages before seq `before`
   * (or the latest), oldest first.
   * @param {string} room
   * @param {number | null} [before]
   * @param {number} [limit]
   * @returns {Promise<Page>}
   */
  async history(room, before, limit = 50) {
    const q = new URLSearchParams({ limit: String(clampLimit(limit)) });
    if (typeof before === "number") q.set("before", String(before));
    const data = /** @type {Page} */ (await this.#call("GET", `/v1/rooms/${seg(room, "room")}/messages?${q}`));
    return { messages: Array.isArray(data.messages) ? data.messages : [], more: !!data.more };
  }

  /**
   * `GET /v1/rooms/{room}/messages/{seq}/edits`: every version of message `seq` (edits
   * extension). 404 `not_found` for an unknown or deleted message.
   * @param {string} room
   * @param {number} seq
   * @returns {Promise<EditHistory>}
   */
  async edits(room, seq) {
    const data = /** @type {EditHistory} */ (await this.#call("GET", `/v1/rooms/${seg(room, "room")}/messages/${seqSeg(seq)}/edits`));
    return { room: String(data.room), seq: Number(data.seq), versions: Array.isArray(data.versions) ? data.versions : [] };
  }

  /**
   * `GET /v1/rooms/{room}/messages/{root}/thread`: the replies to `root` after seq `after`
   * (oldest first, up to `limit`, 1–100), the root in its current version, whether more
   * follow, and the caller's `unread` replies above its thread cursor `read`.
   * @param {string} room
   * @param {number} root
   * @param {{after?: number, limit?: number}} [options]
   * @returns {Promise<ThreadPage>}
   */
  async thread(room, root, options = {}) {
    const q = new URLSearchParams({ limit: String(clampLimit(options.limit ?? 50)) });
    if (options.after !== undefined) q.set("after", String(options.after));
    const data = /** @type {ThreadPage} */ (await this.#call("GET", `/v1/rooms/${seg(room, "room")}/messages/${seqSeg(root)}/thread?${q}`));
    return {
      room: String(data.room),
      root: data.root || null,
      messages: Array.isArray(data.messages) ? data.messages : [],
      more: !!data.more,
      unread: Number(data.unread) || 0,
      read: Number(data.read) || 0,
    };
  }

  /**
   * `POST /v1/rooms/{room}/messages/{root}/thread/read`: the caller read the thread of
   * `root` up to reply `seq` (the cursor only moves forward).
   * @param {string} room
   * @param {number} root
   * @param {number} seq
   */
  async readThread(room, root, seq) {
    await this.#call("POST", `/v1/rooms/${seg(room, "room")}/messages/${seqSeg(root)}/thread/read`, { seq: Number(seqSeg(seq)) });
  }

  /**
   * `GET /v1/search`: the newest messages of the caller's rooms matching `q` (all its
   * words), newest first; the next page: `{before: results.next_before}` (a server without
   * it: the last hit's seq). Messages are found once
   * the worker's index committed them, about a second after their ack.
   * @param {string} q
   * @param {SearchOptions} [options]
   * @returns {Promise<SearchResults>}
   */
  async search(q, options = {}) {
    const p = new URLSearchParams({ q: String(q) });
    if (options.room !== undefined) p.set("room", String(options.room));
    if (options.from !== undefined) p.set("from", String(options.from));
    for (const k of /** @type {const} */ (["since", "until", "before", "limit"])) {
      const v = options[k];
      if (v !== undefined) p.set(k, String(v));
    }
    const data = /** @type {SearchResults} */ (await this.#call("GET", `/v1/search?${p}`));
    const hits = Array.isArray(data.hits) ? data.hits : [];
    const more = !!data.more;
    /** @type {SearchResults} */
    const out = { hits, more };
    const next = typeof data.next_before === "number" ? data.next_before : hits.length ? hits[hits.length - 1].seq : undefined;
    if (more && next !== undefined) out.next_before = next;
    return out;
  }

  // -------------------------------------------------------------------------------------
  // Files (the files extension of protocol v1)

  /**
   * `POST /v1/rooms/{room}/files?name=NAME`: uploads a file to `room` (members who may
   * post). 413 `too_large` over the size cap or a quota; 400 `bad_request` for a bad name or
   * bytes that do not match an image name (a zip called `.png`); 403, 404 for an unknown room.
   * @param {string} room
   * @param {string} name what downloads are called: 1–255 bytes of UTF-8, no `/` or `\`
   * @param {Blob | ArrayBuffer | Uint8Array | string} data the bytes
   * @returns {Promise<FileInfo>}
   */
  async uploadFile(room, name, data) {
    if (typeof name !== "string" || !name) throw new ChatmeshError("invalid", "name must be a non-empty string");
    const path = `/v1/rooms/${seg(room, "room")}/files?name=${encodeURIComponent(name)}`;
    const resp = await this.#fetch200("POST", path, {
      body: /** @type {BodyInit} */ (data),
      headers: { "Content-Type": "application/octet-stream" },
    });
    return /** @type {FileInfo} */ (await this.#json(resp));
  }

  /** `GET /v1/rooms/{room}/files/{id}/info`. @param {string} room @param {string} id @returns {Promise<FileInfo>} */
  async fileInfo(room, id) {
    return /** @type {FileInfo} */ (await this.#call("GET", `${filePath(room, id)}/info`));
  }

  /**
   * `GET /v1/rooms/{room}/files/{id}`: the file's bytes (members, or readers of a public
   * room; 403 otherwise). `range` asks for bytes `start`–`end` (inclusive; to the end when
   * `end` is left out): 206, or 416 `http_416` when it cannot be satisfied.
   * @param {string} room
   * @param {string} id
   * @param {{range?: {start: number, end?: number}}} [options]
   * @returns {Promise<Download>}
   */
  async download(room, id, options = {}) {
    /** @type {Record<string, string>} */
    const headers = {};
    const r = options.range;
    if (r) {
      if (!Number.isInteger(r.start) || r.start < 0 || (r.end !== undefined && (!Number.isInteger(r.end) || r.end < r.start))) {
        throw new ChatmeshError("invalid", "range must be whole numbers with 0 <= start <= end");
      }
      headers.Range = `bytes=${r.start}-${r.end === undefined ? "" : r.end}`;
    }
    // `proxy=1`: through the gateway even when it redirects downloads to the object store,
    // whose origin a page's CSP (and the bucket's CORS) need not allow.
    return download(await this.#fetch200("GET", `${filePath(room, id)}?proxy=1`, { headers }));
  }

  /**
   * `GET /v1/rooms/{room}/files/{id}/thumbnail`: a PNG of at most 320 × 320 pixels, for
   * images once made; `not_found` while there is none (see `thumbnail` in the file's info).
   * @param {string} room
   * @param {string} id
   * @returns {Promise<Download>}
   */
  async thumbnail(room, id) {
    return download(await this.#fetch200("GET", `${filePath(room, id)}/thumbnail`, {}));
  }

  // -------------------------------------------------------------------------------------
  // Push notifications (an extension of v1; 503 `unavailable` where the server has push off)

  /** `GET /v1/push/vapid`: the VAPID public key (base64url), a browser's `applicationServerKey`. @returns {Promise<string>} */
  async pushVapidKey() {
    const data = /** @type {{public_key?: string} | null} */ (await this.#call("GET", "/v1/push/vapid"));
    if (!data || typeof data.public_key !== "string") throw new ChatmeshError("protocol", "no public_key in the answer");
    return data.public_key;
  }

  /**
   * `POST /v1/push/targets`: registers a device or browser; the same endpoint (or token)
   * again answers the same id. A browser passes `{kind: "web_push", ...subscription.toJSON()}`.
   * 400 for a malformed target, 409 past the per-user bound.
   * @param {{kind: "web_push", endpoint: string, keys: {p256dh: string, auth: string}} | {kind: "fcm", token: string} | {kind: "apns", token: string, topic: string, sandbox?: boolean}} target
   * @returns {Promise<PushTarget>}
   */
  async addPushTarget(target) {
    return /** @type {PushTarget} */ (await this.#call("POST", "/v1/push/targets", target));
  }

  /** `GET /v1/push/targets`: the caller's targets. @returns {Promise<PushTarget[]>} */
  async pushTargets() {
    const data = /** @type {{targets?: PushTarget[]} | null} */ (await this.#call("GET", "/v1/push/targets"));
    return data && Array.isArray(data.targets) ? data.targets : [];
  }

  /** `DELETE /v1/push/targets/{id}`; 404 `not_found` if the caller has no such target. */
  async removePushTarget(/** @type {string} */ id) {
    await this.#call("DELETE", `/v1/push/targets/${seg(id, "id")}`);
  }

  /** `GET /v1/push/settings`. @returns {Promise<PushSettings>} */
  async pushSettings() {
    return /** @type {PushSettings} */ (await this.#call("GET", "/v1/push/settings"));
  }

  /** `PATCH /v1/push/settings`: the settings now. @param {PushSettingsPatch} patch @returns {Promise<PushSettings>} */
  async setPushSettings(patch) {
    return /** @type {PushSettings} */ (await this.#call("PATCH", "/v1/push/settings", patch));
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @returns {Promise<unknown>}
   */
  async #call(method, path, body) {
    /** @type {Record<string, string>} */
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await this.#fetch200(method, path, {
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return this.#json(resp);
  }

  /**
   * The answer to a request with the token, when it is a success; an error answer throws
   * its ChatmeshError.
   * @param {string} method
   * @param {string} path
   * @param {{headers?: Record<string, string>, body?: BodyInit}} init
   * @returns {Promise<Response>}
   */
  async #fetch200(method, path, init) {
    /** @type {Record<string, string>} */
    const headers = { ...(init.headers || {}) };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    for (let retries = 0; ; retries++) {
      let resp;
      try {
        resp = await this.#fetch(this.base + path, {
          method,
          headers,
          body: init.body,
          credentials: "omit",
          cache: "no-store",
        });
      } catch (e) {
        throw new ChatmeshError("network", `cannot reach the server (${e instanceof Error ? e.message : e})`, { status: 0 });
      }
      if (resp.ok) return resp;
      const wait = Number(resp.headers.get("retry-after"));
      const waitOut = resp.status === 429 && retries < RATE_LIMIT_RETRIES && this.#rateLimitWait > 0
        && Number.isInteger(wait) && wait >= 0 && wait <= this.#rateLimitWait;
      if (!waitOut) throw await httpError(resp);
      await resp.body?.cancel().catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    }
  }

  /** A success's JSON body (null when empty). @param {Response} resp @returns {Promise<unknown>} */
  async #json(resp) {
    const text = await resp.text().catch(() => "");
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      throw new ChatmeshError("protocol", `HTTP ${resp.status} with a body that is not JSON`, { status: resp.status });
    }
  }
}

/**
 * The ChatmeshError of an HTTP error answer: the code and message of its
 * `{"error":{"code","message"}}` body, or `http_<status>`.
 * @param {Response} resp
 * @returns {Promise<ChatmeshError>}
 */
export async function httpError(resp) {
  const text = await resp.text().catch(() => "");
  /** @type {any} */
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    // not JSON: the status says it all
  }
  const err = data && typeof data === "object" && data.error && typeof data.error === "object" ? data.error : {};
  const retry = Number(resp.headers.get("retry-after"));
  return new ChatmeshError(
    typeof err.code === "string" ? err.code : `http_${resp.status}`,
    typeof err.message === "string" && err.message ? err.message : `HTTP ${resp.status} ${resp.statusText}`.trim(),
    { status: resp.status, retryAfter: Number.isFinite(retry) && retry > 0 ? retry : undefined },
  );
}

/** @param {string} room @param {string} id */
function filePath(room, id) {
  return `/v1/rooms/${seg(room, "room")}/files/${seg(id, "file id")}`;
}

/** @param {Response} resp @returns {Promise<Download>} */
async function download(resp) {
  return {
    status: resp.status,
    contentType: resp.headers.get("content-type") || "application/octet-stream",
    contentRange: resp.headers.get("content-range"),
    blob: await resp.blob(),
  };
}

/**
 * `{attachments}` of a message frame that carries files (a copy, each a plain Attachment),
 * else `{}`: a message without files has no such field.
 * @param {Record<string, unknown>} f
 * @returns {{attachments?: Attachment[]}}
 */
function attachmentsOf(f) {
  if (!Array.isArray(f.attachments) || !f.attachments.length) return {};
  /** @type {Attachment[]} */
  const out = [];
  for (const a of f.attachments) {
    if (!a || typeof a !== "object" || typeof a.id !== "string") continue;
    /** @type {Attachment} */
    const item = {
      id: a.id,
      name: String(a.name ?? a.id),
      size: Number(a.size) || 0,
      content_type: String(a.content_type || "application/octet-stream"),
    };
    if (typeof a.width === "number") item.width = a.width;
    if (typeof a.height === "number") item.height = a.height;
    out.push(item);
  }
  return out.length ? { attachments: out } : {};
}

/**
 * `{mentions}` of a message frame that mentions someone (a copy: `users` names, `room` true
 * for `@room`), else `{}`.
 * @param {Record<string, unknown>} f
 * @returns {{mentions?: {users?: string[], room?: boolean}}}
 */
function mentionsOf(f) {
  const at = /** @type {{users?: unknown, room?: unknown} | null} */ (
    f.mentions && typeof f.mentions === "object" ? f.mentions : null
  );
  if (!at) return {};
  /** @type {{users?: string[], room?: boolean}} */
  const out = {};
  if (Array.isArray(at.users)) {
    const users = at.users.filter((u) => typeof u === "string");
    if (users.length) out.users = users;
  }
  if (at.room === true) out.room = true;
  return out.users || out.room ? { mentions: out } : {};
}

/**
 * `{edit_of}` or `{delete_of}` of a message frame that changes an earlier message, else `{}`.
 * @param {Record<string, unknown>} f
 * @returns {{edit_of?: number, delete_of?: number}}
 */
function changeOf(f) {
  if (typeof f.edit_of === "number" && f.edit_of > 0) return { edit_of: f.edit_of };
  if (typeof f.delete_of === "number" && f.delete_of > 0) return { delete_of: f.delete_of };
  return {};
}

/**
 * A message seq as a path segment: a positive integer, else `invalid`.
 * @param {number} seq
 */
function seqSeg(seq) {
  if (!Number.isSafeInteger(seq) || seq < 1) throw new ChatmeshError("invalid", `not a message seq: ${seq}`);
  return String(seq);
}

/**
 * The earlier messages a message frame refers to as a reaction or a reply (`react_to`,
 * `unreact_to`, `reply_to`, `thread_root`), else `{}`.
 * @param {Record<string, unknown>} f
 * @returns {{react_to?: number, unreact_to?: number, reply_to?: number, thread_root?: number}}
 */
function refsOf(f) {
  /** @type {{react_to?: number, unreact_to?: number, reply_to?: number, thread_root?: number}} */
  const out = {};
  for (const k of /** @type {const} */ (["react_to", "unreact_to", "reply_to", "thread_root"])) {
    const v = f[k];
    if (typeof v === "number") out[k] = v;
  }
  return out;
}

/**
 * `{mls}` of a message of an e2ee room (extension), else `{}`.
 * @param {Record<string, unknown>} f
 * @returns {{mls?: Mls}}
 */
function mlsOf(f) {
  const m = /** @type {{kind?: unknown, epoch?: unknown, data?: unknown, file?: unknown} | null} */ (
    f.mls && typeof f.mls === "object" && !Array.isArray(f.mls) ? f.mls : null
  );
  if (!m || typeof m.kind !== "string" || typeof m.epoch !== "number" || typeof m.data !== "string") return {};
  /** @type {Mls} */
  const out = /** @type {Mls} */ ({ kind: m.kind, epoch: m.epoch, data: m.data });
  if (typeof m.file === "string") out.file = m.file;
  return { mls: out };
}

/**
 * `{event}` of a room event message (moderation extension), else `{}`. Kinds this client
 * does not know pass through as they came, for the caller to show generically.
 * @param {Record<string, unknown>} f
 * @returns {{event?: RoomEvent}}
 */
function eventOf(f) {
  const e = f.event;
  if (!e || typeof e !== "object" || Array.isArray(e)) return {};
  return { event: /** @type {RoomEvent} */ (e) };
}

/** @param {number} limit */
function clampLimit(limit) {
  const n = Math.floor(Number(limit));
  return Number.isFinite(n) ? Math.min(MAX_HISTORY_LIMIT, Math.max(1, n)) : 50;
}

// ---------------------------------------------------------------------------------------
// The session

/** Unique message ids: a random prefix per client and a counter. */
function idSource() {
  const bytes = new Uint8Array(8);
  if (globalThis.crypto && globalThis.crypto.getRandomValues) globalThis.crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  const prefix = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  let n = 0;
  return () => `${prefix}-${++n}`;
}

/** @param {WebSocketLike} ws */
function detach(ws) {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = () => {}; // the `ws` package throws on an error event nobody listens to
}

/** @param {WebSocketLike} ws @param {number} code @param {string} reason */
function safeClose(ws, code, reason) {
  try {
    ws.close(code, reason);
  } catch (_) {
    // closing or closed already, or still connecting in an implementation that refuses
  }
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One session with a gateway, kept across broken connections (see the top of this file).
 *
 * Use `await Client.connect(base, options)` (rejects when the first connection fails), or
 * `new Client(base, options)` then `start()` (keeps trying in the background, as a page
 * does). Requests may be made at any time: made while disconnected they wait for the next
 * connection. Events come to `on(type, handler)` handlers, or from `events()`.
 */
export class Client {
  /** @type {Http} */
  #http;
  /** @type {{token: string} | {username: string, password: string}} */
  #auth;
  /** @type {string | null} */
  #token;
  /** @type {WebSocketConstructor} */
  #WebSocket;
  /** @type {string} */
  #wsUrl;
  /** The gateways to use (the base URL, then `fallbacks`) and the one in use. */
  /** @type {{http: Http, wsUrl: string}[]} */
  #entries = [];
  #entry = 0;
  #requestTimeout;
  #connectTimeout;
  #pingEvery;
  #maxPending;
  #backoff;
  #nextId = idSource();

  /** @type {"idle" | "connecting" | "open" | "reconnecting" | "closed"} */
  #phase = "idle";
  #everConnected = false;
  #closing = false;
  /** @type {Promise<void> | null} */
  #closingDone = null;
  /** @type {(() => void) | null} */
  #closeWaiter = null;
  /** @type {WebSocketLike | null} the welcomed connection */
  #ws = null;
  /** @type {WebSocketLike | null} a connection being opened */
  #opening = null;
  /** @type {Welcome | null} */
  #welcome = null;
  #heard = 0;
  /** @type {ReturnType<typeof setInterval> | null} */
  #pingTimer = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #waitTimer = null;
  #skipDelay = false;
  #attempt = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #stableTimer = null;
  /** Frames to write on the open connection, in order, paced ([`FRAME_SHARE`]). */
  /** @type {{ref: number | null, frame: Frame}[]} */
  #outbox = [];
  #queuedFires = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #pumpTimer = null;
  #pace = { frames: Number.POSITIVE_INFINITY, sends: Number.POSITIVE_INFINITY, at: 0 };
  /** Re-joins of the resume not written yet, and how many written wait for their answer. */
  /** @type {Pending[]} */
  #rejoins = [];
  #rejoinsOut = 0;

  /** Joined rooms and the seq of the last message delivered (or the join's `last_seq`). */
  /** @type {Map<string, number>} */
  #rooms = new Map();
  /**
   * Rooms whose messages missed before a `prev` break a re-join is fetching, and per room the
   * `prev` of the break the latest such re-join was for ([`#fillGap`]).
   * @type {Set<string>}
   */
  #filling = new Set();
  /** @type {Map<string, number>} */
  #filled = new Map();
  /** Requests waiting for their answer, by ref; a Map keeps them in ref order. */
  /** @type {Map<number, Pending>} */
  #pending = new Map();
  #calls = 0;
  /** @type {Map<number, {type: string, room: string}>} */
  #fires = new Map();
  #nextRef = 1;
  /** @type {Map<string, Set<(data: any) => void>>} */
  #listeners = new Map();

  /**
   * @param {string} base the gateway's HTTP base URL, `http://host:port`
   * @param {ClientOptions} options
   */
  constructor(base, options) {
    const o = options || {};
    this.#http = new Http(base, { fetch: o.fetch });
    if (typeof o.token === "string" && o.token) {
      this.#auth = { token: o.token };
      this.#token = o.token;
    } else if (typeof o.username === "string" && typeof o.password === "string") {
      this.#auth = { username: o.username, password: o.password };
      this.#token = null;
    } else {
      throw new ChatmeshError("invalid", "no credentials: pass token, or username and password");
    }
    const WS = o.WebSocket ?? /** @type {WebSocketConstructor | undefined} */ (globalThis.WebSocket);
    if (typeof WS !== "function") {
      throw new ChatmeshError("invalid", "no WebSocket here: pass options.WebSocket (in node 20, the ws package's)");
    }
    this.#WebSocket = WS;
    this.#wsUrl = o.wsUrl ?? wsUrlOf(this.#http.base);
    this.#entries = [{ http: this.#http, wsUrl: this.#wsUrl }];
    for (const other of o.fallbacks ?? []) {
      const http = new Http(other, { fetch: o.fetch });
      this.#entries.push({ http, wsUrl: wsUrlOf(http.base) });
    }
    this.#requestTimeout = o.requestTimeout ?? 30_000;
    this.#connectTimeout = o.connectTimeout ?? 10_000;
    this.#pingEvery = Math.max(10, o.pingEvery ?? 15_000);
    this.#maxPending = Math.max(1, o.maxPending ?? 1024);
    this.#backoff = new Backoff(o.reconnectMin ?? 100, o.reconnectMax ?? 10_000);
  }

  /**
   * Logs in if asked to, opens the session and waits for `welcome`.
   * @param {string} base
   * @param {ClientOptions} options
   */
  static async connect(base, options) {
    const client = new Client(base, options);
    await client.connect();
    return client;
  }

  /**
   * Opens the first connection (logging in first with a password); rejects with the
   * failure (e.g. code `unauthorized`), and the client is then closed. Later breaks are
   * reconnected on their own. @returns {Promise<Welcome>}
   */
  async connect() {
    if (this.#phase !== "idle") throw new ChatmeshError("invalid", "connect() or start() was called already");
    this.#phase = "connecting";
    try {
      let opened;
      for (let tried = 1; ; tried++) {
        try {
          opened = await this.#openWithAuth();
          break;
        } catch (e) {
          const err = asError(e);
          if (err.code === "unauthorized" || tried >= this.#entries.length || this.#over()) throw err;
          this.#failOver();
        }
      }
      if (this.#over()) {
        detach(opened.ws);
        safeClose(opened.ws, 1000, "");
        throw new ChatmeshError("closed", "closed while connecting", { closeCode: 1000 });
      }
      this.#established(opened);
      return opened.welcome;
    } catch (e) {
      const err = asError(e);
      this.#finish(err.code === "unauthorized" ? 4001 : 1006, err.message);
      throw err;
    }
  }

  /**
   * Connects in the background and keeps the session from then on, like after a
   * disconnect: a failed attempt is retried with backoff (`reconnecting` events), a refused
   * token ends the session (`closed` with 4001). The first connection emits `connected`.
   */
  start() {
    if (this.#phase !== "idle") throw new ChatmeshError("invalid", "connect() or start() was called already");
    this.#attemptConnect();
  }

  /** The user the server welcomed (null before the first `welcome`). */
  get user() {
    return this.#welcome ? this.#welcome.user : null;
  }

  /** The latest `welcome` (user, session, limits), or null. */
  get welcome() {
    return this.#welcome;
  }

  /** True while a connection is open and welcomed. */
  get connected() {
    return this.#phase === "open";
  }

  /** `idle` (not started), `connecting` (first connection), `open`, `reconnecting`, `closed`. */
  get state() {
    return this.#phase;
  }

  /** The rooms joined and the seq of the last message delivered of each. */
  get rooms() {
    return new Map(this.#rooms);
  }

  /** The HTTP API with this session's current token (rooms, members, DMs). */
  http() {
    return this.#http.withToken(this.#token);
  }

  // -------------------------------------------------------------------------------------
  // Events

  /**
   * Calls `handler` with each event of `type`; returns a function that removes it. A
   * handler that throws does not disturb the session (the exception is re-thrown
   * asynchronously, as an uncaught one).
   * @template {EventType} K
   * @param {K} type
   * @param {(data: EventMap[K]) => void} handler
   * @returns {() => void}
   */
  on(type, handler) {
    if (!EVENT_TYPES.includes(type)) throw new ChatmeshError("invalid", `no event ${JSON.stringify(type)}`);
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(handler);
    return () => this.off(type, handler);
  }

  /**
   * Removes a handler added with `on`.
   * @template {EventType} K
   * @param {K} type
   * @param {(data: EventMap[K]) => void} handler
   */
  off(type, handler) {
    const set = this.#listeners.get(type);
    if (set) set.delete(handler);
  }

  /**
   * Every event from now on, in order, as `{type, data}`, as an async iterator; it ends
   * after `closed`. At most `buffer` events wait for the reader: one more and the iterator
   * throws a `ChatmeshError` `overflow` (after the buffered ones) and stops.
   * `break`ing out of a `for await` stops it.
   * @param {{buffer?: number}} [options]
   * @returns {AsyncIterableIterator<ClientEvent>}
   */
  events(options = {}) {
    const limit = Math.max(1, options.buffer ?? 1024);
    /** @type {ClientEvent[]} */
    const queue = [];
    /** @type {((r: IteratorResult<ClientEvent>) => void) | null} */
    let wake = null;
    /** @type {ChatmeshError | null} */
    let failure = null;
    let ended = this.#phase === "closed";
    /** @type {(() => void)[]} */
    let offs = [];
    const stop = () => {
      for (const off of offs) off();
      offs = [];
    };
    /** @param {ClientEvent} item */
    const push = (item) => {
      if (ended) return;
      if (item.type === "closed") {
        ended = true;
        stop();
      }
      if (wake) {
        const w = wake;
        wake = null;
        w({ value: item, done: false });
      } else if (queue.length >= limit) {
        ended = true;
        stop();
        failure = new ChatmeshError("overflow", `more than ${limit} events were waiting for the events() reader`);
      } else {
        queue.push(item);
      }
    };
    if (!ended) {
      offs = EVENT_TYPES.map((type) => this.on(type, (data) => push(/** @type {ClientEvent} */ ({ type, data }))));
    }
    /** @type {AsyncIterableIterator<ClientEvent>} */
    const it = {
      next() {
        const item = queue.shift();
        if (item) return Promise.resolve({ value: item, done: false });
        if (failure) {
          const f = failure;
          failure = null;
          return Promise.reject(f);
        }
        if (ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          wake = resolve;
        });
      },
      return() {
        ended = true;
        stop();
        queue.length = 0;
        if (wake) wake({ value: undefined, done: true });
        wake = null;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return it;
      },
    };
    return it;
  }

  /**
   * @template {EventType} K
   * @param {K} type
   * @param {EventMap[K]} data
   */
  #emit(type, data) {
    const set = this.#listeners.get(type);
    if (!set || !set.size) return;
    for (const handler of Array.from(set)) {
      try {
        handler(data);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  // -------------------------------------------------------------------------------------
  // Requests

  /** Joins `room` for live messages; resolves to its `last_seq`. @returns {Promise<number>} */
  async join(/** @type {string} */ room) {
    const joined = await this.#request({ type: "join", room });
    return Number(joined.last_seq) || 0;
  }

  /**
   * Joins `room` and first gets every message after `since`, in order (again, even if
   * delivered before). @returns {Promise<number>} the room's `last_seq`
   */
  async joinSince(/** @type {string} */ room, /** @type {number} */ since) {
    const joined = await this.#request({ type: "join", room, since });
    return Number(joined.last_seq) || 0;
  }

  /** Leaves `room`: no more of its messages (also if the answer is lost to a disconnect). */
  async leave(/** @type {string} */ room) {
    await this.#request({ type: "leave", room });
  }

  /**
   * Sends `body` to `room` with a fresh id; the ack means it is stored. `options.attachments`:
   * ids of files uploaded to the room (`Http.uploadFile`), at most 10; `body` may then be "".
   * @param {string} room
   * @param {string} body
   * @param {SendOptions} [options]
   * @returns {Promise<Ack>}
   */
  send(room, body, options) {
    return this.sendWithId(room, this.#nextId(), body, options);
  }

  /**
   * Sends with the caller's id (1–64 printable ASCII characters, unique per sender): a
   * resend with the same id is stored once (within the server's dedupe window, 2 minutes
   * by default; later too with `options.resendAfter`).
   * @param {string} room
   * @param {string} id
   * @param {string} body
   * @param {SendOptions} [options]
   * @returns {Promise<Ack>}
   */
  async sendWithId(room, id, body, options = {}) {
    /** @type {Frame} */
    const frame = { type: "send", room, id, body };
    const files = options.attachments;
    if (files !== undefined) {
      if (!Array.isArray(files) || files.length > MAX_ATTACHMENTS || !files.every((f) => typeof f === "string" && f)) {
        throw new ChatmeshError("invalid", `attachments must be at most ${MAX_ATTACHMENTS} file ids`);
      }
      if (files.length) frame.attachments = files.slice();
    }
    if (options.editOf !== undefined && options.deleteOf !== undefined) {
      throw new ChatmeshError("invalid", "a send is an edit or a delete, not both");
    }
    if (options.editOf !== undefined) frame.edit_of = Number(seqSeg(options.editOf));
    if (options.deleteOf !== undefined) frame.delete_of = Number(seqSeg(options.deleteOf));
    for (const [k, wire] of /** @type {const} */ ([["replyTo", "reply_to"], ["reactTo", "react_to"], ["unreactTo", "unreact_to"]])) {
      const seq = options[k];
      if (seq === undefined) continue;
      frame[wire] = Number(seqSeg(seq));
    }
    if (options.resendAfter !== undefined) {
      const after = Number(options.resendAfter);
      if (!Number.isSafeInteger(after) || after < 0) throw new ChatmeshError("invalid", "resendAfter must be a seq (0 or more)");
      frame.resend_after = after;
    }
    const ack = await this.#request(frame);
    return { room: String(ack.room), id: String(ack.id), seq: Number(ack.seq), ts: Number(ack.ts) };
  }

  /**
   * Replaces the body of message `seq` of `room` (the author only; edits extension). The edit
   * is a message of the room's order: the ack's `seq` is the edit's.
   * @param {string} room
   * @param {number} seq
   * @param {string} body
   * @returns {Promise<Ack>}
   */
  edit(room, seq, body) {
    return this.sendWithId(room, this.#nextId(), body, { editOf: seq });
  }

  /**
   * Deletes message `seq` of `room` (its author, a room admin or the owner): history keeps
   * a tombstone. The ack's `seq` is the delete's.
   * @param {string} room
   * @param {number} seq
   * @returns {Promise<Ack>}
   */
  delete(room, seq) {
    return this.sendWithId(room, this.#nextId(), "", { deleteOf: seq });
  }

  /**
   * Puts the reaction `key` (an emoji, 1–64 bytes, no spaces) on message `seq` of `room`
   * (the reactions extension); the ack's `seq` is the reaction's.
   * @param {string} room
   * @param {number} seq
   * @param {string} key
   * @returns {Promise<Ack>}
   */
  react(room, seq, key) {
    return this.sendWithId(room, this.#nextId(), key, { reactTo: seq });
  }

  /**
   * Takes the caller's reaction `key` off message `seq` of `room`.
   * @param {string} room
   * @param {number} seq
   * @param {string} key
   * @returns {Promise<Ack>}
   */
  unreact(room, seq, key) {
    return this.sendWithId(room, this.#nextId(), key, { unreactTo: seq });
  }

  /**
   * Replies to message `seq` of `room` with `body` (the reply joins the thread of the
   * target's root).
   * @param {string} room
   * @param {number} seq
   * @param {string} body
   * @param {SendOptions} [options] e.g. attachments
   * @returns {Promise<Ack>}
   */
  reply(room, seq, body, options = {}) {
    return this.sendWithId(room, this.#nextId(), body, { ...options, replyTo: seq });
  }

  /**
   * One page of `room`'s history: up to `limit` (1–100) messages before seq `before` (or
   * the latest), oldest first.
   * @param {string} room
   * @param {number | null} [before]
   * @param {number} [limit]
   * @returns {Promise<Page>}
   */
  async history(room, before, limit = 50) {
    /** @type {Frame} */
    const frame = { type: "history", room, limit: clampLimit(limit) };
    if (typeof before === "number") frame.before = before;
    const page = await this.#request(frame);
    return { messages: Array.isArray(page.messages) ? page.messages : [], more: !!page.more };
  }

  /**
   * `room`'s history from the newest page back to the first, `page` messages at a time
   * (each page oldest first).
   * @param {string} room
   * @param {number} [page]
   * @returns {AsyncGenerator<Message[], void, void>}
   */
  async *historyPages(room, page = 50) {
    /** @type {number | undefined} */
    let before;
    for (;;) {
      const p = await this.history(room, before, page);
      if (!p.messages.length) return;
      yield p.messages;
      if (!p.more) return;
      before = p.messages[0].seq;
    }
  }

  /** Who is online in `room` (sorted). @returns {Promise<string[]>} */
  async presence(/** @type {string} */ room) {
    const p = await this.#request({ type: "presence", room });
    return Array.isArray(p.online) ? p.online.map(String) : [];
  }

  /**
   * Tells `room` the user is typing. Not answered; a refusal comes as an `error` event
   * whose `request` is "typing". Dropped while disconnected.
   */
  async typing(/** @type {string} */ room) {
    this.#fire({ type: "typing", room });
  }

  /**
   * Marks `room` read up to `seq`; members get a receipt. Not answered; a refusal comes as
   * an `error` event whose `request` is "read". Dropped while disconnected.
   */
  async read(/** @type {string} */ room, /** @type {number} */ seq) {
    this.#fire({ type: "read", room, seq });
  }

  /** A round trip to the gateway. */
  async ping() {
    await this.#request({ type: "ping" });
  }

  /**
   * Drops the connection, if one is open, and connects again at once; or, while waiting
   * to reconnect, skips the rest of the wait. For network changes the application knows
   * of (a browser's `online`/`offline` events).
   */
  reconnect() {
    if (this.#closing) return;
    if (this.#phase === "open") {
      this.#skipDelay = true;
      this.#lost(4000, "reconnect requested");
    } else if (this.#phase === "reconnecting" && this.#waitTimer !== null) {
      clearTimeout(this.#waitTimer);
      this.#waitTimer = null;
      this.#attemptConnect();
    }
  }

  /**
   * Closes the session: waits (at most 2 s) for the acks of sends in flight, closes the
   * connection (waiting at most 2 s for the server's close frame), then every request
   * still waiting fails with `closed` and the `closed` event comes.
   */
  close() {
    if (this.#phase === "closed") return Promise.resolve();
    if (this.#closingDone) return this.#closingDone;
    this.#closing = true;
    this.#closingDone = (async () => {
      const deadline = Date.now() + CLOSE_WAIT_MS;
      while (this.#ws && this.#hasSends() && Date.now() < deadline) await sleep(10);
      const ws = this.#ws;
      if (ws) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, CLOSE_WAIT_MS);
          this.#closeWaiter = () => {
            clearTimeout(timer);
            resolve(undefined);
          };
          safeClose(ws, 1000, "");
        });
      }
      this.#finish(1000, "closed by the client");
    })();
    return this.#closingDone;
  }

  /** Closed, or closing (a method, so that checks after an await are not narrowed away). */
  #over() {
    return this.#phase === "closed" || this.#closing;
  }

  #hasSends() {
    for (const p of this.#pending.values()) if (p.kind === "call" && p.frame.type === "send") return true;
    return false;
  }

  /**
   * Sends a request and resolves with its answer (an `error` answer rejects).
   * @param {Frame} frame
   * @returns {Promise<any>}
   */
  #request(frame) {
    if (this.#phase === "closed" || this.#closing) {
      return Promise.reject(new ChatmeshError("closed", "the session is over", { closeCode: 1000 }));
    }
    if (this.#calls >= this.#maxPending) {
      return Promise.reject(
        new ChatmeshError("overflow", `${this.#maxPending} requests are already waiting for their answers`),
      );
    }
    return new Promise((resolve, reject) => {
      const ref = this.#nextRef++;
      /** @type {Pending} */
      const p = { kind: "call", ref, frame, attempts: 0, resolve, reject, timer: null, resendTimer: null };
      p.timer = setTimeout(() => {
        if (this.#pending.get(ref) !== p) return;
        this.#remove(p);
        reject(new ChatmeshError("timeout", `no answer to ${frame.type} within ${this.#requestTimeout} ms`));
      }, this.#requestTimeout);
      this.#pending.set(ref, p);
      this.#calls += 1;
      this.#write(ref, frame);
    });
  }

  /** @param {Pending} p */
  #remove(p) {
    if (this.#pending.get(p.ref) !== p) return;
    this.#pending.delete(p.ref);
    if (p.kind === "resume") this.#filling.delete(String(p.frame.room));
    if (p.kind === "call") this.#calls -= 1;
    if (p.timer !== null) clearTimeout(p.timer);
    if (p.resendTimer !== null) clearTimeout(p.resendTimer);
    p.timer = p.resendTimer = null;
  }

  /** A request answered only when refused (`typing`, `read`). @param {Frame} frame */
  #fire(frame) {
    if (this.#phase === "closed" || this.#closing) throw new ChatmeshError("closed", "the session is over");
    if (this.#phase !== "open") return; // typing and reads of a broken session are moot
    const ref = this.#nextRef++;
    this.#fires.set(ref, { type: frame.type, room: String(frame.room) });
    if (this.#fires.size > FIRE_REFS) {
      const oldest = this.#fires.keys().next();
      if (!oldest.done) this.#fires.delete(oldest.value);
    }
    this.#write(ref, frame);
  }

  /**
   * Queues a frame for the open connection, written in order at the pace the gateway takes
   * ([`FRAME_SHARE`] of the flood guard, and the session's send rate for sends); false when there is no
   * open connection. @param {number | null} ref @param {Frame} frame
   */
  #write(ref, frame) {
    if (!this.#ws || this.#phase !== "open") return false;
    const fire = frame.type === "typing" || frame.type === "read";
    if (fire && this.#queuedFires >= MAX_QUEUED_FIRES) return false;
    if (fire) this.#queuedFires += 1;
    this.#outbox.push({ ref, frame });
    this.#pump();
    return true;
  }

  /** Writes what the pace allows now, and comes back when the next frame may go. */
  #pump() {
    if (this.#pumpTimer !== null) return;
    const ws = this.#ws;
    if (!ws || this.#phase !== "open") return;
    const limits = this.#welcome?.limits ?? {};
    const guard = Number(limits.frames_per_second) || DEFAULT_FRAMES_PER_SECOND;
    const frameRate = Math.max(1, guard * FRAME_SHARE);
    const frameBurst = Math.max(1, Math.floor(2 * guard * FRAME_SHARE));
    const sendRate = Math.max(1, Number(limits.sends_per_second) || 20);
    const sendBurst = Math.max(1, Math.floor((Number(limits.send_burst) || 50) / 2));
    const maxBytes = Number(limits.max_message_bytes) || 64 * 1024;
    const pace = this.#pace;
    const now = Date.now();
    const elapsed = Math.max(0, now - pace.at) / 1000;
    pace.frames = Math.min(frameBurst, pace.frames + elapsed * frameRate);
    pace.sends = Math.min(sendBurst, pace.sends + elapsed * sendRate);
    pace.at = now;
    while (this.#outbox.length > 0) {
      const { ref, frame } = this.#outbox[0];
      const send = frame.type === "send";
      if (pace.frames < 1 || (send && pace.sends < 1)) {
        const wait = Math.max(
          pace.frames < 1 ? (1 - pace.frames) / frameRate : 0,
          send && pace.sends < 1 ? (1 - pace.sends) / sendRate : 0,
        );
        this.#pumpTimer = setTimeout(() => {
          this.#pumpTimer = null;
          if (this.#ws === ws) this.#pump();
        }, Math.ceil(wait * 1000));
        return;
      }
      this.#outbox.shift();
      if (frame.type === "typing" || frame.type === "read") this.#queuedFires -= 1;
      const text = JSON.stringify(ref === null ? frame : { ...frame, ref });
      // The gateway closes the connection (1009) on a frame over its limit, and every
      // reconnect would write it again: refused here instead.
      if (text.length > maxBytes / 6 && new TextEncoder().encode(text).length > maxBytes) {
        this.#tooLarge(ref, frame, maxBytes);
        continue;
      }
      pace.frames -= 1;
      if (send) pace.sends -= 1;
      try {
        ws.send(text);
      } catch (e) {
        queueMicrotask(() => {
          if (this.#ws === ws) this.#lost(1006, `write failed: ${e instanceof Error ? e.message : e}`);
        });
        return;
      }
    }
  }

  /** A frame over the gateway's limit: its request fails `too_large`. @param {number | null} ref @param {Frame} frame @param {number} max */
  #tooLarge(ref, frame, max) {
    const p = ref === null ? undefined : this.#pending.get(ref);
    if (!p) return;
    this.#remove(p);
    const message = `the ${frame.type} frame is over the ${max} bytes a frame may have`;
    if (p.kind === "call") p.reject(new ChatmeshError("too_large", message));
  }

  /**
   * Queues a re-join of `room` from `since` (a resume, or a gap fill): answered `joined`,
   * the messages after `since` follow in order, then live ones; refused for now, retried.
   * @param {string} room @param {number} since
   */
  #queueRejoin(room, since) {
    const ref = this.#nextRef++;
    /** @type {Pending} */
    const p = {
      kind: "resume",
      ref,
      frame: { type: "join", room, since },
      attempts: 0,
      resolve: () => {},
      reject: () => {},
      timer: null,
      resendTimer: null,
    };
    this.#pending.set(ref, p);
    this.#rejoins.push(p);
  }

  /**
   * A message of `room` whose `prev` is above the last one delivered (`last`): the ones
   * between were missed (a gateway's live gap fill gave up, e.g. on a lagging mirror). The
   * room is joined again from `last` (docs/PROTOCOL.md: a client that sees such a `prev`
   * fills the gap), which brings them, and this one again, in order; meanwhile the room's
   * frames are dropped. False when a re-join for a break this far was made already and the
   * messages still did not come: then they are not to be had, and the message is delivered
   * after a `gap` event.
   * @param {string} room @param {number} last @param {number} prev
   */
  #fillGap(room, last, prev) {
    if (this.#filling.has(room)) return true;
    if ((this.#filled.get(room) ?? -1) >= prev) return false;
    this.#filled.set(room, prev);
    this.#filling.add(room);
    this.#queueRejoin(room, last);
    this.#releaseRejoins();
    return true;
  }

  /** Writes re-joins while fewer than `MAX_REJOINS_OUT` wait for their answer. */
  #releaseRejoins() {
    while (this.#rejoinsOut < MAX_REJOINS_OUT && this.#rejoins.length > 0) {
      const p = /** @type {Pending} */ (this.#rejoins.shift());
      if (this.#pending.get(p.ref) !== p) continue;
      this.#rejoinsOut += 1;
      this.#write(p.ref, p.frame);
    }
  }

  /** The connection is gone: what was queued for it is not written. */
  #dropOutbox() {
    this.#outbox = [];
    this.#queuedFires = 0;
    this.#rejoins = [];
    this.#rejoinsOut = 0;
    if (this.#pumpTimer !== null) clearTimeout(this.#pumpTimer);
    this.#pumpTimer = null;
  }

  // -------------------------------------------------------------------------------------
  // Connections

  /**
   * Opens a connection with the current token, logging in again when it is refused and
   * the password is known. @returns {Promise<{ws: WebSocketLike, welcome: Welcome, early: {data: unknown}[], earlyClose: {code: number, reason: string} | null}>}
   */
  async #openWithAuth() {
    const auth = this.#auth;
    if (this.#token === null && "password" in auth) {
      this.#token = (await this.#http.login(auth.username, auth.password)).token;
    }
    try {
      return await this.#open(/** @type {string} */ (this.#token));
    } catch (e) {
      const err = asError(e);
      if (err.code !== "unauthorized" || !("password" in auth) || this.#phase === "closed") throw err;
      this.#token = (await this.#http.login(auth.username, auth.password)).token;
      return await this.#open(this.#token);
    }
  }

  /**
   * One connection: open, `hello`, `welcome`. Frames arriving right after the welcome are
   * kept in `early` for the session to handle.
   * @param {string} token
   * @returns {Promise<{ws: WebSocketLike, welcome: Welcome, early: {data: unknown}[], earlyClose: {code: number, reason: string} | null}>}
   */
  #open(token) {
    return new Promise((resolve, reject) => {
      if (this.#phase === "closed") {
        reject(new ChatmeshError("closed", "the session is over"));
        return;
      }
      /** @type {WebSocketLike} */
      let ws;
      try {
        ws = new this.#WebSocket(this.#wsUrl, SUBPROTOCOL);
      } catch (e) {
        reject(new ChatmeshError("network", `cannot open ${this.#wsUrl}: ${e instanceof Error ? e.message : e}`));
        return;
      }
      this.#opening = ws;
      let done = false;
      const settle = () => {
        done = true;
        clearTimeout(timer);
        if (this.#opening === ws) this.#opening = null;
      };
      /** @param {ChatmeshError} err */
      const fail = (err) => {
        if (done) return;
        settle();
        detach(ws);
        safeClose(ws, 4000, "connect failed");
        reject(err);
      };
      const timer = setTimeout(
        () => fail(new ChatmeshError("timeout", `no welcome within ${this.#connectTimeout} ms`)),
        this.#connectTimeout,
      );
      ws.onerror = () => {}; // a close event follows
      ws.onopen = () => {
        if (done) return;
        try {
          ws.send(JSON.stringify({ type: "hello", token, ref: 0 }));
        } catch (e) {
          fail(asError(e));
        }
      };
      ws.onmessage = (ev) => {
        if (done || typeof ev.data !== "string") return;
        /** @type {any} */
        let f;
        try {
          f = JSON.parse(ev.data);
        } catch (_) {
          return;
        }
        if (!f || typeof f !== "object") return;
        if (f.type === "error") {
          fail(new ChatmeshError(String(f.code), String(f.message || f.code)));
        } else if (f.type === "welcome") {
          settle();
          /** @type {{data: unknown}[]} */
          const early = [];
          const opened = {
            ws,
            welcome: /** @type {Welcome} */ ({ user: String(f.user), session: String(f.session), limits: f.limits || {} }),
            early,
            earlyClose: /** @type {{code: number, reason: string} | null} */ (null),
          };
          ws.onmessage = (e) => early.push(e);
          ws.onclose = (e) => {
            opened.earlyClose = { code: e.code ?? 1006, reason: e.reason ?? "" };
          };
          resolve(opened);
        }
      };
      ws.onclose = (ev) => {
        const code = ev.code ?? 1006;
        const why = `closed before welcome (${code}${ev.reason ? ` ${ev.reason}` : ""})`;
        if (code === 4001) fail(new ChatmeshError("unauthorized", why));
        else fail(new ChatmeshError("disconnected", why, { closeCode: code }));
      };
    });
  }

  /** A connection attempt of `start()` or of a reconnect. */
  async #attemptConnect() {
    this.#phase = this.#everConnected ? "reconnecting" : "connecting";
    let opened;
    try {
      opened = await this.#openWithAuth();
    } catch (e) {
      if (this.#over()) return;
      const err = asError(e);
      if (err.code === "unauthorized") {
        this.#finish(4001, err.message);
        return;
      }
      this.#failOver();
      this.#scheduleReconnect();
      return;
    }
    if (this.#over()) {
      detach(opened.ws);
      safeClose(opened.ws, 1000, "");
      return;
    }
    this.#established(opened);
  }

  /** After a failed attempt: the next goes to the next gateway (nothing changes with one). */
  #failOver() {
    if (this.#entries.length < 2) return;
    this.#entry = (this.#entry + 1) % this.#entries.length;
    ({ http: this.#http, wsUrl: this.#wsUrl } = this.#entries[this.#entry]);
  }

  #scheduleReconnect() {
    const delay = this.#skipDelay ? 0 : this.#backoff.next();
    this.#skipDelay = false;
    this.#attempt += 1;
    this.#phase = this.#everConnected ? "reconnecting" : "connecting";
    this.#waitTimer = setTimeout(() => {
      this.#waitTimer = null;
      this.#attemptConnect();
    }, delay);
    this.#emit("reconnecting", { attempt: this.#attempt, delay });
  }

  /**
   * A welcomed connection: serve it, re-join every room from its last delivered message,
   * then write every request still waiting (sends with their ids, in their order).
   * @param {{ws: WebSocketLike, welcome: Welcome, early: {data: unknown}[], earlyClose: {code: number, reason: string} | null}} opened
   */
  #established(opened) {
    const { ws, welcome } = opened;
    const first = !this.#everConnected;
    this.#everConnected = true;
    // The reconnect delay starts over once the connection has held a while: one that the
    // server closes right after `welcome` (a resume refused, a flood guard) backs off.
    if (this.#stableTimer !== null) clearTimeout(this.#stableTimer);
    this.#stableTimer = setTimeout(() => {
      this.#stableTimer = null;
      if (this.#ws === ws) {
        this.#backoff.reset();
        this.#attempt = 0;
      }
    }, STABLE_MS);
    this.#dropOutbox();
    this.#pace = { frames: Number.POSITIVE_INFINITY, sends: Number.POSITIVE_INFINITY, at: Date.now() };
    this.#ws = ws;
    this.#welcome = welcome;
    this.#phase = "open";
    this.#heard = Date.now();
    ws.onmessage = (ev) => {
      if (this.#ws !== ws) return;
      this.#heard = Date.now();
      if (typeof ev.data === "string") this.#onText(ev.data);
    };
    ws.onclose = (ev) => {
      if (this.#ws === ws) this.#lost(ev.code ?? 1006, ev.reason ?? "");
    };
    ws.onerror = () => {};
    this.#pingTimer = setInterval(() => {
      if (this.#ws !== ws) return;
      if (Date.now() - this.#heard > 3 * this.#pingEvery) this.#lost(1006, "no answer to pings");
      else this.#write(null, { type: "ping" });
    }, this.#pingEvery);

    const waiting = Array.from(this.#pending.values()).filter((p) => p.kind === "call");
    this.#filling.clear();
    this.#filled.clear();
    for (const [room, since] of this.#rooms) this.#queueRejoin(room, since);
    this.#releaseRejoins();
    for (const p of waiting) {
      if (p.resendTimer !== null) clearTimeout(p.resendTimer);
      p.resendTimer = null;
      this.#write(p.ref, p.frame);
    }
    for (const ev of opened.early) {
      if (this.#ws !== ws) return;
      if (typeof ev.data === "string") this.#onText(ev.data);
    }
    if (opened.earlyClose) {
      this.#lost(opened.earlyClose.code, opened.earlyClose.reason);
      return;
    }
    this.#emit("connected", welcome);
    if (!first && this.#ws === ws) this.#emit("reconnected", welcome);
  }

  /**
   * The connection broke (or is dropped): requests that are not resent fail with
   * `disconnected` (sends are kept), then reconnect, unless the token was refused.
   * @param {number} code
   * @param {string} reason
   */
  #lost(code, reason) {
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      detach(ws);
      safeClose(ws, 4000, "dropped");
    }
    if (this.#pingTimer !== null) clearInterval(this.#pingTimer);
    this.#pingTimer = null;
    if (this.#stableTimer !== null) clearTimeout(this.#stableTimer);
    this.#stableTimer = null;
    this.#dropOutbox();
    if (this.#closing) {
      if (this.#closeWaiter) this.#closeWaiter();
      return;
    }
    if (this.#phase === "closed") return;
    this.#phase = "reconnecting";
    for (const p of Array.from(this.#pending.values())) {
      if (p.kind === "call" && p.frame.type === "send") {
        if (p.resendTimer !== null) clearTimeout(p.resendTimer);
        p.resendTimer = null;
        continue;
      }
      this.#remove(p);
      if (p.kind === "call") {
        // A leave cut off still takes effect: the room is not joined on the next connection.
        if (p.frame.type === "leave") this.#rooms.delete(String(p.frame.room));
        p.reject(new ChatmeshError("disconnected", `disconnected before the answer came (${code})`, { closeCode: code }));
      }
    }
    this.#fires.clear();
    this.#emit("disconnected", { code, reason });
    if (this.#over()) return; // closed by a handler
    if (code === 4001 && "token" in this.#auth) {
      // The token is refused for good; only a password login could get a new one.
      this.#finish(4001, reason || "the token was refused");
      return;
    }
    if (code === 4008) this.#backoff.atLeast(2000); // rate limited: slow down
    this.#scheduleReconnect();
  }

  /**
   * The session is over: every waiting request fails with `closed`, then the last event.
   * @param {number} code
   * @param {string} reason
   */
  #finish(code, reason) {
    if (this.#phase === "closed") return;
    this.#phase = "closed";
    if (this.#waitTimer !== null) clearTimeout(this.#waitTimer);
    this.#waitTimer = null;
    if (this.#pingTimer !== null) clearInterval(this.#pingTimer);
    this.#pingTimer = null;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      detach(ws);
      safeClose(ws, 1000, "");
    }
    if (this.#opening) safeClose(this.#opening, 1000, ""); // its attempt then fails and stops
    for (const p of Array.from(this.#pending.values())) {
      this.#remove(p);
      if (p.kind === "call") p.reject(new ChatmeshError("closed", `the session is closed (${code}: ${reason})`, { closeCode: code }));
    }
    this.#fires.clear();
    this.#emit("closed", { code, reason });
  }

  // -------------------------------------------------------------------------------------
  // Frames from the server

  /** @param {string} text */
  #onText(text) {
    /** @type {any} */
    let f;
    try {
      f = JSON.parse(text);
    } catch (_) {
      return; // not JSON: skipped
    }
    if (!f || typeof f !== "object" || typeof f.type !== "string") return;
    if (typeof f.ref === "number") {
      const p = this.#pending.get(f.ref);
      if (p) {
        this.#answer(p, f);
        return;
      }
      const fired = this.#fires.get(f.ref);
      if (fired && f.type === "error") {
        this.#fires.delete(f.ref);
        this.#emit("error", new ChatmeshError(String(f.code), String(f.message || f.code), fired.type === "typing" || fired.type === "read" ? { request: fired.type, room: fired.room } : {}));
        return;
      }
    }
    switch (f.type) {
      case "message": {
        const last = this.#rooms.get(f.room);
        // Seen already (a replay overlapping live), or a room no longer joined.
        if (last === undefined || typeof f.seq !== "number" || f.seq <= last) return;
        const prev = Number(f.prev) || 0;
        if (prev > last) {
          if (this.#fillGap(f.room, last, prev)) return;
          this.#emit("gap", { room: String(f.room), from: last + 1, to: prev });
        }
        this.#rooms.set(f.room, f.seq);
        this.#emit("message", {
          room: f.room,
          seq: f.seq,
          prev: Number(f.prev) || 0,
          id: String(f.id),
          from: String(f.from),
          ts: Number(f.ts) || 0,
          body: String(f.body),
          ...attachmentsOf(f),
          ...mentionsOf(f),
          ...changeOf(f),
          ...refsOf(f),
          ...eventOf(f),
          ...mlsOf(f),
        });
        return;
      }
      case "left":
        if (f.ref !== undefined && f.ref !== null) return; // the answer to a leave given up on
        this.#rooms.delete(String(f.room));
        this.#emit("removed", { room: String(f.room) });
        return;
      case "membership": {
        const role = f.role === "member" || f.role === "admin" || f.role === "owner" ? f.role : null;
        this.#emit("membership", { room: String(f.room), role });
        return;
      }
      case "invitation":
        this.#emit("invitation", {
          room: String(f.room),
          by: String(f.by),
          role: f.role === "admin" ? "admin" : "member",
        });
        return;
      case "topic":
        this.#emit("topic", {
          room: String(f.room),
          topic: typeof f.topic === "string" ? f.topic : null,
          by: String(f.by),
        });
        return;
      case "gap": {
        // What the gateway says is gone is not asked for again: the next message's `prev`
        // is the gap's end.
        const last = this.#rooms.get(f.room);
        const to = Number(f.to);
        if (last !== undefined && to > last) this.#rooms.set(f.room, to);
        this.#emit("gap", { room: String(f.room), from: Number(f.from), to });
        return;
      }
      case "presence_diff":
        this.#emit("presence", {
          room: String(f.room),
          joined: Array.isArray(f.joined) ? f.joined.map(String) : [],
          left: Array.isArray(f.left) ? f.left.map(String) : [],
        });
        return;
      case "typing":
        this.#emit("typing", { room: String(f.room), user: String(f.user) });
        return;
      case "receipt":
        this.#emit("receipt", { room: String(f.room), user: String(f.user), seq: Number(f.seq) });
        return;
      case "error":
        this.#emit("error", new ChatmeshError(String(f.code), String(f.message || f.code)));
        return;
      default:
        // Pongs, answers to requests given up on, frames of newer servers.
        return;
    }
  }

  /**
   * The answer to a waiting request.
   * @param {Pending} p
   * @param {any} f
   */
  #answer(p, f) {
    if (p.kind === "resume") {
      this.#rejoinsOut = Math.max(0, this.#rejoinsOut - 1);
      queueMicrotask(() => this.#releaseRejoins());
    }
    const frame = p.frame;
    if (f.type === "error") {
      const code = String(f.code);
      const retry =
        (p.attempts + 1 < MAX_ATTEMPTS && p.kind === "call" && frame.type === "send" && code === "unavailable") ||
        // A resume's re-join beyond the replays a session or gateway may run at once, or
        // while the workers do not answer: retried as long as the connection lasts (the
        // room was never left; only `forbidden` or `not_found` say it is gone).
        (p.kind === "resume" && (code === "unavailable" || code === "rate_limited" || code === "internal"));
      if (retry) {
        // Not stored (yet): the protocol asks for a resend with the same id.
        p.attempts += 1;
        if (p.resendTimer !== null) clearTimeout(p.resendTimer);
        const ws = this.#ws;
        // A resume's re-joins may be many at once: spread out a little.
        const jitter = p.kind === "resume" ? 0.5 + Math.random() / 2 : 1;
        const delay = RESEND_AFTER_MS * Math.min(p.attempts, 8) * jitter;
        p.resendTimer = setTimeout(() => {
          p.resendTimer = null;
          if (this.#pending.get(p.ref) !== p || this.#ws !== ws) return;
          if (p.kind === "resume") {
            this.#rejoins.push(p);
            this.#releaseRejoins();
          } else {
            this.#write(p.ref, frame);
          }
        }, delay);
        return;
      }
      this.#remove(p);
      if (p.kind === "resume") {
        // The room is gone for this user (removed, or no longer readable).
        const room = String(frame.room);
        this.#rooms.delete(room);
        this.#emit("removed", { room });
      } else {
        p.reject(new ChatmeshError(code, String(f.message || code)));
      }
      return;
    }
    const expected = ANSWERS[/** @type {keyof typeof ANSWERS} */ (frame.type)];
    if (expected && f.type !== expected) {
      this.#remove(p);
      if (p.kind === "call") p.reject(new ChatmeshError("protocol", `${frame.type} answered with ${f.type}`));
      return;
    }
    this.#remove(p);
    if (frame.type === "join") {
      const room = String(frame.room);
      const from = typeof frame.since === "number" ? frame.since : Number(f.last_seq) || 0;
      // Asked for by the application, messages after `since` come again; a resume never
      // goes back behind what was delivered.
      this.#rooms.set(room, p.kind === "call" ? from : Math.max(from, this.#rooms.get(room) ?? 0));
    } else if (frame.type === "leave") {
      this.#rooms.delete(String(frame.room));
    }
    p.resolve(f);
  }
}
