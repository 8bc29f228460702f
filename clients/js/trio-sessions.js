// trio-sessions: the JavaScript client. One dependency-free ES module for browsers and Node 20+.
//
// One loop owns the link's life: a token (from the `token` function, if given), open (bounded),
// `hello` (bounded), one `session:resume` per seat held, serve, and on a drop back off
// (exponential, full jitter; longer after 1013) and do it again. While a link serves, a token
// that expires is refreshed (`auth:refresh`) after 80% of its remaining life.
// Frames are handled in arrival order, so each seat's `lastSeq` is exact at every moment, a
// `resumed` notice precedes its replayed events, and the seats (resume token, epoch, lastSeq) are
// written to storage (sessionStorage by default) as they change, so a reloaded page resumes them.
// Seats: the client's own (created, joined, or its live session as a ward) and, for a guardian,
// those the server gives it in its wards' live sessions (`watching`).
// Types: trio-sessions.d.ts beside this file. Guide: docs/js-client.md.

/** @typedef {import("./trio-sessions.js").ClientApi} ClientApi */
/** @typedef {import("./trio-sessions.js").ConnectOptions} ConnectOptions */
/** @typedef {import("./trio-sessions.js").JsonObject} JsonObject */
/** @typedef {import("./trio-sessions.js").Json} Json */
/** @typedef {import("./trio-sessions.js").BackoffOptions} BackoffOptions */

/** The connection states, as in the Python client. */
export const ConnectionState = Object.freeze({
  CONNECTED: "connected", // a link is up and no seat needed resuming
  RECONNECTING: "reconnecting", // the link dropped; retrying with backoff
  RESUMED: "resumed", // a link is up again and the seat was resumed
  LOST: "lost", // no more retries: replaced (4002), the seat is gone, or gave up
});

/** Close codes the server uses for "another connection has this seat": never reconnect. */
export const REPLACED = 4002;
/** The close codes the client acts on (docs/reconnection.md). */
export const CloseCode = Object.freeze({
  TRY_AGAIN_LATER: 1013, // too many connections: reconnect after a longer backoff
  REPLACED, // another connection has the seat: never reconnect
  UNAUTHORIZED: 4004, // the token was refused: never again with the same token
  TOKEN_EXPIRED: 4005, // the token expired: reconnect with a fresh one (a `token` function)
});
const SEAT_GONE = new Set(["unauthorized", "session_closed", "not_found"]);
const SESSION_SCOPED = new Set([
  "session:leave", "session:close", "session:createRoom", "session:closeRoom",
  "room:message", "state:set", "state:patch", "live:stop",
]);
const PING = JSON.stringify({ type: "ping" });
const BACKLOG_LIMIT = 10_000; // events held until the first listener attaches
// A token is refreshed once this share of its remaining life has passed: early enough that a
// slow token endpoint, a clock skew of a fifth of the lifetime or a throttled timer still win.
const REFRESH_AT = 0.8;
const MIN_REFRESH_RETRY = 1000; // ms; a refused refresh is retried no sooner than this
const MAX_TIMER = 2 ** 31 - 1; // ms; setTimeout fires at once past this
const now = () => Date.now();

/** The server refused a request (`ok: false`); `code` is the protocol's error code. */
export class RequestError extends Error {
  constructor(code, message, details = {}, request = "") {
    super(`${code}: ${message}`);
    this.name = "RequestError";
    this.code = code;
    this.details = details; // the error's other fields, e.g. {version} or {retry_after_ms}
    this.request = request; // the request type that failed
  }
}

/**
 * The link dropped before a reply (the request may or may not have applied), or the client is
 * lost; `code` is the close code that ended it for good, when one did (4002, 4004, 4005).
 */
export class ConnectionLost extends Error {
  constructor(message, code = undefined) {
    super(message);
    this.name = "ConnectionLost";
    if (code !== undefined) this.code = code;
  }
}

