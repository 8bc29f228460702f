"""The run's report: figures, a verdict naming what fell short and why, and its table."""

from __future__ import annotations

from typing import Any, Final

import attrs

from ._options import Plan
from ._stats import Stats

GENERATOR_CPU_LIMIT: Final = 0.9  # a load process busier than this may be what limits the run
GENERATOR_LAG_LIMIT: Final = 0.25  # seconds senders may run late before the generator is suspect


def report(
    plan: Plan,
    setup: Stats,
    stats: Stats,
    per_process: dict[int, Stats],
    missing: list[int],
    before: dict[str, float] | None,
    after: dict[str, float] | None,
) -> dict[str, Any]:
    """The run's figures plus a verdict naming what fell short, and why."""
    figures = stats.summary()
    connected = setup.summary()
    figures["clients"] = connected["clients"]
    figures["connect_ms"] = connected["connect_ms"]
    figures["errors"] = {**connected["errors"], **figures["errors"]}
    planned_rate = setup.connected * plan.rates.message_rate
    achieved_rate = stats.sent / plan.duration if plan.duration else 0.0
    cpu = {
        p: round(s.cpu_seconds / s.wall_seconds, 3)
        for p, s in per_process.items()
        if s.wall_seconds
    }
    figures["generator"] = {
        "processes": plan.processes,
        "cpu_share_per_process": cpu,
        "send_rate_planned": round(planned_rate, 1),
        "send_rate_achieved": round(achieved_rate, 1),
        "worst_send_lag_s": round(stats.send_lag, 3),
    }
    shortfalls = []
    if missing:
        shortfalls.append(f"load processes {missing} did not finish in time")
    if setup.connected < setup.clients:
        shortfalls.append(
            f"{setup.clients - setup.connected} of {setup.clients} clients did not join"
        )
    ratio = figures["messages"]["ratio"]
    if ratio is not None and ratio < 0.99:
        shortfalls.append(f"delivered {ratio:.1%} of the expected messages")
    p99 = figures["latency_ms"]["p99"]
    if p99 is not None and p99 > 100:
        shortfalls.append(f"p99 latency {p99:.0f} ms")
    generator_limited = any(share >= GENERATOR_CPU_LIMIT for share in cpu.values()) or (
        stats.send_lag > GENERATOR_LAG_LIMIT
    )
    if generator_limited:
        busiest = max(cpu.values(), default=0.0)
        shortfalls.append(
            f"the load generator was the limit (busiest process at {busiest:.0%} of a core, "
            f"senders up to {stats.send_lag:.2f} s late): give it more cores with --processes "
            "or lower the load; these figures do not show the server's limit"
        )
    elif shortfalls:
        shortfalls.append("the load generator kept up: the shortfall is the server's")
    figures["verdict"] = {"ok": not shortfalls, "shortfalls": shortfalls}
    figures["plan"] = attrs.asdict(plan)
    if after is not None:
        figures["server"] = {
            name.removeprefix("trio_sessions_"): value - (before or {}).get(name, 0)
            if name.endswith("_total")
            else value
            for name, value in after.items()
        }
    return figures


def print_report(figures: dict[str, Any]) -> None:
    """The report as a readable table on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="trio-sessions-load report", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    messages, latency = figures["messages"], figures["latency_ms"]
    generator = figures["generator"]
    rows = [
        (
            "clients connected",
            f"{figures['clients']['connected']} of {figures['clients']['planned']}",
        ),
        ("connect time p50/p99/max", _ms(figures["connect_ms"], "p50", "p99", "max")),
        ("messages sent", f"{messages['sent']:,}"),
        ("delivered / expected", f"{messages['delivered']:,} / {messages['expected']:,}"),
        ("delivery ratio", "-" if messages["ratio"] is None else f"{messages['ratio']:.4f}"),
        ("delivered per second", f"{messages['delivered_per_s'] or 0:,.0f}"),
        ("latency p50/p90/p99/max", _ms(latency, "p50", "p90", "p99", "max")),
        ("state patches sent", f"{figures['patches']:,}"),
        (
            "drops / resumed replayed / snapshot",
            "{drops} / {replayed} / {snapshot}".format(**figures["resumes"]),
        ),
        ("errors", ", ".join(f"{k}: {v}" for k, v in figures["errors"].items()) or "none"),
        (
            "send rate planned / achieved",
            f"{generator['send_rate_planned']:,} / {generator['send_rate_achieved']:,} per s",
        ),
        (
            "load process CPU",
            ", ".join(f"{share:.0%}" for share in generator["cpu_share_per_process"].values()),
        ),
    ]
    if "server" in figures:
        server = figures["server"]
        rows.append(
            (
                "server /metrics",
                f"frames sent {server.get('frames_sent_total', 0):,.0f}, "
                f"received {server.get('frames_received_total', 0):,.0f}, "
                f"slow consumers {server.get('slow_consumers_total', 0):.0f}, "
                f"open connections {server.get('connections_open', 0):.0f}",
            )
        )
    else:
        rows.append(("server /metrics", "not available"))
    verdict = figures["verdict"]
    rows.append(("verdict", "ok" if verdict["ok"] else "\n".join(verdict["shortfalls"])))
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def _ms(figures: dict[str, float | None], *keys: str) -> str:
    return " / ".join("-" if figures[k] is None else f"{figures[k]:.1f}" for k in keys) + " ms"
