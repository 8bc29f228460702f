"""The live progress display of a load run (rich, on a terminal only)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from ._options import Plan
from ._stats import Stats


def merged(parts: Iterable[Stats]) -> Stats:
    """One :class:`Stats` adding up what several load processes measured."""
    total = Stats()
    for part in parts:
        total.merge(part)
    return total


class Progress:
    """A live line per second: clients, sent, delivered, ratio, p99 so far."""

    def __init__(self, plan: Plan, *, enabled: bool) -> None:
        self._plan = plan
        self._enabled = enabled and sys.stderr.isatty()
        self._live: Any = None

    def __enter__(self) -> Progress:
        if self._enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, setups: dict[int, Stats], latest: dict[int, Stats]) -> None:
        if self._live is None:
            return
        from rich.table import Table

        setup, stats = merged(setups.values()), merged(latest.values())
        p99 = stats.percentile(0.99)
        table = Table(title=f"trio-sessions-load → {self._plan.url}")
        for column in ("clients", "elapsed", "sent", "delivered / expected", "p99", "errors"):
            table.add_column(column, justify="right")
        table.add_row(
            f"{setup.connected}/{self._plan.sessions * self._plan.participants}",
            f"{stats.wall_seconds:.0f}/{self._plan.duration:.0f} s",
            f"{stats.sent:,}",
            f"{stats.delivered:,} / {stats.expected:,}",
            "-" if p99 is None else f"{p99 * 1000:.1f} ms",
            str(sum(setup.errors.values()) + sum(stats.errors.values())),
        )
        self._live.update(table)
