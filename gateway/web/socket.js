// chatmesh web client — socket.js: the WebSocket connection of protocol v1. Owns the socket,
// `hello`, request/reply matching by `ref`, keepalive pings, and reconnection with
// exponential backoff (capped at 10 s). Knows nothing about rooms or the DOM.
"use strict";

export const SUBPROTOCOL = "chatmesh.v1";

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10_000;
const CONNECT_TIMEOUT_MS = 10_000;
const PING_EVERY_MS = 25_000;
const PING_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 20_000;
// How long a ref of a fire-and-forget frame (typing, read) is remembered for its error.
const NOTIFY_REF_TTL_MS = 15_000;

/** A failed request: an `error` frame, or `disconnected` / `timeout` on our side. */
export class FrameError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

/**
 * One logical connection that survives socket drops.
 *
 * Callbacks: `onFrame(frame)` for every frame that is not the reply to a request,
 * `onWelcome(welcome)` each time a socket is authenticated, `onState(state, info)` with
 * state `connecting` | `connected` | `reconnecting` (info.retryAt) | `offline` | `stopped`,
 * and `onUnauthorized()` on close code 4001 (the connection then stops).
 */
export class Connection {
  constructor(opts) {
    this.url = opts.url || Connection.defaultUrl(opts.user);
    this.token = opts.token;
    this.onFrame = opts.onFrame || (() => {});
    this.onWelcome = opts.onWelcome || (() => {});
    this.onState = opts.onState || (() => {});
    this.onUnauthorized = opts.onUnauthorized || (() => {});
    this.ws = null;
    this.state = "stopped";
    this.attempt = 0;
    this.nextRef = 1;
    this.pending = new Map(); // ref -> {resolve, reject, timer}
    this.notifies = new Map(); // ref -> {onError, timer}
    this.retryTimer = null;
    this.pingTimer = null;
    this.connectTimer = null;
    this.stopped = true;
    this.lastClose = null;
    this.onOnline = () => {
      if (this.state === "offline" || this.state === "reconnecting") this.connectNow();
    };
    this.onOffline = () => {
      if (this.ws) this.ws.close(4000, "browser offline");
    };
  }

  // `?user=` lets a load balancer hash the user onto one gateway (the gateway ignores it).
  static defaultUrl(user) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = user ? `?user=${encodeURIComponent(user)}` : "";
    return `${scheme}//${location.host}/v1/ws${query}`;
  }

  get connected() {
    return this.state === "connected";
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.open();
  }

  /** Closes for good (log out): no reconnect, every request fails. */
  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    clearTimeout(this.retryTimer);
    this.clearSocketTimers();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "bye");
    }
    this.failAll("disconnected");
    this.setState("stopped");
  }

  /** Skips the remaining backoff and connects at once. */
  connectNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.open();
  }

  setState(state, info) {
    this.state = state;
    this.onState(state, info || {});
  }

  open() {
    if (this.stopped) return;
    if (navigator.onLine === false) {
      this.setState("offline", {});
      // Still try now and then: onLine can be wrong.
      this.retryTimer = setTimeout(() => this.open(), BACKOFF_CAP_MS);
      return;
    }
    this.setState("connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url, SUBPROTOCOL);
    } catch (e) {
      this.scheduleReconnect({ code: 0, reason: String(e) });
      return;
    }
    this.ws = ws;
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && this.state === "connecting") ws.close(4000, "connect timeout");
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.request({ type: "hello", token: this.token }).then(
        (welcome) => {
          if (this.ws !== ws) return;
          clearTimeout(this.connectTimer);
          this.attempt = 0;
          this.setState("connected", { user: welcome.user });
          this.startPings(ws);
          this.onWelcome(welcome);
        },
        () => {
          // error unauthorized is followed by close 4001; anything else: start over.
          if (this.ws === ws) ws.close(4000, "hello failed");
        },
      );
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws || typeof ev.data !== "string") return;
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch (_) {
        console.warn("chatmesh: a frame that is not JSON", ev.data);
        return;
      }
      if (frame && typeof frame === "object") this.dispatch(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearSocketTimers();
      this.failAll("disconnected");
      this.lastClose = { code: ev.code, reason: ev.reason };
      if (ev.code === 4001) {
        this.stop();
        this.onUnauthorized();
        return;
      }
      this.scheduleReconnect(this.lastClose);
    };
    ws.onerror = () => {
      // A close event follows; nothing to do here.
    };
  }

  scheduleReconnect(close) {
    if (this.stopped) return;
    if (close.code === 4008) this.attempt = Math.max(this.attempt, 4); // rate limited: slow down
    const exp = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = Math.min(BACKOFF_CAP_MS, Math.round(exp * (0.75 + Math.random() * 0.5)));
    this.attempt += 1;
    const retryAt = Date.now() + delay;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
    if (navigator.onLine === false) this.setState("offline", { retryAt, close });
    else this.setState("reconnecting", { retryAt, close });
  }

  clearSocketTimers() {
    clearTimeout(this.connectTimer);
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  startPings(ws) {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (this.ws !== ws) return;
      this.request({ type: "ping" }, PING_TIMEOUT_MS).catch((e) => {
        if (this.ws === ws && e.code === "timeout") ws.close(4000, "ping timeout");
      });
    }, PING_EVERY_MS);
  }

  dispatch(frame) {
    const ref = frame.ref;
    if (ref !== undefined && ref !== null) {
      const p = this.pending.get(ref);
      if (p) {
        this.pending.delete(ref);
        clearTimeout(p.timer);
        if (frame.type === "error") p.reject(new FrameError(frame.code, frame.message));
        else p.resolve(frame);
        return;
      }
      const n = this.notifies.get(ref);
      if (n && frame.type === "error") {
        this.notifies.delete(ref);
        clearTimeout(n.timer);
        n.onError(new FrameError(frame.code, frame.message));
        return;
      }
    }
    this.onFrame(frame);
  }

  failAll(code) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new FrameError(code, "the connection was lost"));
    }
    this.pending.clear();
    for (const n of this.notifies.values()) clearTimeout(n.timer);
    this.notifies.clear();
  }

  rawSend(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a request and resolves with its reply frame (rejects with a FrameError). */
  request(frame, timeoutMs) {
    return new Promise((resolve, reject) => {
      const ref = this.nextRef++;
      if (!this.rawSend({ ...frame, ref })) {
        reject(new FrameError("disconnected", "not connected"));
        return;
      }
      const timer = setTimeout(() => {
        if (this.pending.delete(ref)) reject(new FrameError("timeout", `no reply to ${frame.type}`));
      }, timeoutMs || REQUEST_TIMEOUT_MS);
      this.pending.set(ref, { resolve, reject, timer });
    });
  }

  /**
   * Sends a frame that has no reply (typing, read). `onError` gets the server's error for it,
   * if one comes. Returns false when not connected.
   */
  notify(frame, onError) {
    const ref = this.nextRef++;
    if (!this.rawSend({ ...frame, ref })) return false;
    const timer = setTimeout(() => this.notifies.delete(ref), NOTIFY_REF_TTL_MS);
    this.notifies.set(ref, { onError: onError || (() => {}), timer });
    return true;
  }
}
