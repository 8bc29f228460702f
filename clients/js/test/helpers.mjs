// Test helpers: a real `python server.py` subprocess (and its admin API), a TCP proxy that
// resets or blackholes links, a fake server that never answers `hello`, JWTs, and an event
// recorder to wait on.

import { spawn } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import { existsSync } from "node:fs";
import net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
// The server checkout to run (default: this repository); the Python is always this one's venv.
const SERVER_DIR = process.env.TRIO_SESSIONS_SERVER_DIR || ROOT;
const PYTHON = [join(ROOT, ".venv", "bin", "python"), "python3"].find((p) => p === "python3" || existsSync(p));

if (typeof globalThis.WebSocket !== "function") {
  throw new Error("these tests need a global WebSocket: Node 22+, or Node 20 with --experimental-websocket");
}

/**
 * Start `python server.py --port 0` with `flags`; resolves with {port, url, admin(), stop(),
 * kill(signal), log}. Sessions are kept in memory unless `env.TRIO_SESSIONS_STORE` says
 * otherwise, and the admin API listens on a free port (both set through the environment, which
 * a server without them ignores).
 */
export function startServer(flags = {}, env = {}) {
  const args = ["server.py", "--port", "0", "--log-level", "info"];
  for (const [name, value] of Object.entries(flags)) args.push(`--${name}`, String(value));
  const child = spawn(PYTHON, args, {
    cwd: SERVER_DIR, stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, TRIO_SESSIONS_STORE: "memory", TRIO_SESSIONS_ADMIN_PORT: "0", ...env },
  });
  let log = "";
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error(`server did not start:\n${log}`)); }, 15_000);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const match = /listening on ws:\/\/[\d.]+:(\d+)\/ws/.exec(log);
      if (match && timer) {
        clearTimeout(timer);
        const port = Number(match[1]);
        resolve({
          port,
          url: `ws://127.0.0.1:${port}/ws`,
          get log() { return log; },
          /** POST `body` (JSON) to the admin API's `path`; resolves with the decoded answer. */
          async admin(path, body) {
            await waitUntil(() => /admin API on http:\/\/\S+/.test(log), 5000, "the admin API");
            const base = /admin API on (http:\/\/\S+)/.exec(log)[1];
            const response = await fetch(base + path, {
              method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
            });
            const answer = await response.json();
            if (!response.ok) throw new Error(`admin ${path}: ${response.status} ${JSON.stringify(answer)}`);
            return answer;
          },
          exited,
          kill(signal = "SIGINT") { child.kill(signal); return exited; },
          async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
            const timeout = setTimeout(() => child.kill("SIGKILL"), 5000);
            await exited;
            clearTimeout(timeout);
          },
        });
      }
    });
    child.on("exit", () => reject(new Error(`server exited:\n${log}`)));
  });
}

/**
 * A JWT (HS256) for `sub`, signed with `secret` and valid for `lifetime` seconds (others as `claims`
 * say): what an identity provider would hand the client.
 */
export function jwt(sub, secret, { lifetime = 3600, ...claims } = {}) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const issued = Date.now() / 1000; // NumericDate may be fractional: a short lifetime stays exact
  const body = part({ sub, iat: issued, exp: issued + lifetime, ...claims });
  const unsigned = `${part({ alg: "HS256", typ: "JWT" })}.${body}`;
  return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

/** A TCP relay to `targetPort` whose links can be reset, or go silent both ways (a pulled cable). */
export async function startProxy(targetPort) {
  const links = new Set();
  let silent = false;
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted += 1;
    const upstream = net.connect(targetPort, "127.0.0.1");
    const link = { client, upstream };
    links.add(link);
    client.on("data", (data) => { if (!silent) upstream.write(data); });
    upstream.on("data", (data) => { if (!silent) client.write(data); });
    const end = () => { links.delete(link); client.destroy(); upstream.destroy(); };
    for (const socket of [client, upstream]) { socket.on("close", end); socket.on("error", end); }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;
  return {
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    get accepted() { return accepted; },
    /** Kill every relayed link at once: both sides see a TCP reset, no close frame. */
    reset() { for (const { client, upstream } of links) { client.resetAndDestroy(); upstream.resetAndDestroy(); } },
    /** Drop every byte either way, on open links and on new ones, until `blackhole(false)`. */
    blackhole(on = true) { silent = on; },
    close() { this.reset(); return new Promise((resolve) => server.close(resolve)); },
  };
}

/** A server that completes the WebSocket handshake and then never says a word. */
export async function startMuteServer() {
  let accepted = 0;
  const sockets = new Set();
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    socket.once("data", (head) => {
      const key = /Sec-WebSocket-Key: *(\S+)/i.exec(head.toString())?.[1] ?? "";
      const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `ws://127.0.0.1:${server.address().port}/ws`,
    get accepted() { return accepted; },
    close() { for (const s of sockets) s.destroy(); return new Promise((resolve) => server.close(resolve)); },
  };
}

/** Records every event of a client; `until(predicate)` resolves with the first match, past or future. */
export function record(client) {
  const events = [];
  const waiters = new Set();
  client.on("*", (event) => {
    events.push(event);
    for (const waiter of waiters) waiter.check(event);
  });
  return {
    events,
    of(type) { return events.filter((e) => e.type === type); },
    states() { return events.filter((e) => e.type === "connection").map((e) => e.state); },
    until(predicate, timeout = 5000, what = String(predicate)) {
      const found = events.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = {
          check(event) {
            if (!predicate(event)) return;
            clearTimeout(waiter.timer);
            waiters.delete(waiter);
            resolve(event);
          },
          timer: setTimeout(() => {
            waiters.delete(waiter);
            reject(new Error(`timed out waiting for ${what}; got: ${JSON.stringify(events.map((e) => [e.type, e.state ?? e.seq]))}`));
          }, timeout),
        };
        waiters.add(waiter);
      });
    },
  };
}

/** Wait until `condition()` is true, checking every 10 ms, failing after `timeout` ms. */
export async function waitUntil(condition, timeout = 5000, what = String(condition)) {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export const is = (type, more = () => true) => (event) => event.type === type && more(event);
export const state = (name) => (event) => event.type === "connection" && event.state === name;
