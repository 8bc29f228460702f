"""Load generators for the fan-out sweep: the Node.js one (default) and the load tool's engine.

Both connect a shape's clients once and then run rate phases on request, answering with the
same figures: sends, expected and delivered messages, latency p50/p99/max in ms, and the
share of a core the generator itself used while loaded (``cpu``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import trio

from load import Rates, Swarm

from .servers import LOAD_CORE, Running

LOADGEN = Path(__file__).resolve().parent / "loadgen"


class Generator(Protocol):
    connected: int

    async def phase(self, rate: float, duration: float, drain: float) -> dict[str, Any]:
        """``rate`` sends per second per client for ``duration``; then ``drain`` for stragglers."""
        ...


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def install_node_loadgen() -> None:
    """``npm install`` the generator's one dependency (ws) if it is not there yet."""
    if not (LOADGEN / "node_modules" / "ws").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=LOADGEN, check=True)


class NodeGenerator:
    """``bench/loadgen/loadgen.mjs`` pinned to the load core, driven over its stdin/stdout."""

    def __init__(self, server: Running, groups: int, members: int) -> None:
        self._config = {
            "url": server.url,
            "dialect": server.target.dialect().name,
            "groups": groups,
            "members": members,
            "messageSize": 64,
        }
        self.connected = 0
        self._process: trio.Process | None = None
        self._buffer = b""

    async def __aenter__(self) -> NodeGenerator:
        command = ["taskset", "-c", str(LOAD_CORE), "node", "loadgen.mjs", json.dumps(self._config)]
        self._process = await trio.lowlevel.open_process(
            command, cwd=LOADGEN, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        ready = await self._answer()
        self.connected = ready["ready"]
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._process is not None
        with trio.move_on_after(5):
            await self._process.stdin.send_all(b'{"cmd": "quit"}\n')
            await self._process.wait()
        self._process.kill()
        await self._process.wait()

    async def _answer(self) -> dict[str, Any]:
        assert self._process is not None
        while b"\n" not in self._buffer:
            chunk = await self._process.stdout.receive_some(65536)
            if not chunk:
                raise RuntimeError("the Node load generator exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    async def phase(self, rate: float, duration: float, drain: float) -> dict[str, Any]:
        assert self._process is not None
        command = {"cmd": "phase", "rate": rate, "duration": duration, "drain": drain}
        await self._process.stdin.send_all(json.dumps(command).encode() + b"\n")
        return await self._answer()


class PythonGenerator:
    """The load tool's engine (``load.Swarm``) in this process, which runs on the load core."""

    def __init__(self, server: Running, groups: int, members: int) -> None:
        self._swarm = Swarm(
            server.url, server.target.dialect(), list(range(groups)), members=members
        )
        self.connected = 0
        self._nursery_manager = trio.open_nursery()

    async def __aenter__(self) -> PythonGenerator:
        self._nursery = await self._nursery_manager.__aenter__()
        await self._swarm.connect(self._nursery, ramp_up=2000)
        self.connected = self._swarm.setup.connected
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._nursery.cancel_scope.cancel()
        await self._nursery_manager.__aexit__(None, None, None)

    async def phase(self, rate: float, duration: float, drain: float) -> dict[str, Any]:
        stats = await self._swarm.phase(Rates(rate), duration, drain=drain)

        def ms(value: float | None) -> float | None:
            return None if value is None else value * 1000

        return {
            "sent": stats.sent,
            "expected": stats.expected,
            "delivered": stats.delivered,
            "p50": ms(stats.percentile(0.5)),
            "p99": ms(stats.percentile(0.99)),
            "max": ms(stats.max_latency),
            "cpu": stats.cpu_seconds / duration,
        }
