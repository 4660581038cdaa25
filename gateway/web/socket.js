// chatmesh web client — socket.js: the page's session, a Client of /chatmesh.js (the
// @chatmesh/client package of clients/js, served by the gateway). The package reconnects
// with backoff, re-joins every joined room with `since`, resends unacked sends with their
// ids and delivers each message once; this file adds what only a page has: the `?user=` hint
// in the WebSocket URL, the browser's online/offline events, and the connection state shown
// in the header. Knows nothing about rooms or the DOM.
"use strict";

import { Client } from "./chatmesh.js";

export { ChatmeshError } from "./chatmesh.js";

// `?user=` lets a load balancer hash the user onto one gateway (the gateway ignores it).
function wsUrl(user) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = user ? `?user=${encodeURIComponent(user)}` : "";
  return `${scheme}//${location.host}/v1/ws${query}`;
}

/**
 * A Client for the page, not started yet (add handlers, then call `start()`; the state is
 * `connecting` until the first `connected`).
 *
 * `onState(state, info)` gets `connecting` | `connected` | `reconnecting` (info.retryAt,
 * info.close) | `offline` | `stopped`; `onUnauthorized()` is called when the server refuses
 * the token (close 4001; the session is then over).
 */
export function createClient({ token, user, onState, onUnauthorized }) {
  const client = new Client(location.origin, { token, wsUrl: wsUrl(user), reconnectMax: 10_000 });
  let lastClose = null;
  const offline = () => navigator.onLine === false;
  // Back online: skip the rest of the backoff. Gone offline: the socket is likely dead, drop it.
  const onOnline = () => {
    if (!client.connected) client.reconnect();
  };
  const onOffline = () => {
    if (client.connected) client.reconnect();
  };
  window.addEventListener("online", onOnline);
  window.addEventListener("offline", onOffline);

  client.on("connected", (welcome) => onState("connected", { user: welcome.user }));
  client.on("disconnected", (close) => {
    lastClose = close;
    onState(offline() ? "offline" : "reconnecting", { close });
  });
  client.on("reconnecting", ({ delay }) => {
    onState(offline() ? "offline" : "reconnecting", { retryAt: Date.now() + delay, close: lastClose });
  });
  client.on("closed", ({ code }) => {
    window.removeEventListener("online", onOnline);
    window.removeEventListener("offline", onOffline);
    onState("stopped", {});
    if (code === 4001) onUnauthorized();
  });
  return client;
}
