// The client against a real mesh (`chatmesh up`): accounts, rooms and DMs over HTTP, a
// session's requests and events, history paging, errors, refused and revoked tokens, files
// (upload, download with a range, thumbnails, attachments on messages).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";

import { ChatmeshError, Client, Http } from "../chatmesh.js";
import { PASSWORD, TestWebSocket, nextEvent, png, refusal, sleep, startMesh } from "./support.mjs";

describe("chatmesh client against a real mesh", { timeout: 120_000 }, () => {
  let mesh;
  let url;
  const clients = [];

  /** Registers `name` and connects a session with its password. */
  async function user(name, options = {}) {
    await new Http(url).register(name, PASSWORD);
    const client = await Client.connect(url, {
      username: name,
      password: PASSWORD,
      WebSocket: TestWebSocket,
      reconnectMin: 20,
      reconnectMax: 200,
      requestTimeout: 20_000,
      ...options,
    });
    clients.push(client);
    return client;
  }

  before(async () => {
    mesh = await startMesh();
    url = mesh.url;
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    if (mesh) await mesh.stop();
  });

  it("registers and logs in over HTTP (with a device token to bring back); errors carry code, message and status", async () => {
    const http = new Http(url);
    await http.register("hana", PASSWORD);
    let e = await refusal(http.register("hana", PASSWORD));
    assert.ok(e instanceof ChatmeshError);
    assert.equal(e.code, "conflict");
    assert.equal(e.status, 409);
    assert.ok(e.message.length > 0);
    e = await refusal(http.login("hana", "wrong-password"));
    assert.deepEqual([e.code, e.status], ["unauthorized", 401]);
    e = await refusal(http.register("no spaces", PASSWORD));
    assert.deepEqual([e.code, e.status], ["bad_request", 400]);
    e = await refusal(http.rooms());
    assert.deepEqual([e.code, e.status], ["unauthorized", 401], "no token");
    const login = await http.login("hana", PASSWORD);
    assert.equal(typeof login.token, "string");
    assert.ok(login.expires_at > Date.now() / 1000);
    assert.deepEqual(await http.withToken(login.token).rooms(), []);
    // One region: every region answered, none is named unavailable.
    assert.deepEqual(await http.withToken(login.token).roomList(), { rooms: [], unavailable: [] });
    // A device token to bring back: a known device's login, handed one to bring next time.
    assert.equal(typeof login.device, "string");
    const again = await http.login("hana", PASSWORD, login.device);
    assert.equal(typeof again.device, "string");
    const third = await http.login("hana", PASSWORD, again.device);
    assert.equal(typeof third.token, "string");
    e = await refusal(http.withToken(login.device).rooms());
    assert.deepEqual([e.code, e.status], ["unauthorized", 401], "a device token is no access token");
    e = await refusal(new Http("http://127.0.0.1:1").login("hana", PASSWORD));
    assert.deepEqual([e.code, e.status], ["network", 0]);
    assert.throws(() => new Http("ftp://x"), (err) => err instanceof ChatmeshError && err.code === "invalid");
  });

  it("registers, lists and removes a push target and round-trips the push settings", async () => {
    const http = new Http(url);
    await http.register("pushy", PASSWORD);
    const h = http.withToken((await http.login("pushy", PASSWORD)).token);
    assert.match(await h.pushVapidKey(), /^[A-Za-z0-9_-]{87}$/);
    const added = await h.addPushTarget({ kind: "fcm", token: "a-registration-token" });
    assert.equal(added.kind, "fcm");
    assert.deepEqual((await h.pushTargets()).map((t) => t.id), [added.id]);
    const settings = await h.setPushSettings({ preview: false, muted_rooms: ["quiet"] });
    assert.equal(settings.preview, false);
    assert.deepEqual((await h.pushSettings()).muted_rooms, ["quiet"]);
    await h.removePushTarget(added.id);
    assert.deepEqual(await h.pushTargets(), []);
    const e = await refusal(h.removePushTarget(added.id));
    assert.deepEqual([e.code, e.status], ["not_found", 404]);
    const bad = await refusal(h.addPushTarget({ kind: "fcm", token: "" }));
    assert.deepEqual([bad.code, bad.status], ["bad_request", 400]);
  });

  it("waits out the server's per-user API rate instead of failing the calls over it", async () => {
    // 2 calls at once, then one a second (Retry-After: 1).
    const tight = await startMesh({
      CHATMESH__GATEWAY__API_USER_BURST: "2",
      CHATMESH__GATEWAY__API_PER_USER_PER_MINUTE: "60",
    });
    try {
      const http = new Http(tight.url);
      await http.register("eager", PASSWORD);
      const h = http.withToken((await http.login("eager", PASSWORD)).token);
      for (let i = 0; i < 4; i++) assert.ok(Array.isArray(await h.rooms()));
      const impatient = new Http(tight.url, { token: h.token, rateLimitWait: 0 });
      const e = await refusal(impatient.rooms());
      assert.deepEqual([e.code, e.status], ["rate_limited", 429]);
      assert.ok(e.retryAfter >= 1, `Retry-After ${e.retryAfter}`);
    } finally {
      await tight.stop();
    }
  });

  it("recognises a resend after the dedupe window when it carries resendAfter", async () => {
    const brief = await startMesh({ CHATMESH__MESH__DUPLICATE_WINDOW_SECS: "1" });
    const late = [];
    try {
      const http = new Http(brief.url);
      await http.register("late", PASSWORD);
      const c = await Client.connect(brief.url, { username: "late", password: PASSWORD, WebSocket: TestWebSocket });
      late.push(c);
      await c.http().createRoom("slow", "public");
      await c.join("slow");
      const first = await c.sendWithId("slow", "out-1", "sent once");
      const other = await c.sendWithId("slow", "out-2", "sent twice");
      await sleep(3000);
      const again = await c.sendWithId("slow", "out-2", "sent twice");
      assert.notEqual(again.seq, other.seq, "past the window a plain resend is new");
      const found = await c.sendWithId("slow", "out-1", "sent once", { resendAfter: first.seq - 1 });
      assert.deepEqual([found.seq, found.ts], [first.seq, first.ts]);
      await assert.rejects(c.sendWithId("slow", "out-3", "x", { resendAfter: -1 }), (e) => e instanceof ChatmeshError && e.code === "invalid");
    } finally {
      await Promise.all(late.map((c) => c.close()));
      await brief.stop();
    }
  });

  it("answers every push call with unavailable (503) where the server has push off", async () => {
    const off = await startMesh({ CHATMESH__PUSH__ENABLED: "false" });
    try {
      const http = new Http(off.url);
      await http.register("nopush", PASSWORD);
      const h = http.withToken((await http.login("nopush", PASSWORD)).token);
      const target = { kind: /** @type {const} */ ("fcm"), token: "a-token" };
      const calls = [
        () => h.pushVapidKey(),
        () => h.addPushTarget(target),
        () => h.pushTargets(),
        () => h.removePushTarget("t1"),
        () => h.pushSettings(),
        () => h.setPushSettings({ preview: false }),
      ];
      for (const call of calls) {
        const e = await refusal(call());
        assert.deepEqual([e.code, e.status], ["unavailable", 503]);
      }
    } finally {
      await off.stop();
    }
  });

  it("creates rooms, lists them, adds members and opens DMs; refusals are forbidden / not_found", async () => {
    const ivy = await user("ivy");
    const jon = await user("jon");
    const ih = ivy.http();
    const jh = jon.http();
    assert.deepEqual(await ih.createRoom("plaza", "public"), { room: "plaza", kind: "public", owner: "ivy" });
    await ih.createRoom("vault", "private");
    assert.equal((await refusal(jh.createRoom("plaza"))).code, "conflict");
    // A one-region gateway takes `home: "here"` as the id asked for; a named region it does
    // not have is refused.
    assert.deepEqual(await ih.createRoom("terrace", "public", "here"), { room: "terrace", kind: "public", owner: "ivy" });
    assert.equal((await refusal(ih.createRoom("loft", "public", "ap"))).code, "bad_request");

    const before = await jh.rooms();
    assert.ok(before.some((r) => r.room === "plaza" && r.role === null), JSON.stringify(before));
    assert.ok(!before.some((r) => r.room === "vault"), "a private room is not listed to others");

    let e = await refusal(jon.join("vault"));
    assert.equal(e.code, "forbidden");
    e = await refusal(jon.send("vault", "let me in"));
    assert.equal(e.code, "forbidden");
    e = await refusal(jh.addMember("vault", "jon"));
    assert.deepEqual([e.code, e.status], ["forbidden", 403]);
    e = await refusal(ih.addMember("vault", "nobody-at-all"));
    assert.deepEqual([e.code, e.status], ["not_found", 404]);

    await ih.addMember("vault", "jon");
    const mine = await jh.rooms();
    assert.ok(mine.some((r) => r.room === "vault" && r.role === "member" && r.kind === "private"));
    assert.equal(await jon.join("vault"), 0);
    await jh.removeMember("vault", "jon");
    assert.ok(!(await jh.rooms()).some((r) => r.room === "vault"));

    const dm = await ih.dm("jon");
    assert.equal(await jh.dm("ivy"), dm, "one DM room per pair");
    const listed = (await jh.rooms()).find((r) => r.room === dm);
    assert.equal(listed.kind, "dm");
    assert.equal(listed.peer, "ivy");
    e = await refusal(ih.dm("nobody-at-all"));
    assert.deepEqual([e.code, e.status], ["not_found", 404]);
    e = await refusal(jon.join("no-such-room"));
    assert.equal(e.code, "not_found");
    assert.equal(e.status, undefined, "a WebSocket error has no HTTP status");
  });

  it("joins, sends and acks; the other session gets messages, presence, typing and receipts", async () => {
    const ann = await user("ann");
    const bob = await user("bob");
    assert.equal(ann.user, "ann");
    assert.ok(ann.welcome.limits.max_body_bytes > 0);
    await ann.http().createRoom("general", "public");

    assert.equal(await bob.join("general"), 0);
    const annOnline = nextEvent(bob, "presence", (p) => p.room === "general" && p.joined.includes("ann"));
    await ann.join("general");
    await annOnline;
    assert.deepEqual(await bob.presence("general"), ["ann", "bob"]);

    const got = nextEvent(bob, "message");
    const ack = await ann.send("general", 'hello "bob"');
    assert.equal(ack.room, "general");
    assert.ok(ack.seq > 0 && ack.ts > 0 && ack.id.length > 0);
    const m = await got;
    assert.deepEqual(
      [m.room, m.seq, m.id, m.from, m.body, m.prev, m.ts],
      ["general", ack.seq, ack.id, "ann", 'hello "bob"', 0, ack.ts],
    );
    const again = await ann.sendWithId("general", ack.id, 'hello "bob"');
    assert.deepEqual([again.seq, again.ts], [ack.seq, ack.ts], "a resend is stored once");
    const second = await ann.send("general", "second");
    assert.notEqual(second.id, ack.id, "send makes a fresh id each time");

    const typing = nextEvent(bob, "typing", (t) => t.user === "ann");
    await ann.typing("general");
    assert.deepEqual(await typing, { room: "general", user: "ann" });

    const receipt = nextEvent(ann, "receipt", (r) => r.user === "bob");
    await bob.read("general", second.seq);
    assert.deepEqual(await receipt, { room: "general", user: "bob", seq: second.seq });

    await ann.ping();
    const bobLeft = nextEvent(ann, "presence", (p) => p.left.includes("bob"));
    await bob.leave("general");
    await bobLeft;
    let late = null;
    const off = bob.on("message", (msg) => {
      late = msg;
    });
    await ann.send("general", "after bob left");
    await bob.ping();
    await sleep(300);
    off();
    assert.equal(late, null, "no messages after leave");
  });

  it("tells every session of a user about membership changes, joined to the room or not", async () => {
    const kim = await user("kim");
    const lee = await user("lee");
    const max = await user("max");
    const kh = kim.http();
    await kh.createRoom("den", "private");
    let got = nextEvent(lee, "membership", (d) => d.room === "den" && d);
    await kh.addMember("den", "lee");
    assert.deepEqual(await got, { room: "den", role: "member" });
    got = nextEvent(lee, "membership", (d) => d.room !== "den" && d);
    const dm = await max.http().dm("lee");
    assert.deepEqual(await got, { room: dm, role: "member" });
    got = nextEvent(lee, "membership", (d) => d.room === "den" && d.role === null && d);
    await kh.removeMember("den", "lee");
    assert.deepEqual(await got, { room: "den", role: null });
  });

  it("lists members, sets a topic (live to joined sessions), a display name and a new password", async () => {
    const nia = await user("nia");
    const oz = await user("oz");
    const nh = nia.http();
    await nh.createRoom("atrium", "public");
    await oz.join("atrium");
    const profile = await oz.http().setDisplayName(" Oz the Great ");
    assert.deepEqual(profile, { user: "oz", display_name: "Oz the Great" });
    assert.deepEqual(await oz.http().me(), profile);
    const page = await nh.members("atrium", { limit: 1 });
    assert.deepEqual(page, { members: [{ user: "nia", role: "owner" }], more: true });
    const rest = await nh.members("atrium", { after: "nia" });
    assert.deepEqual(rest, { members: [{ user: "oz", role: "member", display_name: "Oz the Great" }], more: false });
    const got = nextEvent(oz, "topic", (d) => d.room === "atrium" && d);
    const set = await nh.setTopic("atrium", "all about atria");
    assert.deepEqual({ ...set, seq: typeof set.seq }, { room: "atrium", topic: "all about atria", seq: "number" });
    assert.deepEqual(await got, { room: "atrium", topic: "all about atria", by: "nia" });
    const listed = (await oz.http().rooms()).find((r) => r.room === "atrium");
    assert.equal(listed && listed.topic, "all about atria");
    await assert.rejects(oz.http().setTopic("atrium", "mine"), (e) => e.status === 403 && e.code === "forbidden");
    await assert.rejects(oz.http().changePassword("not it", "a new password"), (e) => e.status === 403);
    const login = await oz.http().changePassword(PASSWORD, "a new password");
    assert.equal(typeof login.token, "string");
    assert.deepEqual(await new Http(url).withToken(login.token).me(), profile);
  });

  it("moderates: names the room, mutes, unmutes, bans, lists bans and unbans; each comes as an event message", async () => {
    const mo = await user("mo");
    const nell = await user("nell");
    const otto = await user("otto");
    const mh = mo.http();
    await mh.createRoom("forum", "public");
    for (const c of [mo, nell, otto]) await c.join("forum");
    /** otto's next event message of `kind` in forum. */
    const nextRoomEvent = (kind) => nextEvent(otto, "message", (m) => m.room === "forum" && m.event && kind in m.event && m);

    let seen = nextRoomEvent("name");
    const named = await mh.setRoomName("forum", "The Forum");
    assert.equal(named.name, "The Forum");
    let m = await seen;
    assert.deepEqual([m.from, m.body, m.event, m.seq], ["mo", "", { name: "The Forum" }, named.seq]);
    assert.equal((await otto.http().rooms()).find((r) => r.room === "forum")?.name, "The Forum");

    const until = Math.floor(Date.now() / 1000) + 3600;
    seen = nextRoomEvent("mute");
    await mh.mute("forum", "nell", until);
    assert.deepEqual((await seen).event, { mute: { user: "nell", until } });
    let e = await refusal(nell.send("forum", "let me speak"));
    assert.equal(e.code, "forbidden");
    const quinListed = (await mh.members("forum")).members.find((x) => x.user === "nell");
    assert.deepEqual([quinListed?.muted, quinListed?.muted_until], [true, until]);
    seen = nextRoomEvent("unmute");
    await mh.unmute("forum", "nell");
    assert.deepEqual((await seen).event, { unmute: { user: "nell" } });
    await nell.send("forum", "thanks");
    e = await refusal(mh.unmute("forum", "nell"));
    assert.deepEqual([e.code, e.status], ["not_found", 404], "not muted");

    seen = nextRoomEvent("ban");
    const removed = nextEvent(nell, "removed", (d) => d.room === "forum" && d);
    await mh.ban("forum", "nell", "spam");
    m = await seen;
    assert.deepEqual([m.from, m.body, m.event], ["mo", "", { ban: { user: "nell", reason: "spam" } }]);
    assert.deepEqual(await removed, { room: "forum" });
    const { bans, more } = await mh.bans("forum");
    assert.equal(more, false);
    assert.deepEqual(bans.map((b) => [b.user, b.by, b.reason, typeof b.ts]), [["nell", "mo", "spam", "number"]]);
    e = await refusal(nell.join("forum"));
    assert.equal(e.code, "forbidden", "banned from a public room");
    e = await refusal(mh.ban("forum", "nell"));
    assert.deepEqual([e.code, e.status], ["conflict", 409], "banned already");
    e = await refusal(otto.http().ban("forum", "mo"));
    assert.deepEqual([e.code, e.status], ["forbidden", 403], "a member does not ban");
    e = await refusal(otto.http().bans("forum"));
    assert.deepEqual([e.code, e.status], ["forbidden", 403], "a member does not list bans");
    e = await refusal(mh.ban("forum", "nobody-here"));
    assert.deepEqual([e.code, e.status], ["not_found", 404], "an unknown user");
    e = await refusal(mh.ban("forum", "otto", "x".repeat(300)));
    assert.deepEqual([e.code, e.status], ["bad_request", 400], "a reason over 256 characters");
    e = await refusal(mh.ban("", "otto"));
    assert.equal(e.code, "invalid", "checked before any request");

    seen = nextRoomEvent("unban");
    await mh.unban("forum", "nell");
    assert.deepEqual((await seen).event, { unban: { user: "nell" } });
    assert.deepEqual(await mh.bans("forum", { limit: 5 }), { bans: [], more: false });
    e = await refusal(mh.unban("forum", "nell"));
    assert.deepEqual([e.code, e.status], ["not_found", 404], "not banned");
    await nell.join("forum");

    seen = nextRoomEvent("name");
    assert.equal((await mh.setRoomName("forum", null)).name, null);
    assert.deepEqual((await seen).event, { name: null });
    assert.equal((await otto.http().rooms()).find((r) => r.room === "forum")?.name, undefined);
    const kinds = (await otto.history("forum", null, 100)).messages.filter((x) => x.event).map((x) => Object.keys(x.event)[0]);
    assert.deepEqual(kinds, ["name", "mute", "unmute", "ban", "unban", "name"], "history lists the events in order");
  });

  it("blocks: a blocked user neither adds nor DMs the blocker, nor sends in their DM, until unblocked", async () => {
    const bea = await user("bea");
    const mal = await user("mal");
    const dm = await mal.http().dm("bea");
    await bea.join(dm);
    await mal.join(dm);
    await mal.send(dm, "hello");
    await bea.http().block("mal");
    await bea.http().block("mal");
    assert.deepEqual((await bea.http().blocks()).blocks.map((b) => [b.user, typeof b.ts]), [["mal", "number"]]);
    // The gateway drops mal's cached access when the block lands: retry until refused.
    let e;
    for (let i = 0; i < 100 && !e; i++) {
      try {
        await mal.send(dm, `still here ${i}`);
        await sleep(20);
      } catch (err) {
        e = err;
      }
    }
    assert.deepEqual([e?.code, e?.message], ["forbidden", "the other member of this DM has blocked you"]);
    e = await refusal(mal.http().dm("bea"));
    assert.deepEqual([e.code, e.status], ["forbidden", 403], "no DM");
    await mal.http().createRoom("malroom", "private");
    e = await refusal(mal.http().addMember("malroom", "bea"));
    assert.deepEqual([e.code, e.status], ["forbidden", 403], "no add");
    await bea.http().unblock("mal");
    e = await refusal(bea.http().unblock("mal"));
    assert.deepEqual([e.code, e.status], ["not_found", 404], "not blocked any more");
    assert.deepEqual(await bea.http().blocks({ limit: 5 }), { blocks: [], more: false });
    await mal.http().addMember("malroom", "bea");
  });

  it("invitations: a user who takes them is invited, told live, and a member once it accepts", async () => {
    const inez = await user("inez");
    const ruth = await user("ruth");
    assert.equal(await ruth.http().adds(), "anyone");
    assert.equal(await ruth.http().setAdds("invitations"), "invitations");
    await inez.http().createRoom("inezroom", "private");
    await inez.http().createRoom("inezspam", "private");
    const told = nextEvent(ruth, "invitation", (i) => (i.room === "inezroom" ? i : undefined));
    const added = await inez.http().addMember("inezroom", "ruth");
    assert.equal(added.invited, true);
    assert.deepEqual([added.invitation?.room, added.invitation?.by, added.invitation?.role], ["inezroom", "inez", "member"]);
    assert.deepEqual(await told, { room: "inezroom", by: "inez", role: "member" });
    await inez.http().addMember("inezspam", "ruth");
    const pending = await ruth.http().invitations();
    assert.deepEqual(pending.invitations.map((i) => i.room), ["inezroom", "inezspam"]);
    assert.equal(pending.more, false);
    let e = await refusal(ruth.join("inezroom"));
    assert.equal(e.code, "forbidden", "not a member before accepting");

    await ruth.http().declineInvitation("inezspam");
    const member = nextEvent(ruth, "membership", (m) => (m.room === "inezroom" ? m : undefined));
    await ruth.http().acceptInvitation("inezroom");
    assert.deepEqual(await member, { room: "inezroom", role: "member" });
    await ruth.join("inezroom");
    assert.deepEqual((await ruth.http().invitations()).invitations, []);
    e = await refusal(ruth.http().acceptInvitation("inezspam"));
    assert.deepEqual([e.code, e.status], ["not_found", 404], "declined: gone");
    // Adds of a user who takes them stay adds.
    const seth = await user("seth");
    assert.deepEqual(await inez.http().addMember("inezroom", "seth"), { invited: false });
    await seth.join("inezroom");
  });

  it("closing a DM marks it closed in the closer's list until a newer message or an open", async () => {
    const vic = await user("vic");
    const kai = await user("kai");
    const dm = await vic.http().dm("kai");
    await vic.join(dm);
    await vic.send(dm, "hi kai");
    const dms = async (/** @type {any} */ c) =>
      (await c.http().rooms()).filter((r) => r.kind === "dm" && !r.closed).map((r) => r.room);
    await kai.http().closeDm("vic");
    assert.deepEqual(await dms(kai), [], "closed");
    const listed = (await kai.http().rooms()).filter((r) => r.kind === "dm").map((r) => [r.room, r.closed]);
    assert.deepEqual(listed, [[dm, true]], "listed closed");
    assert.deepEqual(await dms(vic), [dm], "the other's list keeps it");
    await vic.send(dm, "still there?");
    let back = [];
    for (let i = 0; i < 100 && back.length === 0; i++) {
      back = await dms(kai);
      if (back.length === 0) await sleep(20);
    }
    assert.deepEqual(back, [dm], "a newer message brings it back");
    await kai.http().closeDm("vic");
    assert.equal(await kai.http().dm("vic"), dm);
    assert.deepEqual(await dms(kai), [dm], "opening it brings it back");
    const e = await refusal(kai.http().closeDm("nobody"));
    assert.deepEqual([e.code, e.status], ["not_found", 404]);
  });

  it("pages history over the WebSocket and HTTP, and replays with joinSince", async () => {
    const cy = await user("cy");
    const dee = await user("dee");
    await cy.http().createRoom("annals", "public");
    await cy.join("annals");
    await dee.join("annals");
    const delivered = [];
    dee.on("message", (m) => delivered.push(m.seq));
    const seqs = [];
    for (let i = 0; i < 26; i++) seqs.push((await cy.send("annals", `m${i}`)).seq);
    const last = seqs[seqs.length - 1];
    const deadline = Date.now() + 10_000;
    while (!delivered.includes(last) && Date.now() < deadline) await sleep(20);
    assert.deepEqual(delivered, seqs, "each message once, in order");

    const pages = [];
    for await (const page of dee.historyPages("annals", 10)) pages.push(page);
    assert.deepEqual(pages.map((p) => p.length), [10, 10, 6]);
    assert.deepEqual(pages.reverse().flat().map((m) => m.seq), seqs);
    assert.deepEqual(
      pages.flat().map((m) => m.body),
      seqs.map((_, i) => `m${i}`),
    );

    const page = await dee.history("annals", seqs[5], 3);
    assert.deepEqual(page.messages.map((m) => m.seq), seqs.slice(2, 5));
    assert.equal(page.more, true);
    const first = await dee.history("annals", seqs[2], 100);
    assert.deepEqual([first.messages.length, first.more], [2, false]);
    const overHttp = await dee.http().history("annals", seqs[5], 3);
    assert.deepEqual(overHttp, page);
    const latest = await dee.http().history("annals");
    assert.equal(latest.messages.length, 26);

    // Asked for, a replay comes again although it was delivered before.
    delivered.length = 0;
    assert.equal(await dee.joinSince("annals", seqs[20]), last);
    while (delivered.length < 5 && Date.now() < deadline + 10_000) await sleep(20);
    assert.deepEqual(delivered, seqs.slice(21));
  });

  it("edits and deletes: live frames carry edit_of / delete_of, history the current version, edits() the versions", async () => {
    const ed = await user("ed");
    const uma = await user("uma");
    await ed.http().createRoom("drafts", "public");
    await ed.join("drafts");
    await uma.join("drafts");
    const seen = [];
    uma.on("message", (m) => seen.push(m));
    const first = await ed.send("drafts", "helo");
    const edit = await ed.edit("drafts", first.seq, "hello");
    assert.ok(edit.seq > first.seq, "an edit is a message of its own");
    const gone = await ed.send("drafts", "oops");
    const del = await ed.delete("drafts", gone.seq);
    const deadline = Date.now() + 10_000;
    while (seen.length < 4 && Date.now() < deadline) await sleep(20);
    assert.deepEqual(
      seen.map((m) => [m.seq, m.body, m.edit_of, m.delete_of]),
      [
        [first.seq, "helo", undefined, undefined],
        [edit.seq, "hello", first.seq, undefined],
        [gone.seq, "oops", undefined, undefined],
        [del.seq, "", undefined, gone.seq],
      ],
    );
    const page = await uma.history("drafts");
    const bySeq = new Map(page.messages.map((m) => [m.seq, m]));
    assert.equal(bySeq.get(first.seq).body, "hello");
    assert.equal(bySeq.get(first.seq).edited.seq, edit.seq);
    assert.equal(bySeq.get(gone.seq).deleted, true);
    assert.equal(bySeq.get(gone.seq).body, "");
    const versions = await uma.http().edits("drafts", first.seq);
    assert.deepEqual(versions.versions.map((v) => [v.seq, v.body]), [[first.seq, "helo"], [edit.seq, "hello"]]);
    // Only the author edits; a deleted message has no versions; arguments are checked.
    await assert.rejects(uma.edit("drafts", first.seq, "mine now"), (e) => e instanceof ChatmeshError && e.code === "forbidden");
    await assert.rejects(uma.http().edits("drafts", gone.seq), (e) => e instanceof ChatmeshError && e.code === "not_found");
    await assert.rejects(ed.edit("drafts", 0, "x"), (e) => e instanceof ChatmeshError && e.code === "invalid");
    await assert.rejects(
      ed.sendWithId("drafts", "both-1", "x", { editOf: first.seq, deleteOf: first.seq }),
      (e) => e instanceof ChatmeshError && e.code === "invalid",
    );
  });

  it("searches the caller's rooms: newest first, filters, paging; bad queries are bad_request", async () => {
    const vi = await user("vi");
    const wes = await user("wes");
    await vi.http().createRoom("menagerie", "public");
    await vi.http().createRoom("strongroom", "private");
    await vi.join("menagerie");
    await vi.join("strongroom");
    await wes.join("menagerie");
    const one = await vi.send("menagerie", "an okapi in the zoo");
    await vi.send("strongroom", "the okapi secret");
    const three = await wes.send("menagerie", "okapi again");
    const deadline = Date.now() + 15_000;
    let mine = await vi.http().search("okapi");
    while (mine.hits.length < 3 && Date.now() < deadline) {
      await sleep(100);
      mine = await vi.http().search("okapi");
    }
    assert.equal(mine.hits.length, 3);
    assert.equal(mine.hits[0].seq, three.seq, "newest first");
    const theirs = await wes.http().search("okapi");
    assert.deepEqual(theirs.hits.map((h) => h.seq), [three.seq, one.seq], "wes is not in the strongroom");
    const byWes = await vi.http().search("okapi", { from: "wes" });
    assert.deepEqual(byWes.hits.map((h) => [h.room, h.from, h.body]), [["menagerie", "wes", "okapi again"]]);
    const page = await vi.http().search("okapi", { room: "menagerie", limit: 1 });
    assert.deepEqual([page.hits.length, page.more, page.next_before], [1, true, page.hits[0].seq]);
    const next = await vi.http().search("okapi", { room: "menagerie", before: page.next_before });
    assert.deepEqual(next.hits.map((h) => h.seq), [one.seq]);
    assert.deepEqual([next.more, next.next_before], [false, undefined]);
    await assert.rejects(wes.http().search("okapi", { room: "strongroom" }), (e) => e instanceof ChatmeshError && e.code === "forbidden");
    await assert.rejects(vi.http().search(""), (e) => e instanceof ChatmeshError && e.code === "bad_request");
  });

  it("reacts, unreacts and replies; reads a thread page and moves its cursor", async () => {
    const xu = await user("xu");
    const yan = await user("yan");
    await xu.http().createRoom("porch", "public");
    await xu.join("porch");
    await yan.join("porch");
    const seen = [];
    yan.on("message", (m) => seen.push(m));
    const root = await xu.send("porch", "who wants tea?");
    const like = await yan.react("porch", root.seq, "🍵");
    const reply = await yan.reply("porch", root.seq, "me please");
    await xu.unreact("porch", root.seq, "🍵").then(
      () => assert.fail("xu has no 🍵 on it"),
      (e) => assert.equal(e.code, "not_found"),
    );
    await yan.unreact("porch", root.seq, "🍵");
    const deadline = Date.now() + 10_000;
    while (seen.length < 4 && Date.now() < deadline) await sleep(20);
    assert.deepEqual(
      seen.map((m) => [m.seq, m.body, m.react_to, m.unreact_to, m.reply_to, m.thread_root]),
      [
        [root.seq, "who wants tea?", undefined, undefined, undefined, undefined],
        [like.seq, "🍵", root.seq, undefined, undefined, undefined],
        [reply.seq, "me please", undefined, undefined, root.seq, root.seq],
        [seen[3].seq, "🍵", undefined, root.seq, undefined, undefined],
      ],
    );
    const page = await xu.http().thread("porch", root.seq);
    assert.deepEqual(page.messages.map((m) => m.body), ["me please"]);
    assert.equal(page.root && page.root.seq, root.seq);
    assert.equal(page.unread, 1, "yan's reply is unread for xu");
    await xu.http().readThread("porch", root.seq, reply.seq);
    assert.equal((await xu.http().thread("porch", root.seq)).unread, 0);
    await assert.rejects(xu.http().thread("porch", reply.seq), (e) => e instanceof ChatmeshError && e.code === "bad_request");
  });

  it("yields events from events() in order and ends after closed", async () => {
    const eli = await user("eli");
    const fay = await user("fay");
    await eli.http().createRoom("stream", "public");
    await eli.join("stream");
    await fay.join("stream");
    const seen = [];
    const reading = (async () => {
      for await (const ev of fay.events()) {
        seen.push(ev.type === "message" ? `message ${ev.data.body}` : ev.type);
      }
    })();
    await eli.send("stream", "one");
    await eli.send("stream", "two");
    const deadline = Date.now() + 10_000;
    while (seen.filter((s) => s.startsWith("message")).length < 2 && Date.now() < deadline) await sleep(20);
    await fay.close();
    await reading;
    assert.deepEqual(seen.filter((s) => s.startsWith("message")), ["message one", "message two"]);
    assert.equal(seen[seen.length - 1], "closed");
    assert.equal((await refusal(fay.ping())).code, "closed");
    await fay.close(); // twice is fine
  });

  it("refuses a bad token or a wrong password at connect with unauthorized", async () => {
    let e = await refusal(Client.connect(url, { token: "not.a.token", WebSocket: TestWebSocket }));
    assert.equal(e.code, "unauthorized");
    e = await refusal(Client.connect(url, { username: "nobody", password: PASSWORD, WebSocket: TestWebSocket }));
    assert.deepEqual([e.code, e.status], ["unauthorized", 401]);

    // In the background (start), a refused token ends the session: closed with 4001.
    const bg = new Client(url, { token: "not.a.token", WebSocket: TestWebSocket });
    const closed = nextEvent(bg, "closed");
    bg.start();
    assert.equal((await closed).code, 4001);
  });

  it("connects through a fallback gateway when the first cannot be reached", async () => {
    await new Http(url).register("quinn", PASSWORD);
    // Port 1 on loopback: nothing listens there; the fallback (another region's gateway in
    // a multi-region deployment) is this mesh.
    const quinn = await Client.connect("http://127.0.0.1:1", {
      username: "quinn",
      password: PASSWORD,
      WebSocket: TestWebSocket,
      fallbacks: [url],
    });
    clients.push(quinn);
    assert.equal(quinn.user, "quinn");
    await quinn.http().createRoom("elsewhere", "public");
    await quinn.join("elsewhere");
    assert.ok((await quinn.send("elsewhere", "through the fallback")).seq > 0);
    const e = await refusal(Client.connect("http://127.0.0.1:1", { username: "quinn", password: PASSWORD, WebSocket: TestWebSocket }));
    assert.equal(e.code, "network");
  });

  it("after logout_all, a password session logs in again; a token session closes with 4001", async () => {
    const gus = await user("gus");
    await gus.http().createRoom("lounge", "public");
    await gus.join("lounge");
    const token = (await new Http(url).login("gus", PASSWORD)).token;
    const byToken = await Client.connect(url, { token, WebSocket: TestWebSocket });
    clients.push(byToken);
    const tokenClosed = nextEvent(byToken, "closed");
    const back = nextEvent(gus, "reconnected");
    const dropped = nextEvent(gus, "disconnected");

    await gus.http().logoutAll();
    assert.equal((await dropped).code, 4001);
    assert.equal((await back).user, "gus");
    assert.equal((await tokenClosed).code, 4001);
    assert.equal((await refusal(byToken.ping())).code, "closed");

    // The password session re-joined its room and works with its new token.
    const other = await user("hal");
    await other.join("lounge");
    const got = nextEvent(gus, "message", (m) => m.body === "still here?");
    await other.send("lounge", "still here?");
    await got;
    assert.ok((await gus.http().rooms()).some((r) => r.room === "lounge"));
  });

  it("uploads files, downloads them (ranges too), gets thumbnails; messages carry attachments", async () => {
    const pia = await user("pia");
    const quin = await user("quin");
    const outsider = await user("rex");
    const ph = pia.http();
    await ph.createRoom("studio", "private");
    await ph.addMember("studio", "quin");
    await pia.join("studio");
    await quin.join("studio");

    const image = png(40, 30);
    const img = await ph.uploadFile("studio", "tiny pic.png", image);
    assert.match(img.id, /^f[0-9a-f]{32}$/);
    assert.deepEqual(
      [img.room, img.name, img.size, img.content_type, img.width, img.height, img.by],
      ["studio", "tiny pic.png", image.length, "image/png", 40, 30, "pia"],
    );
    assert.ok(["pending", "ready"].includes(img.thumbnail), img.thumbnail);
    const pdfBytes = new TextEncoder().encode("%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n");
    const pdf = await ph.uploadFile("studio", "notes.pdf", pdfBytes);
    assert.equal(pdf.content_type, "application/pdf");
    assert.equal(pdf.thumbnail, "none");

    const got = nextEvent(quin, "message", (m) => m.from === "pia" && m);
    const ack = await pia.send("studio", "", { attachments: [img.id, pdf.id] });
    const m = await got;
    assert.equal(m.seq, ack.seq);
    assert.equal(m.body, "");
    assert.deepEqual(m.attachments.map((a) => [a.id, a.name, a.size, a.content_type]), [
      [img.id, "tiny pic.png", image.length, "image/png"],
      [pdf.id, "notes.pdf", pdfBytes.length, "application/pdf"],
    ]);
    assert.deepEqual([m.attachments[0].width, m.attachments[0].height], [40, 30]);
    const page = await quin.history("studio");
    assert.deepEqual(page.messages.at(-1).attachments, m.attachments, "history carries them too");

    const qh = quin.http();
    const whole = await qh.download("studio", pdf.id);
    assert.equal(whole.status, 200);
    assert.deepEqual(new Uint8Array(await whole.blob.arrayBuffer()), pdfBytes);
    const part = await qh.download("studio", img.id, { range: { start: 0, end: 7 } });
    assert.equal(part.status, 206);
    assert.equal(part.contentRange, `bytes 0-7/${image.length}`);
    assert.deepEqual(new Uint8Array(await part.blob.arrayBuffer()), image.slice(0, 8));
    assert.equal((await refusal(qh.download("studio", img.id, { range: { start: image.length + 10 } }))).status, 416);

    // The thumbnail comes once the worker made it.
    const deadline = Date.now() + 15_000;
    let info = await qh.fileInfo("studio", img.id);
    while (info.thumbnail === "pending" && Date.now() < deadline) {
      await sleep(100);
      info = await qh.fileInfo("studio", img.id);
    }
    assert.equal(info.thumbnail, "ready");
    const thumb = await qh.thumbnail("studio", img.id);
    assert.equal(thumb.contentType, "image/png");
    assert.ok(thumb.blob.size > 0);
    assert.equal((await refusal(qh.thumbnail("studio", pdf.id))).code, "not_found");

    // Not a member: refused, whatever the request.
    const oh = outsider.http();
    for (const call of [() => oh.download("studio", pdf.id), () => oh.fileInfo("studio", pdf.id), () => oh.uploadFile("studio", "x.txt", "x")]) {
      assert.equal((await refusal(call())).status, 403);
    }
    // A name that claims an image for bytes that are not one.
    const e = await refusal(ph.uploadFile("studio", "fake.png", "PK\u0003\u0004 not a png"));
    assert.deepEqual([e.code, e.status], ["bad_request", 400]);
  });
});
