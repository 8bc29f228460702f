"""The supervisor: spawns one session actor per session, keeps the code registry, reaps actors."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import attrs
import trio

from protocol import ErrorCode, ProtocolError

from ._counters import ActorCounters
from ._environment import Environment
from ._messages import (
    CodeSource,
    Directory,
    Message,
    NoDirectory,
    Relinquish,
    SaveNow,
    SessionHandle,
    SetGuardians,
)
from ._persistence import ClosedSession, Loaded, NoStore, SessionStore, StoredSession
from ._records import restore
from ._session import SessionActor, SessionStatistics
from ._state import LIVE

if TYPE_CHECKING:
    from ._config import Config

logger = logging.getLogger(__name__)

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L look-alikes


def new_code(taken: Mapping[str, object] | set[str], env: Environment, length: int) -> str:
    """A random session code of ``length`` characters not in ``taken`` (docs/security.md says
    how long guessing one takes at the join limits)."""
    while True:
        code = "".join(env.rng.choice(CODE_ALPHABET) for _ in range(length))
        if code not in taken:
            return code


@attrs.frozen
class LocalCodes:
    """A single server's :class:`CodeSource`: random codes not live here."""

    env: Environment

    def new_code(self, taken: Mapping[str, object], length: int) -> str:
        return new_code(taken, self.env, length)


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
        directory: Directory | None = None,
        codes: CodeSource | None = None,
    ) -> None:
        self._config = config
        self.env = env or Environment.production()
        self._codes: CodeSource = codes or LocalCodes(self.env)
        self.store: SessionStore = store or NoStore()
        self.directory: Directory = NoDirectory() if directory is None else directory
        self.counters = ActorCounters()
        self._nursery: trio.Nursery | None = None
        self._actors: dict[str, SessionActor] = {}
        self._hosted: dict[str, list[str]] = {}  # host user id -> codes it hosts, oldest first
        self._live: dict[str, str] = {}  # ward user id -> code of its live session
        self._guardians: dict[str, tuple[str, ...]] = {}  # live session code -> its guardians
        self._watched: dict[str, set[str]] = {}  # guardian user id -> codes of live sessions
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
        self,
        host_user_id: str,
        *,
        fresh: bool = False,
        another: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> Opened:
        """The session ``host_user_id`` hosts (its newest), or a new one: with ``fresh`` it
        replaces that one, with ``another`` it opens beside it, up to ``max_sessions_per_host``
        (else ``session_limit``).

        A fresh session replaces the old one in the registry at once, so no later request can
        reach the old one as this host's; the caller tells the old one to close.
        """
        codes = self._hosted.get(host_user_id, [])
        if codes and not (fresh or another):
            return Opened(self._actors[codes[-1]].handle, reused=True)
        limit = self._config.max_sessions_per_host
        if another and len(codes) >= limit:
            raise ProtocolError(
                ErrorCode.SESSION_LIMIT,
                f"you host {len(codes)} live sessions; at most {limit} at once",
                limit=limit,
            )
        replaced = None
        if codes and fresh:
            replaced = self._actors[codes[-1]].handle
            codes.pop()
        actor, receive = self._new_actor(host_user_id, meta)
        self._spawn(actor, receive)
        return Opened(actor.handle, reused=False, replaced=replaced)

    def open_live(
        self, ward_id: str, guardians: Sequence[str], meta: dict[str, Any] | None = None
    ) -> SessionHandle:
        """A new live session for ``ward_id``, watched by ``guardians`` (user ids) only;
        ``already_live`` if the ward has one."""
        if ward_id in self._live:
            raise ProtocolError(
                ErrorCode.ALREADY_LIVE, f"already live in session {self._live[ward_id]}"
            )
        actor, receive = self._new_actor(ward_id, meta)
        actor.state.kind = LIVE  # set before the actor runs: part of building it
        actor.state.allowed_users = list(dict.fromkeys(guardians))
        self._spawn(actor, receive)
        return actor.handle

    def live_watched_by(self, user_id: str) -> list[SessionHandle]:
        """The live sessions ``user_id`` is a guardian in."""
        return [self._actors[code].handle for code in self._watched.get(user_id, ())]

    def live_session_of(self, ward_id: str) -> SessionHandle | None:
        """The live session of ``ward_id``, if it is live."""
        code = self._live.get(ward_id)
        return self._actors[code].handle if code is not None else None

    async def set_guardians(self, ward_id: str, guardians: Sequence[str]) -> None:
        """The ward's guardians changed: a live session of theirs follows at once."""
        code = self._live.get(ward_id)
        if code is None:
            return
        self._unwatch(code)
        self._watch(code, guardians)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._actors[code].handle.send(SetGuardians(self._guardians[code]))

    def _new_actor(
        self, host_user_id: str, meta: dict[str, Any] | None
    ) -> tuple[SessionActor, trio.MemoryReceiveChannel[Message]]:
        code = self._codes.new_code(self._actors, self._config.code_length)
        handle, receive = self._new_handle(code, host_user_id)
        self._created += 1
        return self._actor(handle, meta), receive

    def _actor(self, handle: SessionHandle, meta: dict[str, Any] | None) -> SessionActor:
        return SessionActor(
            handle, self._config, self.env, meta, self.store, self.counters, self.directory
        )

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
            actor = self._actor(handle, record.meta)
            restore(actor, stored, continuous=continuous)
            self._spawn(actor, receive)
            restored += 1
        logger.info("restored %d sessions; %d expired while the server was down", restored, expired)
        return restored, expired

    async def relinquish(self, code: str) -> None:
        """Stop serving ``code`` here (another node owns it now); returns once it is gone."""
        actor = self._actors.get(code)
        if actor is None:
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await actor.handle.send(Relinquish())
        await actor.handle.finished.wait()

    async def save_all(self) -> None:
        """Have every session hand the store its whole record (the store lost its data)."""
        for actor in list(self._actors.values()):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await actor.handle.send(SaveNow())

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
        if actor.state.kind == LIVE:
            self._live[actor.handle.host_user_id] = code
            self._watch(code, actor.state.allowed_users or ())
        else:
            self._hosted.setdefault(actor.handle.host_user_id, []).append(code)
        self._nursery.start_soon(self._supervise, actor, inbox, name=f"session {code}")

    def _watch(self, code: str, guardians: Sequence[str]) -> None:
        self._guardians[code] = tuple(dict.fromkeys(guardians))
        for user in self._guardians[code]:
            self._watched.setdefault(user, set()).add(code)

    def _unwatch(self, code: str) -> None:
        for user in self._guardians.pop(code, ()):
            codes = self._watched[user]
            codes.discard(code)
            if not codes:
                del self._watched[user]

    def _forget(self, actor: SessionActor) -> None:
        handle = actor.handle
        del self._actors[handle.code]
        if actor.state.kind == LIVE:
            if self._live.get(handle.host_user_id) == handle.code:
                del self._live[handle.host_user_id]
            self._unwatch(handle.code)
            return
        codes = self._hosted.get(handle.host_user_id, [])
        if handle.code in codes:
            codes.remove(handle.code)
            if not codes:
                del self._hosted[handle.host_user_id]

    def hosted(self, host_user_id: str) -> str | None:
        """The code of the newest session ``host_user_id`` hosts, if any."""
        codes = self._hosted.get(host_user_id)
        return codes[-1] if codes else None

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
            logger.exception(
                "session %s: actor crashed, closing it", handle.code, extra={"session": handle.code}
            )
            self._crashed += 1
            actor.fail()
        finally:
            handle.close_inbox()
            self._forget(actor)
            self._closed += 1
            handle.finished.set()
