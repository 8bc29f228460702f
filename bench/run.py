"""Every server benchmark in one command; prints the tables of docs/performance.md.

    python -m bench.run                 # 3 interleaved fan-out runs, memory, reconnect storm
    python -m bench.run --runs 1 --only fanout --json bench-results.json

Each server runs pinned to core 0 (taskset); this process, the load generator, to core 1.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
from typing import Any

import psutil
import trio

from .fanout import sweep
from .generators import install_node_loadgen, node_available
from .memory import idle_memory
from .servers import TARGETS, pin_load, running
from .storm import storm

SHAPES = [(10, 50), (100, 10)]  # sessions (rooms) x participants
MEMORY_SIZES = [1_000, 10_000]


async def fanout(runs: int, targets: list[str], generator: str) -> dict[str, Any]:
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in range(runs):
        for groups, members in SHAPES:
            for name in targets:  # interleaved: each run visits every server once
                print(f"run {run + 1}/{runs}: {name}, {groups}x{members}", flush=True)
                with running(TARGETS[name]) as server:
                    result = await sweep(server, groups, members, generator)
                results.setdefault(name, {}).setdefault(f"{groups}x{members}", []).append(result)
                best = result.get("best") or {}
                print(f"  -> {best.get('delivered_per_s')} deliveries/s", flush=True)
    return results


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Median and spread per server and shape, and trio-sessions' ratio to each other server."""
    table: dict[str, Any] = {}
    for name, shapes in results.items():
        for shape, runs in shapes.items():
            rates = [(r.get("best") or {}).get("delivered_per_s", 0) for r in runs]
            p99s = [(r.get("half") or {}).get("p99_ms") for r in runs]
            p50s = [(r.get("half") or {}).get("p50_ms") for r in runs]
            cpus = [(r.get("best") or {}).get("server_cpu") for r in runs]
            gcs = [((r.get("half") or {}).get("gc") or {}) for r in runs]
            table.setdefault(shape, {})[name] = {
                "gc_over_20ms_at_half": sum(g.get("over_20ms", 0) for g in gcs)
                if any(gcs)
                else None,
                "gc_longest_at_half_s": max(
                    (g["longest_at_most_s"] for g in gcs if g.get("longest_at_most_s")),
                    key=lambda b: math.inf if b == "+Inf" else float(b),
                    default=None,
                ),
                "delivered_per_s_median": statistics.median(rates),
                "delivered_per_s_range": [min(rates), max(rates)],
                "p50_ms_at_half": _median(p50s),
                "p99_ms_at_half": _median(p99s),
                "server_cpu_at_best": _median(cpus),
                "generator_limited_runs": sum(bool(r.get("generator_limited")) for r in runs),
            }
    for row in table.values():
        ours = row.get("trio-sessions", {}).get("delivered_per_s_median")
        for cells in row.values():
            if ours and cells["delivered_per_s_median"]:
                cells["trio_sessions_ratio"] = round(ours / cells["delivered_per_s_median"], 2)
    return table


def _cell(value: Any) -> Any:
    return "-" if value is None else value


def _median(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def markdown(summary: dict[str, Any], memory: dict[str, Any], storm_result: Any) -> str:
    lines = []
    if summary:
        lines += [
            "| shape | server | deliveries/s (median) | range | p50 / p99 at half (ms) "
            "| server CPU | trio-sessions ÷ it | load-limited runs | GC pauses > 20 ms at half "
            "| longest GC pause at half (s, at most) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for shape, row in summary.items():
            for name, c in row.items():
                lo, hi = c["delivered_per_s_range"]
                lines.append(
                    f"| {shape} | {name} | {c['delivered_per_s_median']:,} | {lo:,}-{hi:,} "
                    f"| {c['p50_ms_at_half']} / {c['p99_ms_at_half']} "
                    f"| {c['server_cpu_at_best']} | {c.get('trio_sessions_ratio', '-')} "
                    f"| {c['generator_limited_runs']} | {_cell(c['gc_over_20ms_at_half'])} "
                    f"| {_cell(c['gc_longest_at_half_s'])} |"
                )
    if memory:
        lines += [
            "",
            "| server | idle connections | RSS before → after (MB) | KiB per connection |",
        ]
        lines += ["|---|---:|---:|---:|"]
        for name, rows in memory.items():
            for m in rows:
                lines.append(
                    f"| {name} | {m['connections']:,} | {m['rss_before_mb']} → {m['rss_mb']} "
                    f"| {m['kib_per_connection']} |"
                )
    if storm_result:
        s = storm_result
        lines += [
            "",
            f"Reconnect storm: {s['clients']:,} clients dropped at once; all back after "
            f"{s['all_back_s']} s (median {s['p50_back_s']} s), {s['replayed']:,} resumed by "
            f"replay, {s['events_missing']} events missing.",
        ]
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    pin_load()
    out: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": psutil.cpu_count(),
            "python": platform.python_version(),
        }
    }
    if "fanout" in args.only:
        if args.generator == "node":
            install_node_loadgen()
        out["generator"] = args.generator
        out["fanout"] = await fanout(args.runs, args.targets, args.generator)
        out["fanout_summary"] = summarize(out["fanout"])
    if "memory" in args.only:
        out["memory"] = {}
        for name in ("trio-sessions", "trio-websocket relay"):
            for size in MEMORY_SIZES:
                with running(TARGETS[name]) as server:
                    print(f"memory: {name}, {size} idle connections", flush=True)
                    out["memory"].setdefault(name, []).append(await idle_memory(server, size))
    if "storm" in args.only:
        with running(TARGETS["trio-sessions"]) as server:
            print("reconnect storm", flush=True)
            out["storm"] = await storm(server)
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", nargs="+", default=["fanout", "memory", "storm"])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument(
        "--generator",
        choices=["node", "python", "c"],
        default="node" if node_available() else "python",
        help="fan-out load generator: Node.js (default where installed), the load tool's "
        "engine, or the C one (bench/cgen, built with gcc)",
    )
    parser.add_argument("--json", help="write every measurement to this file")
    args = parser.parse_args()
    out = trio.run(main, args)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(out, file, indent=2)
    print(markdown(out.get("fanout_summary", {}), out.get("memory", {}), out.get("storm")))


if __name__ == "__main__":
    cli()
