// The JavaScript client against a real `python server.py` with a key (HS256): token functions
// and refresh, close codes 4004 / 4005 / 1013, session options, live sessions (a guardian's seat
// given by the server, kept across drops and reloads) and user notices. Tokens are real JWTs,
// signed here with node:crypto; relations and notices go through the server's admin API.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { CloseCode, ConnectionLost, ConnectionState, MemoryStorage, connect as open } from "../trio-sessions.js";
import { is, jwt, record, startProxy, startServer, state, waitUntil } from "./helpers.mjs";

const SECRET = "a-javascript-test-secret-long-enough-for-hs256";
const FORGED = "a-key-that-is-not-the-servers-secret-at-all";
const FLAGS = { "heartbeat-interval": 0.5, "participant-grace": 30, "rate-limit": 0, "jwt-leeway": 0 };
const ENV = { TRIO_SESSIONS_JWT_SECRET: SECRET };
const QUICK = { backoff: { base: 20, cap: 200 }, connectTimeout: 500, helloTimeout: 500, storage: null };

let server;
before(async () => { server = await startServer(FLAGS, ENV); });
after(async () => { await server?.stop(); });

const clients = new Set();
const proxies = new Set();
async function connect(url, options) {
  const client = await open(url, options);
  clients.add(client);
  return client;
}
async function proxy() {
  const made = await startProxy(server.port);
  proxies.add(made);
  return made;
}
afterEach(async () => {
  await Promise.all([...clients].map((client) => client.close()));
  await Promise.all([...proxies].map((made) => made.close()));
  clients.clear();
  proxies.clear();
});

let users = 0;
/** A user id no other test uses (relations and connection counts live as long as the server). */
const user = (name) => `${name}-${++users}`;

/**
 * A token function for `sub`: each call returns a token valid for `lifetime` seconds, or a forged
 * one when `refuse(callNumber)` says so. `calls` records when (ms) it was called.
 */
function tokens(sub, { lifetime = 3600, refuse = (_n) => false } = {}) {
  const calls = [];
  const fn = () => {
    calls.push(Date.now());
    return Promise.resolve(refuse(calls.length) ? jwt(sub, FORGED) : jwt(sub, SECRET, { lifetime }));
  };
  return Object.assign(fn, { calls });
}

/** A WebSocket class that records the frames sent and the links opened. */
function spy() {
  const sent = [];
  const opened = [];
  class SpyWebSocket extends WebSocket {
    constructor(url) { super(url); opened.push(Date.now()); }
    send(frame) { sent.push(JSON.parse(frame)); super.send(frame); }
  }
  return { SpyWebSocket, sent, opened };
}

/**
 * A WebSocket class whose sockets, from the `from`-th made on, hand the client no
 * `guardian:liveStarted` (nor any frame after it) before it has sent a `session:resume`: the
 * server's order is kept, only the client reads later, as when its resume goes out first (in a
 * browser each frame is a task of its own; Node may hand over several at once).
 */
