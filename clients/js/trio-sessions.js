// trio-sessions: the JavaScript client. One dependency-free ES module for browsers and Node 20+.
//
// One loop owns the link's life: open (bounded), `hello` (bounded), `session:resume` when the
// client holds a seat, serve, and on a drop back off (exponential, full jitter) and do it again.
// Frames are handled in arrival order, so `lastSeq` is exact at every moment, the `resumed`
// notice precedes the replayed events, and the seat (resume token, epoch, lastSeq) is written
// to storage (sessionStorage by default) as it changes, so a reloaded page resumes its seat.
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
const SEAT_GONE = new Set(["unauthorized", "session_closed", "not_found"]);
const SESSION_SCOPED = new Set([
  "session:leave", "session:close", "session:createRoom", "session:closeRoom",
  "room:message", "state:set", "state:patch",
]);
const PING = JSON.stringify({ type: "ping" });
const BACKLOG_LIMIT = 10_000; // events held until the first listener attaches
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

/** The link dropped before a reply (the request may or may not have applied), or the client is lost. */
export class ConnectionLost extends Error {
  constructor(message) {
    super(message);
    this.name = "ConnectionLost";
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

/** Milliseconds before reconnect attempt `attempt` (0-based): uniform in [0, min(cap, base * 2^attempt)]. */
/** @param {number} attempt @param {BackoffOptions} [options] */
export function backoffDelay(attempt, { base = 500, cap = 30_000, random = Math.random } = {}) {
  return random() * Math.min(cap, base * 2 ** Math.min(attempt, 32));
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
    this.seat = null; // {token, epoch, code, participantId, role} while seated
    this.lastSeq = 0; // every event up to here has been received (or sent, for own messages)
    this.session = null; // {code, status, hostId, startedAt, participants: {id: ...}, rooms: {name: ...}}
    this.state = null; // the session state, kept current (merge patches applied)
    this.version = 0;
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== "function") {
      throw new TypeError("no WebSocket: pass options.WebSocket (Node 20: --experimental-websocket or the ws package)");
    }
    this._WebSocket = WS;
    this._hello = {};
    if (options.token != null) this._hello.token = options.token;
    if (options.name != null) this._hello.name = options.name;
    this._storage = options.storage === undefined ? defaultStorage() : options.storage ?? new MemoryStorage();
    this._storageKey = options.storageKey ?? `trio-sessions:${url}`;
    this._backoff = { base: 500, cap: 30_000, giveUpAfter: null, random: Math.random, ...options.backoff };
    this._connectTimeout = options.connectTimeout ?? 10_000;
    this._helloTimeout = options.helloTimeout ?? 10_000;
    this._sendSessionField = options.sendSessionField ?? true;
    this._refs = 0;
    this._link = null;
    this._ready = deferred(); // resolved while a link is up (or once the client is lost)
    this._started = deferred(); // connect()'s answer
    this._startedDone = false;
    this._closing = false;
    this._replayLeft = 0; // replayed events still to come after a resume reply
    this._replaySeq = 0; // ... and the position they lead to
    this._replayStatus = null;
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
   * Open a session as its host (or get back the one this user hosts, unless `fresh`).
   * @param {{state?: JsonObject, participantsCanWriteState?: boolean, fresh?: boolean, meta?: JsonObject}} [options]
   */
  createSession({ state, participantsCanWriteState, fresh, meta } = {}) {
    const fields = {};
    if (state !== undefined) fields.state = state;
    if (participantsCanWriteState !== undefined) fields.participants_can_write_state = participantsCanWriteState;
    if (fresh !== undefined) fields.fresh = fresh;
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
    while (!this._closing) {
      let outcome;
      try {
        const link = await this._open();
        await this._handshake(link);
        attempt = 0;
        downSince = null;
        if (!this._startedDone) {
          this._startedDone = true;
          this._started.resolve(this);
        }
        outcome = await link.closed;
      } catch (/** @type {any} */ error) {
        if (this._closing) break;
        if (error instanceof RequestError && error.request === "hello") {
          this._giveUp(`hello refused: ${error.message}`); // a bad token or name: retrying cannot help
          return;
        }
        if (error instanceof RequestError) { // the server refused the resume
          if (SEAT_GONE.has(error.code)) {
            this._forgetSeat();
            this._giveUp(`resume refused: ${error.code}`);
            return;
          }
          if (error.code === "seat_busy") {
            await this._sleep(Number(error.details.retry_after_ms) || this._backoff.base);
            continue;
          }
        }
        outcome = { code: error.closeCode ?? 1006, reason: error.message };
      }
      if (this._closing) break;
      if (outcome.code === REPLACED) {
        this._giveUp("replaced by a newer connection");
        return;
      }
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
      await this._sleep(backoffDelay(attempt++, this._backoff));
    }
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

  async _handshake(link) {
    const timer = setTimeout(() => this._linkDown(link, 1006, "hello timeout"), this._helloTimeout);
    let refused = null;
    let resumed = false;
    try {
      await this._requestOn(link, "hello", this._hello);
      if (this.seat) {
        const { token, epoch } = this.seat;
        try {
          await this._requestOn(link, "session:resume", { token, last_seq: this.lastSeq, epoch });
          resumed = true;
        } catch (/** @type {any} */ error) {
          // A seat remembered from storage (a reload after the session ended) is not a loss:
          // the page starts unseated. On a reconnect the same answer ends the client.
          if (!(error instanceof RequestError && SEAT_GONE.has(error.code) && !this._startedDone)) throw error;
          this._forgetSeat();
          refused = `resume refused: ${error.code}`;
        }
      }
    } catch (/** @type {any} */ error) {
      this._linkDown(link, 1006, error.message);
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

  /** The link is over (closed, timed out or given up): fail its requests, detach, report. */
  _linkDown(link, code, reason = "") {
    if (link.dead) return;
    link.dead = true;
    clearTimeout(link.timer);
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

  _giveUp(reason) {
    globalThis.removeEventListener?.("online", this._onOnline);
    this.lostReason = reason;
    this._setConnection(ConnectionState.LOST, { reason });
    this._ready.resolve();
    if (!this._startedDone) {
      this._startedDone = true;
      this._started.reject(new ConnectionLost(reason));
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
    this._apply(pending, reply.data ?? {});
    pending.resolve(reply.data ?? {});
  }

  /** Take in what a successful reply says about this client's seat, position and state. */
  _apply({ type, fields }, data) {
    switch (type) {
      case "hello":
        this.userId = data.user_id;
        this.name = data.name;
        this.connectionId = data.connection_id;
        this.heartbeatInterval = Number(data.heartbeat_interval) * 1000 || this.heartbeatInterval;
        return;
      case "session:create":
      case "session:join":
        this.seat = { token: data.resume_token, epoch: data.epoch, code: data.code, participantId: data.participant_id, role: data.role };
        this.lastSeq = data.seq;
        this._snapshot(data);
        break;
      case "session:resume":
        this._onResumed(data);
        break;
      case "room:message":
        this.lastSeq = Math.max(this.lastSeq, data.seq);
        break;
      case "session:leave":
        this._forgetSeat();
        return;
      case "state:set":
        if (data.version > this.version) [this.state, this.version] = [fields.state, data.version];
        break;
      case "state:patch":
        if (data.version === this.version + 1) {
          [this.state, this.version] = [mergePatch(this.state, fields.patch), data.version];
        }
        break;
      default:
        return;
    }
    this._persist();
  }

  _onResumed(data) {
    const seat = this.seat;
    this.seat = { ...seat, epoch: data.epoch, code: data.code, participantId: data.participant_id, role: data.role };
    this.state = data.state;
    this.version = data.version;
    if (!data.recovered) {
      this.lastSeq = data.seq;
      this._snapshot(data);
    }
    this._replayLeft = data.replayed;
    this._replaySeq = data.seq;
    this._replayStatus = data.status;
    if (!this._replayLeft) this._replayDone();
    this._persist();
    const snapshot = data.recovered ? null : data;
    this._setConnection(ConnectionState.RESUMED, {
      recovered: data.recovered, replayed: data.replayed, seq: data.seq, snapshot,
    });
    if (!data.recovered) {
      this._emit({ type: "resynced", state: this.state, version: this.version, session: this.session, snapshot: data });
    }
  }

  /** After a resume's replay: this client's own return is not sent to it, so note it here. */
  _replayDone() {
    this.lastSeq = Math.max(this.lastSeq, this._replaySeq);
    const me = this.session?.participants[this.seat?.participantId];
    if (me) me.presence = "online";
    if (this.session && this._replayStatus) this.session.status = this._replayStatus;
  }

  _snapshot(data) {
    this.state = data.state ?? null;
    this.version = data.version ?? 0;
    this.session = {
      code: data.code, status: data.status, hostId: data.host_id, startedAt: data.started_at,
      participants: byKey(data.participants, "id"),
      rooms: byKey(data.rooms, "name"),
    };
  }

  _onEvent(event) {
    const mine = this.seat && event.session === this.seat.code;
    if (mine && Number.isInteger(event.seq)) {
      this.lastSeq = Math.max(this.lastSeq, event.seq);
      if (this._replayLeft) {
        this._track(event);
        if (--this._replayLeft === 0) this._replayDone();
      } else {
        this._track(event);
      }
      if (event.type === "session:closed") this._forgetSeat();
      else this._persist();
    }
    this._emit(event);
  }

  /** Keep `session` (participants, rooms, status) and `state` current from an event. */
  _track(event) {
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

  // ------------------------------------------------------------------ storage

  _restore() {
    let saved = null;
    try {
      saved = JSON.parse(this._storage?.getItem(this._storageKey) ?? "null");
    } catch { /* unreadable: start unseated */ }
    if (saved?.seat?.token) {
      this.seat = saved.seat;
      this.lastSeq = saved.lastSeq ?? 0;
      this.session = saved.session ?? null;
    }
  }

  _persist() {
    if (!this.seat) return;
    try {
      this._storage?.setItem(this._storageKey, JSON.stringify({ seat: this.seat, lastSeq: this.lastSeq, session: this.session }));
    } catch { /* quota or blocked: the in-memory seat still resumes */ }
  }

  _forgetSeat() {
    this.seat = null;
    try {
      this._storage?.removeItem(this._storageKey);
    } catch { /* blocked */ }
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
 * first link is up (resuming a seat remembered in storage); rejects with ConnectionLost only
 * if that never happens within `backoff.giveUpAfter` ms.
 */
export function connect(url, options = {}) {
  const client = new Client(url, options);
  client._run();
  return client._started.promise;
}
