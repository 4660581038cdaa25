// Resume across broken connections, against a real mesh: one client talks to the gateway
// through a TCP proxy whose connections are cut again and again while both sides send.
// Every message must reach it once and in order, every send must be acked and stored once.
// The same scenario as client/tests/session.rs of the Rust SDK.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { Client, Http } from "../chatmesh.js";
import { PASSWORD, Proxy, TestWebSocket, nextEvent, refusal, sleep, startMesh, webSocketImpls } from "./support.mjs";

const EACH = 60;

describe("reconnect and resume through a TCP proxy", { timeout: 180_000 }, () => {
  let mesh;
  let proxy;
  const clients = [];

  before(async () => {
    mesh = await startMesh();
    proxy = await Proxy.start(mesh.port);
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    if (proxy) await proxy.close();
    if (mesh) await mesh.stop();
  });

  async function connect(name, base, WebSocket) {
    const client = await Client.connect(base, {
      username: name,
      password: PASSWORD,
      WebSocket,
      reconnectMin: 20,
      reconnectMax: 200,
      requestTimeout: 30_000,
    });
    clients.push(client);
    return client;
  }

  for (const [label, WebSocket] of webSocketImpls()) {
    it(`cut connections lose and duplicate nothing (${label})`, async () => {
      const tag = label.startsWith("ws") ? "a" : "b";
      const room = `cuts-${tag}`;
      const http = new Http(mesh.url);
      await http.register(`ann-${tag}`, PASSWORD);
      await http.register(`bob-${tag}`, PASSWORD);
      const ann = await connect(`ann-${tag}`, mesh.url, WebSocket);
      await ann.http().createRoom(room, "public");
      await ann.join(room);
      const bob = await connect(`bob-${tag}`, proxy.url, WebSocket);
      const seqs = [];
      let reconnects = 0;
      let disconnects = 0;
      bob.on("message", (m) => seqs.push(m.seq));
      bob.on("reconnected", () => reconnects++);
      bob.on("disconnected", () => disconnects++);
      await bob.join(room);

      const annSends = (async () => {
        for (let i = 0; i < EACH; i++) {
          await ann.send(room, `ann ${i}`);
          await sleep(5);
        }
      })();
      // bob sends four at a time, so that several sends wait for their acks at a cut.
      const bobSends = (async () => {
        const acked = [];
        for (let i = 0; i < EACH; i += 4) {
          const batch = [];
          for (let j = i; j < Math.min(EACH, i + 4); j++) batch.push(bob.send(room, `bob ${j}`));
          for (const ack of await Promise.all(batch)) acked.push(ack.seq);
        }
        return acked;
      })();
      let cuts = 0;
      for (let i = 0; i < 5; i++) {
        await sleep(60);
        cuts += proxy.cut();
      }
      await annSends;
      const bobAcked = await bobSends;
      assert.ok(cuts >= 3, `only ${cuts} connections were cut`);

      const deadline = Date.now() + 20_000;
      while (seqs.length < 2 * EACH && Date.now() < deadline) await sleep(20);
      await bob.ping();
      await sleep(100); // room for duplicates to show up
      assert.ok(disconnects >= 3 && reconnects >= 3, `${disconnects} disconnects, ${reconnects} reconnects`);
      assert.ok(
        seqs.every((s, i) => i === 0 || seqs[i - 1] < s),
        `in order, no duplicates: ${seqs.join(",")}`,
      );
      assert.equal(seqs.length, 2 * EACH, "every message arrived");
      const distinct = new Set(bobAcked);
      assert.equal(distinct.size, EACH, "each of bob's sends has its own seq");
      assert.ok(bobAcked.every((s) => seqs.includes(s)), "bob sees his own sends too");

      // And the store holds each once.
      const bodies = [];
      for await (const page of ann.historyPages(room, 100)) bodies.push(...page.map((m) => m.body));
      assert.equal(bodies.length, 2 * EACH, "stored once each");
      assert.equal(new Set(bodies).size, 2 * EACH);
    });
  }

  it("a request waiting at a disconnect fails with disconnected; a send waiting is acked after it", async () => {
    const http = new Http(mesh.url);
    await http.register("cat", PASSWORD);
    const cat = await connect("cat", proxy.url, TestWebSocket);
    await cat.http().createRoom("stall", "public");
    await cat.join("stall");
    proxy.freeze(); // nothing gets through any more: the answers stay out
    const ping = cat.ping();
    const history = cat.history("stall");
    const send = cat.send("stall", "through the stall");
    await sleep(100);
    assert.ok(proxy.cut() >= 1);
    assert.equal((await refusal(ping)).code, "disconnected");
    assert.equal((await refusal(history)).code, "disconnected");
    const ack = await send;
    const page = await cat.history("stall");
    assert.deepEqual(page.messages.map((m) => [m.seq, m.body]), [[ack.seq, "through the stall"]]);
    assert.deepEqual([...cat.rooms.keys()], ["stall"], "the room was re-joined");
  });

  it("a resume of more rooms than the gateway replays at once (4 per session) re-joins them all", async () => {
    const http = new Http(mesh.url);
    await http.register("eve", PASSWORD);
    await http.register("fox", PASSWORD);
    const fox = await connect("fox", mesh.url, TestWebSocket);
    const eve = await connect("eve", proxy.url, TestWebSocket);
    const rooms = Array.from({ length: 10 }, (_, i) => `many-${i}`);
    for (const room of rooms) {
      await fox.http().createRoom(room, "public");
      await eve.join(room);
    }
    const got = new Map(rooms.map((r) => [r, []]));
    const removed = [];
    eve.on("message", (m) => got.get(m.room).push(m.body));
    eve.on("removed", (r) => removed.push(r.room));
    // eve's connection stalls: while it is away, 50 messages in each room, so that every
    // re-join replays a backlog; then it is cut and eve resumes.
    proxy.freeze();
    for (let i = 0; i < 50; i++) await Promise.all(rooms.map((room) => fox.send(room, `${room} ${i}`)));
    const back = nextEvent(eve, "reconnected");
    proxy.cut();
    await back;
    const deadline = Date.now() + 20_000;
    while ([...got.values()].some((b) => b.length < 50) && Date.now() < deadline) await sleep(20);
    assert.deepEqual(removed, []);
    for (const room of rooms) {
      assert.deepEqual(got.get(room), Array.from({ length: 50 }, (_, i) => `${room} ${i}`), room);
    }
  });

  it("a request made while disconnected waits for the next connection", async () => {
    const http = new Http(mesh.url);
    await http.register("dot", PASSWORD);
    const dot = await connect("dot", proxy.url, TestWebSocket);
    await dot.http().createRoom("later", "public");
    await dot.join("later");
    const lost = nextEvent(dot, "disconnected");
    proxy.cut();
    await lost;
    assert.equal(dot.connected, false);
    const ack = await dot.send("later", "written while away");
    assert.ok(ack.seq > 0);
    assert.equal(dot.connected, true);
  });
});
