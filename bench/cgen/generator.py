"""The C load generator driven from Python, a drop-in for ``bench.generators.NodeGenerator``.

``loadgen.c`` takes the same JSON configuration and stdin/stdout JSON lines as
``bench/loadgen/loadgen.mjs``, plus a list of servers and a placement of each room's members
over them (:class:`Spread`). :class:`CLoad` runs one generator process on a configuration;
:class:`CGenerator` builds that configuration from a server under test, with the same
constructor as ``NodeGenerator``, so ``bench/fanout.py``'s sweep can drive it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from types import TracebackType
from typing import Any

import attrs
import trio

from ..servers import LOAD_CORE, Running
from .build import build

PLACEMENTS = ("same", "alternate", "other")


@attrs.frozen
class Spread:
    """Where a shape's clients connect, and where the generator runs.

    Room ``g``'s host connects to ``urls[g % n]``; its members to the same server (``same``),
    every other one to the next server (``alternate``: with two servers, half the members sit
    on the other node from their host), or all to the next server (``other``).
    """

    urls: tuple[str, ...]
    placement: str = attrs.field(default="same", validator=attrs.validators.in_(PLACEMENTS))
    cores: str | None = str(LOAD_CORE)  # a ``taskset -c`` list; None: the caller's affinity


class CLoad:
    """One ``loadgen`` process on ``config`` (see the top of ``loadgen.c``), over its pipes."""

    def __init__(self, config: dict[str, Any], cores: str | None = str(LOAD_CORE)) -> None:
        self.config = config
        self.cores = cores
        self.ready: dict[str, Any] = {}  # the generator's set-up answer
        self.connected = 0
        self._process: trio.Process | None = None
        self._buffer = b""

    async def __aenter__(self) -> CLoad:
        binary = await trio.to_thread.run_sync(build)
        command = [str(binary), json.dumps(self.config)]
        if self.cores is not None:
            command = ["taskset", "-c", self.cores, *command]
        self._process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            self.ready = await self._answer()
        except BaseException:
            self._process.kill()
            await self._process.wait()
            raise
        self.connected = int(self.ready["ready"])
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        with trio.move_on_after(5):
            with contextlib.suppress(trio.BrokenResourceError):  # it may have exited already
                await process.stdin.send_all(b'{"cmd": "quit"}\n')
            await process.wait()
        process.kill()
        await process.wait()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def _answer(self) -> dict[str, Any]:
        process = self._process
        assert process is not None and process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await process.stdout.receive_some(65536)
            if not chunk:
                raise RuntimeError("the C load generator exited (its error is above)")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def phase(self, rate: float, duration: float, drain: float) -> dict[str, Any]:
        """``rate`` sends per second per client for ``duration``; then ``drain`` for stragglers.

        The answer has the Node generator's figures (``cpu``: the share of a core used while
        loaded) and the C generator's own: ``cpu_seconds`` over the phase and its drain,
        ``reordered`` deliveries.
        """
        process = self._process
        assert process is not None and process.stdin is not None
        command = {"cmd": "phase", "rate": rate, "duration": duration, "drain": drain}
        await process.stdin.send_all(json.dumps(command).encode() + b"\n")
        return await self._answer()


def shape_config(
    urls: tuple[str, ...],
    dialect: str,
    groups: int,
    members: int,
    placement: str = "same",
    message_size: int = 64,
) -> dict[str, Any]:
    """The generator's configuration for ``groups`` rooms of ``members``."""
    return {
        "urls": list(urls),
        "dialect": dialect,
        "groups": groups,
        "members": members,
        "messageSize": message_size,
        "placement": placement,
    }


class CGenerator(CLoad):
    """The fan-out sweep's generator: ``CGenerator(server, groups, members)`` like the Node one.

    Without a ``spread`` it connects every client to ``server.url`` and runs on the load core.
    """

    def __init__(
        self, server: Running, groups: int, members: int, spread: Spread | None = None
    ) -> None:
        spread = spread or Spread((server.url,))
        dialect = server.target.dialect().name
        config = shape_config(spread.urls, dialect, groups, members, spread.placement)
        super().__init__(config, spread.cores)
