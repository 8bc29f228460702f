"""The servers under test, started as separate processes pinned to one core."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import psutil  # type: ignore[import-untyped, unused-ignore]

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
    # run with ``--store sqlite:<a fresh file>``: ``running()`` appends the option with a new
    # file in a temporary directory, and deletes the directory (file, -wal, -shm) afterwards
    sqlite_store: bool = False


def trio_sessions(port: int, *extra: str) -> list[str]:
    """The trio-sessions command line of every benchmark, without ``--store``."""
    return [
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
        # the load generator is one address opening thousands of connections at once
        "--connections-per-second",
        "0",
        "--max-connections-per-address",
        "0",
        "--max-connections-per-user",
        "0",
        # fanout.py reads the GC pause metrics on the public port; no admin listener
        "--public-metrics",
        "true",
        "--admin-port",
        "-1",
        *extra,
    ]


TARGETS = {
    "trio-sessions": Target(
        "trio-sessions",
        lambda port: trio_sessions(port, "--store", "memory"),
        TrioSessions,
        "/ws",
    ),
    # the same server keeping its sessions in SQLite (default durability: write-behind)
    "trio-sessions (sqlite)": Target(
        "trio-sessions (sqlite)",
        trio_sessions,
        TrioSessions,
        "/ws",
        sqlite_store=True,
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
        return int(probe.getsockname()[1])


@attrs.define
class Running:
    target: Target
    url: str
    process: psutil.Process
    store_path: Path | None = None  # the SQLite file of a ``sqlite_store`` target

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def wait_idle(self, below: float = 0.05, longest: float = 15.0) -> None:
        """Let a backlog from an overloaded step drain before the next measurement."""
        end = time.monotonic() + longest
        while time.monotonic() < end and self.process.cpu_percent(interval=0.5) > below * 100:
            pass


@contextlib.contextmanager
def running(target: Target, store_dir: str | Path | None = None) -> Iterator[Running]:
    """Start ``target`` pinned to SERVER_CORE; stop it afterwards.

    A ``sqlite_store`` target gets a fresh store file in a new directory under ``store_dir``
    (default: the system's temporary directory), removed once the server has exited.
    """
    port = free_port()
    command = ["taskset", "-c", str(SERVER_CORE), sys.executable, *target.command(port)]
    scratch = store_path = None
    if target.sqlite_store:
        scratch = Path(tempfile.mkdtemp(prefix="trio-sessions-bench-", dir=store_dir)).resolve()
        store_path = scratch / "sessions.db"
        command += ["--store", f"sqlite:{store_path}"]
    try:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            end = time.monotonic() + 20
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2),
                ):
                    break
                if process.poll() is not None:
                    raise RuntimeError(f"{target.name} exited with {process.returncode}")
                if time.monotonic() > end:
                    raise RuntimeError(f"{target.name} did not listen within 20 s")
                time.sleep(0.1)
            url = f"ws://127.0.0.1:{port}{target.path}"
            yield Running(target, url, psutil.Process(process.pid), store_path)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def pin_load() -> None:
    """Run the load generator (this process) on the other core."""
    psutil.Process().cpu_affinity([LOAD_CORE])
