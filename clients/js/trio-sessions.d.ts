// Types for trio-sessions.js, the trio-sessions JavaScript client. Guide: docs/js-client.md.
// Wire names (snake_case) are kept in what the server sends; the client's own API is camelCase.

/** What the client's connection is doing (`connecting` only before the first link is up). */
export type ConnectionStateName = "connected" | "reconnecting" | "resumed" | "lost";

export declare const ConnectionState: Readonly<{
  CONNECTED: "connected";
  RECONNECTING: "reconnecting";
  RESUMED: "resumed";
  LOST: "lost";
}>;

/** The close code for "this seat was taken by a newer connection": the client never reconnects. */
export declare const REPLACED: 4002;

/** The close codes the client acts on (docs/reconnection.md, docs/js-client.md). */
export declare const CloseCode: Readonly<{
  /** Too many connections from this address or user: reconnect after a longer backoff (`backoff.busy`). */
  TRY_AGAIN_LATER: 1013;
  /** Another connection has the seat: never reconnect. */
  REPLACED: 4002;
  /** The token was refused: never again with the same token (a `token` function gets one more try). */
  UNAUTHORIZED: 4004;
  /** The token expired: reconnect with a fresh one from the `token` function (else `lost`). */
  TOKEN_EXPIRED: 4005;
}>;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** The subset of the Web Storage API the client uses (sessionStorage, localStorage, your own). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface BackoffOptions {
  /** Milliseconds; attempt n waits uniform [0, min(cap, base * 2^n)]. Default 500. */
  base?: number;
  /** Milliseconds. Default 30000. */
  cap?: number;
  /** Milliseconds added to the delay after a 1013 close (try again later). Default 5000. */
  busy?: number;
  /** Milliseconds without a connection before giving up (`lost`); default null: never. */
  giveUpAfter?: number | null;
  /** A [0, 1) generator, for reproducible delays. Default Math.random. */
  random?: () => number;
}

/** A WebSocket constructor: the browser's, Node 22's global, or the `ws` package's. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
}

/** Returns a fresh hello token (e.g. a JWT from your backend); may be async. */
export type TokenFunction = () => string | Promise<string>;

export interface ConnectOptions {
  /**
   * Identity token sent in `hello`: the same token is the same user (one seat, one hosted session).
   * A function is called for a fresh token before every `hello` (each connect and reconnect) and,
   * when the token expires, after 80% of its remaining life to send `auth:refresh`.
   */
  token?: string | TokenFunction;
  /** Display name sent in `hello` (1-64 characters). */
  name?: string;
  /** Where the seat (resume token, epoch, lastSeq) is kept. Default: sessionStorage, or memory. `null`: memory only. */
  storage?: StorageLike | null;
  /** The storage key. Default `trio-sessions:<url>`. */
  storageKey?: string;
  /** The WebSocket implementation. Default: globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  backoff?: BackoffOptions;
  /** Milliseconds for the WebSocket to open. Default 10000. */
  connectTimeout?: number;
  /** Milliseconds for the `hello` (and `session:resume`) replies. Default 10000. */
  helloTimeout?: number;
  /** Send `session` (the code) on session-scoped requests, so each reaches this seat's session. Default true. */
  sendSessionField?: boolean;
}

export type Role = "host" | "participant" | "guardian";

export interface Participant {
  id: string;
  name: string;
  role: Role;
  presence: "online" | "away";
  meta?: JsonObject;
}

export interface Room {
  name: string;
  kind: string;
  members: string[];
}

/** A seat this client holds: what resuming needs. */
export interface Seat {
  token: string;
  epoch: string;
  code: string;
  participantId: string;
  role: Role;
  /** For a guardian's seat in a live session: the ward's user id. */
  wardId?: string;
}

/** The session as this client knows it, kept current from events. */
export interface SessionView {
  code: string;
  status: "active" | "hibernating" | "closed";
  hostId: string;
  startedAt: string;
  participants: Record<string, Participant>;
  rooms: Record<string, Room>;
}

/** The reply to `session:create` / `session:join`: the seat and a snapshot. */
export interface SeatReply {
  participant_id: string;
  role: Role;
  resume_token: string;
  code: string;
  status: "active" | "hibernating";
  host_id: string;
  participants: Participant[];
  rooms: Room[];
  state: JsonObject;
  version: number;
  seq: number;
  epoch: string;
  started_at: string;
  /** `"session"`, or `"live"` for a ward's live session. */
  kind?: "session" | "live";
  meta?: JsonObject;
  reused?: boolean;
  [field: string]: unknown;
}

