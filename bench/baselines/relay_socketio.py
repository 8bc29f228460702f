"""Baseline: python-socketio rooms under uvicorn, the Python peer people would pick.

``join`` (with an ack) enters a room; ``msg`` ``{"room", "data"}`` is emitted to the room,
skipping the sender. Engine.IO pings are set far apart so idle benchmark clients need not
answer them.

    python bench/baselines/relay_socketio.py PORT [--stock-gc]

With ``--stock-gc`` the garbage collector keeps Python's defaults, as a deployment that was
not tuned for it would; otherwise it gets the same tuning as every server here.
"""

from __future__ import annotations

import gc
import sys

import socketio
import uvicorn

sio = socketio.AsyncServer(
    async_mode="asgi", ping_interval=600, ping_timeout=600, max_http_buffer_size=1 << 20
)
app = socketio.ASGIApp(sio)


@sio.on("join")
async def join(sid: str, room: str) -> str:
    await sio.enter_room(sid, room)
    return "ok"


@sio.on("msg")
async def msg(sid: str, message: dict) -> None:
    await sio.emit("msg", message, room=message["room"], skip_sid=sid)


if __name__ == "__main__":
    if "--stock-gc" not in sys.argv:
        gc.freeze()
        gc.set_threshold(50_000)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        ws_per_message_deflate=False,
        ws_max_size=1 << 20,
    )
