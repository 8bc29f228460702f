// Type-level test (never run): an application's use of trio-sessions.d.ts, checked by `npm run typecheck`.
import { CloseCode, connect, ConnectionLost, RequestError, type ClientEvent } from "../trio-sessions.js";

export async function app(): Promise<void> {
  const client = await connect("ws://127.0.0.1:8765/ws", { name: "Ada", backoff: { base: 250, cap: 10_000 } });
  const seat = await client.createSession({ state: { poll: null }, fresh: true });
  const code: string = seat.code;
  await client.createRoom("poll", { kind: "poll" });
  const seq: number = await client.send("poll", { answer: "B" });
  const version: number = await client.patchState({ open: true }, { expectedVersion: 1 });
  client.on("room:message", (event) => {
    const from: string = event.from;
    console.log(from, event.data, event.seq);
  });
  client.on("connection", (event) => {
    if (event.state === "resumed" && event.recovered === false) console.log(event.snapshot);
  });
  client.on("resynced", (event) => console.log(event.state, event.version, event.session.participants));
  // @ts-expect-error: a room message has no `patch`
  client.on("room:message", (event) => event.patch);
  // @ts-expect-error: a connection state that does not exist
  client.on("connection", (event) => event.state === "offline");
  for await (const event of client) {
    const typed: ClientEvent = event;
    if (typed.type === "state:updated") console.log(typed.version, typed.patch ?? typed.state);
    break;
  }
  try {
    await client.setState({}, { expectedVersion: version });
  } catch (error) {
    if (error instanceof RequestError && error.code === "conflict") console.log(error.details.version);
    else if (error instanceof ConnectionLost) console.log("retry later");
  }
  console.log(code, seq, client.state, client.session?.rooms.poll?.members, client.connectionState);
  await client.close();
}

export async function liveApp(fetchToken: () => Promise<string>): Promise<void> {
  const ward = await connect("ws://127.0.0.1:8765/ws", { token: fetchToken, backoff: { busy: 10_000 } });
  const live = await ward.startLive({ state: { lesson: "maths" } });
  const watchers: string[] = live.connected_guardians;
  ward.on("live:started", (event) => console.log(event.guardians, event.connected_guardians, watchers));
  ward.on("user:notice", (event) => console.log(event.topic, event.data, event.at));
  ward.on("connection", (event) => {
    if (event.state === "lost" && event.code === CloseCode.UNAUTHORIZED) console.log("sign in again");
    if (event.state === "resumed") console.log("resumed the seat in", event.session);
  });
  await ward.refreshToken(await fetchToken());
  await ward.stopLive();
  await ward.createSession({ another: true, allowedUsers: ["u1", "u2"], anonymous: false });

  const guardian = await connect("ws://127.0.0.1:8765/ws", { token: () => "a-token" });
  guardian.on("guardian:liveStarted", (event) => {
    const ward: string = event.ward_id;
    const watched = guardian.watching[event.session];
    console.log(ward, watched?.seat.wardId, watched?.state, watched?.session.participants);
  });
  guardian.on("seat:ended", (event) => console.log(event.session, event.reason));
  // @ts-expect-error: the own seat is read-only, kept by the client
  guardian.seat = null;
  // @ts-expect-error: a token is a string or a function returning one
  await connect("ws://127.0.0.1:8765/ws", { token: 42 });
  await Promise.all([ward.close(), guardian.close()]);
}
