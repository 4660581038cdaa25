// Unit tests without a mesh: backoff, argument checks, and the session's reactions to
// frames a real gateway sends only under faults (`unavailable` for a send, a refused
// re-join), played by a scripted in-process WebSocket.
import { describe, it } from "node:test";
import assert from "node:assert/strict";

import { Backoff, ChatmeshError, Client, Http, ROOM_RE, wsUrlOf } from "../chatmesh.js";
import { nextEvent, refusal, sleep } from "./support.mjs";

/**
 * A scripted gateway: every socket opened is welcomed; `answer(frame, socket)` decides what
 * else to reply. `frames` records what each socket received.
 */
function scriptedGateway(answer) {
  const gw = { sockets: [], frames: [] };
  class FakeSocket {
    constructor(url, protocol) {
      this.url = url;
      this.protocol = protocol;
      this.readyState = 0;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      this.index = gw.sockets.length;
      gw.sockets.push(this);
      gw.frames.push([]);
      setTimeout(() => {
        this.readyState = 1;
        if (this.onopen) this.onopen({});
      }, 1);
    }
    send(text) {
      if (this.readyState !== 1) return;
      const f = JSON.parse(text);
      gw.frames[this.index].push(f);
      if (f.type === "hello") this.reply({ type: "welcome", ref: f.ref, user: "ann", session: "s1", limits: {} });
      else answer(f, this);
    }
    reply(frame) {
      setTimeout(() => {
        if (this.readyState === 1 && this.onmessage) this.onmessage({ data: JSON.stringify(frame) });
      }, 1);
    }
    /** The server side drops the connection. */
    drop(code = 1006) {
      if (this.readyState > 1) return;
      this.readyState = 3;
      setTimeout(() => this.onclose && this.onclose({ code, reason: "" }), 1);
    }
    close(code = 1005, reason = "") {
      if (this.readyState > 1) return;
      this.readyState = 3;
      setTimeout(() => this.onclose && this.onclose({ code, reason }), 1);
    }
  }
  gw.WebSocket = FakeSocket;
  return gw;
}

const OPTIONS = { token: "t", reconnectMin: 5, reconnectMax: 20 };

