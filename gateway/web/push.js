// chatmesh web client — push.js: push notifications while no tab shows the room (docs/PUSH.md):
// the service worker (/sw.js), this browser's push subscription and its target on the server.
// Turned on only from a click (`enable`). Which target this browser registered, and for whom,
// is kept in localStorage; a browser has one subscription, so it belongs to one user at a
// time. No DOM access here.
"use strict";

import { ApiError } from "./api.js";

const RECORD_KEY = "chatmesh.push";
const SW_URL = "/sw.js";
const SCOPE = "/";

/** A refusal the settings show in words: `kind` is "unsupported", "denied" or "unavailable". */
export class PushError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/** Why this browser cannot receive pushes, or null when it can. */
export function unsupported() {
  if (!("serviceWorker" in navigator)) {
    return "This browser has no service workers here (they need https, or a private window may disable them).";
  }
  if (typeof PushManager !== "function") return "This browser cannot receive push messages.";
  if (typeof Notification !== "function") return "This browser cannot show notifications.";
  return null;
}

function loadRecord() {
  try {
    const r = JSON.parse(localStorage.getItem(RECORD_KEY) || "null");
    return r && typeof r.user === "string" && typeof r.target === "string" ? r : null;
  } catch (_) {
    return null;
  }
}

function saveRecord(r) {
  try {
    if (r) localStorage.setItem(RECORD_KEY, JSON.stringify(r));
    else localStorage.removeItem(RECORD_KEY);
  } catch (_) {
    // Storage disabled: this browser forgets the target; the next opt-in registers it again.
  }
}

function fromBase64url(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function sameBytes(a, b) {
  if (!a || !b) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** A 503 `unavailable`: the server has push off. */
function isUnavailable(e) {
  return e instanceof ApiError && e.status === 503;
}

function unavailable() {
  return new PushError("unavailable", "Push notifications are turned off on this server.");
}

let vapidKey = null;

async function serverKey(api) {
  if (!vapidKey) {
    try {
      vapidKey = await api.pushVapidKey();
    } catch (e) {
      throw isUnavailable(e) ? unavailable() : e;
    }
  }
  return vapidKey;
}

/** The service worker's registration once it is active, registering it when absent. */
async function registration() {
  await navigator.serviceWorker.register(SW_URL, { scope: SCOPE });
  return navigator.serviceWorker.ready;
}

async function currentSubscription() {
  const reg = await navigator.serviceWorker.getRegistration(SCOPE);
  return reg ? reg.pushManager.getSubscription() : null;
}

/**
 * Where push stands for `user` in this browser: {state, reason?} with state "unsupported",
 * "unavailable" (off on the server), "denied" (blocked in the browser), "on" or "off".
 * Asks the server (the VAPID key and the user's targets), never the user.
 */
export async function status(api, user) {
  const why = unsupported();
  if (why) return { state: "unsupported", reason: why };
  try {
    await serverKey(api);
  } catch (e) {
    if (e instanceof PushError) return { state: "unavailable", reason: e.message };
    throw e;
  }
  if (Notification.permission === "denied") return { state: "denied" };
  const rec = loadRecord();
  if (!rec || rec.user !== user || Notification.permission !== "granted") return { state: "off" };
  const [targets, sub] = await Promise.all([api.pushTargets(), currentSubscription()]);
  const on = targets.some((t) => t.id === rec.target) && !!sub && sub.endpoint === rec.endpoint;
  return { state: on ? "on" : "off" };
}

/** Registers this browser's subscription for `user` (its target id is remembered). */
async function register(api, user, sub, old) {
  const json = sub.toJSON();
  const target = await api.addPushTarget({ kind: "web_push", endpoint: json.endpoint, keys: json.keys });
  if (old && old.user === user && old.target !== target.id) {
    await api.removePushTarget(old.target).catch(() => {});
  }
  saveRecord({ user, target: target.id, endpoint: json.endpoint });
}

/**
 * Turns push on for `user` in this browser; call it from a click only (the browser may ask
 * for permission). Throws a PushError for what the user can read and act on.
 */
export async function enable(api, user) {
  const why = unsupported();
  if (why) throw new PushError("unsupported", why);
  // First, while the click still counts as the user's: the permission prompt.
  let permission = Notification.permission;
  if (permission === "default") permission = await Notification.requestPermission();
  if (permission === "denied") {
    throw new PushError("denied", "Notifications are blocked for this site in the browser's settings.");
  }
  if (permission !== "granted") throw new PushError("denied", "Notifications were not allowed.");
  const key = await serverKey(api);
  const reg = await registration();
  let sub = await reg.pushManager.getSubscription();
  const old = loadRecord();
  // Another user's subscription (or one for an older server key) is not reused: a fresh one
  // has a new endpoint, so the old target stops receiving.
  const stale = sub && (!old || old.user !== user || !sameBytes(sub.options.applicationServerKey, fromBase64url(key)));
  if (stale) {
    await sub.unsubscribe().catch(() => {});
    sub = null;
  }
  if (!sub) {
    try {
      sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: fromBase64url(key) });
    } catch (e) {
      if (e && e.name === "NotAllowedError") throw new PushError("denied", "The browser did not allow push messages.");
      throw new PushError("unsupported", `The browser's push service refused: ${(e && e.message) || e}`);
    }
  }
  try {
    await register(api, user, sub, old);
  } catch (e) {
    throw isUnavailable(e) ? unavailable() : e;
  }
}

/** Turns push off for `user` in this browser: deletes the target, then the subscription. */
export async function disable(api, user) {
  const rec = loadRecord();
  if (rec && rec.user === user) {
    try {
      await api.removePushTarget(rec.target);
    } catch (e) {
      // Already gone on the server (a 404, or a 410 from the push service removed it).
      if (!(e instanceof ApiError && e.status === 404)) throw isUnavailable(e) ? unavailable() : e;
    }
  }
  saveRecord(null);
  if (unsupported()) return;
  const sub = await currentSubscription();
  if (sub) await sub.unsubscribe();
}

/** On logout: a shared browser must not keep showing the user's messages. Best effort. */
export async function forget(api, user) {
  const rec = loadRecord();
  if (rec && rec.user === user) await disable(api, user);
}

/**
 * At the start of a session (and when the worker says the subscription changed): registers
 * this browser's subscription again, so a target the server dropped or an endpoint the push
 * service replaced is current. Does nothing unless `user` turned push on here.
 */
export async function sync(api, user) {
  const rec = loadRecord();
  if (!rec || rec.user !== user || unsupported()) return;
  if (Notification.permission !== "granted") {
    // Permission withdrawn in the browser: the subscription is dead, so is the target.
    await disable(api, user);
    return;
  }
  const reg = await navigator.serviceWorker.getRegistration(SCOPE);
  if (!reg) return disable(api, user);
  let sub = await reg.pushManager.getSubscription();
  if (!sub) {
    const key = await serverKey(api);
    sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: fromBase64url(key) });
  }
  await register(api, user, sub, rec);
}

/**
 * Listens to the service worker: `openRoom(room)` when a notification was clicked while a tab
 * was open, `resync()` when the push service replaced the subscription.
 */
export function listen({ openRoom, resync }) {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.addEventListener("message", (ev) => {
    const m = ev.data;
    if (!m || typeof m !== "object") return;
    if (m.type === "chatmesh.open-room" && typeof m.room === "string") openRoom(m.room);
    else if (m.type === "chatmesh.push-resync") resync();
  });
  navigator.serviceWorker.startMessages();
}
