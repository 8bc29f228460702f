"""A real browser (headless Chromium) against the server's own WebSocket layer.

The page joins a session, exchanges 100 KB messages both ways (masked 64-bit-length frames in,
unmasked out), stays quiet through several server heartbeats (the browser answers the pings),
and watches the server close a second socket that never said hello (4001, a clean close).
It reports back as a room message, which the test reads as the session's host. The page comes
from a loopback origin (the same HTTP layer, another port): Chromium keeps pages of opaque
origins such as ``data:`` URLs from opening connections to the local network.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import partial
from pathlib import Path

import pytest
import trio

from transport import Transport, serve_websocket

from .conftest import start_tcp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's package)"
)

PAGE = """<!doctype html><body><script>
const url = "ws://127.0.0.1:%(port)d/ws";
const code = "%(code)s";
let ref = 0;
function next(ws, type) {
  return new Promise(resolve => {
    const listen = e => {
      const m = JSON.parse(e.data);
      if (m.type === type) { ws.removeEventListener("message", listen); resolve(m); }
    };
    ws.addEventListener("message", listen);
  });
}
function request(ws, type, fields) {
  ws.send(JSON.stringify({type, ref: ++ref, ...fields}));
  return next(ws, "reply");
}
(async () => {
  const ws = new WebSocket(url);
  await new Promise(resolve => ws.onopen = resolve);
  await request(ws, "hello", {name: "chromium"});
  await request(ws, "session:join", {code});
  const big = next(ws, "room:message");
  await request(ws, "room:message", {room: "r", data: "b".repeat(100000)});
  const got = await big;
  await new Promise(resolve => setTimeout(resolve, 2500));  // quiet: the server pings
  const silent = new WebSocket(url);  // never says hello
  const closed = await new Promise(resolve => silent.onclose = resolve);
  const report = {
    big: got.data === "h".repeat(100000),
    silent: [closed.code, closed.wasClean, closed.reason],
  };
  await request(ws, "room:message", {room: "r", data: "report " + JSON.stringify(report)});
  ws.close(1000, "bye");
})();
</script></body>"""


async def test_chromium_speaks_to_the_server(nursery: trio.Nursery, tmp_path: Path) -> None:
    harness = await start_tcp(
        nursery,
        heartbeat_interval=0.5,
        hello_timeout=1.0,
        max_message_size=200_000,
        max_state_size=100_000,
    )
    host = await harness.client("host")
    code = (await host.ok("session:create"))["code"]
    await host.ok("session:createRoom", room="r")
    page = (PAGE % {"port": harness.server.port, "code": code}).encode()

    async def no_websocket(transport: Transport) -> None:
        await transport.aclose(1000, "")

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    pages = partial(
        serve_websocket,
        no_websocket,
        listeners,
        max_frame_size=1024,
        send_buffer_size=1024,
        http_routes={
            "/": lambda path: (200, "text/html; charset=utf-8", page) if path == "/" else None
        },
    )
    await nursery.start(pages)
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path}",
        f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/",
    ]
    async with trio.open_nursery() as browser:
        run = partial(
            trio.run_process,
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        browser.start_soon(run)
        host.guard = 30.0  # the browser's start-up
        await host.event("session:roomCreated")
        await host.event("session:participantJoined")
        message = await host.event("room:message")
        assert message["data"] == "b" * 100_000
        await host.ok("room:message", room="r", data="h" * 100_000)
        report = await host.event("room:message")
        browser.cancel_scope.cancel()
    assert report["data"].startswith("report ")
    assert json.loads(report["data"].removeprefix("report ")) == {
        "big": True,
        "silent": [4001, True, "no hello received in time"],
    }
    assert harness.server.counters.heartbeat_timeouts == 0
    away = await host.event("session:participantAway")  # the page's close(1000)
    assert away["participant_id"] == message["from"]
