// The gateway's flood guard (100 frames a second by default, burst 200; a frame over it is a
// strike, 50 strikes close the session with 4008) and the default send rate (20 a second,
// burst 50): a client in hundreds of rooms re-joins them all after a reconnect, and resends
// the sends it wrote while away, without being closed or refused, because the SDK paces what
// it writes. (Before, it wrote every re-join at once and was closed with 4008 on every
// reconnect.) A gateway with a lower flood guard reports it in `welcome.limits`, and the
// client paces by it (at a fixed 50 frames a second it was closed with 4008 there).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { Client, Http } from "../chatmesh.js";
import { PASSWORD, Proxy, TestWebSocket, nextEvent, sleep, startMesh } from "./support.mjs";

/**
 * A client in `rooms` rooms, cut off while `sends` of its sends wait and a message arrives in
 * every room, at a gateway whose flood guard is `fps` frames a second.
 */
function scenario(fps, rooms, sends) {
  describe(`a client in ${rooms} rooms, at a flood guard of ${fps} frames a second`, { timeout: 180_000 }, () => {
    let mesh;
    let proxy;
    const clients = [];

    before(async () => {
      mesh = await startMesh({
        CHATMESH__GATEWAY__FRAMES_PER_SECOND: String(fps),
        CHATMESH__GATEWAY__LIMITS__SENDS_PER_SECOND: "20",
        CHATMESH__GATEWAY__LIMITS__SEND_BURST: "50",
        CHATMESH__WORKER__MAX_ROOMS_PER_USER: "1000",
      });
      proxy = await Proxy.start(mesh.port);
    });

    after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      if (proxy) await proxy.close();
      if (mesh) await mesh.stop();
    });

    it("re-joins every room and resends every waiting send after a reconnect, never closed", async () => {
      const http = new Http(mesh.url);
      await http.register("host", PASSWORD);
      await http.register("many", PASSWORD);
      const host = await Client.connect(mesh.url, { username: "host", password: PASSWORD, WebSocket: TestWebSocket });
      clients.push(host);
      const many = await Client.connect(proxy.url, {
        username: "many",
        password: PASSWORD,
        WebSocket: TestWebSocket,
        reconnectMin: 20,
        reconnectMax: 200,
        requestTimeout: 60_000,
      });
      clients.push(many);
      assert.equal(many.welcome?.limits.frames_per_second, fps, "welcome reports the flood guard");
      const names = Array.from({ length: rooms }, (_, i) => `r${i}`);
      for (const room of names) await host.http().createRoom(room, "public");
      await Promise.all(names.map((room) => many.join(room)));

      const closes = [];
      const removed = [];
      many.on("disconnected", (d) => closes.push(d.code));
      many.on("removed", (r) => removed.push(r.room));
      const got = new Set();
      many.on("message", (m) => {
        if (m.from === "host") got.add(m.room);
      });
      // Away: a message in every room, and sends written meanwhile wait for the connection.
      const lost = nextEvent(many, "disconnected");
      proxy.cut();
      await lost;
      const waiting = Array.from({ length: sends }, (_, i) => many.send(names[i % rooms], `while away ${i}`));
      await Promise.all(names.map((room) => host.send(room, `to ${room}`)));
      const acks = await Promise.all(waiting);
      assert.equal(acks.length, sends);
      assert.ok(acks.every((a) => a.seq > 0));
      const deadline = Date.now() + 60_000;
      while (got.size < rooms && Date.now() < deadline) await sleep(50);
      assert.equal(got.size, rooms, "a message of every room arrived after the resume");
      assert.deepEqual(removed, []);
      assert.deepEqual(closes.slice(1), [], "closed again after the cut");
      assert.equal(many.connected, true);
    });
  });
}

scenario(100, 300, 80);
scenario(20, 80, 20);
