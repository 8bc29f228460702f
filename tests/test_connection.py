"""The connection's write path, against a transport whose behaviour the test controls."""

from __future__ import annotations

import orjson
import trio
import trio.testing

from actors import Config, Connection, ConnectionCounters


class FakeTransport:
    """Writes block until ``release`` is set; ``send_nowait`` succeeds when ``accept_nowait``."""

    remote = "fake"

    def __init__(self) -> None:
        self.written: list[str] = []
        self.accept_nowait = False
        self.release = trio.Event()
        self.incoming, self._incoming = trio.open_memory_channel[str](10)

    async def receive(self) -> str:
        return await self._incoming.receive()

    async def send(self, frame: str) -> None:
        await self.release.wait()
        self.written.append(frame)

    def send_nowait(self, frame: str) -> bool:
        if self.accept_nowait:
            self.written.append(frame)
        return self.accept_nowait

    async def ping(self) -> None:
        await trio.sleep_forever()

    async def aclose(self, code: int, reason: str) -> None:
        await trio.lowlevel.checkpoint()

    async def abort(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_a_frame_never_overtakes_one_still_being_written(nursery, autojump_clock) -> None:
    transport = FakeTransport()
    connection = Connection(transport, None, Config(), ConnectionCounters())  # type: ignore[arg-type]
    nursery.start_soon(connection.serve)
    transport.release.set()
    await transport.incoming.send(orjson.dumps({"type": "hello", "ref": 1}).decode())
    await trio.testing.wait_all_tasks_blocked()
    assert [orjson.loads(f)["ref"] for f in transport.written] == [1]

    transport.release = trio.Event()  # the link is busy: "A" waits inside the writer
    assert connection.deliver("A")
    await trio.testing.wait_all_tasks_blocked()
    transport.accept_nowait = True  # the link could take a frame at once now...
    assert connection.deliver("B")  # ...but "A" is not written yet, so "B" must queue
    transport.release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert transport.written[1:] == ["A", "B"]
    assert connection.deliver("C")  # nothing ahead of it any more: written at once
    assert transport.written[-1] == "C"