function holdingNotices(from) {
  let made = 0;
  return class HoldingWebSocket extends WebSocket {
    #handler = null;
    #held = null;
    #hold;
    constructor(url) {
      super(url);
      this.#hold = ++made >= from;
    }
    get onmessage() { return this.#handler; }
    set onmessage(handler) {
      this.#handler = handler;
      super.onmessage = handler && ((event) => this.#deliver(event));
    }
    #deliver(event) {
      if (this.#held) this.#held.push(event);
      else if (this.#hold && String(event.data).includes('"guardian:liveStarted"')) this.#held = [event];
      else this.#handler?.(event);
    }
    send(frame) {
      super.send(frame);
      if (!this.#hold || !frame.includes('"session:resume"')) return;
      this.#hold = false;
      setTimeout(() => {
        const held = this.#held ?? [];
        this.#held = null;
        for (const event of held) this.#handler?.(event);
      });
    }
  };
}

const dataOf = (events) => events.of("room:message").map((e) => e.data);

describe("tokens", () => {
  test("a token function refreshes the token before it expires: one link throughout", async () => {
    const provider = tokens(user("alice"), { lifetime: 1 });
    const { SpyWebSocket, sent, opened } = spy();
    const client = await connect(server.url, { ...QUICK, token: provider, WebSocket: SpyWebSocket });
    const events = record(client);
    await client.createSession();
    await waitUntil(() => provider.calls.length >= 4, 5000, "three refreshes");
    const gaps = provider.calls.slice(1).map((t, i) => t - provider.calls[i]);
    assert.ok(gaps.every((gap) => gap >= 700 && gap <= 1000), `refreshed every 0.8 s of a 1 s token: ${gaps}`);
    assert.equal(sent.filter((f) => f.type === "auth:refresh").length, provider.calls.length - 1);
    assert.equal(await client.patchState({ still: "here" }), 1, "the link outlived its first tokens");
    assert.deepEqual(events.states(), ["connected"]);
    assert.equal(opened.length, 1);
  });

  test("refreshToken by hand; a string token that expires is final (4005)", async () => {
    const alice = user("alice");
    const client = await connect(server.url, { ...QUICK, token: jwt(alice, SECRET, { lifetime: 1 }) });
    const events = record(client);
    await client.createSession();
    const reply = await client.refreshToken(jwt(alice, SECRET, { lifetime: 2 }));
    assert.equal(reply.user_id, alice);
    assert.ok(Date.parse(reply.expires_at) > Date.now() + 1500);
    const other = await client.refreshToken(jwt(user("mallory"), SECRET)).catch((e) => e);
    assert.equal(other.code, "forbidden");
    await new Promise((resolve) => setTimeout(resolve, 1200)); // past the first token's expiry
    assert.equal(client.connectionState, ConnectionState.CONNECTED);
    const lost = await events.until(state("lost"), 3000);
    assert.equal(lost.code, CloseCode.TOKEN_EXPIRED);
    assert.match(lost.reason, /^token expired/);
    await assert.rejects(client.ping(), ConnectionLost);
  });

  test("4005: an expired token reconnects with a fresh one and resumes, losing nothing", async () => {
    const host = await connect(server.url, { ...QUICK, token: jwt(user("host"), SECRET) });
    const { code } = await host.createSession();
    await host.createRoom("r");
    // every refresh is refused (forged until the first token has expired): the server closes with 4005
    const provider = tokens(user("alice"), { lifetime: 1, refuse: (n) => n > 1 && Date.now() < provider.calls[0] + 1000 });
    const alice = await connect(server.url, { ...QUICK, token: provider });
    const events = record(alice);
    const joined = await alice.join(code);
    await host.send("r", "before");
    const reconnecting = await events.until(state("reconnecting"), 3000);
    assert.equal(reconnecting.code, CloseCode.TOKEN_EXPIRED);
    await host.send("r", "while away");
    const resumed = await events.until(state("resumed"), 3000);
    assert.equal(resumed.recovered, true);
    assert.equal(resumed.session, code);
    await host.send("r", "after");
    await events.until(is("room:message", (e) => e.data === "after"));
    assert.deepEqual(dataOf(events), ["before", "while away", "after"]);
    const seqs = events.events.filter((e) => e.seq && e.type !== "connection").map((e) => e.seq);
    assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b), "in order, no duplicate");
    assert.equal(alice.seat.participantId, joined.participant_id);
    assert.ok(provider.calls.at(-1) >= provider.calls[0] + 1000, "the reconnect asked for a fresh token");
  });

  test("4004: a refused string token is final, at once", async () => {
    const { SpyWebSocket, opened } = spy();
    const connecting = connect(server.url, { ...QUICK, token: jwt(user("alice"), FORGED), WebSocket: SpyWebSocket });
    await assert.rejects(connecting, (error) => {
      assert.ok(error instanceof ConnectionLost);
      assert.equal(error.message, "hello refused: unauthorized: bad signature");
      assert.equal(error.code, CloseCode.UNAUTHORIZED);
      return true;
    });
    assert.equal(opened.length, 1, "never again with the same token");
  });

  test("4004: a token function gets one more try, then the client gives up", async () => {
    const provider = tokens(user("alice"), { refuse: () => true });
    const { SpyWebSocket, opened } = spy();
    const connecting = connect(server.url, { ...QUICK, token: provider, WebSocket: SpyWebSocket });
    await assert.rejects(connecting, (error) => error instanceof ConnectionLost && error.code === CloseCode.UNAUTHORIZED);
    assert.equal(provider.calls.length, 2);
    assert.equal(opened.length, 2);
  });

  for (const refused of [1, 2]) {
    test(`4004 on a reconnect: refused ${refused === 1 ? "once, then resumed" : "twice, then lost"}`, async () => {
      const relay = await proxy();
      let droppedAt = Infinity;
      const provider = tokens(user("alice"), { refuse: (n) => n > droppedAt && n <= droppedAt + refused });
      const client = await connect(relay.url, { ...QUICK, token: provider });
      const events = record(client);
      const { code } = await client.createSession();
      droppedAt = provider.calls.length;
      relay.reset();
      if (refused === 1) {
        const resumed = await events.until(state("resumed"), 3000);
        assert.equal(resumed.session, code);
      } else {
        const lost = await events.until(state("lost"), 3000);
        assert.equal(lost.code, CloseCode.UNAUTHORIZED);
        assert.equal(lost.reason, "hello refused: unauthorized: bad signature");
        assert.deepEqual(events.states(), ["connected", "reconnecting", "lost"]);
      }
      assert.equal(provider.calls.length, droppedAt + refused + (refused === 1 ? 1 : 0));
    });
  }

  for (const [limit, flag] of [["one user", "max-connections-per-user"], ["one address", "max-connections-per-address"]]) {
    test(`1013: too many connections of ${limit}: retried after the longer backoff`, async () => {
      const strict = await startServer({ ...FLAGS, [flag]: 1 }, ENV);
      try {
        const token = jwt(user("alice"), SECRET);
        const first = await connect(strict.url, { ...QUICK, token });
        const { SpyWebSocket, opened } = spy();
        const busy = 300;
        const second = connect(strict.url, { ...QUICK, token, WebSocket: SpyWebSocket, backoff: { base: 10, cap: 20, busy } });
        await waitUntil(() => opened.length >= 3, 3000, "three attempts");
        const gaps = opened.slice(1).map((t, i) => t - opened[i]);
        assert.ok(gaps.every((gap) => gap >= busy), `waited ${gaps} ms between attempts`);
        await first.close();
        const client = await second;
        clients.add(client);
        assert.equal(client.connectionState, ConnectionState.CONNECTED);
      } finally {
        await strict.stop();
      }
    });
  }
});

describe("session options", () => {
  test("createSession with allowedUsers, and another beyond the limit", async () => {
    const [hostId, bobId, carolId] = [user("host"), user("bob"), user("carol")];
    const host = await connect(server.url, { ...QUICK, token: jwt(hostId, SECRET) });
    const bob = await connect(server.url, { ...QUICK, token: jwt(bobId, SECRET) });
    const carol = await connect(server.url, { ...QUICK, token: jwt(carolId, SECRET) });
    const { code } = await host.createSession({ allowedUsers: [bobId], anonymous: false, meta: { title: "bob only" } });
    assert.equal((await bob.join(code)).role, "participant");
    assert.equal((await carol.join(code).catch((e) => e)).code, "forbidden");
    assert.equal((await host.createSession({ another: true }).catch((e) => e)).code, "session_limit");
    const again = await host.createSession();
    assert.deepEqual([again.code, again.reused], [code, true]);
  });
});

describe("live sessions and notices", () => {
  /** A ward and a guardian related through the admin API, both connected; the ward not yet live. */
  async function family({ guardianUrl = server.url, storage = new MemoryStorage(), WebSocket = globalThis.WebSocket } = {}) {
    const [wardId, mumId] = [user("ward"), user("mum")];
    await server.admin("/api/v1/relations", { ward: wardId, guardian: mumId });
    const mum = await connect(guardianUrl, { ...QUICK, token: tokens(mumId), storage, storageKey: "guardian", WebSocket });
    const ward = await connect(server.url, { ...QUICK, token: tokens(wardId) });
    return { wardId, mumId, ward, mum, storage, mumEvents: record(mum), wardEvents: record(ward) };
  }

  test("a ward goes live: the server seats its guardian, who watches until it stops", async () => {
    const { wardId, mumId, ward, mum, mumEvents, wardEvents } = await family();
    const live = await ward.startLive({ state: { page: 1 }, meta: { lesson: "maths" } });
    assert.deepEqual([live.kind, live.role, live.guardians, live.connected_guardians], ["live", "host", [mumId], [mumId]]);
    assert.equal(ward.seat.code, live.code);
    const started = await wardEvents.until(is("live:started"));
    assert.deepEqual(started, { type: "live:started", session: live.code, guardians: [mumId], connected_guardians: [mumId] });
    const seated = await mumEvents.until(is("guardian:liveStarted"));
    assert.deepEqual([seated.session, seated.ward_id, seated.role], [live.code, wardId, "guardian"]);
    const watched = mum.watching[live.code];
    assert.deepEqual(watched.seat, {
      token: seated.resume_token, epoch: seated.epoch, code: live.code, participantId: seated.participant_id, role: "guardian", wardId,
    });
    assert.deepEqual(watched.state, { page: 1 });
    assert.equal(mum.seat, null, "the own seat is another matter");
    await ward.patchState({ page: 2 });
    const update = await mumEvents.until(is("state:updated"));
    assert.deepEqual(watched.state, { page: 2 });
    assert.equal(watched.lastSeq, update.seq);
    await ward.stopLive();
    const closed = await mumEvents.until(is("session:closed"));
    assert.deepEqual([closed.session, closed.reason], [live.code, "manual_stop"]);
    assert.deepEqual(mum.watching, {});
    assert.equal(ward.seat, null);
  });

  /**
   * The guardian's link drops while the ward sends a message and changes the state; returns
   * what the guardian saw from the drop to a message sent once it is back.
   */
  async function watchedAcrossADrop(noticeFirst = true) {
    const relay = await proxy();
    const WebSocket = noticeFirst ? globalThis.WebSocket : holdingNotices(2);
    const setup = await family({ guardianUrl: relay.url, WebSocket });
    const { ward, mum, mumEvents } = setup;
    const live = await ward.startLive({ state: { page: 1 } });
    await ward.createRoom("r");
    await mumEvents.until(is("session:roomCreated"));
    const before = mum.watching[live.code].seat;
    const from = mumEvents.events.length;
    relay.blackhole(true);
    await setup.wardEvents.until(is("session:participantAway", (e) => e.participant_id === before.participantId), 3000);
    await ward.send("r", "while away");
    await ward.patchState({ page: 2 });
    relay.blackhole(false);
    relay.reset();
    await mumEvents.until((e) => e.type === "connection" && e.state !== "reconnecting" && mumEvents.events.indexOf(e) > from, 3000);
    await ward.send("r", "after");
    await mumEvents.until(is("room:message", (e) => e.data === "after"), 3000);
    return { ...setup, live, before, seen: mumEvents.events.slice(from) };
  }

  for (const noticeFirst of [true, false]) {
    const order = noticeFirst ? "its notice read before the resume is sent" : "its resume sent first";
    test(`a guardian keeps its live seat across a drop and a page reload (${order})`, async () => {
    const { mum, mumId, ward, live, before, seen, storage } = await watchedAcrossADrop(noticeFirst);
    const watched = mum.watching[live.code];
    assert.equal(watched.seat.participantId, before.participantId, "the same seat");
    assert.deepEqual(watched.state, { page: 2 }, "the state is current");
    assert.ok(!seen.some((e) => e.type === "seat:ended" || (e.type === "connection" && e.state === "lost")));
    assert.equal(seen.filter((e) => e.type === "room:message").at(-1).data, "after");

    await mum.close(); // a reload: a new page with the same sessionStorage
    const WebSocket = noticeFirst ? globalThis.WebSocket : holdingNotices(1);
    assert.ok(JSON.parse(storage.getItem("guardian")).watching[live.code], "the seat is in storage");
    const reloaded = await connect(server.url, { ...QUICK, token: tokens(mumId), storage, storageKey: "guardian", WebSocket });
    const events = record(reloaded);
    await waitUntil(() => reloaded.watching[live.code]?.state?.page === 2, 3000, "the watched session after the reload");
    assert.equal(reloaded.watching[live.code].seat.participantId, before.participantId);
    await ward.patchState({ page: 3 });
    await events.until(is("state:updated", (e) => e.session === live.code));
    assert.deepEqual(reloaded.watching[live.code].state, { page: 3 });
    assert.ok(!events.events.some((e) => e.type === "seat:ended" || (e.type === "connection" && e.state === "lost")));
    });
  }

  test("a guardian gets what it missed while away", async () => {
    const { seen } = await watchedAcrossADrop();
    assert.deepEqual(seen.filter((e) => e.type === "room:message").map((e) => e.data), ["while away", "after"]);
  });

  test("the ward's own live seat resumes after a drop", async () => {
    const relay = await proxy();
    const [wardId, mumId] = [user("ward"), user("mum")];
    await server.admin("/api/v1/relations", { ward: wardId, guardian: mumId });
    const mum = await connect(server.url, { ...QUICK, token: tokens(mumId) });
    const mumEvents = record(mum);
    const ward = await connect(relay.url, { ...QUICK, token: tokens(wardId) });
    const events = record(ward);
    const live = await ward.startLive();
    await mumEvents.until(is("guardian:liveStarted"));
    relay.reset();
    const resumed = await events.until(state("resumed"), 3000);
    assert.deepEqual([resumed.session, resumed.recovered], [live.code, true]);
    await ward.patchState({ back: true });
    await mumEvents.until(is("state:updated"));
    assert.deepEqual(mum.watching[live.code].state, { back: true });
  });

  test("user:notice reaches every connection of the user, seated or not", async () => {
    const [mumId, dadId] = [user("mum"), user("dad")];
    const phone = await connect(server.url, { ...QUICK, token: tokens(mumId) });
    const laptop = await connect(server.url, { ...QUICK, token: tokens(mumId) });
    const dad = await connect(server.url, { ...QUICK, token: tokens(dadId) });
    const [phoneEvents, laptopEvents, dadEvents] = [phone, laptop, dad].map(record);
    await phone.createSession();
    const sent = await server.admin(`/api/v1/users/${mumId}/notify`, { topic: "invite", data: { code: "ABC123" } });
    assert.equal(sent.delivered, 2);
    for (const events of [phoneEvents, laptopEvents]) {
      const notice = await events.until(is("user:notice"));
      assert.deepEqual([notice.topic, notice.data], ["invite", { code: "ABC123" }]);
      assert.ok(Date.parse(notice.at) > 0);
    }
    await dad.ping(); // a round trip after the notice went out
    assert.deepEqual(dadEvents.events.map((e) => e.type), ["connection"]);
  });
});