/** RFC 7386 JSON merge patch: a new value, `target` is not modified. */
export function mergePatch(target, patch) {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const isObject = target !== null && typeof target === "object" && !Array.isArray(target);
  const out = isObject ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/**
 * Milliseconds before reconnect attempt `attempt` (0-based): uniform in [0, min(cap, base * 2^attempt)],
 * plus `busy` after the server said "try again later" (close 1013).
 * @param {number} attempt @param {BackoffOptions} [options] @param {boolean} [tryLater]
 */
export function backoffDelay(attempt, { base = 500, cap = 30_000, busy = 5000, random = Math.random } = {}, tryLater = false) {
  return random() * Math.min(cap, base * 2 ** Math.min(attempt, 32)) + (tryLater ? busy : 0);
}

/** A Storage-like map in memory: the default where there is no sessionStorage (Node). */
export class MemoryStorage {
  #items = new Map();
  getItem(key) { return this.#items.has(key) ? this.#items.get(key) : null; }
  setItem(key, value) { this.#items.set(key, String(value)); }
  removeItem(key) { this.#items.delete(key); }
}

function defaultStorage() {
  try {
    if (globalThis.sessionStorage) return globalThis.sessionStorage;
  } catch { /* storage blocked (sandboxed frame, privacy settings) */ }
  return new MemoryStorage();
}

/** @returns {{promise: Promise<any>, resolve: (value?: any) => void, reject: (error: any) => void}} */
function deferred() {
  /** @type {any} */
  let resolve;
  /** @type {any} */
  let reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

const byKey = (list, key) => Object.fromEntries((list ?? []).map((item) => [item[key], item]));

/** `promise`, or a ConnectionLost once `ms` pass first. */
function within(promise, ms, what) {
  /** @type {any} */
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new ConnectionLost(`no ${what} within ${ms} ms`)), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * One seat and the session as seen from it: the resume token, epoch and position (`lastSeq`),
 * the roster and rooms (`session`), and the state. Pure bookkeeping, fed in arrival order.
 */
class SeatView {
  constructor() {
    this.seat = null; // {token, epoch, code, participantId, role, wardId?} while seated
    this.lastSeq = 0; // every event up to here has been received (or sent, for own messages)
    this.session = null; // {code, status, hostId, startedAt, participants: {id: ...}, rooms: {name: ...}}
    this.state = null; // the session state, kept current (merge patches applied)
    this.version = 0;
    this._replayLeft = 0; // replayed events still to come after a resume reply
    this._replaySeq = 0; // ... and the position they lead to
    this._replayStatus = null;
  }

  /** A seat reply (create, join, live:start) or a guardian:liveStarted notice: seat + snapshot. */
  seated(data, extra = {}) {
    this.seat = { token: data.resume_token, epoch: data.epoch, code: data.code, participantId: data.participant_id, role: data.role, ...extra };
    this.lastSeq = data.seq;
    this._replayLeft = 0;
    this.snapshot(data);
  }

  resumed(data) {
    this.seat = { ...this.seat, epoch: data.epoch, code: data.code, participantId: data.participant_id, role: data.role };
    this.state = data.state;
    this.version = data.version;
    if (!data.recovered) {
      this.lastSeq = data.seq;
      this.snapshot(data);
    }
    this._replayLeft = data.replayed;
    this._replaySeq = data.seq;
    this._replayStatus = data.status;
    if (!this._replayLeft) this._replayDone();
  }

  /** After a resume's replay: this client's own return is not sent to it, so note it here. */
  _replayDone() {
    this.lastSeq = Math.max(this.lastSeq, this._replaySeq);
    const me = this.session?.participants[this.seat?.participantId];
    if (me) me.presence = "online";
    if (this.session && this._replayStatus) this.session.status = this._replayStatus;
  }

  snapshot(data) {
    this.state = data.state ?? null;
    this.version = data.version ?? 0;
    this.session = {
      code: data.code, status: data.status, hostId: data.host_id, startedAt: data.started_at,
      participants: byKey(data.participants, "id"),
      rooms: byKey(data.rooms, "name"),
    };
  }

  /** An event of this seat's session (with a seq) arrived. */
  observe(event) {
    this.lastSeq = Math.max(this.lastSeq, event.seq);
    this.track(event);
    if (this._replayLeft && --this._replayLeft === 0) this._replayDone();
  }

  /** Keep `session` (participants, rooms, status) and `state` current from an event. */
  track(event) {
    const session = this.session;
    if (!session) return;
    const { participants, rooms } = session;
    switch (event.type) {
      case "session:participantJoined":
        participants[event.participant.id] = { presence: "online", ...event.participant };
        for (const room of Object.values(rooms)) {
          if (Array.isArray(room.members) && !room.members.includes(event.participant.id)) room.members.push(event.participant.id);
        }
        break;
      case "session:participantLeft":
        delete participants[event.participant_id];
        for (const room of Object.values(rooms)) {
          if (Array.isArray(room.members)) room.members = room.members.filter((id) => id !== event.participant_id);
        }
        break;
      case "session:participantAway":
      case "session:participantBack":
        if (participants[event.participant_id]) {
          participants[event.participant_id].presence = event.type.endsWith("Away") ? "away" : "online";
        }
        break;
      case "session:hibernating":
      case "session:resumed":
        session.status = event.type === "session:resumed" ? "active" : "hibernating";
        if (participants[session.hostId]) participants[session.hostId].presence = event.type === "session:resumed" ? "online" : "away";
        break;
      case "session:roomCreated":
        rooms[event.room] = { name: event.room, kind: event.kind, members: event.members };
        break;
      case "session:roomClosed":
        delete rooms[event.room];
        break;
      case "state:updated":
        if (event.version > this.version) {
          this.state = "state" in event ? event.state : mergePatch(this.state, event.patch);
          this.version = event.version;
        }
        break;
      case "session:closed":
        session.status = "closed";
        break;
    }
  }

  /** What storage keeps (not the state, which every resume reply carries). */
  saved() { return { seat: this.seat, lastSeq: this.lastSeq, session: this.session }; }

  restore(saved) {
    this.seat = saved.seat;
    this.lastSeq = saved.lastSeq ?? 0;
    this.session = saved.session ?? null;
  }
}

/**
 * A connection to a trio-sessions server. Make one with {@link connect}.
 *
 * Requests wait while the client is reconnecting; they reject with ConnectionLost if the link
 * drops before their reply or the client is lost, and with RequestError when refused.
 * @implements {ClientApi}
 */
export class Client {
  /**
   * @param {string} url
   * @param {ConnectOptions} [options]
   */
  constructor(url, options = {}) {
    this.url = url;
    this.userId = null;
    this.name = null;
    this.connectionId = null;
    this.heartbeatInterval = 25_000; // ms; the server's value once connected
    /** @type {ClientApi["connectionState"]} */
    this.connectionState = "connecting";
    this.lostReason = null;
    this._own = new SeatView(); // the seat this client took: created, joined, or its live session
    /** @type {Record<string, SeatView>} */
    this.watching = {}; // code -> a guardian's seat the server gave it in a ward's live session
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== "function") {
      throw new TypeError("no WebSocket: pass options.WebSocket (Node 20: --experimental-websocket or the ws package)");
    }
    this._WebSocket = WS;
    this._hello = {};
    if (options.name != null) this._hello.name = options.name;
    this._token = options.token ?? null; // a string, or a function returning one (or a promise of one)
    this._storage = options.storage === undefined ? defaultStorage() : options.storage ?? new MemoryStorage();
    this._storageKey = options.storageKey ?? `trio-sessions:${url}`;
    this._backoff = { base: 500, cap: 30_000, busy: 5000, giveUpAfter: null, random: Math.random, ...options.backoff };
    this._connectTimeout = options.connectTimeout ?? 10_000;
    this._helloTimeout = options.helloTimeout ?? 10_000;
    this._sendSessionField = options.sendSessionField ?? true;
    this._refs = 0;
    this._link = null;
    this._ready = deferred(); // resolved while a link is up (or once the client is lost)
    this._started = deferred(); // connect()'s answer
    this._startedDone = false;
    this._closing = false;
    this._listeners = new Map();
    this._iterators = new Set();
    /** @type {any[] | null} */
    this._backlog = []; // events before the first listener; null once one attached
    /** @type {(() => void) | null} */
    this._wake = null; // ends the backoff sleep early: close(), or the browser back online
    this._onOnline = () => this._wake?.();
    globalThis.addEventListener?.("online", this._onOnline);
    this._restore();
  }

  // The own seat's view, as properties (the API of a one-seat client).
  get seat() { return this._own.seat; }
  get lastSeq() { return this._own.lastSeq; }
  get session() { return this._own.session; }
  get state() { return this._own.state; }
  get version() { return this._own.version; }

  // ------------------------------------------------------------------ requests

  /** Send any request and resolve with its reply's `data`. */
  async request(type, fields = {}) {
    for (;;) {
      if (this._closing) throw new ConnectionLost("the client is closed");
      if (this.connectionState === ConnectionState.LOST) throw new ConnectionLost(this.lostReason);
      if (this._link) break;
      await this._ready.promise;
    }
    if (this._sendSessionField && this.seat && SESSION_SCOPED.has(type) && !("session" in fields)) {
      fields = { ...fields, session: this.seat.code };
    }
    return this._requestOn(this._link, type, fields);
  }

  /**
   * Open a session as its host (or get back the one this user hosts, unless `fresh` or `another`).
   * @param {{state?: JsonObject, participantsCanWriteState?: boolean, fresh?: boolean, another?: boolean, allowedUsers?: string[], anonymous?: boolean, meta?: JsonObject}} [options]
   */
  createSession({ state, participantsCanWriteState, fresh, another, allowedUsers, anonymous, meta } = {}) {
    const fields = {};
    if (state !== undefined) fields.state = state;
    if (participantsCanWriteState !== undefined) fields.participants_can_write_state = participantsCanWriteState;
    if (fresh !== undefined) fields.fresh = fresh;
    if (another !== undefined) fields.another = another;
    if (allowedUsers !== undefined) fields.allowed_users = allowedUsers;
    if (anonymous !== undefined) fields.anonymous = anonymous;
    if (meta !== undefined) fields.meta = meta;
    return this.request("session:create", fields);
  }

  /**
   * Join a session by code; resolves with the seat and the session's snapshot.
   * @param {string} code
   * @param {{meta?: JsonObject}} [options]
   */
  join(code, { meta } = {}) {
    return this.request("session:join", meta === undefined ? { code } : { code, meta });
  }

  /**
   * Go live as a ward: a session only this user's guardians watch (the server seats them).
   * Resolves with the host seat, `guardians` and `connected_guardians`; a `live:started` event follows.
   * @param {{state?: JsonObject, meta?: JsonObject}} [options]
   */
  startLive({ state, meta } = {}) {
    const fields = {};
    if (state !== undefined) fields.state = state;
    if (meta !== undefined) fields.meta = meta;
    return this.request("live:start", fields);
  }

  /** Ward: end the live session (everyone gets `session:closed`, reason `manual_stop`). */
  async stopLive() { await this.request("live:stop"); }

  /** Give up the seat now (the host leaving closes the session). */
  async leave() { await this.request("session:leave"); }

  /** Host: end the session for everyone. */
  async closeSession() { await this.request("session:close"); }

  /**
   * Host: open a room (every participant is a member).
   * @param {string} room
   * @param {{kind?: string, meta?: JsonObject}} [options]
   */
  createRoom(room, { kind, meta } = {}) {
    const fields = { room };
    if (kind !== undefined) fields.kind = kind;
    if (meta !== undefined) fields.meta = meta;
    return this.request("session:createRoom", fields);
  }

  /** Host: close a room. */
  async closeRoom(room) { await this.request("session:closeRoom", { room }); }

  /** Relay `data` to the room's other members; resolves with the message's `seq`. */
  async send(room, data) { return (await this.request("room:message", { room, data })).seq; }

  /**
   * Replace the session state; resolves with the new version (`conflict` if stale).
   * @param {JsonObject} state
   * @param {{expectedVersion?: number}} [options]
   */
  async setState(state, { expectedVersion } = {}) {
    const fields = expectedVersion === undefined ? { state } : { state, expected_version: expectedVersion };
    return (await this.request("state:set", fields)).version;
  }

  /**
   * Amend the session state with a JSON merge patch; resolves with the new version.
   * @param {JsonObject} patch
   * @param {{expectedVersion?: number}} [options]
   */
  async patchState(patch, { expectedVersion } = {}) {
    const fields = expectedVersion === undefined ? { patch } : { patch, expected_version: expectedVersion };
    return (await this.request("state:patch", fields)).version;
  }

  /** An application-level round trip. */
  async ping() { await this.request("ping"); }

  /**
   * Hand the server a fresh token for the same user before the current one expires
   * (`auth:refresh`); with a string `token` option it also becomes the token of later hellos.
   * With a `token` function the client does this by itself. Rejects with RequestError
   * (`unauthorized`, `forbidden`: another user's token); the current token then still runs out.
   * @param {string} token
   */
  async refreshToken(token) {
    const data = await this.request("auth:refresh", { token });
    if (typeof this._token !== "function") this._token = token;
    return data;
  }

  _requestOn(link, type, fields) {
    if (link.dead) return Promise.reject(new ConnectionLost("the connection dropped"));
    const ref = ++this._refs;
    const pending = { type, fields, ...deferred() };
    link.pending.set(ref, pending);
    this._sendOn(link, JSON.stringify({ type, ref, ...fields }));
    return pending.promise;
  }

  _sendOn(link, frame) {
    try {
      link.ws.send(frame);
      link.lastSent = now();
      link.probeAt ??= link.lastSent; // the first frame still waiting for an answer
    } catch (error) {
      this._linkDown(link, 1006, `send failed: ${error}`);
    }
  }

  // ------------------------------------------------------------------ the link's life

  async _run() {
    let attempt = 0;
    /** @type {number | null} */
    let downSince = null;
    let newTokenTried = false; // after a refused token: a token function's next one had its try
    while (!this._closing) {
      let outcome;
      try {
        const token = await this._freshToken();
        if (this._closing) break;
        const link = await this._open();
        await this._handshake(link, token);
        attempt = 0;
        downSince = null;
        newTokenTried = false;
        if (!this._startedDone) {
          this._startedDone = true;
          this._started.resolve(this);
        }
        outcome = await link.closed;
      } catch (/** @type {any} */ error) {
        if (this._closing) break;
        if (error.final) { // every seat is gone
          this._giveUp(error.message);
          return;
        }
        if (error instanceof RequestError && error.request === "hello") {
          // unauthorized comes with close 4004, rate_limited (too many connections of this user) with 1013
          const code = error.code === "unauthorized" ? CloseCode.UNAUTHORIZED
            : error.code === "rate_limited" ? CloseCode.TRY_AGAIN_LATER : null;
          if (code === null) {
            this._giveUp(`hello refused: ${error.message}`); // a bad token or name: retrying cannot help
            return;
          }
          outcome = { code, reason: error.message };
        } else if (error instanceof RequestError && (error.code === "seat_busy" || error.code === "unavailable")) {
          // the seat changed hands a moment ago, or a cluster is recovering from a Redis outage
          await this._sleep(Number(error.details.retry_after_ms) || this._backoff.base);
          continue;
        } else {
          outcome = { code: error.closeCode ?? 1006, reason: error.message };
        }
      }
      if (this._closing) break;
      const final = this._final(outcome, newTokenTried);
      if (final) {
        this._giveUp(final, outcome.code);
        return;
      }
      if (outcome.code === CloseCode.UNAUTHORIZED) newTokenTried = true;
      const t = now();
      if (downSince === null) {
        downSince = t;
        if (this._startedDone) {
          this._setConnection(ConnectionState.RECONNECTING, { code: outcome.code, reason: outcome.reason });
        }
      }
      const limit = this._backoff.giveUpAfter;
      if (limit != null && t - downSince >= limit) {
        this._giveUp(`no connection for ${limit} ms`);
        return;
      }
      await this._sleep(backoffDelay(attempt++, this._backoff, outcome.code === CloseCode.TRY_AGAIN_LATER));
    }
  }

  /** Why a link that ended with `outcome` ends the client for good; null to reconnect. */
  _final({ code, reason }, newTokenTried) {
    const renewable = typeof this._token === "function";
    if (code === REPLACED) return "replaced by a newer connection";
    if (code === CloseCode.UNAUTHORIZED && !(renewable && !newTokenTried)) return `hello refused: ${reason}`;
    if (code === CloseCode.TOKEN_EXPIRED && !renewable) return "token expired, and no token function to get a fresh one";
    return null;
  }

  /** The token for the next hello or refresh: the `token` function's (bounded by helloTimeout), else the string. */
  async _freshToken() {
    const source = this._token;
    if (typeof source !== "function") return source;
    const token = await within(Promise.resolve().then(source), this._helloTimeout, "token from the token function");
    if (typeof token !== "string" || !token) throw new ConnectionLost(`the token function returned ${token}, not a token`);
    return token;
  }

  _open() {
    return new Promise((resolve, reject) => {
      const fail = (why) => reject(Object.assign(new ConnectionLost(`cannot connect to ${this.url}: ${why}`), { closeCode: 1006 }));
      let ws;
      try {
        ws = new this._WebSocket(this.url);
      } catch (/** @type {any} */ error) {
        fail(error.message);
        return;
      }
      const closed = deferred();
      const link = {
        ws, dead: false, opened: false, pending: new Map(), timer: /** @type {any} */ (null), lastHeard: now(), lastSent: now(), probeAt: /** @type {number | null} */ (null),
        refreshTimer: /** @type {any} */ (null), expiresAt: Infinity, closeCode: /** @type {number | null} */ (null),
        closed: closed.promise, onClosed: closed.resolve, failOpen: fail,
      };
      link.timer = setTimeout(() => this._linkDown(link, 1006, `no connection within ${this._connectTimeout} ms`), this._connectTimeout);
      ws.onopen = () => {
        clearTimeout(link.timer);
        link.opened = true;
        link.lastHeard = link.lastSent = now();
        resolve(link);
      };
      // A close event should follow an error; some implementations (Node 20's) skip it when
      // the connection fails before it opens.
      ws.onerror = () => { if (!link.opened) this._linkDown(link, 1006, "connection failed"); };
      ws.onclose = (event) => this._linkDown(link, event.code, event.reason || `closed with ${event.code}`);
      ws.onmessage = (event) => this._onFrame(link, event.data);
      this._opening = link;
    });
  }

  /** `hello`, then one `session:resume` per seat held. */
  async _handshake(link, token) {
    const timer = setTimeout(() => this._linkDown(link, 1006, "hello timeout"), this._helloTimeout);
    let refused = null;
    let resumed = false;
    try {
      await this._requestOn(link, "hello", token == null ? this._hello : { ...this._hello, token });
      const gone = [];
      for (const view of [this._own, ...Object.values(this.watching)]) {
        const seat = view.seat;
        if (!seat) continue;
        try {
          await this._requestOn(link, "session:resume", { token: seat.token, last_seq: view.lastSeq, epoch: seat.epoch });
          resumed = true;
        } catch (/** @type {any} */ error) {
          // The server may have given this seat back already, with a new token: it seats a
          // guardian's connection in its wards' live sessions at hello (guardian:liveStarted).
          if (view.seat?.token !== seat.token) continue;
          if (!(error instanceof RequestError && SEAT_GONE.has(error.code))) throw error;
          this._forget(view);
          gone.push({ seat, reason: `resume refused: ${error.code}` });
        }
      }
      // A refused seat alone ends (seat:ended) while others are held. When none is left: seats
      // remembered from storage (a reload after the session ended) are no loss, the page starts
      // unseated; on a reconnect the client is lost.
      const held = resumed || this.seat || Object.keys(this.watching).length;
      for (const { seat, reason } of gone) {
        if (held) this._emit({ type: "seat:ended", session: seat.code, reason });
        else if (this._startedDone) throw Object.assign(new ConnectionLost(reason), { final: true });
        else refused = reason;
      }
    } catch (/** @type {any} */ error) {
      this._linkDown(link, 1006, error.message);
      if (!(error instanceof RequestError)) error.closeCode ??= link.closeCode; // e.g. 1013 before hello
      throw error;
    } finally {
      clearTimeout(timer);
    }
    if (link.dead) throw new ConnectionLost("the connection dropped");
    if (!resumed) this._setConnection(ConnectionState.CONNECTED, refused ? { reason: refused } : {});
    this._link = link;
    this._ready.resolve();
    this._beat(link);
  }

  /**
   * Ping when idle; a link silent for two heartbeat intervals is dead. Silence counts only while
   * something sent waits for an answer for an interval: a background tab whose timers were
   * throttled sends a ping when it wakes rather than dropping a link that is fine.
   */
  _beat(link) {
    if (link.dead) return;
    const interval = this.heartbeatInterval;
    const t = now();
    const deadline = link.probeAt === null ? Infinity : Math.max(link.probeAt + interval, link.lastHeard + 2 * interval);
    if (t >= deadline) {
      this._linkDown(link, 1006, "no heartbeat");
      return;
    }
    if (t >= link.lastSent + interval) this._sendOn(link, PING);
    const next = Math.min(link.lastSent + interval, link.probeAt === null ? Infinity : Math.max(link.probeAt + interval, link.lastHeard + 2 * interval));
    link.timer = setTimeout(() => this._beat(link), Math.max(5, next - now()));
  }

  /** The server says the link's token runs out at `expiresAt` (ISO 8601; null: never): time its refresh. */
  _armExpiry(link, expiresAt) {
    clearTimeout(link.refreshTimer);
    link.expiresAt = expiresAt == null ? Infinity : Date.parse(expiresAt);
    if (expiresAt == null || typeof this._token !== "function" || link.dead) return;
    // A token already past its expiry (accepted within the server's leeway, closed with 4005
    // when that runs out) is not refreshed: the same token again would make a refresh loop.
    const left = link.expiresAt - now();
    if (left <= 0) return;
    link.refreshTimer = setTimeout(() => this._refresh(link), Math.min(MAX_TIMER, REFRESH_AT * left));
  }

  /** Send `auth:refresh` with a fresh token from the token function; retry while there is time. */
  async _refresh(link) {
    try {
      const token = await this._freshToken();
      await this._requestOn(link, "auth:refresh", { token }); // its reply re-arms the timer
    } catch (/** @type {any} */ error) {
      if (link.dead) return; // the next link says hello with a fresh token
      const left = link.expiresAt - now();
      if (left <= MIN_REFRESH_RETRY) return; // it expires (4005) and the client reconnects
      link.refreshTimer = setTimeout(() => this._refresh(link), Math.min(MAX_TIMER, Math.max(MIN_REFRESH_RETRY, REFRESH_AT * left)));
    }
  }

  /** The link is over (closed, timed out or given up): fail its requests, detach, report. */
  _linkDown(link, code, reason = "") {
    if (link.dead) return;
    link.dead = true;
    link.closeCode = code;
    clearTimeout(link.timer);
    clearTimeout(link.refreshTimer);
    if (!link.opened) link.failOpen(reason);
    const { ws } = link;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => {};
    try {
      if (ws.readyState <= 1) ws.close(1000);
    } catch { /* already closing */ }
    for (const pending of link.pending.values()) {
      pending.reject(new ConnectionLost(`the connection dropped before the reply to ${pending.type}`));
    }
    link.pending.clear();
    if (this._link === link) {
      this._link = null;
      this._ready = deferred();
    }
    link.onClosed({ code, reason });
  }

  _giveUp(reason, code = undefined) {
    globalThis.removeEventListener?.("online", this._onOnline);
    this.lostReason = reason;
    this._setConnection(ConnectionState.LOST, code === undefined ? { reason } : { reason, code });
    this._ready.resolve();
    if (!this._startedDone) {
      this._startedDone = true;
      this._started.reject(new ConnectionLost(reason, code));
    }
    for (const iterator of this._iterators) iterator.end();
  }

  _sleep(ms) {
    return new Promise((/** @type {(value?: any) => void} */ resolve) => {
      const timer = setTimeout(done, ms);
      function done() { clearTimeout(timer); resolve(); }
      this._wake = done;
    });
  }

  /** Close the link (WebSocket close 1000) and stop reconnecting. Safe to call twice. */
  close() {
    if (this._closing) return Promise.resolve();
    this._closing = true;
    this._wake?.();
    globalThis.removeEventListener?.("online", this._onOnline);
    const link = this._link ?? this._opening;
    this._ready.resolve();
    if (!this._startedDone) {
      this._startedDone = true;
      this._started.reject(new ConnectionLost("closed before connecting"));
    }
    for (const iterator of this._iterators) iterator.end();
    if (!link || link.dead) return Promise.resolve();
    return new Promise((/** @type {(value?: any) => void} */ resolve) => {
      const { ws } = link;
      const timer = setTimeout(finish, 1000);
      function finish() { clearTimeout(timer); resolve(); }
      this._linkDown(link, 1000, "closed by the client");
      ws.onclose = finish;
    });
  }

  // ------------------------------------------------------------------ frames

  _onFrame(link, data) {
    if (link.dead) return;
    link.lastHeard = now();
    link.probeAt = null;
    let message;
    try {
      message = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch {
      return;
    }
    if (message.type === "reply") this._onReply(link, message);
    else if (message.type !== "pong") this._onEvent(message);
  }

  _onReply(link, reply) {
    const pending = link.pending.get(reply.ref);
    if (!pending) {
      if (!reply.ok) this._emit({ type: "error", error: reply.error }); // a request sent without ref
      return;
    }
    link.pending.delete(reply.ref);
    if (!reply.ok) {
      const { code, message = "", ...details } = reply.error ?? {};
      pending.reject(new RequestError(code, message, details, pending.type));
      return;
    }
    this._apply(link, pending, reply.data ?? {});
    pending.resolve(reply.data ?? {});
  }

  /** The seat a request was for: the one its `session` names, else the own seat. */
  _viewFor(code) {
    if (code == null) return this._own;
    return this._viewOf(String(code).toUpperCase());
  }

  /** The seat held in session `code`, if any. */
  _viewOf(code) {
    if (this._own.seat?.code === code) return this._own;
    return this.watching[code] ?? null;
  }

  /** Take in what a successful reply says about this client's seats, positions and state. */
  _apply(link, { type, fields }, data) {
    const view = this._viewFor(fields.session);
    switch (type) {
      case "hello":
        this.userId = data.user_id;
        this.name = data.name;
        this.connectionId = data.connection_id;
        this.heartbeatInterval = Number(data.heartbeat_interval) * 1000 || this.heartbeatInterval;
        this._armExpiry(link, data.expires_at);
        return;
      case "auth:refresh":
        this._armExpiry(link, data.expires_at);
        return;
      case "session:create":
      case "session:join":
      case "live:start":
        this._own.seated(data);
        break;
      case "session:resume":
        this._onResumed(fields, data);
        return;
      case "room:message":
        if (view) view.lastSeq = Math.max(view.lastSeq, data.seq);
        break;
      case "session:leave":
        if (view) this._forget(view);
        return;
      case "state:set":
        if (view && data.version > view.version) [view.state, view.version] = [fields.state, data.version];
        break;
      case "state:patch":
        if (view && data.version === view.version + 1) {
          [view.state, view.version] = [mergePatch(view.state, fields.patch), data.version];
        }
        break;
      default:
        return;
    }
    this._persist();
  }

  _onResumed(fields, data) {
    const view = [this._own, ...Object.values(this.watching)].find((v) => v.seat?.token === fields.token);
    if (!view) return; // given up, or given back by the server, meanwhile
    view.resumed(data);
    this._persist();
    const snapshot = data.recovered ? null : data;
    this._setConnection(ConnectionState.RESUMED, {
      recovered: data.recovered, replayed: data.replayed, seq: data.seq, snapshot, session: data.code,
    });
    if (!data.recovered) {
      this._emit({ type: "resynced", state: view.state, version: view.version, session: view.session, snapshot: data });
    }
  }

  _onEvent(event) {
    if (event.type === "guardian:liveStarted") { // the server seated this connection as a guardian
      const view = (this.watching[event.session] ??= new SeatView());
      view.seated(event, { wardId: event.ward_id });
      this._persist();
    } else if (event.type === "seat:ended") { // taken over by a newer connection of this user
      const view = this._viewOf(event.session);
      if (view) this._forget(view);
    } else if (typeof event.session === "string" && Number.isInteger(event.seq)) {
      const view = this._viewOf(event.session);
      if (view) {
        view.observe(event);
        if (event.type === "session:closed") this._forget(view);
        else this._persist();
      }
    }
    this._emit(event);
  }

  // ------------------------------------------------------------------ storage

  _restore() {
    let saved = null;
    try {
      saved = JSON.parse(this._storage?.getItem(this._storageKey) ?? "null");
    } catch { /* unreadable: start unseated */ }
    if (saved?.seat?.token) this._own.restore(saved);
    for (const [code, watched] of Object.entries(saved?.watching ?? {})) {
      if (!watched?.seat?.token) continue;
      this.watching[code] = new SeatView();
      this.watching[code].restore(watched);
    }
  }

  _persist() {
    const watching = Object.fromEntries(Object.entries(this.watching).map(([code, view]) => [code, view.saved()]));
    try {
      if (!this._own.seat && !Object.keys(watching).length) this._storage?.removeItem(this._storageKey);
      else this._storage?.setItem(this._storageKey, JSON.stringify({ ...this._own.saved(), watching }));
    } catch { /* quota or blocked: the in-memory seats still resume */ }
  }

  /** A seat is gone (left, closed, replaced, refused): forget it, here and in storage. */
  _forget(view) {
    if (view === this._own) this._own.seat = null;
    else if (view.seat) delete this.watching[view.seat.code];
    this._persist();
  }

  // ------------------------------------------------------------------ events

  _setConnection(state, details = {}) {
    this.connectionState = state;
    this._emit({ type: "connection", state, ...details });
  }

  /**
   * Listen for events of `type` (a server event type, "connection", "resynced", "error", or
   * "*" for all). Returns a function that removes the listener.
   */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    this._attached();
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  /** Every event from now on (and any held before the first listener), in order. */
  events() {
    /** @type {any[]} */
    const queue = [];
    /** @type {((result: IteratorResult<any>) => void)[]} */
    const waiters = [];
    /** @type {IteratorReturnResult<undefined>} */
    const finished = { value: undefined, done: true };
    let done = false;
    const iterator = {
      push(event) {
        const waiter = waiters.shift();
        if (waiter) waiter({ value: event, done: false });
        else queue.push(event);
      },
      end() {
        done = true;
        for (const waiter of waiters.splice(0)) waiter(finished);
      },
      next: () => {
        if (queue.length) return Promise.resolve({ value: queue.shift(), done: false });
        if (done) return Promise.resolve(finished);
        return new Promise((resolve) => waiters.push(resolve));
      },
      return: () => {
        this._iterators.delete(iterator);
        iterator.end();
        queue.length = 0;
        return Promise.resolve(finished);
      },
      [Symbol.asyncIterator]() { return this; },
    };
    if (this._closing || this.connectionState === ConnectionState.LOST) done = true;
    this._iterators.add(iterator);
    this._attached();
    return iterator;
  }

  [Symbol.asyncIterator]() { return this.events(); }

  _attached() {
    const backlog = this._backlog;
    if (!backlog) return;
    this._backlog = null;
    if (backlog.length) queueMicrotask(() => backlog.forEach((event) => this._dispatch(event)));
  }

  _emit(event) {
    if (this._backlog) {
      if (this._backlog.length < BACKLOG_LIMIT) this._backlog.push(event);
      return;
    }
    this._dispatch(event);
  }

  _dispatch(event) {
    for (const iterator of this._iterators) iterator.push(event);
    for (const key of [event.type, "*"]) {
      for (const listener of this._listeners.get(key) ?? []) {
        try {
          listener(event);
        } catch (error) {
          setTimeout(() => { throw error; }); // like a DOM listener: reported, the client goes on
        }
      }
    }
  }
}

/**
 * Connect to `url` (`ws://HOST:PORT/ws`) and keep connected until `close()`. Resolves once the
 * first link is up (resuming the seats remembered in storage); rejects with ConnectionLost only
 * if that never happens within `backoff.giveUpAfter` ms, or the server refuses the token.
 */
export function connect(url, options = {}) {
  const client = new Client(url, options);
  client._run();
  return client._started.promise;
}
