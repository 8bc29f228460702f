"""The supervisor: spawns one session actor per session, keeps the code registry, reaps actors."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, NoReturn

import attrs
import trio

from ._messages import InjectFault, Message
from ._session import SessionActor, SessionStatistics

if TYPE_CHECKING:
    from ._config import Config

logger = logging.getLogger(__name__)

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L look-alikes
CODE_LENGTH = 5


def new_code(taken: dict[str, object] | set[str]) -> str:
    """An unguessable session code not in ``taken``."""
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if code not in taken:
            return code


@attrs.define(eq=False)
class SessionHandle:
    """How others reach a session actor: its code and the send end of its inbox.

    The supervisor owns the send end and closes it when the actor is reaped; after that,
    :meth:`send` raises ``trio.BrokenResourceError`` or ``trio.ClosedResourceError``.
    """

    code: str
    host_user_id: str
    _inbox: trio.MemorySendChannel[Message]
    finished: trio.Event = attrs.Factory(trio.Event)

    async def send(self, message: Message) -> None:
        """Queue ``message`` for the actor, waiting while its inbox is full (back-pressure)."""
        await self._inbox.send(message)

    def inject_fault(self) -> None:
        """Make the actor raise, as a bug would (tests and the simulator use this)."""
        self._inbox.send_nowait(InjectFault())


@attrs.frozen
class SupervisorStatistics:
    """Counters since start and the live sessions."""

    live: int
    created: int
    closed: int
    crashed: int
    sessions: tuple[SessionStatistics, ...]


class Supervisor:
    """Owns the session nursery and the code -> actor registry; nothing else holds either."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._nursery: trio.Nursery | None = None
        self._actors: dict[str, SessionActor] = {}
        self._hosted: dict[str, str] = {}  # host user id -> code of the live session it hosts
        self._created = self._closed = self._crashed = 0

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Supervise sessions until cancelled. Reports ``self`` once ready to spawn."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                task_status.started(self)
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def open_session(self, host_user_id: str) -> tuple[SessionHandle, bool]:
        """The live session ``host_user_id`` hosts, or a new one; and whether it was reused."""
        code = self._hosted.get(host_user_id)
        if code is not None:
            return self._actors[code].handle, True
        if self._nursery is None:
            raise RuntimeError("supervisor is not running")
        send, receive = trio.open_memory_channel[Message](self._config.inbox_size)
        handle = SessionHandle(new_code(self._actors), host_user_id, send)
        actor = SessionActor(handle, self._config)
        self._actors[handle.code] = actor
        self._hosted[host_user_id] = handle.code
        self._created += 1
        self._nursery.start_soon(self._supervise, actor, receive, name=f"session {handle.code}")
        return handle, False

    def lookup(self, code: str) -> SessionHandle | None:
        """The live session with this code, if any."""
        actor = self._actors.get(code)
        return actor.handle if actor is not None else None

    def codes(self) -> list[str]:
        """Codes of the live sessions."""
        return list(self._actors)

    def statistics(self) -> SupervisorStatistics:
        """Counters and per-session figures."""
        return SupervisorStatistics(
            live=len(self._actors),
            created=self._created,
            closed=self._closed,
            crashed=self._crashed,
            sessions=tuple(actor.statistics() for actor in self._actors.values()),
        )

    async def _supervise(
        self, actor: SessionActor, inbox: trio.MemoryReceiveChannel[Message]
    ) -> None:
        handle = actor.handle
        try:
            await actor.run(inbox)
        except Exception:
            # A bug in one session must not reach the others: close it and keep serving.
            logger.exception("session %s: actor crashed, closing it", handle.code)
            self._crashed += 1
            actor.fail()
        finally:
            handle._inbox.close()
            del self._actors[handle.code]
            if self._hosted.get(handle.host_user_id) == handle.code:
                del self._hosted[handle.host_user_id]
            self._closed += 1
            handle.finished.set()
