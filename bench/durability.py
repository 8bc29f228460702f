"""What the SQLite session store costs a host writing state: ``state:patch`` latency and throughput.

Starts a real ``python server.py`` (pinned to core 0, ``--rate-limit 0 --frame-rate 0``) with
``--store sqlite:<a fresh temporary file>`` for every measurement, in three modes:

- ``default``: ``--durability default`` (write-behind: the reply does not wait for the disk);
- ``strict``: ``--durability strict`` (the reply waits for a committed, synced transaction);
- ``durable``: ``--durability default``, each patch sent with ``durable: true`` (the reply
  waits for the commit; the file is still ``synchronous=NORMAL``, so the commit is not synced).

``--modes memory ...`` adds the same load on ``--store memory``, the baseline without a store.

N hosts (default 1, then 10) connect, each creates its own session, then each sends
``state:patch`` requests back to back, every one awaiting its reply before the next, for
``--duration`` seconds after ``--warmup`` seconds. Measured per request: the time from sending
it to its reply (``time.perf_counter``); overall: completed patches per second, the server's
and this process's CPU (share of one core) during the measured window. This process, the load
side, runs on core 1. Everything is loopback; every run stops by itself.

    .venv/bin/python -m bench.durability                          # 3 modes x 1 and 10 hosts, 10 s
    .venv/bin/python -m bench.durability --duration 2 --hosts 1   # a smoke run
    .venv/bin/python -m bench.durability --runs 3 --modes memory default strict durable \\
        --dir . --json bench/durability.json                    # the full measurement
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import attrs
import orjson
import psutil  # type: ignore[import-untyped, unused-ignore]
import trio
import trio_websocket

# absolute, not relative: ``mypy --strict bench/durability.py`` (bench/ has no __init__.py)
from bench.servers import LOAD_CORE, SERVER_CORE, Running, Target, running, trio_sessions
from load import TrioSessions


@attrs.frozen
class Mode:
    """One way of asking for durability: the server's ``--durability`` and the patch's flag."""

    name: str
    label: str  # for the table
    durability: str  # the server's --durability
    durable_patch: bool  # each state:patch carries "durable": true
    sqlite: bool = True  # --store sqlite:<fresh file>, else --store memory (the baseline)


MODES: Final = {
    "memory": Mode("memory", "`--store memory` (baseline)", "default", False, sqlite=False),
    "default": Mode("default", "sqlite, default", "default", durable_patch=False),
    "strict": Mode("strict", "sqlite, strict", "strict", durable_patch=False),
    "durable": Mode("durable", "sqlite, default + `durable: true`", "default", True),
}
DEFAULT_MODES: Final = ["default", "strict", "durable"]
REPLY_GUARD: Final = 30.0  # seconds one reply may take before the run is abandoned
SETUP_GUARD: Final = 30.0  # seconds for every host to connect and create its session
ATTEMPTS: Final = 2  # a measurement that fails (say, the server did not start) is tried again


def target(mode: Mode) -> Target:
    """The server of one mode: the benchmark's trio-sessions command on a fresh SQLite file
    (or, for the baseline, ``--store memory``)."""
    store = () if mode.sqlite else ("--store", "memory")
    return Target(
        f"trio-sessions ({mode.name})",
        lambda port: trio_sessions(port, "--durability", mode.durability, *store),
        TrioSessions,
        "/ws",
        sqlite_store=mode.sqlite,
    )


@attrs.define
class HostFigures:
    """What one host saw in the measured window."""

    latencies: list[float] = attrs.field(factory=list)  # seconds, send to reply
    errors: dict[str, int] = attrs.field(factory=dict)  # error code -> count
    events: int = 0  # frames other than the reply read while waiting (the host's own updates)


class Host:
    """One host connection with its own session, speaking the wire protocol directly."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.events = 0
        self._ref = 0

    async def request(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Send a request with a fresh ref and return its reply (events meanwhile are counted)."""
        self._ref += 1
        ref = self._ref
        await self.ws.send_message(orjson.dumps({"type": kind, "ref": ref, **fields}).decode())
        with trio.fail_after(REPLY_GUARD):
            while True:
                frame: dict[str, Any] = orjson.loads(await self.ws.get_message())
                if frame.get("type") == "reply" and frame.get("ref") == ref:
                    return frame
                if frame.get("type") == "reply":  # a reply to nothing we asked: a protocol bug
                    raise RuntimeError(f"unexpected reply {frame!r}")
                self.events += 1

    async def setup(self, index: int, state_bytes: int) -> None:
        """hello, session:create and, with ``state_bytes``, a state of about that size."""
        for kind, fields in (
            ("hello", {"name": f"bench host {index}"}),
            ("session:create", {}),
        ):
            reply = await self.request(kind, **fields)
            if not reply.get("ok"):
                raise RuntimeError(f"{kind} failed: {reply.get('error')}")
        if state_bytes:
            reply = await self.request("state:set", state={"blob": "s" * state_bytes})
            if not reply.get("ok"):
                raise RuntimeError(f"state:set failed: {reply.get('error')}")


@attrs.define
class Window:
    """The measured period, set once every host is ready (perf_counter seconds)."""

    start: float = math.inf
    end: float = math.inf


async def run_host(
    url: str,
    index: int,
    mode: Mode,
    args: argparse.Namespace,
    go: trio.Event,
    window: Window,
    ready: Callable[[], None],
    figures: HostFigures,
) -> None:
    """Connect, create a session, then patch back to back until the window ends."""
    async with trio_websocket.open_websocket_url(url) as ws:
        host = Host(ws)
        await host.setup(index, args.state_bytes)
        ready()
        await go.wait()
        note = "p" * args.patch_bytes
        extra = {"durable": True} if mode.durable_patch else {}
        n = 0
        while True:
            n += 1
            sent = time.perf_counter()
            if sent >= window.end:
                break
            # the same keys every time: the state keeps its size, only the version grows
            reply = await host.request(
                "state:patch", patch={"n": n, "host": index, "note": note}, **extra
            )
            done = time.perf_counter()
            if sent < window.start:
                continue  # warm-up
            if reply.get("ok"):
                figures.latencies.append(done - sent)
            else:
                code = str((reply.get("error") or {}).get("code", "unknown"))
                figures.errors[code] = figures.errors.get(code, 0) + 1
        figures.events = host.events


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


async def measure(
    server: Running, mode: Mode, hosts: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One measurement: ``hosts`` hosts patching against ``server`` for the window."""
    go = trio.Event()
    window = Window()
    figures = [HostFigures() for _ in range(hosts)]
    ready_count = 0
    all_ready = trio.Event()

    def ready() -> None:
        nonlocal ready_count
        ready_count += 1
        if ready_count == hosts:
            all_ready.set()

    limit = SETUP_GUARD + args.warmup + args.duration + REPLY_GUARD + 10
    with trio.fail_after(limit):  # bounded whatever the server does
        async with trio.open_nursery() as nursery:
            for index in range(hosts):
                nursery.start_soon(
                    run_host, server.url, index, mode, args, go, window, ready, figures[index]
                )
            with trio.fail_after(SETUP_GUARD):
                await all_ready.wait()
            now = time.perf_counter()
            window.start = now + args.warmup
            window.end = window.start + args.duration
            go.set()
            await trio.sleep_until(trio.current_time() + args.warmup)
            server_cpu = server.cpu_seconds()
            load_cpu = time.process_time()
            await trio.sleep_until(trio.current_time() + args.duration)
            server_cpu = server.cpu_seconds() - server_cpu
            load_cpu = time.process_time() - load_cpu
    latencies = sorted(x for f in figures for x in f.latencies)
    errors: dict[str, int] = {}
    for f in figures:
        for code, count in f.errors.items():
            errors[code] = errors.get(code, 0) + count
    return {
        "mode": mode.name,
        "durability": mode.durability,
        "durable_patch": mode.durable_patch,
        "hosts": hosts,
        "duration_s": args.duration,
        "patches": len(latencies),
        "patches_per_s": round(len(latencies) / args.duration, 1),
        "per_host_patches_per_s": [round(len(f.latencies) / args.duration, 1) for f in figures],
        "p50_ms": _ms(percentile(latencies, 0.50)),
        "p90_ms": _ms(percentile(latencies, 0.90)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "max_ms": _ms(latencies[-1] if latencies else None),
        "errors": errors,
        # frames other than replies the hosts read, warm-up included (their own state:updated)
        "events": sum(f.events for f in figures),
        "server_cpu": round(server_cpu / args.duration, 3),
        # the server's CPU per patch: steadier than latency on a shared machine
        "server_cpu_us_per_patch": round(server_cpu / len(latencies) * 1e6, 1)
        if latencies
        else None,
        "load_cpu": round(load_cpu / args.duration, 3),
    }


def _file_bytes(path: Path | None) -> int | None:
    """The store file and its write-ahead log, in bytes."""
    if path is None:
        return None
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def filesystem(directory: str | None) -> dict[str, str]:
    """The mount that holds ``directory`` (strict mode measures its sync)."""
    where = os.path.realpath(directory or tempfile.gettempdir())
    best = None
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint
        if (where == mount or where.startswith(mount.rstrip("/") + "/")) and (
            best is None or len(mount) > len(best.mountpoint)
        ):
            best = part
    if best is None:
        return {"directory": where}
    return {"directory": where, "mount": best.mountpoint, "device": best.device, "fs": best.fstype}


def pin_load() -> None:
    """Run this process, the load side, on LOAD_CORE when the machine has it."""
    try:
        os.sched_setaffinity(0, {LOAD_CORE})
    except OSError as error:  # a one-core machine or a narrower cpuset
        print(
            f"warning: cannot pin the load side to core {LOAD_CORE} ({error}): the figures "
            "include the load side's share of the server's core",
            file=sys.stderr,
            flush=True,
        )


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Every (run, hosts, mode), interleaved so that drift on a shared machine hits each alike."""
    pin_load()
    fs = filesystem(args.dir)
    if fs.get("fs") in {"tmpfs", "ramfs"}:
        print(
            f"warning: {fs['directory']} is on {fs['fs']}: syncs cost nothing there, so strict "
            "mode measures no disk; use --dir on the disk a deployment would use",
            file=sys.stderr,
            flush=True,
        )
    out: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": psutil.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "filesystem": fs,
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "patch_bytes": args.patch_bytes,
            "state_bytes": args.state_bytes,
            "server_core": SERVER_CORE,
            "load_core": LOAD_CORE,
        },
        "results": [],
    }
    for run in range(args.runs):
        for hosts in args.hosts:
            for name in args.modes:
                mode = MODES[name]
                print(f"run {run + 1}/{args.runs}: {name}, {hosts} host(s)", flush=True)
                result = None
                for attempt in range(1, ATTEMPTS + 1):
                    try:
                        with running(target(mode), args.dir) as server:
                            result = await measure(server, mode, hosts, args)
                            result["store_bytes"] = _file_bytes(server.store_path)
                        break
                    except Exception as error:  # one failure does not lose the other figures
                        print(f"  -> failed: {error!r}", file=sys.stderr, flush=True)
                        out.setdefault("failures", []).append(
                            {
                                "run": run + 1,
                                "mode": name,
                                "hosts": hosts,
                                "attempt": attempt,
                                "error": repr(error),
                            }
                        )
                if result is None:
                    continue
                result["run"] = run + 1
                result["attempt"] = attempt
                out["results"].append(result)
                print(
                    f"  -> {result['patches_per_s']:,} patches/s, p50 {result['p50_ms']} ms, "
                    f"p99 {result['p99_ms']} ms, errors {result['errors'] or 0}",
                    flush=True,
                )
    out["summary"] = summarize(out["results"])
    return out


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (mode, hosts): the median of the runs' figures and the range of patches/s."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["mode"], r["hosts"]), []).append(r)
    rows = []
    for (mode, hosts), runs in groups.items():

        def median(key: str, runs: list[dict[str, Any]] = runs) -> Any:
            values = [r[key] for r in runs if r[key] is not None]
            return round(statistics.median(values), 3) if values else None

        rates = [r["patches_per_s"] for r in runs]
        rows.append(
            {
                "mode": mode,
                "hosts": hosts,
                "runs": len(runs),
                "patches_per_s": median("patches_per_s"),
                "patches_per_s_range": [min(rates), max(rates)],
                "p50_ms": median("p50_ms"),
                "p99_ms": median("p99_ms"),
                "max_ms": median("max_ms"),
                "server_cpu": median("server_cpu"),
                "server_cpu_us_per_patch": median("server_cpu_us_per_patch"),
                "load_cpu": median("load_cpu"),
                "errors": sum(sum(r["errors"].values()) for r in runs),
            }
        )
    return rows


def markdown(summary: list[dict[str, Any]]) -> str:
    """The summary as a markdown table (medians over runs)."""
    lines = [
        "| mode | hosts | patches/s | range | p50 ms | p99 ms | max ms | server CPU "
        "| server CPU µs/patch | load CPU | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary:
        lo, hi = row["patches_per_s_range"]
        lines.append(
            f"| {MODES[row['mode']].label} | {row['hosts']} | {row['patches_per_s']:,.0f} "
            f"| {lo:,.0f}-{hi:,.0f} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} "
            f"| {row['server_cpu']} | {row['server_cpu_us_per_patch']} | {row['load_cpu']} "
            f"| {row['errors']} |"
        )
    return "\n".join(lines)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def cli() -> None:
    """Parse the options, run every measurement, print the table (and write --json)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.durability",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=list(MODES),
        default=DEFAULT_MODES,
        help="what to measure; add memory for the same load on --store memory",
    )
    parser.add_argument(
        "--hosts", nargs="+", type=int, default=[1, 10], help="concurrent hosts, one session each"
    )
    parser.add_argument("--duration", type=_positive, default=10.0, help="measured seconds")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of patching before the measurement"
    )
    parser.add_argument("--runs", type=int, default=1, help="interleaved runs; medians shown")
    parser.add_argument(
        "--patch-bytes", type=int, default=64, help="bytes of the string in each patch"
    )
    parser.add_argument(
        "--state-bytes",
        type=int,
        default=0,
        help="a state of about this many bytes set before patching (each save writes it whole)",
    )
    parser.add_argument(
        "--dir",
        help="where the store file goes (a fresh directory under it per run, removed after); "
        "default: the system's temporary directory ($TMPDIR, else /tmp). Use the disk a "
        "deployment would use.",
    )
    parser.add_argument("--json", help="write every measurement to this file")
    args = parser.parse_args()
    if args.warmup < 0 or args.runs < 1 or min(args.hosts) < 1:
        parser.error("--warmup must be >= 0, --runs and --hosts >= 1")
    if not 0 <= args.state_bytes <= 1_000_000 or not 0 <= args.patch_bytes <= 1_000_000:
        parser.error("--state-bytes and --patch-bytes: 0 to 1,000,000 (the server's state limit)")
    out = trio.run(main, args)
    if args.json:
        with open(args.json, "wb") as file:
            file.write(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    print(f"store on {out['filesystem']}")
    print(markdown(out["summary"]))
    if out.get("failures"):
        lost = len(out["results"]) < args.runs * len(args.hosts) * len(args.modes)
        print(
            f"{len(out['failures'])} attempt(s) failed (see above), "
            + ("some measurements are missing" if lost else "all measured on a retry"),
            file=sys.stderr,
        )
        sys.exit(1 if lost else 0)


if __name__ == "__main__":
    cli()
