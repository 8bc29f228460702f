"""The session actor: one Trio task that owns a session's state and serves its inbox.

Nothing else reads or writes the state. Handlers (``_handlers.py``) are synchronous: the actor
never awaits anything but its inbox, so a slow client cannot slow a session down. Timers (grace
periods, idle reaping) are deadlines on Trio's clock that bound the wait on the inbox.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import attrs
import orjson
import trio

from protocol import (
    CloseCode,
    ErrorCode,
    Event,
    ProtocolError,
    Reply,
    SessionClosed,
    Snapshot,
    encode_event,
)

from ._counters import ActorCounters
from ._event_log import EventLog
from ._handlers import HANDLERS
from ._inspection import inspect
from ._live import set_guardians
from ._messages import (
    CloseIfIdle,
    CloseSession,
    Command,
    Directory,
    InjectFault,
    Inspect,
    Message,
    NoDirectory,
    Peer,
    PeerGone,
    Relinquish,
    SaveNow,
    SetGuardians,
)
from ._persistence import ClosedSession, NoStore, SessionChange, SessionStore
from ._records import record_of
from ._seats import Seats
from ._state import HOST, Participant, SessionState
from ._views import participant_view, room_view

if TYPE_CHECKING:
    from ._config import Config
    from ._environment import Environment
    from ._messages import SessionHandle

logger = logging.getLogger(__name__)

_UNAVAILABLE: Final = ProtocolError(
    ErrorCode.UNAVAILABLE,
    "the session store is unavailable: in strict durability no change is accepted until it is "
    "back; retry",
    retry_after_ms=1000,
)

SAVE_INTERVAL: Final = 0.05  # seconds a session's changes wait before it hands them to the store
_Held = list[tuple[Callable[..., object], tuple[Any, ...]]]


@attrs.frozen
class SessionStatistics:
    """A point-in-time view of one session, for metrics and admin listings."""

    code: str
    status: str
    participants: int
    connected: int
    rooms: int
    seq: int
    version: int
    log_events: int
    log_bytes: int


class SessionActor:
    """Serves one session. Built by the supervisor, which runs :meth:`run` in its nursery."""

    def __init__(
        self,
        handle: SessionHandle,
        config: Config,
        env: Environment,
        meta: dict[str, Any] | None = None,
        store: SessionStore | None = None,
        counters: ActorCounters | None = None,
        directory: Directory | None = None,
    ) -> None:
        self.handle = handle
        self.counters = counters or ActorCounters()
        self.directory: Directory = NoDirectory() if directory is None else directory
        self.config = config
        self.env = env
        self.store: SessionStore = store or NoStore()
        self._persist = self.store.persistent
        # strict durability: nothing leaves before the change behind it is committed, events of
        # the server's own making (presence, timeouts) included, so a stored tail holds every
        # event any client saw (a cluster node taking the session over keeps its epoch)
        self._commit_every_step = self._persist and config.durability == "strict"
        self._unsaved: list[tuple[int, str]] = []  # events not yet handed to the store
        self._save_at = math.inf  # when the next change goes to the store
        self._held: _Held | None = None  # outputs held back until a strict change is committed
        self.created_wall = env.wall()
        self.peak_participants = 0
        self.tail_pending = False  # restored without its event tail: read it before acting
        self.state = SessionState(
            code=handle.code,
            epoch=env.token_hex(8),
            host_user_id=handle.host_user_id,
            started_at=env.iso(),
            meta=meta,
        )
        self._state_size: int | None = None  # of state.state encoded, once measured
        self.log = EventLog(config.event_log_size, config.event_log_bytes, config.event_log_age)
        self.seats = Seats(self)
        self.closed = False
        self.started = trio.current_time()  # Trio time the session began (for duration_s)
        self.idle_since = self.started  # last request, or when the last grace ended

    # ---------------------------------------------------------------- the loop

    async def run(self, inbox: trio.MemoryReceiveChannel[Message]) -> None:
        """Serve the inbox until the session closes. Closes ``inbox`` on the way out.

        Whatever is still queued when the session ends is answered with ``session_closed``.
        Exceptions (a bug) propagate to the supervisor, which calls :meth:`fail`.
        """
        with inbox:
            try:
                while not self.closed:
                    message: Message | None = None
                    with trio.CancelScope(deadline=min(self._next_deadline(), self._save_at)):
                        message = await inbox.receive()
                    if self.tail_pending:
                        await self._load_tail()
                    if type(message) is Command and self._strict(message):
                        await self._handle_strict(message)
                    elif self._commit_every_step:
                        await self._step_committed(message)
                    elif message is None:
                        self._expire_timers()
                    else:
                        self._handle(message)
            finally:
                self._drain(inbox)
                if not self.closed and self._save_at != math.inf:  # shutdown: unsaved changes
                    self.save()

    def fail(self) -> None:
        """Close the session after a crash, telling its clients (reason ``internal_error``)."""
        try:
            self.close("internal_error")
        except Exception:
            logger.exception(
                "session %s: could not close cleanly after a crash",
                self.state.code,
                extra={"session": self.state.code},
            )
        self.seats.release_all("internal_error")
        self.closed = True

    def statistics(self) -> SessionStatistics:
        """Counts for metrics and admin listings."""
        st = self.state
        return SessionStatistics(
            st.code,
            st.status,
            len(st.participants),
            len(self.seats.peers),
            len(st.rooms),
            st.seq,
            st.version,
            len(self.log),
            self.log.size,
        )

    def _next_deadline(self) -> float:
        deadline = self.seats.next_deadline()
        if deadline == math.inf and not self.seats.peers:
            # Nobody seated and connected and no grace running: the idle timer runs.
            deadline = self.idle_since + self.config.idle_timeout
        return deadline

    def _expire_timers(self) -> None:
        now = trio.current_time()
        if now >= self._save_at:
            self.save()
        if self.seats.expire(now):
            self.idle_since = now  # a grace ended: an empty session's idle time starts now
        elif not self.closed and self._next_deadline() <= now:  # the idle deadline, then
            self.close("idle_timeout")

    async def _load_tail(self) -> None:
        """The stored events of a restored session, so resumes replay them; a tail that does
        not reach the restored ``seq`` means lost continuity: a new epoch (clients get a
        snapshot). Runs before anything is handled, so nothing was published meanwhile."""
        self.tail_pending = False
        st = self.state
        tail = await self.store.tail(st.code)
        if tail and tail[-1][0] == st.seq:
            for seq, frame in tail:
                self.log.append(seq, frame)
        elif st.seq:
            st.epoch = self.env.token_hex(8)
            self.mark_changed()

    def _strict(self, cmd: Command) -> bool:
        if not self._persist:
            return False
        return self.config.durability == "strict" or getattr(cmd.request, "durable", False)

    def _handle(self, message: Message) -> None:
        if type(message) is Command:
            try:
                self._handle_command(message)
            finally:
                message.peer.command_done()
        elif isinstance(message, PeerGone):
            self.seats.gone(message.peer, message.participant_id)
        elif isinstance(message, CloseSession):
            self.close(message.reason)
        elif isinstance(message, Inspect):
            message.view = inspect(self)
            message.done.set()
        elif isinstance(message, CloseIfIdle):
            now = trio.current_time()
            if not self.seats.peers and now - self.idle_since >= message.max_inactive:
                self.close("admin_cleanup")
                message.closed = True
            message.done.set()
        elif isinstance(message, SetGuardians):
            set_guardians(self, message.guardians)
            self.mark_changed()
        elif isinstance(message, Relinquish):
            self.relinquish()
        elif isinstance(message, SaveNow):
            self.save()
        elif isinstance(message, InjectFault):
            raise RuntimeError(f"injected fault in session {self.state.code}")

    def _handle_command(self, cmd: Command) -> None:
        self.idle_since = trio.current_time()
        try:
            HANDLERS[type(cmd.request)](self, cmd, cmd.request)
        except ProtocolError as error:
            self.answer_error(cmd, error)
        except Exception:
            if not cmd.answered:  # one reply per request, even when a handler fails
                self.answer_error(cmd, ProtocolError(ErrorCode.INTERNAL, "internal error"))
            raise
        finally:
            self.mark_changed()

    async def _handle_strict(self, cmd: Command) -> None:
        """Apply ``cmd``, then hold its reply and events back until the store has committed it
        (strict durability): an acknowledged change survives a crash.

        While the store is unavailable a state change is refused before anything is applied,
        and other requests are served uncommitted (see :meth:`_step_committed`)."""
        if not self.store.available:
            if hasattr(cmd.request, "durable"):
                self.answer_error(cmd, _UNAVAILABLE)
                cmd.peer.command_done()
            else:
                await self._step_committed(cmd)
            return
        held: _Held = []
        self._held = held
        try:
            self._handle_command(cmd)
            self.save()
            await self.store.commit()
        finally:
            self._held = None
            for deliver, args in held:
                deliver(*args)
            cmd.peer.command_done()

    async def _step_committed(self, message: Message | None) -> None:
        """Act on ``message`` (or the timers due), holding every output back until the store
        has committed the change (strict durability). While the store is unavailable outputs
        leave uncommitted and the epoch changes, so every later resume gets a snapshot."""
        held: _Held = []
        self._held = held
        try:
            if message is None:
                self._expire_timers()
            else:
                self._handle(message)
            if not held:
                return  # nothing left the session: nobody waits for the change
            if self._save_at != math.inf:
                self.save()
            if self.store.available:
                await self.store.commit()
            else:  # released uncommitted: the stored tail may now miss what clients saw
                self.state.epoch = self.env.token_hex(8)
                self.mark_changed()
        finally:
            self._held = None
            for deliver, args in held:
                deliver(*args)

    def _drain(self, inbox: trio.MemoryReceiveChannel[Message]) -> None:
        closed = ProtocolError(ErrorCode.SESSION_CLOSED, f"session {self.state.code} has ended")
        while True:
            try:
                message = inbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            if isinstance(message, Command):
                self.answer_error(message, closed)
                message.peer.command_done()
            elif isinstance(message, Inspect | CloseIfIdle):
                message.done.set()

    # ---------------------------------------------------------------- answers and events

    def answer(self, cmd: Command, data: Reply) -> None:
        """Reply to ``cmd`` (once)."""
        cmd.answered = True
        self._out(cmd.peer.reply, cmd.ref, data)

    def answer_error(self, cmd: Command, error: ProtocolError) -> None:
        """Refuse ``cmd`` (once)."""
        cmd.answered = True
        self._out(cmd.peer.reply_error, cmd.ref, error)

    def send_to(self, peer: Peer, frame: str) -> None:
        """Hand one frame to one peer (a replay), after the reply that caused it."""
        self._out(peer.deliver, frame)

    def _out(self, deliver: Callable[..., object], *args: Any) -> None:
        if self._held is None:
            deliver(*args)
        else:
            self._held.append((deliver, args))

    def prepare(self, kind: type[Event], /, **fields: Any) -> str:
        """The frame of the next event, changing nothing: call before anything is applied.

        Raises ``bad_request`` if the event cannot be encoded, so no request can get a success
        reply and then end its session.
        """
        st = self.state
        try:
            frame = encode_event(kind(session=st.code, seq=st.seq + 1, at=self.env.iso(), **fields))
        except orjson.JSONEncodeError as exc:  # a TypeError: too deep, or not JSON at all
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"cannot encode the event: {exc}") from None
        self.counters.events[kind.TYPE] += 1
        return frame

    def publish(self, frame: str, *, exclude: str | None = None) -> None:
        """Number, log and broadcast a frame made by :meth:`prepare` (encoded once)."""
        st = self.state
        st.seq += 1
        self.log.append(st.seq, frame)
        if self._persist:
            self._unsaved.append((st.seq, frame))
        self._out(self.seats.broadcast, frame, exclude)

    def emit(self, kind: type[Event], /, *, exclude: str | None = None, **fields: Any) -> None:
        """:meth:`prepare` and :meth:`publish` at once, for events of the server's own making."""
        self.publish(self.prepare(kind, **fields), exclude=exclude)

    def close(self, reason: str) -> None:
        """End the session: everyone gets ``session:closed``; the loop then stops."""
        if self.closed:
            return
        self.closed = True  # first: a failed delivery below must not start a grace period
        self.handle.closed_reason = reason
        duration = trio.current_time() - self.started
        self.emit(
            SessionClosed,
            reason=reason,
            duration_s=round(duration, 3),
            started_at=self.state.started_at,
            ended_at=self.env.iso(),
        )
        self.seats.release_all(reason)
        self.store.close(
            ClosedSession(
                code=self.state.code,
                host_user_id=self.state.host_user_id,
                started_at=self.state.started_at,
                ended_at=self.env.iso(),
                ended_wall=self.env.wall(),
                duration_s=round(duration, 3),
                reason=reason,
                peak_participants=self.peak_participants,
            )
        )
        logger.info(
            "session %s closed: %s after %.0fs",
            self.state.code,
            reason,
            duration,
            extra={"session": self.state.code},
        )

    def relinquish(self) -> None:
        """Stop serving a session another node took over: no event, no write (see
        :class:`Relinquish`)."""
        if self.closed:
            return
        self.closed = True
        self.handle.closed_reason = "moved"
        self._save_at = math.inf
        for peer in self.seats.peers.values():
            peer.seat_ended(self.state.code, "moved", CloseCode.SERVICE_RESTART)
        self.seats.peers.clear()
        logger.warning(
            "session %s: owned by another node now, no longer served here",
            self.state.code,
            extra={"session": self.state.code},
        )

    # ---------------------------------------------------------------- persistence

    def mark_changed(self) -> None:
        """Something changed: hand the session to the store within ``SAVE_INTERVAL``."""
        self.peak_participants = max(self.peak_participants, len(self.state.participants))
        if self._persist and self._save_at == math.inf:
            self._save_at = trio.current_time() + SAVE_INTERVAL

    def save(self) -> None:
        """Hand the store the session as it is and the events since the last save."""
        self._save_at = math.inf
        if self._persist and not self.closed:
            self.store.save(SessionChange(record=record_of(self), events=self._unsaved))
            self._unsaved = []

    # ---------------------------------------------------------------- views

    def snapshot(self) -> Snapshot:
        """The session as a fresh joiner sees it."""
        return Snapshot(**self.snapshot_fields())

    def snapshot_fields(self) -> dict[str, Any]:
        """The fields of :meth:`snapshot`, for replies that extend it."""
        st = self.state
        return {
            "code": st.code,
            "status": st.status,
            "host_id": st.host_id or "",
            "participants": [participant_view(p) for p in st.participants.values()],
            "rooms": [room_view(r) for r in st.rooms.values()],
            "state": st.state,
            "version": st.version,
            "seq": st.seq,
            "epoch": st.epoch,
            "started_at": st.started_at,
            "meta": st.meta,
            "kind": st.kind,
        }

    def seat_of(self, cmd: Command) -> Participant:
        """The seat ``cmd`` comes from; ``forbidden`` if its connection holds none here."""
        pid = cmd.participant_id
        if pid is None or self.seats.peers.get(pid) is not cmd.peer:
            raise ProtocolError(ErrorCode.FORBIDDEN, "not a participant of this session")
        return self.state.participants[pid]

    def host_seat_of(self, cmd: Command) -> Participant:
        """The host's seat, if ``cmd`` comes from it; else ``forbidden``."""
        seat = self.seat_of(cmd)
        if seat.role != HOST:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"only the host may {cmd.request.TYPE}")
        return seat

    def check_state_size(self, state: dict[str, Any]) -> int:
        """The size of ``state`` encoded as JSON; ``too_large`` if over ``max_state_size``."""
        try:
            size = len(orjson.dumps(state))
        except orjson.JSONEncodeError as exc:  # a TypeError: too deep, or not JSON at all
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"cannot encode the state: {exc}") from None
        limit = self.config.max_state_size
        if size > limit:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"state is {size} bytes, limit {limit}", size=size, limit=limit
            )
        return size

    def replace_state(self, state: dict[str, Any], size: int | None = None) -> None:
        """Make ``state`` the session's; ``size`` is its encoded size if already known."""
        self.state.state = state
        self._state_size = size

    def state_size(self) -> int:
        """Bytes of the state encoded as JSON: known from the last write, or measured once
        (operators list sessions often; encoding every state each time would be wasted)."""
        if self._state_size is None:
            self._state_size = len(orjson.dumps(self.state.state))
        return self._state_size

    def replace_notice(self, peer: Peer) -> None:
        """Tell a connection that its seat here was taken over by a newer connection."""
        peer.seat_ended(self.state.code, "replaced", CloseCode.REPLACED)
