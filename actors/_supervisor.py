"""The supervisor: spawns one session actor per session, keeps the code registry, reaps actors."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NoReturn

import attrs
import trio

from ._counters import ActorCounters
from ._environment import Environment
from ._messages import Message, SessionHandle
from ._persistence import ClosedSession, Loaded, NoStore, SessionStore, StoredSession
from ._records import restore
from ._session import SessionActor, SessionStatistics

if TYPE_CHECKING:
    from ._config import Config

logger = logging.getLogger(__name__)

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L look-alikes
CODE_LENGTH = 5


def new_code(taken: dict[str, Any] | set[str], env: Environment) -> str:
    """An unguessable session code not in ``taken``."""
    while True:
        code = "".join(env.rng.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if code not in taken:
            return code


@attrs.frozen
class Opened:
    """What :meth:`Supervisor.open_session` did: the session to use, whether it was already the
    caller's (``reused``), and the one a fresh create replaces, which the caller must close."""

    handle: SessionHandle
    reused: bool
    replaced: SessionHandle | None = None


@attrs.frozen
class SupervisorStatistics:
    """Counters since start and the live sessions."""

    live: int
    created: int
    closed: int
    crashed: int
    sessions: tuple[SessionStatistics, ...]

    @property
    def seated(self) -> int:
        """Seats held, connected or in grace."""
        return sum(s.participants for s in self.sessions)

    @property
    def connected(self) -> int:
        """Seats with a live connection."""
        return sum(s.connected for s in self.sessions)


class Supervisor:
    """Owns the session nursery and the code -> actor registry; nothing else holds either."""

    def __init__(
        self,
        config: Config,
        env: Environment | None = None,
        store: SessionStore | None = None,
    ) -> None:
        self._config = config
        self.env = env or Environment.production()
        self.store: SessionStore = store or NoStore()
        self.counters = ActorCounters()
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

    def open_session(
        self, host_user_id: str, *, fresh: bool = False, meta: dict[str, Any] | None = None
    ) -> Opened:
        """The live session ``host_user_id`` hosts, or a new one (always, with ``fresh``).

        A fresh session replaces the old one in the registry at once, so no later request can
        reach the old one as this host's; the caller tells the old one to close.
        """
        code = self._hosted.get(host_user_id)
        if code is not None and not fresh:
            return Opened(self._actors[code].handle, reused=True)
        replaced = self._actors[code].handle if code is not None else None
        handle, receive = self._new_handle(new_code(self._actors, self.env), host_user_id)
        self._spawn(
            SessionActor(handle, self._config, self.env, meta, self.store, self.counters), receive
        )
        self._created += 1
        return Opened(handle, reused=False, replaced=replaced)

    def restore(self, loaded: Loaded) -> tuple[int, int]:
        """Bring back the sessions a store held at start-up, hibernating; close those whose
        grace ran out while the server was down (``expired_while_down``). Returns how many
        were restored and how many expired."""
        restored = expired = 0
        now = self.env.wall()
        for stored in loaded.sessions:
            record = stored.record
            if record.code in self._actors:
                continue
            if now >= self._grace_end(record.host_deadline_wall, record.saved_wall):
                self._expire(stored, now)
                expired += 1
                continue
            tail = stored.events
            continuous = loaded.clean and (not tail or tail[-1][0] == record.seq)
            handle, receive = self._new_handle(record.code, record.host_user_id)
            actor = SessionActor(
                handle, self._config, self.env, record.meta, self.store, self.counters
            )
            restore(actor, stored, continuous=continuous)
            self._spawn(actor, receive)
            restored += 1
        logger.info("restored %d sessions; %d expired while the server was down", restored, expired)
        return restored, expired

    def _grace_end(self, host_deadline_wall: float | None, saved_wall: float) -> float:
        # A host connected at the last save dropped when the server stopped: its grace (as
        # configured now) runs from then; one already away keeps its earlier deadline.
        end = saved_wall + self._config.host_grace
        return end if host_deadline_wall is None else min(end, host_deadline_wall)

    def _expire(self, stored: StoredSession, now: float) -> None:
        record = stored.record
        self.store.close(
            ClosedSession(
                code=record.code,
                host_user_id=record.host_user_id,
                started_at=record.started_at,
                ended_at=self.env.iso(),
                ended_wall=now,
                duration_s=round(now - record.created_wall, 3),
                reason="expired_while_down",
                peak_participants=record.peak_participants,
            )
        )

    def _new_handle(
        self, code: str, host_user_id: str
    ) -> tuple[SessionHandle, trio.MemoryReceiveChannel[Message]]:
        send, receive = trio.open_memory_channel[Message](self._config.inbox_size)
        return SessionHandle(code, host_user_id, send), receive

    def _spawn(self, actor: SessionActor, inbox: trio.MemoryReceiveChannel[Message]) -> None:
        if self._nursery is None:
            raise RuntimeError("supervisor is not running")
        code = actor.handle.code
        self._actors[code] = actor
        self._hosted[actor.handle.host_user_id] = code
        self._nursery.start_soon(self._supervise, actor, inbox, name=f"session {code}")

    def hosted(self, host_user_id: str) -> str | None:
        """The code of the live session ``host_user_id`` hosts, if any."""
        return self._hosted.get(host_user_id)

    def lookup(self, code: str) -> SessionHandle | None:
        """The live session with this code, if any."""
        actor = self._actors.get(code)
        return actor.handle if actor is not None else None

    def handles(self) -> list[SessionHandle]:
        """The addresses of the live sessions (the admin API inspects them through these)."""
        return [actor.handle for actor in self._actors.values()]

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
            handle.close_inbox()
            del self._actors[handle.code]
            if self._hosted.get(handle.host_user_id) == handle.code:
                del self._hosted[handle.host_user_id]
            self._closed += 1
            handle.finished.set()
