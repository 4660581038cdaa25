// Test support (not a test file): a real mesh (`chatmesh up` as a child process, stopped by
// pid), a TCP proxy whose connections can be cut, and small helpers.
//
// Env: CHATMESH_BIN (default target/debug/chatmesh, built with `cargo build -p chatmesh` when
// missing), NATS_SERVER (default .local/nats/nats-server when present),
// CHATMESH_TEST_WEBSOCKET=builtin to use node's own WebSocket instead of the ws package.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import WS from "ws";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "..", "..", "..");
const BIN = process.env.CHATMESH_BIN || path.join(ROOT, "target", "debug", "chatmesh");
const START_DEADLINE_MS = 60_000;

export const PASSWORD = "password-1";
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The ws package's WebSocket (node 20 has none without --experimental-websocket). */
export const WsPackage = /** @type {any} */ (WS);

/** The implementations to run the exactly-once test with: ws, and node's own if present. */
export function webSocketImpls() {
  const impls = [["ws package", WsPackage]];
  if (typeof globalThis.WebSocket === "function") impls.push(["node built-in (undici)", globalThis.WebSocket]);
  return impls;
}

/** The WebSocket the tests use by default. */
export const TestWebSocket =
  process.env.CHATMESH_TEST_WEBSOCKET === "builtin" && typeof globalThis.WebSocket === "function"
    ? globalThis.WebSocket
    : WsPackage;

const children = new Set();
process.on("exit", () => {
  for (const child of children) {
    try {
      process.kill(child.pid, "SIGKILL");
    } catch (_) {
      // gone already
    }
  }
});

function ensureBinary() {
  if (fs.existsSync(BIN)) return;
  if (process.env.CHATMESH_BIN) throw new Error(`CHATMESH_BIN=${BIN} does not exist`);
  console.log("[clients/js] cargo build -p chatmesh");
  const r = spawnSync("cargo", ["build", "-p", "chatmesh"], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0 || !fs.existsSync(BIN)) throw new Error("cargo build -p chatmesh failed");
}

/**
 * Starts `chatmesh up` on a free port with fast password hashing and lifted abuse limits
 * (and `extraEnv` on top); resolves once /readyz answers 200. `stop()` kills it (SIGTERM,
 * then SIGKILL) by pid.
 * @param {Record<string, string>} [extraEnv]
 */
export async function startMesh(extraEnv = {}) {
  ensureBinary();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "chatmesh-js-"));
  const nats = path.join(ROOT, ".local", "nats", "nats-server");
  const env = {
    ...process.env,
    RUST_LOG: process.env.RUST_LOG || "warn",
    CHATMESH__WORKER__ARGON2_MEMORY_KIB: "64",
    CHATMESH__WORKER__ARGON2_ITERATIONS: "1",
    CHATMESH__GATEWAY__REGISTER_IP_BURST: "100000",
    CHATMESH__GATEWAY__LOGIN_IP_BURST: "100000",
    CHATMESH__GATEWAY__ROOMS_BURST: "100000",
    CHATMESH__GATEWAY__API_USER_BURST: "1000000",
    CHATMESH__GATEWAY__API_PER_USER_PER_MINUTE: "10000000",
    CHATMESH__GATEWAY__LIMITS__SENDS_PER_SECOND: "10000",
    CHATMESH__GATEWAY__LIMITS__SEND_BURST: "10000",
    CHATMESH__GATEWAY__FRAMES_PER_SECOND: "10000",
    ...extraEnv,
  };
  if (!env.NATS_SERVER && fs.existsSync(nats)) env.NATS_SERVER = nats;
  const child = spawn(BIN, ["up", "--data", dataDir, "--listen", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  children.add(child);
  const stderr = [];
  child.stderr.on("data", (d) => {
    stderr.push(d.toString());
    if (stderr.length > 100) stderr.shift();
  });
  let exited = null;
  const exitedPromise = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      children.delete(child);
      resolve(exited);
    });
  });
  const url = await new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`no "web client:" line within ${START_DEADLINE_MS} ms`)), START_DEADLINE_MS);
    child.stdout.on("data", (d) => {
      buf += d.toString();
      const m = buf.match(/web client:\s+(http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].replace(/\/+$/, ""));
      }
    });
    exitedPromise.then((e) => {
      clearTimeout(timer);
      reject(new Error(`chatmesh up exited early (${JSON.stringify(e)}):\n${stderr.join("")}`));
    });
  });
  const deadline = Date.now() + START_DEADLINE_MS;
  for (;;) {
    if (exited) throw new Error(`chatmesh up exited: ${stderr.join("")}`);
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) break;
    } catch (_) {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url}/readyz did not answer 200 in time`);
    await sleep(100);
  }
  const stop = async () => {
    if (!exited) {
      process.kill(child.pid, "SIGTERM");
      let timer;
      const late = new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), 15_000);
      });
      const done = await Promise.race([exitedPromise, late]);
      clearTimeout(timer);
      if (!done) {
        process.kill(child.pid, "SIGKILL");
        await exitedPromise;
      }
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  return { url, port: Number(new URL(url).port), stop };
}

/** A TCP proxy in front of the gateway whose connections can be cut, as a network failure would. */
export class Proxy {
  constructor(server, targetPort) {
    this.server = server;
    this.targetPort = targetPort;
    /** @type {Set<{client: net.Socket, upstream: net.Socket, frozen: boolean}>} */
    this.links = new Set();
    this.frozen = false;
  }

  static async start(targetPort) {
    const proxy = new Proxy(null, targetPort);
    const server = net.createServer((client) => proxy.#link(client));
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    proxy.server = server;
    return proxy;
  }

  get url() {
    return `http://127.0.0.1:${this.server.address().port}`;
  }

  #link(client) {
    const upstream = net.connect(this.targetPort, "127.0.0.1");
    const link = { client, upstream, frozen: this.frozen };
    this.links.add(link);
    client.on("data", (d) => {
      if (!link.frozen) upstream.write(d);
    });
    upstream.on("data", (d) => {
      if (!link.frozen) client.write(d);
    });
    const end = () => {
      this.links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  }

  /** Drops every connection through the proxy (both sockets close, no close frame). */
  cut() {
    const links = Array.from(this.links);
    this.links.clear();
    for (const { client, upstream } of links) {
      client.destroy();
      upstream.destroy();
    }
    return links.length;
  }

  /** Stops forwarding on every current connection (bytes are dropped), as a stalled network. */
  freeze() {
    for (const link of this.links) link.frozen = true;
  }

  async close() {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/**
 * The data of the next `type` event of `client` that `pick` accepts (returns non-undefined
 * for), within `ms`.
 */
export function nextEvent(client, type, pick = (d) => d, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching ${type} event within ${ms} ms`));
    }, ms);
    const off = client.on(type, (data) => {
      const v = pick(data);
      if (v === undefined || v === false) return;
      clearTimeout(timer);
      off();
      resolve(v === true ? data : v);
    });
  });
}

/** Rejects when `promise` resolves; resolves with its error. */
export async function refusal(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error("expected a refusal, got success");
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A valid RGB PNG of `width` × `height` pixels (a colour gradient), as bytes. */
export function png(width, height) {
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, "latin1");
    data.copy(out, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8 bits per sample, RGB, no interlace
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1); // filter byte 0 (none), then the pixels
    for (let x = 0; x < width; x++) rows.set([(x * 255) / width, (y * 255) / height, 128], row + 1 + x * 3);
  }
  return new Uint8Array(Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", zlib.deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]));
}
