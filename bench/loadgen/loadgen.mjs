// The benchmarks' load generator: connects every client of a shape to one server, then runs
// rate phases on command, so that all servers are measured by the same, fast client.
//
//   node loadgen.mjs '{"url": "...", "dialect": "trio-sessions|relay|socket.io",
//                      "groups": 10, "members": 50, "messageSize": 64}'
// stdin, one JSON command per line:  {"cmd": "phase", "rate": <sends/s per client>,
//                                     "duration": <s>, "drain": <s>}   or   {"cmd": "quit"}
// stdout, one JSON line per answer: {"ready": n, "errors": n} once connected, then per phase
// {sent, expected, delivered, p50, p99, max (ms), cpu (share of a core while loaded), lag}.
import { WebSocket } from "ws";
import readline from "node:readline";

const config = JSON.parse(process.argv[2]);
const pad = "x".repeat(Math.max(0, (config.messageSize ?? 64) - 24));
let phase = 0;
let stats = null;

const dialects = {
  "trio-sessions": {
    async join(client, group, member) {
      await client.request({ type: "hello", name: `bench-${group.index}-${member}` });
      if (member === 0) {
        group.code = (await client.request({ type: "session:create" })).code;
        await client.request({ type: "session:createRoom", room: "r0" });
        group.resolve();
      } else {
        await group.ready;
        await client.request({ type: "session:join", code: group.code });
      }
    },
    message: (group, data) => JSON.stringify({ type: "room:message", room: "r0", data }),
    delivered(text) {
      if (!text.startsWith('{"type":"room:message"')) return null;
      return JSON.parse(text).data;
    },
  },
  relay: {
    async join(client, group) {
      client.ws.send(JSON.stringify({ join: `g${group.index}r0` }));
    },
    message: (group, data) => JSON.stringify({ room: `g${group.index}r0`, data }),
    delivered: (text) => JSON.parse(text).data,
  },
  "socket.io": {
    async join(client, group) {
      await client.next((t) => t.startsWith("0"));
      client.ws.send("40");
      await client.next((t) => t.startsWith("40"));
      client.ws.send(`421${JSON.stringify(["join", `g${group.index}r0`])}`);
      await client.next((t) => t.startsWith("431"));
    },
    message: (group, data) => "42" + JSON.stringify(["msg", { room: `g${group.index}r0`, data }]),
    delivered(text, client) {
      if (text === "2") { client.ws.send("3"); return null; }  // engine.io ping
      if (!text.startsWith('42["msg"')) return null;
      return JSON.parse(text.slice(2))[1].data;
    },
  },
};
const dialect = dialects[config.dialect];

class Client {
  constructor(group) {
    this.group = group;
    this.waiters = [];
    this.refs = 0;
  }
  open() {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(config.url, { perMessageDeflate: false });
      this.ws.on("open", resolve);
      this.ws.on("error", reject);
      this.ws.on("message", (data) => this.onMessage(data.toString()));
      this.ws.on("close", () => { if (stats) stats.closed++; });
    });
  }
  next(match) {
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }
  async request(message) {
    const ref = ++this.refs;
    this.ws.send(JSON.stringify({ ...message, ref }));
    const reply = JSON.parse(await this.next((t) => t.startsWith('{"type":"reply"') && JSON.parse(t).ref === ref));
    if (!reply.ok) throw new Error(reply.error.code);
    return reply.data;
  }
  onMessage(text) {
    if (this.waiters.length) {
      const i = this.waiters.findIndex((w) => w.match(text));
      if (i >= 0) { this.waiters.splice(i, 1)[0].resolve(text); return; }
    }
    if (!stats) return;
    const data = dialect.delivered(text, this);
    if (data === null) return;
    const bar = data.indexOf("|");
    if (Number(data.slice(0, bar)) !== phase) return;
    stats.delivered++;
    stats.latencies.push(performance.now() - Number(data.slice(bar + 1, data.indexOf("|", bar + 1))));
  }
}

const groups = [];
const clients = [];
let errors = 0;
for (let g = 0; g < config.groups; g++) {
  const group = { index: g, size: config.members, connected: 0 };
  group.ready = new Promise((resolve) => (group.resolve = resolve));
  groups.push(group);
}
async function connect(group, member) {
  const client = new Client(group);
  try {
    await client.open();
    await dialect.join(client, group, member);
    group.connected++;
    clients.push(client);
  } catch (error) {
    errors++;
    if (member === 0) group.resolve();
  }
}
// hosts first (their sessions must exist), then everyone else, 200 at a time
const order = [];
for (const group of groups) order.push([group, 0]);
for (const group of groups) for (let m = 1; m < config.members; m++) order.push([group, m]);
for (let i = 0; i < order.length; i += 200) {
  await Promise.all(order.slice(i, i + 200).map(([group, member]) => connect(group, member)));
}
await new Promise((r) => setTimeout(r, 300));  // let the join events settle
console.log(JSON.stringify({ ready: clients.length, errors }));

function runPhase({ rate, duration, drain }) {
  phase++;
  stats = { sent: 0, expected: 0, delivered: 0, latencies: [], closed: 0, lag: 0 };
  const started = performance.now();
  const cpu = process.cpuUsage();
  const total = rate * clients.length;  // sends per second over all clients
  let next = 0;  // round-robin cursor
  let due = 0;
  let last = started;
  return new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      stats.lag = Math.max(stats.lag, now - last - 5);
      due += (total * (now - last)) / 1000;
      last = now;
      while (due >= 1) {
        due--;
        const client = clients[next++ % clients.length];
        if (client.ws.readyState !== WebSocket.OPEN) continue;
        client.ws.send(dialect.message(client.group, `${phase}|${performance.now()}|${pad}`));
        stats.sent++;
        stats.expected += client.group.connected - 1;
      }
      if (now - started < duration * 1000) {
        setTimeout(tick, 5);
        return;
      }
      const used = process.cpuUsage(cpu);
      const share = (used.user + used.system) / 1e6 / duration;
      setTimeout(() => {
        const l = stats.latencies.sort((a, b) => a - b);
        const at = (q) => (l.length ? l[Math.min(l.length - 1, Math.floor(q * l.length))] : null);
        resolve({
          sent: stats.sent, expected: stats.expected, delivered: stats.delivered,
          p50: at(0.5), p99: at(0.99), max: l.length ? l[l.length - 1] : null,
          cpu: share, lag: stats.lag, closed: stats.closed,
        });
      }, drain * 1000);
    };
    setTimeout(tick, 5);
  });
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const command = JSON.parse(line);
  if (command.cmd === "quit") break;
  console.log(JSON.stringify(await runPhase(command)));
}
for (const client of clients) client.ws.terminate();
process.exit(0);
