"""How fast the SQLite session store brings sessions back at start-up.

Creates a store file with N sessions through the store itself (each with 10 participants, about
10 KB of state and a full tail of 100 events), then times, in a fresh process state, opening the
file (integrity check, schema) and ``load()``. Usage::

    .venv/bin/python -m bench.restart               # 1,000 and 10,000 sessions
    .venv/bin/python -m bench.restart 2000 --keep   # one size; keep the file
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from pathlib import Path
from typing import Final

import trio

from actors import (
    SessionChange,
    SessionRecord,
    StoredParticipant,
    StoredRoom,
)
from store import open_store

PARTICIPANTS: Final = 10
STATE_BYTES: Final = 10_000  # bytes of JSON state per session, roughly
TAIL: Final = 100  # events per session
BATCH: Final = 500  # sessions saved between two commits while creating the file


def _record(code: str, seq: int) -> SessionRecord:
    """A session with PARTICIPANTS seats, two rooms and about STATE_BYTES of state."""
    seats = [
        StoredParticipant(
            id=f"p{n}",
            user_id=f"user-{code}-{n}",
            name=f"Participant {n}",
            role="host" if n == 0 else "participant",
            token_hash=f"{n:064x}",
            joined_seq=n,
        )
        for n in range(PARTICIPANTS)
    ]
    state = {f"item{n}": {"text": "x" * 80, "votes": n, "open": True} for n in range(100)}
    return SessionRecord(
        code=code,
        epoch="epoch-1",
        host_user_id=f"user-{code}-0",
        host_id="p0",
        status="active",
        started_at="2026-11-23T16:00:00Z",
        created_wall=1.7e9,
        last_activity_wall=1.7e9,
        saved_wall=1.7e9,
        host_deadline_wall=None,
        participants=seats,
        rooms=[
            StoredRoom(name="poll", kind="poll", members=[s.id for s in seats]),
            StoredRoom(name="qa", kind="qa", members=[s.id for s in seats[:5]]),
        ],
        state=state,
        version=seq,
        seq=seq,
        peak_participants=PARTICIPANTS,
    )


def _change(code: str) -> SessionChange:
    """A session's record with its full tail of TAIL events (about 200 bytes each)."""
    events = [
        (
            seq,
            f'{{"type":"room:message","code":"{code}","seq":{seq},"at":"2026-11-23T16:00:00Z",'
            f'"room":"qa","sender":"p3","data":{{"text":"{"q" * 100}"}}}}',
        )
        for seq in range(1, TAIL + 1)
    ]
    return SessionChange(record=_record(code, TAIL), events=events)


async def _create(path: Path, sessions: int) -> float:
    """Fill a new store file with ``sessions`` sessions; return the seconds it took."""
    started = time.perf_counter()
    async with open_store(f"sqlite:{path}") as store:
        for n in range(sessions):
            store.save(_change(f"S{n:05d}"))
            if n % BATCH == BATCH - 1:
                await store.commit()
    return time.perf_counter() - started


async def _restart(path: Path, tails: bool) -> tuple[float, float, float, int, int]:
    """Open the file and load it: seconds to open, seconds to load (wall, then CPU of the
    process: the machine may be shared), sessions, events."""
    started = time.perf_counter()
    async with open_store(f"sqlite:{path}") as store:
        opened = time.perf_counter()
        cpu = time.process_time()
        loaded = await store.load(tails=tails)
        done = time.perf_counter()
        cpu = time.process_time() - cpu
    events = sum(len(s.events) for s in loaded.sessions)
    return opened - started, done - opened, cpu, len(loaded.sessions), events


def _report(path: Path, created: float | None) -> None:
    """Time opening and loading a store file (with and without tails); print the figures."""
    for tails in (True, False):
        gc.collect()
        _report_one(path, created, tails)


def _report_one(path: Path, created: float | None, tails: bool) -> None:
    """Time opening and loading a store file once, and print the figures."""
    opened, loading, cpu, sessions, events = trio.run(_restart, path, tails)
    megabytes = path.stat().st_size / 1e6
    print(
        f"{sessions:>6} sessions, {events:>8} events, {megabytes:6.0f} MB:"
        f" open {opened:.2f} s, load{'' if tails else ' (no tails)'} {loading:.2f} s"
        f" ({cpu:.2f} s CPU),"
        f" ready in {opened + loading:.2f} s"
        + ("" if created is None else f" (created in {created:.1f} s)"),
        flush=True,
    )


def main() -> None:
    """Create and time a store of each size asked for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10_000])
    parser.add_argument("--keep", action="store_true", help="keep the files (printed)")
    parser.add_argument("--load", type=Path, help="only time loading this existing file")
    args = parser.parse_args()
    if args.load is not None:
        _report(args.load, None)
        return
    directory = tempfile.mkdtemp(prefix="restart-")
    try:
        for size in args.sizes:
            path = Path(directory) / f"sessions-{size}.db"
            created = trio.run(_create, path, size)
            _report(path, created)
            if args.keep:
                print(f"  kept {path}")
    finally:
        if not args.keep:
            shutil.rmtree(directory)


if __name__ == "__main__":
    main()
