"""Server memory per idle connected participant."""

from __future__ import annotations

from typing import Any

import trio

from load import Swarm

from .servers import Running

MEMBERS = 50  # per session or room


async def idle_memory(server: Running, connections: int) -> dict[str, Any]:
    """RSS growth of ``server`` with ``connections`` idle clients joined, per connection."""
    await trio.to_thread.run_sync(server.wait_idle)
    base = server.rss()
    groups = list(range(connections // MEMBERS))
    swarm = Swarm(server.url, server.target.dialect(), groups, members=MEMBERS)
    async with trio.open_nursery() as nursery:
        await swarm.connect(nursery, ramp_up=2000)
        await trio.to_thread.run_sync(server.wait_idle)
        rss = server.rss()
        nursery.cancel_scope.cancel()
    joined = swarm.setup.connected
    return {
        "connections": joined,
        "rss_before_mb": round(base / 2**20, 1),
        "rss_mb": round(rss / 2**20, 1),
        "kib_per_connection": round((rss - base) / joined / 1024, 1) if joined else None,
    }
