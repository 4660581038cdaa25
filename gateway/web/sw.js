// chatmesh web client — sw.js: the service worker. It shows the pushes the server sends while
// no tab shows a room (docs/PUSH.md; the payload is in docs/PROTOCOL.md, "Push
// notifications"), one notification per room that later pushes for that room update, opens
// the room when one is clicked, and re-subscribes when the push service replaces the
// subscription. It holds no token: the page tells the server about a new subscription.
"use strict";

/** Longest notification body, in characters (as notify.js). */
const MAX_BODY = 140;
const TAG_PREFIX = "chatmesh:room:";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (ev) => ev.waitUntil(self.clients.claim()));

function isDm(room) {
  return room.startsWith("dm_");
}

function plural(n, one, many) {
  return n === 1 ? `1 ${one}` : `${n} ${many}`;
}

function cut(text) {
  const chars = Array.from(String(text));
  return chars.length > MAX_BODY ? `${chars.slice(0, MAX_BODY - 1).join("")}…` : chars.join("");
}

/**
 * The notification of one room: `count` messages not yet clicked (this push's and those of
 * the notification it replaces); the sender and body only when the push carries them (the
 * user's `preview`), and only for the room of the latest message.
 */
function roomNotification(room, count, latest) {
  const many = plural(count, "new message", "new messages");
  let title;
  let body;
  if (latest && latest.from) {
    title = isDm(room) ? latest.from : `${latest.from} in #${room}`;
    body = latest.body ? cut(latest.body) : "";
    if (count > 1) body = body ? `${body}\n(${many})` : many;
  } else {
    title = isDm(room) ? "New direct message" : `New messages in #${room}`;
    body = many;
  }
  return { title, options: { body, tag: TAG_PREFIX + room, renotify: true, data: { room, count } } };
}

async function showPush(payload) {
  const reg = self.registration;
  const rooms = payload && Array.isArray(payload.rooms) ? payload.rooms.filter((r) => r && typeof r.room === "string") : [];
  if (payload && typeof payload.room === "string" && !rooms.some((r) => r.room === payload.room)) {
    rooms.unshift({ room: payload.room, count: payload.count || 1 });
  }
  if (!rooms.length) {
    // Something we cannot read: a browser requires a notification for every push anyway.
    await reg.showNotification("New messages", { tag: "chatmesh", data: {} });
    return;
  }
  // Every count is read before anything is shown: asked while a notification is still being
  // shown, Chromium's getNotifications() can miss it and forget it for good (it reconciles
  // its list with what is on screen).
  const shown = await reg.getNotifications();
  const counts = rooms.map((r) => {
    const before = shown
      .filter((s) => s.tag === TAG_PREFIX + r.room)
      .reduce((n, s) => n + ((s.data && s.data.count) || 0), 0);
    return before + (Number.isInteger(r.count) && r.count > 0 ? r.count : 1);
  });
  for (const [i, r] of rooms.entries()) {
    const latest = r.room === payload.room ? payload : null;
    const { title, options } = roomNotification(r.room, counts[i], latest);
    await reg.showNotification(title, options);
  }
}

/**
 * Pushes are shown one after another (the browser runs push events at once), so each counts
 * what the one before it showed, and none asks while another is showing.
 */
let queue = Promise.resolve();

self.addEventListener("push", (ev) => {
  let payload = null;
  try {
    payload = ev.data ? ev.data.json() : null;
  } catch (_) {
    payload = null;
  }
  const run = queue.then(() => showPush(payload && payload.type === "messages" ? payload : null));
  queue = run.catch(() => {});
  ev.waitUntil(run);
});

async function windows() {
  const all = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  return all.filter((c) => new URL(c.url).origin === self.location.origin);
}

async function openRoom(room) {
  const [tab] = await windows();
  if (tab) {
    try {
      await tab.focus();
    } catch (_) {
      // Not allowed to take focus: the room is still opened in the tab.
    }
    if (room) tab.postMessage({ type: "chatmesh.open-room", room });
    return;
  }
  const url = new URL("/", self.location.origin);
  if (room) url.searchParams.set("room", room);
  await self.clients.openWindow(url.href);
}

self.addEventListener("notificationclick", (ev) => {
  ev.notification.close();
  const room = ev.notification.data && ev.notification.data.room;
  ev.waitUntil(openRoom(typeof room === "string" ? room : null));
});

self.addEventListener("pushsubscriptionchange", (ev) => {
  ev.waitUntil(
    (async () => {
      const old = ev.oldSubscription;
      if (!ev.newSubscription && old && old.options && old.options.applicationServerKey) {
        try {
          await self.registration.pushManager.subscribe({
            userVisibleOnly: true,
            applicationServerKey: old.options.applicationServerKey,
          });
        } catch (_) {
          // The page subscribes again at its next start (push.js, sync).
        }
      }
      // The server learns the new endpoint from a page, which has the token.
      for (const tab of await windows()) tab.postMessage({ type: "chatmesh.push-resync" });
    })(),
  );
});