/** The reply to `live:start`: the ward's host seat, who may watch, and who was seated at once. */
export interface LiveReply extends SeatReply {
  guardians: string[];
  connected_guardians: string[];
}

/** The reply to `auth:refresh`. */
export interface AuthReply {
  user_id: string;
  /** When the new token expires (ISO 8601); absent if it does not. */
  expires_at?: string;
}

/** A guardian's seat that the server gave this client in a ward's live session, kept current like the own seat. */
export interface WatchedSession {
  readonly seat: Seat & { role: "guardian"; wardId: string };
  readonly lastSeq: number;
  readonly session: SessionView;
  readonly state: JsonObject | null;
  readonly version: number;
}

export interface RoomReply {
  name: string;
  kind: string;
  members: string[];
  created: boolean;
}

interface EventBase<T extends string> {
  type: T;
  session: string;
  seq: number;
  at: string;
}

export type ServerEvent =
  | (EventBase<"session:participantJoined"> & { participant: Participant })
  | (EventBase<"session:participantLeft"> & { participant_id: string; reason: "left" | "timeout" | "removed" | string })
  | (EventBase<"session:participantAway"> & { participant_id: string; until: string })
  | (EventBase<"session:participantBack"> & { participant_id: string })
  | (EventBase<"session:hibernating"> & { until: string; grace_s: number })
  | EventBase<"session:resumed">
  | (EventBase<"session:roomCreated"> & { room: string; kind: string; members: string[] })
  | (EventBase<"session:roomClosed"> & { room: string })
  | (EventBase<"room:message"> & { room: string; from: string; data: Json })
  | (EventBase<"state:updated"> & { version: number; by: string; state?: JsonObject; patch?: JsonObject })
  | (EventBase<"session:closed"> & { reason: string; duration_s: number; started_at: string; ended_at: string });

/** Frames for this connection or user, outside every session's sequence (no `seq`, never replayed). */
export type Notice =
  /** A seat of this client is gone: taken over by a newer connection (`replaced`), or its resume was refused (`resume refused: <code>`) while other seats are held. */
  | { type: "seat:ended"; session: string; reason: string }
  /** To the ward, after the `live:start` reply. */
  | { type: "live:started"; session: string; guardians: string[]; connected_guardians: string[] }
  /** The server seated this client as a guardian in `ward_id`'s live session (`session`): now in `client.watching`. */
  | (SeatReply & { type: "guardian:liveStarted"; role: "guardian"; ward_id: string; session: string })
  /** For this user, on every connection of theirs (an invitation, a reminder, ...). */
  | { type: "user:notice"; topic: string; data: Json; at: string };

/** A change of connection state, delivered in order with the session's events. */
export interface ConnectionEvent {
  type: "connection";
  state: ConnectionStateName;
  /** After `resumed`: whether the `replayed` missed events follow (false: rebuild from `snapshot`). */
  recovered?: boolean;
  replayed?: number;
  /** After `resumed`: the position after the resume. */
  seq?: number;
  /** After `resumed`: the code of the session whose seat was resumed (one `resumed` per seat). */
  session?: string;
  /** After `resumed` with `recovered: false`: the resume reply, a full snapshot. */
  snapshot?: Record<string, unknown> | null;
  /** Why: for `lost`, and for `connected` when a stored seat could not be resumed. */
  reason?: string;
  /** For `reconnecting`: the close code of the link that dropped (1006: no close frame); for `lost`: the close code that ended it (4002, 4004, 4005), if one did. */
  code?: number;
}

/** After `resumed` with `recovered: false`: the state and session to rebuild from (once). */
export interface ResyncedEvent {
  type: "resynced";
  state: JsonObject;
  version: number;
  session: SessionView;
  snapshot: Record<string, unknown>;
}

/** An error the server sent for a request that had no `ref`. */
export interface ErrorEvent {
  type: "error";
  error: { code: string; message: string; [field: string]: unknown };
}

export type ClientEvent = ServerEvent | Notice | ConnectionEvent | ResyncedEvent | ErrorEvent;
export type ClientEventType = ClientEvent["type"];
export type EventOf<T extends ClientEventType> = Extract<ClientEvent, { type: T }>;

/** The server refused a request (`ok: false`). */
export declare class RequestError extends Error {
  constructor(code: string, message: string, details?: Record<string, unknown>, request?: string);
  /** The protocol's error code: `forbidden`, `conflict`, `not_found`, `seat_busy`, ... */
  readonly code: string;
  /** The error's other fields, e.g. `{version}` for `conflict`, `{retry_after_ms}` for `seat_busy`. */
  readonly details: Record<string, unknown>;
  /** The request type that failed. */
  readonly request: string;
}

