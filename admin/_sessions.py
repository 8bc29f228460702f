"""How the admin API reaches sessions: a message in each actor's inbox, never its state.

Every wait on an actor is bounded on Trio's clock: an operator's request never hangs on a
session that is stuck or flooded. A session that ends before it reads the message simply drops
out of the answer (the actor sets ``done`` when it drains its inbox, and a closed inbox refuses
the send).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

import trio

from actors import CloseIfIdle, CloseSession, Inspect

if TYPE_CHECKING:
    from actors import SessionHandle, SessionView

ANSWER_TIMEOUT: Final = 5.0  # seconds the sessions of one request have to answer an operator
CLOSE_TIMEOUT: Final = 10.0  # seconds closing sessions have to end (flush included)
CONCURRENCY: Final = 64  # sessions messaged at once by one request

_Item = TypeVar("_Item")


class Unanswered(Exception):
    """A session did not answer within ``ANSWER_TIMEOUT`` (or end within ``CLOSE_TIMEOUT``)."""

    def __init__(self, code: str) -> None:
        super().__init__(f"session {code} did not answer in time")
        self.code = code


async def _deliver(handle: SessionHandle, message: Inspect | CloseIfIdle | CloseSession) -> bool:
    """Queue ``message`` for the actor; ``False`` if the session has ended."""
    try:
        await handle.send(message)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


async def inspect(handle: SessionHandle) -> SessionView | None:
    """The session's view, or ``None`` if it ended first. Raises :class:`Unanswered`."""
    views, late = await inspect_all([handle])
    if late:
        raise Unanswered(handle.code)
    return views[0] if views else None


async def inspect_all(handles: Sequence[SessionHandle]) -> tuple[list[SessionView], list[str]]:
    """The views of ``handles`` (in their order, without those that ended) and the codes of
    those that did not answer within ``ANSWER_TIMEOUT``, all asked concurrently."""
    views: list[SessionView | None] = [None] * len(handles)
    answered = [False] * len(handles)

    async def ask(i: int) -> None:
        message = Inspect()
        if await _deliver(handles[i], message):
            await message.done.wait()
            views[i] = message.view
        answered[i] = True

    with trio.move_on_after(ANSWER_TIMEOUT):
        await _for_each(range(len(handles)), ask)
    late = [h.code for h, done in zip(handles, answered, strict=True) if not done]
    return [view for view in views if view is not None], late


async def close(handle: SessionHandle, reason: str) -> bool:
    """Close the session with ``reason`` and wait until it has ended; ``False`` if it had
    ended already. Raises :class:`Unanswered` if it is not over within ``CLOSE_TIMEOUT``."""
    with trio.move_on_after(CLOSE_TIMEOUT):
        if not await _deliver(handle, CloseSession(reason)):
            return False
        await handle.finished.wait()
        return True
    raise Unanswered(handle.code)


async def close_all(handles: Sequence[SessionHandle], reason: str) -> list[str]:
    """Close every session of ``handles`` with ``reason``; the codes of those told to (those
    that had ended already are left out). Waits, within ``CLOSE_TIMEOUT``, until they ended."""
    closed: list[str] = []

    async def close_one(handle: SessionHandle) -> None:
        if await _deliver(handle, CloseSession(reason)):
            closed.append(handle.code)
            await handle.finished.wait()

    with trio.move_on_after(CLOSE_TIMEOUT):
        await _for_each(handles, close_one)
    return sorted(closed)


async def close_idle(handles: Sequence[SessionHandle], max_inactive: float) -> list[str]:
    """Ask each session to close if nobody is connected and nothing happened for
    ``max_inactive`` seconds (the actor decides: reason ``admin_cleanup``); the codes of those
    that closed. Waits, within ``CLOSE_TIMEOUT`` overall, until they ended."""
    closed: list[str] = []

    async def offer(handle: SessionHandle) -> None:
        message = CloseIfIdle(max_inactive)
        if await _deliver(handle, message):
            await message.done.wait()
            if message.closed:
                closed.append(handle.code)
                await handle.finished.wait()

    with trio.move_on_after(CLOSE_TIMEOUT):
        await _for_each(handles, offer)
    return sorted(closed)


async def _for_each(items: Iterable[_Item], one: Callable[[_Item], Awaitable[None]]) -> None:
    """Run ``one`` on every item, ``CONCURRENCY`` at a time (the caller bounds the time)."""
    limiter = trio.CapacityLimiter(CONCURRENCY)

    async def run(item: _Item) -> None:
        async with limiter:
            await one(item)

    async with trio.open_nursery() as nursery:
        for item in items:
            nursery.start_soon(run, item)