describe("unit", () => {
  it("Backoff doubles its bound up to the cap, draws within [min/2, bound], resets", () => {
    const b = new Backoff(100, 800);
    const delays = Array.from({ length: 6 }, () => b.next());
    [100, 200, 400, 800, 800, 800].forEach((bound, i) => {
      assert.ok(delays[i] >= 50 && delays[i] <= bound, `${delays[i]} outside 50..${bound}`);
    });
    // At the cap the whole range is used (200 draws all in the upper half: chance < 1e-50).
    const low = Array.from({ length: 200 }, () => b.next()).filter((d) => d < 400);
    assert.ok(low.length > 0, "every delay in the upper half: not full jitter");
    b.reset();
    assert.ok(b.next() <= 100);
    b.atLeast(2000);
    assert.equal(b.bound, 800, "capped at max");
    const slow = new Backoff(100, 10_000);
    slow.atLeast(2000);
    assert.ok(slow.next() >= 1000, "after 4008 the next delay is at least half of 2 s");
  });

  it("checks its arguments", () => {
    assert.equal(wsUrlOf("http://h:1/"), "ws://h:1/v1/ws");
    assert.equal(wsUrlOf("https://h"), "wss://h/v1/ws");
    const bad = (e) => e instanceof ChatmeshError && e.code === "invalid";
    assert.throws(() => new Http("h:1"), bad);
    assert.throws(() => new Client("http://h:1", {}), bad, "no credentials");
    if (typeof globalThis.WebSocket !== "function") {
      assert.throws(() => new Client("http://h:1", { token: "t" }), bad, "no WebSocket");
    }
    const gw = scriptedGateway(() => {});
    const c = new Client("http://h:1", { ...OPTIONS, WebSocket: gw.WebSocket });
    assert.throws(() => c.on("nonsense", () => {}), bad);
    assert.equal(c.state, "idle");
  });

  it("resends a send answered unavailable with the same id and ref, after a delay", async () => {
    let refused = 0;
    const gw = scriptedGateway((f, ws) => {
      if (f.type !== "send") return;
      if (refused++ < 2) ws.reply({ type: "error", ref: f.ref, code: "unavailable", message: "overloaded" });
      else ws.reply({ type: "ack", ref: f.ref, room: f.room, id: f.id, seq: 7, ts: 1 });
    });
    const c = await Client.connect("http://h:1", { ...OPTIONS, WebSocket: gw.WebSocket });
    const started = Date.now();
    const ack = await c.send("r", "hi");
    assert.ok(Date.now() - started >= 700, "waited 250 ms, then 500 ms");
    assert.equal(ack.seq, 7);
    const sends = gw.frames[0].filter((f) => f.type === "send");
    assert.equal(sends.length, 3);
    assert.equal(new Set(sends.map((f) => f.id)).size, 1, "the same id");
    assert.equal(new Set(sends.map((f) => f.ref)).size, 1, "the same ref");
    await c.close();
  });

  it("after a drop: hello, re-joins with since, resends sends in order with their ids; other requests fail", async () => {
    let hold = true;
    const gw = scriptedGateway((f, ws) => {
      if (f.type === "join") ws.reply({ type: "joined", ref: f.ref, room: f.room, last_seq: 3 });
      else if (f.type === "send" && !hold) ws.reply({ type: "ack", ref: f.ref, room: f.room, id: f.id, seq: 10 + Number(f.body), ts: 1 });
    });
    const c = await Client.connect("http://h:1", { ...OPTIONS, WebSocket: gw.WebSocket });
    await c.join("r");
    gw.sockets[0].reply({ type: "message", room: "r", seq: 5, prev: 3, id: "x", from: "bob", ts: 1, body: "b" });
    await nextEvent(c, "message");
    const sends = [c.send("r", "1"), c.send("r", "2")];
    const history = c.history("r");
    await sleep(10);
    hold = false;
    const back = nextEvent(c, "reconnected");
    gw.sockets[0].drop();
    assert.equal((await refusal(history)).code, "disconnected");
    await back;
    const acks = await Promise.all(sends);
    assert.deepEqual(acks.map((a) => a.seq), [11, 12]);
    const before = gw.frames[0].filter((f) => f.type === "send");
    const after = gw.frames[1];
    assert.deepEqual(after.map((f) => f.type), ["hello", "join", "send", "send"]);
    assert.deepEqual([after[1].room, after[1].since], ["r", 5], "since = the last message delivered");
    assert.deepEqual(after.slice(2).map((f) => [f.id, f.ref]), before.map((f) => [f.id, f.ref]));

    // A replayed message already delivered is not delivered again; the next one is.
    const got = [];
    c.on("message", (m) => got.push(m.seq));
    for (const seq of [4, 5, 6, 6]) gw.sockets[1].reply({ type: "message", room: "r", seq, prev: seq - 1, id: `i${seq}`, from: "bob", ts: 1, body: "" });
    await sleep(20);
    assert.deepEqual(got, [6]);
    await c.close();
  });

  it("fills a prev break with a re-join from the last message delivered; one it cannot fill is a gap", async () => {
    /** What the scripted gateway replays for a re-join, by its since. */
    const replays = new Map();
    const gw = scriptedGateway((f, ws) => {
      if (f.type !== "join") return;
      ws.reply({ type: "joined", ref: f.ref, room: f.room, last_seq: 3 });
      for (const m of replays.get(f.since) ?? []) ws.reply(m);
    });
    const msg = (seq, prev) => ({ type: "message", room: "r", seq, prev, id: `i${seq}`, from: "bob", ts: 1, body: `m${seq}` });
    const c = await Client.connect("http://h:1", { ...OPTIONS, WebSocket: gw.WebSocket });
    const got = [];
    const gaps = [];
    c.on("message", (m) => got.push(m.seq));
    c.on("gap", (g) => gaps.push([g.from, g.to]));
    await c.join("r");
    const ws = gw.sockets[0];
    ws.reply(msg(4, 3));
    // 5 and 6 were missed: 7 comes with prev 6. The re-join from 4 brings 5, 6 and 7.
    replays.set(4, [msg(5, 4), msg(6, 5), msg(7, 6)]);
    ws.reply(msg(7, 6));
    ws.reply(msg(8, 7)); // live, before the re-join's answer: dropped, the replay has it
    replays.get(4).push(msg(8, 7));
    const deadline = Date.now() + 2000;
    while (got.length < 5 && Date.now() < deadline) await sleep(5);
    assert.deepEqual(got, [4, 5, 6, 7, 8], "every message once, in order");
    const rejoins = gw.frames[0].filter((f) => f.type === "join");
    assert.deepEqual(rejoins.map((f) => f.since), [undefined, 4]);
    // A break the re-join cannot fill (the replay brings the same break): a gap, then on.
    replays.set(8, [msg(11, 10)]);
    ws.reply(msg(11, 10));
    while (got.length < 6 && Date.now() < deadline) await sleep(5);
    assert.deepEqual(got, [4, 5, 6, 7, 8, 11]);
    assert.deepEqual(gaps, [[9, 10]]);
    // The gateway's own gap frame moves the cursor: no re-join for the message after it.
    ws.reply({ type: "gap", room: "r", from: 12, to: 14 });
    ws.reply(msg(15, 14));
    while (got.length < 7 && Date.now() < deadline) await sleep(5);
    await sleep(20);
    assert.deepEqual(got.slice(-1), [15]);
    assert.equal(gw.frames[0].filter((f) => f.type === "join").length, 3, "no re-join after a gap frame");
    await c.close();
  });

  it("retries a re-join refused rate_limited; a re-join refused forbidden removes the room", async () => {
    const refusals = { a: ["rate_limited", "unavailable"], b: ["forbidden"] };
    const gw = scriptedGateway((f, ws) => {
      if (f.type !== "join") return;
      const left = ws.index > 0 ? refusals[f.room] : [];
      if (left.length) ws.reply({ type: "error", ref: f.ref, code: left.shift(), message: "no" });
      else ws.reply({ type: "joined", ref: f.ref, room: f.room, last_seq: 0 });
    });
    const c = new Client("http://h:1", { ...OPTIONS, WebSocket: gw.WebSocket });
    const first = nextEvent(c, "connected");
    c.start();
    await first;
    await c.join("a");
    await c.join("b");
    const removed = nextEvent(c, "removed");
    gw.sockets[0].drop();
    assert.deepEqual(await removed, { room: "b" });
    const deadline = Date.now() + 3000;
    while (gw.frames[1].filter((f) => f.type === "join" && f.room === "a").length < 3 && Date.now() < deadline) await sleep(10);
    await sleep(20);
    assert.equal(gw.frames[1].filter((f) => f.type === "join" && f.room === "a").length, 3);
    assert.deepEqual([...c.rooms.keys()], ["a"]);
    await c.close();
  });

  it("bounds waiting requests and the events() buffer; a refused token ends the session", async () => {
    const gw = scriptedGateway(() => {}); // answers nothing but hello
    const c = await Client.connect("http://h:1", { ...OPTIONS, WebSocket: gw.WebSocket, maxPending: 2 });
    const waiting = [c.ping(), c.ping()];
    const e = await refusal(c.ping());
    assert.equal(e.code, "overflow");

    const events = c.events({ buffer: 2 });
    for (const seq of [1, 2, 3]) gw.sockets[0].reply({ type: "typing", room: "r", user: `u${seq}` });
    await sleep(20);
    assert.equal((await events.next()).value.data.user, "u1");
    assert.equal((await events.next()).value.data.user, "u2");
    assert.equal((await refusal(events.next())).code, "overflow");
    assert.equal((await events.next()).done, true);

    // The server refuses the token (4001): with token auth, the session is over.
    const closed = nextEvent(c, "closed");
    gw.sockets[0].drop(4001);
    assert.equal((await closed).code, 4001);
    for (const w of waiting) assert.equal((await refusal(w)).code, "disconnected");
    assert.equal((await refusal(c.ping())).code, "closed");
  });

  it("sends attachments (at most 10 file ids, resent with them) and delivers those of messages", async () => {
    let drop = true;
    const gw = scriptedGateway((f, ws) => {
      if (f.type === "join") ws.reply({ type: "joined", ref: f.ref, room: f.room, last_seq: 0 });
      else if (f.type === "send" && drop) {
        drop = false;
        ws.drop(); // the first write is lost: the resend must carry the files too
      } else if (f.type === "send") ws.reply({ type: "ack", ref: f.ref, room: f.room, id: f.id, seq: 4, ts: 1 });
    });
    const c = await Client.connect("http://h:1", { ...OPTIONS, WebSocket: gw.WebSocket });
    await c.join("r");
    const files = ["f" + "0".repeat(32), "f" + "1".repeat(32)];
    const ack = await c.send("r", "", { attachments: files });
    assert.equal(ack.seq, 4);
    const sends = gw.frames.flat().filter((f) => f.type === "send");
    assert.equal(sends.length, 2);
    for (const f of sends) assert.deepEqual([f.body, f.attachments], ["", files]);
    await c.sendWithId("r", "plain", "no files", { attachments: [] });
    const plain = gw.frames.flat().find((f) => f.id === "plain");
    assert.equal("attachments" in plain, false, "no files, no field");
    const bad = (e) => e instanceof ChatmeshError && e.code === "invalid";
    await assert.rejects(c.send("r", "x", { attachments: Array.from({ length: 11 }, (_, i) => `f${i}`) }), bad);
    await assert.rejects(c.send("r", "x", { attachments: [""] }), bad);

    const got = [];
    c.on("message", (m) => got.push(m));
    const sock = gw.sockets[gw.sockets.length - 1];
    const image = { id: files[0], name: "cat.png", size: 120, content_type: "image/png", width: 4, height: 3 };
    // (Its own message, acked as 4, is not echoed by this gateway: 5 follows the join.)
    sock.reply({ type: "message", room: "r", seq: 5, prev: 0, id: "m5", from: "bob", ts: 1, body: "", attachments: [image, { id: files[1], name: "a.pdf", size: 9, content_type: "application/pdf" }] });
    sock.reply({ type: "message", room: "r", seq: 6, prev: 5, id: "m6", from: "bob", ts: 1, body: "hi" });
    await sleep(20);
    assert.deepEqual(got[0].attachments, [image, { id: files[1], name: "a.pdf", size: 9, content_type: "application/pdf" }]);
    assert.equal("attachments" in got[1], false);
    await c.close();
  });

  it("passes a room event through on its message, an unknown kind too; a malformed one is left off", async () => {
    const gw = scriptedGateway((f, ws) => {
      if (f.type === "join") ws.reply({ type: "joined", ref: f.ref, room: f.room, last_seq: 0 });
    });
    const c = await Client.connect("http://h:1", { ...OPTIONS, WebSocket: gw.WebSocket });
    await c.join("r");
    const got = [];
    c.on("message", (m) => got.push(m));
    const sock = gw.sockets[0];
    const base = { type: "message", room: "r", id: "evt-1", from: "ann", ts: 1, body: "" };
    sock.reply({ ...base, seq: 1, prev: 0, event: { ban: { user: "bob", reason: "spam" } } });
    sock.reply({ ...base, seq: 2, prev: 1, event: { slowmode: { secs: 5 } } });
    sock.reply({ ...base, seq: 3, prev: 2, event: ["not", "an", "object"] });
    sock.reply({ ...base, seq: 4, prev: 3, event: null });
    await sleep(20);
    assert.deepEqual(got.map((m) => m.event), [{ ban: { user: "bob", reason: "spam" } }, { slowmode: { secs: 5 } }, undefined, undefined]);
    assert.equal("event" in got[2], false);
    await c.close();
  });

  it("waits out a 429 with a short Retry-After and sends the call again; a long one or too many throw", async () => {
    /** @param {Array<number | [number, string]>} answers statuses, or [429, retry-after] */
    const server = (answers) => {
      const calls = [];
      const fetch = async (url, init) => {
        calls.push([init.method, init.body]);
        const a = answers[Math.min(calls.length, answers.length) - 1];
        const [status, retry] = Array.isArray(a) ? a : [a, null];
        const headers = retry === null ? {} : { "retry-after": retry };
        const body = status === 429 ? { error: { code: "rate_limited", message: "slow down" } } : { id: "r1" };
        return new Response(JSON.stringify(body), { status, headers });
      };
      return { calls, fetch };
    };
    const twice = server([[429, "0"], [429, "0"], 200]);
    const room = await new Http("http://h:1", { token: "t", fetch: twice.fetch }).createRoom("den", "private");
    assert.equal(room.id, "r1");
    assert.equal(twice.calls.length, 3, "sent again twice");
    assert.ok(twice.calls.every(([method, body]) => method === "POST" && body === twice.calls[0][1]), "the same call each time");

    const lockout = server([[429, "900"]]);
    const e = await refusal(new Http("http://h:1", { token: "t", fetch: lockout.fetch }).rooms());
    assert.deepEqual([e.code, e.status, e.retryAfter, lockout.calls.length], ["rate_limited", 429, 900, 1]);

    const always = server([[429, "0"]]);
    const e2 = await refusal(new Http("http://h:1", { token: "t", fetch: always.fetch }).rooms());
    assert.equal(e2.code, "rate_limited");
    assert.equal(always.calls.length, 4, "the first try and three more");

    const off = server([[429, "1"]]);
    await refusal(new Http("http://h:1", { token: "t", fetch: off.fetch, rateLimitWait: 0 }).rooms());
    assert.equal(off.calls.length, 1, "rateLimitWait 0 never waits");
    const kept = new Http("http://h:1", { fetch: off.fetch, rateLimitWait: 0 }).withToken("t");
    await refusal(kept.rooms());
    assert.equal(off.calls.length, 2, "withToken keeps rateLimitWait");
  });

  it("roomList reads every page of the room list, each after the last room of the one before", async () => {
    const urls = [];
    const pages = [
      { rooms: [{ room: "a", role: "member" }, { room: "b", role: "owner" }], more: true },
      { rooms: [{ room: "c d", role: "member" }], more: true, unavailable: ["eu"] },
      { rooms: [{ room: "e", role: "member" }, { room: "pub", role: null }], more: false },
    ];
    const fetch = async (url) => {
      urls.push(url);
      return new Response(JSON.stringify(pages[urls.length - 1]), { status: 200 });
    };
    const http = new Http("http://h:1", { token: "tok", fetch });
    const list = await http.roomList();
    assert.deepEqual(list.rooms.map((r) => r.room), ["a", "b", "c d", "e", "pub"]);
    assert.deepEqual(list.unavailable, ["eu"]);
    assert.deepEqual(urls, ["http://h:1/v1/rooms", "http://h:1/v1/rooms?after=b", "http://h:1/v1/rooms?after=c%20d"]);
    const one = await new Http("http://h:1", { fetch: async () => new Response(JSON.stringify({ rooms: [] })) }).roomPage();
    assert.deepEqual(one, { rooms: [], more: false, unavailable: [] });
  });

  it("files over HTTP: the name percent-encoded, the token and Range sent, errors decoded", async () => {
    const calls = [];
    const fetch = async (url, init) => {
      calls.push({ url, init });
      if (init.method === "POST") return new Response(JSON.stringify({ error: { code: "too_large", message: "over the cap" } }), { status: 413 });
      return new Response("abc", { status: 206, headers: { "content-type": "application/pdf", "content-range": "bytes 0-2/9" } });
    };
    const http = new Http("http://h:1", { token: "tok", fetch });
    const e = await refusal(http.uploadFile("r", "a b/ü+.pdf", new Uint8Array([1, 2])));
    assert.deepEqual([e.code, e.status, e.message], ["too_large", 413, "over the cap"]);
    assert.equal(calls[0].url, "http://h:1/v1/rooms/r/files?name=a%20b%2F%C3%BC%2B.pdf");
    assert.equal(calls[0].init.headers.Authorization, "Bearer tok");
    const d = await http.download("r", "f1", { range: { start: 0, end: 2 } });
    assert.equal(calls[1].url, "http://h:1/v1/rooms/r/files/f1?proxy=1");
    assert.equal(calls[1].init.headers.Range, "bytes=0-2");
    assert.deepEqual([d.status, d.contentType, d.contentRange, await d.blob.text()], [206, "application/pdf", "bytes 0-2/9", "abc"]);
    await http.thumbnail("r", "f1");
    assert.equal(calls[2].url, "http://h:1/v1/rooms/r/files/f1/thumbnail");
    const bad = (err) => err instanceof ChatmeshError && err.code === "invalid";
    await assert.rejects(http.download("r", "f1", { range: { start: 5, end: 2 } }), bad);
    await assert.rejects(http.uploadFile("r", "", "x"), bad);
  });

  it("names the request an error answers for typing and read", async () => {
    const gw = scriptedGateway((f, ws) => {
      if (f.type === "typing" || f.type === "read") ws.reply({ type: "error", ref: f.ref, code: "forbidden", message: "not a member" });
    });
    const c = await Client.connect("http://h:1", { ...OPTIONS, WebSocket: gw.WebSocket });
    const typing = nextEvent(c, "error");
    await c.typing("r");
    const e = await typing;
    assert.deepEqual([e.code, e.request, e.room], ["forbidden", "typing", "r"]);
    const read = nextEvent(c, "error");
    await c.read("s", 3);
    assert.deepEqual([(await read).request, (await read).room], ["read", "s"]);
    await c.close();
  });
});

describe("room ids", () => {
  it("may start with a home region", () => {
    for (const ok of ["general", "us~general", "eu2~A-b_c", `us~${"a".repeat(61)}`]) assert.ok(ROOM_RE.test(ok), ok);
    for (const bad of ["", "~x", "US~x", "us~", "us~a~b", "a.b", `us~${"a".repeat(62)}`, "a".repeat(65)]) {
      assert.ok(!ROOM_RE.test(bad), bad);
    }
  });
});