/** The link dropped before the reply (the request may or may not have applied), or the client is lost or closed. */
export declare class ConnectionLost extends Error {
  constructor(message: string, code?: number);
  /** The close code that ended the client for good, if one did (4002, 4004, 4005). */
  readonly code?: number;
}

/** What a Client offers; the class below implements it (checked against trio-sessions.js by `npm run typecheck`). */
export interface ClientApi {
  readonly url: string;
  userId: string | null;
  name: string | null;
  connectionId: string | null;
  /** Milliseconds: the server's heartbeat interval. */
  heartbeatInterval: number;
  connectionState: ConnectionStateName | "connecting";
  lostReason: string | null;
  /** The seat this client took (created, joined, or its live session as a ward). */
  readonly seat: Seat | null;
  /** Every event of that seat's session up to here has been received (or sent, for own messages). */
  readonly lastSeq: number;
  readonly session: SessionView | null;
  /** The session state, kept current: replies, events and merge patches applied. */
  readonly state: JsonObject | null;
  readonly version: number;
  /** The guardian seats the server gave this client in its wards' live sessions, by session code. */
  readonly watching: Record<string, WatchedSession>;

  request(type: string, fields?: Record<string, unknown>): Promise<any>;
  createSession(options?: {
    state?: JsonObject;
    participantsCanWriteState?: boolean;
    fresh?: boolean;
    /** Open one more session beside those this user hosts (`session_limit` past the server's limit). */
    another?: boolean;
    /** Only these user ids may join (the host always may). */
    allowedUsers?: string[];
    /** Anonymous connections may join. */
    anonymous?: boolean;
    meta?: JsonObject;
  }): Promise<SeatReply>;
  join(code: string, options?: { meta?: JsonObject }): Promise<SeatReply>;
  /** Go live as a ward: the server seats this user's guardians; a `live:started` event follows. */
  startLive(options?: { state?: JsonObject; meta?: JsonObject }): Promise<LiveReply>;
  /** Ward: end the live session. */
  stopLive(): Promise<void>;
  /** `auth:refresh` with a fresh token for the same user (automatic with a token function). */
  refreshToken(token: string): Promise<AuthReply>;
  leave(): Promise<void>;
  closeSession(): Promise<void>;
  createRoom(room: string, options?: { kind?: string; meta?: JsonObject }): Promise<RoomReply>;
  closeRoom(room: string): Promise<void>;
  /** Resolves with the message's `seq`. */
  send(room: string, data: Json): Promise<number>;
  /** Resolves with the new version. */
  setState(state: JsonObject, options?: { expectedVersion?: number }): Promise<number>;
  /** Resolves with the new version. */
  patchState(patch: JsonObject, options?: { expectedVersion?: number }): Promise<number>;
  ping(): Promise<void>;
  /** Close the link (WebSocket close 1000) and stop reconnecting; the seat stays resumable. */
  close(): Promise<void>;

  on(type: string, listener: (event: any) => void): () => void;
  off(type: string, listener: (event: any) => void): void;
  /** Every event from now on, in order; ends when the client is lost or closed. */
  events(): AsyncIterableIterator<ClientEvent>;
}

/** The client; its members are those of `ClientApi` (merged in below), plus typed `on` overloads. */
export declare class Client {
  constructor(url: string, options?: ConnectOptions);
  /** Listen for one event type, or "*" for all. Returns a function that removes the listener. */
  on<T extends ClientEventType>(type: T, listener: (event: EventOf<T>) => void): () => void;
  on(type: "*", listener: (event: ClientEvent) => void): () => void;
  [Symbol.asyncIterator](): AsyncIterableIterator<ClientEvent>;
}
export interface Client extends ClientApi {}

/** Connect and keep connected until `close()`; resolves once the first link is up (resuming a stored seat). */
export declare function connect(url: string, options?: ConnectOptions): Promise<Client>;

/** RFC 7386 JSON merge patch; returns a new value. */
export declare function mergePatch(target: Json | undefined, patch: Json): Json;

/** Milliseconds before reconnect attempt `attempt` (0-based), full jitter. */
export declare function backoffDelay(attempt: number, options?: BackoffOptions): number;

/** A StorageLike in memory: the default where there is no sessionStorage. */
export declare class MemoryStorage implements StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}
