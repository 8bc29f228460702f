"""Liveness and readiness: ``/healthz`` and ``/readyz``, on both the admin and the public port.

Readiness is a plain object the server updates (listening, draining) and a probe task keeps
current (the store answers a read), so both listeners answer from memory, without waiting on
anything: the public port's routes are synchronous.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, NoReturn

import attrs
import trio

from ._schemas import Health, ReadyState

if TYPE_CHECKING:
    from store import Store

logger = logging.getLogger(__name__)

STORE_PROBE_INTERVAL: Final = 10.0  # seconds between two reads that check the store answers
STORE_PROBE_TIMEOUT: Final = 5.0  # seconds a probe read may take before the store is unreachable

ALIVE: Final = Health(ok=True)


@attrs.define
class Readiness:
    """Whether the server should get traffic: it listens, its store answers, it is not
    stopping. The server sets ``listening`` and ``draining``; :func:`probe_store` keeps
    ``store_reachable`` current."""

    listening: bool = False
    store_reachable: bool = True
    draining: bool = False

    def state(self) -> ReadyState:
        reasons = [
            reason
            for reason, wrong in (
                ("not_listening", not self.listening),
                ("store_unreachable", not self.store_reachable),
                ("draining", self.draining),
            )
            if wrong
        ]
        return ReadyState(ready=not reasons, reasons=reasons)


async def probe_store(store: Store, readiness: Readiness) -> NoReturn:
    """Every ``STORE_PROBE_INTERVAL``, read the newest history row; a read that fails or takes
    over ``STORE_PROBE_TIMEOUT`` makes the server unready until one succeeds. Never returns
    unless cancelled."""
    while True:
        await trio.sleep(STORE_PROBE_INTERVAL)
        reachable = False
        with trio.move_on_after(STORE_PROBE_TIMEOUT):
            try:
                await store.history(limit=1, before=None)
                reachable = True
            except Exception:  # a StoreError, or whatever the driver raised: log and go on
                logger.exception("the session store did not answer a read")
        if reachable != readiness.store_reachable:
            logger.warning("session store %s", "reachable again" if reachable else "unreachable")
        readiness.store_reachable = reachable
