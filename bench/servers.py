"""The servers under test, started as separate processes pinned to one core."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import psutil

from load import Dialect, TrioSessions

from .dialects import Relay, SocketIO

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = 0
LOAD_CORE = 1


@attrs.frozen
class Target:
    """How to start one server and speak to it."""

    name: str
    command: Callable[[int], list[str]]
    dialect: Callable[[], Dialect]
    path: str = "/"


TARGETS = {
    "trio-sessions": Target(
        "trio-sessions",
        lambda port: [
            "server.py",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--rate-limit",
            "0",
            "--max-participants",
            "2000",
            "--frame-rate",
            "0",
            "--store",
            "memory",
        ],
        TrioSessions,
        "/ws",
    ),
    "trio-websocket relay": Target(
        "trio-websocket relay",
        lambda port: ["bench/baselines/relay_trio_websocket.py", str(port)],
        Relay,
    ),
    "python-socketio": Target(
        "python-socketio",
        lambda port: ["bench/baselines/relay_socketio.py", str(port)],
        SocketIO,
        "/socket.io/?EIO=4&transport=websocket",
    ),
    "python-socketio, stock GC": Target(
        "python-socketio, stock GC",
        lambda port: ["bench/baselines/relay_socketio.py", str(port), "--stock-gc"],
        SocketIO,
        "/socket.io/?EIO=4&transport=websocket",
    ),
    "websockets relay": Target(
        "websockets relay",
        lambda port: ["bench/baselines/relay_websockets.py", str(port)],
        Relay,
    ),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@attrs.define
class Running:
    target: Target
    url: str
    process: psutil.Process

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def rss(self) -> int:
        return self.process.memory_info().rss

    def wait_idle(self, below: float = 0.05, longest: float = 15.0) -> None:
        """Let a backlog from an overloaded step drain before the next measurement."""
        end = time.monotonic() + longest
        while time.monotonic() < end and self.process.cpu_percent(interval=0.5) > below * 100:
            pass


@contextlib.contextmanager
def running(target: Target) -> Iterator[Running]:
    """Start ``target`` pinned to SERVER_CORE; stop it afterwards."""
    port = free_port()
    command = ["taskset", "-c", str(SERVER_CORE), sys.executable, *target.command(port)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > end or process.poll() is not None:
                raise RuntimeError(f"{target.name} did not start")
            time.sleep(0.1)
        yield Running(target, f"ws://127.0.0.1:{port}{target.path}", psutil.Process(process.pid))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pin_load() -> None:
    """Run the load generator (this process) on the other core."""
    psutil.Process().cpu_affinity([LOAD_CORE])
