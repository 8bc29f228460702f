"""Guardian relations (``store/_relations.py``), their table in the store's schema, and the
``relations`` command (``store/_relations_cli.py``), on real SQLite files under ``tmp_path``.

The SQLite side runs in worker threads, so these tests use the real clock with a ``fail_after``
guard around each, and never sleep.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from actors import ClosedSession
from store import (
    SCHEMA_VERSION,
    Relation,
    RelationStore,
    StoreError,
    open_relations,
    open_store,
    relations_main,
)
from store._schema import V1_LAYOUT
from tests.test_store import change

ROOT = Path(__file__).resolve().parent.parent
GUARD = 20.0  # seconds of real time any one test may take before it fails instead of hanging
EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CLI = "import sys; from server import main; main(['relations', *sys.argv[1:]])"  # trio-sessions relations


class Wall:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture(params=["memory", "sqlite"])
async def relations(request: pytest.FixtureRequest, db: Path) -> AsyncIterator[RelationStore]:
    """Each implementation, dating relations from EPOCH."""
    spec = "memory" if request.param == "memory" else f"sqlite:{db}"
    async with open_relations(spec, wall=Wall(EPOCH)) as store:
        yield store


def clean_flag(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        (value,) = conn.execute("SELECT value FROM meta WHERE key = 'clean'").fetchone()
        return int(value)
    finally:
        conn.close()


def schema(db: Path) -> list[tuple[str, str, str | None]]:
    """Every table and index of a file, with its SQL."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY name").fetchall()
        return [(kind, name, sql) for kind, name, sql in rows]
    finally:
        conn.close()


def make_v1_file(db: Path) -> None:
    """A file as schema version 1 left it, with a live session and a history row."""
    conn = sqlite3.connect(db, isolation_level=None)
    for statement in V1_LAYOUT:
        conn.execute(statement)
    conn.execute("INSERT INTO sessions VALUES ('OLD01', 3, x'7b7d')")
    conn.execute(
        "INSERT INTO history VALUES ('GONE1', 'u-host', 'a', 'b', ?, 60.0, 'idle_timeout', 4)",
        (EPOCH,),
    )
    conn.execute("PRAGMA user_version=1")
    conn.close()


# ------------------------------------------------------------------------- both implementations


async def test_add_remove_and_list(relations: RelationStore) -> None:
    """A relation is added once, listed, and removed once; both stores agree."""
    with trio.fail_after(GUARD):
        assert await relations.add("ward-1", "guardian-b")
        assert await relations.add("ward-1", "guardian-a")
        assert await relations.add("ward-2", "guardian-a")
        assert not await relations.add("ward-1", "guardian-a")  # already there
        assert await relations.guardians("ward-1") == ["guardian-a", "guardian-b"]
        assert await relations.wards("guardian-a") == ["ward-1", "ward-2"]
        stamp = "2026-01-01T00:00:00.000+00:00"
        assert await relations.list() == [
            Relation("ward-1", "guardian-a", stamp),
            Relation("ward-1", "guardian-b", stamp),
            Relation("ward-2", "guardian-a", stamp),
        ]
        assert await relations.list("ward-2") == [Relation("ward-2", "guardian-a", stamp)]
        assert await relations.remove("ward-1", "guardian-a")
        assert not await relations.remove("ward-1", "guardian-a")  # no longer there
        assert await relations.guardians("ward-1") == ["guardian-b"]
        assert await relations.wards("guardian-a") == ["ward-2"]
        assert await relations.remove("ward-2", "guardian-a")
        assert await relations.wards("guardian-a") == []
        assert await relations.list("ward-2") == []


async def test_a_relation_is_directional(relations: RelationStore) -> None:
    """(ward, guardian) says nothing about (guardian, ward)."""
    with trio.fail_after(GUARD):
        assert await relations.add("alice", "bob")
        assert await relations.guardians("bob") == []
        assert await relations.wards("alice") == []
        assert not await relations.remove("bob", "alice")
        assert await relations.add("bob", "alice")
        assert [(r.ward, r.guardian) for r in await relations.list()] == [
            ("alice", "bob"),
            ("bob", "alice"),
        ]


async def test_ids_are_validated(relations: RelationStore) -> None:
    """Ids are 1 to 256 characters; nobody is their own guardian."""
    with trio.fail_after(GUARD):
        with pytest.raises(ValueError, match=r"^a ward id must be 1 to 256 characters, not 0$"):
            await relations.add("", "bob")
        with pytest.raises(
            ValueError, match=r"^a guardian id must be 1 to 256 characters, not 257$"
        ):
            await relations.add("alice", "g" * 257)
        with pytest.raises(ValueError, match=r"^a ward cannot be their own guardian$"):
            await relations.add("alice", "alice")
        with pytest.raises(ValueError):
            await relations.remove("alice", "")
        with pytest.raises(ValueError):
            await relations.guardians("")
        with pytest.raises(ValueError):
            await relations.wards("x" * 257)
        with pytest.raises(ValueError):
            await relations.list("")
        assert await relations.add("w" * 256, "g" * 256)
        assert await relations.list() == [
            Relation("w" * 256, "g" * 256, "2026-01-01T00:00:00.000+00:00")
        ]


async def test_the_wall_clock_dates_each_relation() -> None:
    """created_at is the wall time of the add, ISO 8601 in UTC."""
    wall = Wall(EPOCH)
    with trio.fail_after(GUARD):
        async with open_relations("memory", wall=wall) as relations:
            await relations.add("a", "b")
            wall.now += 90.25
            await relations.add("a", "c")
            assert [r.created_at for r in await relations.list()] == [
                "2026-01-01T00:00:00.000+00:00",
                "2026-01-01T00:01:30.250+00:00",
            ]


async def test_an_unknown_spec_is_refused() -> None:
    for spec in ("postgres://x", "sqlite:", "memory:"):
        with pytest.raises(ValueError, match=r"^store must be memory or sqlite:PATH, not "):
            async with open_relations(spec):
                pass  # pragma: no cover


# -------------------------------------------------------------------------------- the file


async def test_relations_outlive_the_process(db: Path) -> None:
    """What is added is in the file for the next opening, dates included."""
    with trio.fail_after(GUARD):
        async with open_relations(f"sqlite:{db}", wall=Wall(EPOCH)) as relations:
            await relations.add("alice", "bob")
        async with open_relations(f"sqlite:{db}", wall=Wall(EPOCH + 3600)) as relations:
            assert not await relations.add("alice", "bob")
            assert await relations.list() == [
                Relation("alice", "bob", "2026-01-01T00:00:00.000+00:00")
            ]


async def test_a_version_1_file_is_migrated_by_either_opener(tmp_path: Path) -> None:
    """The relations' opener and the store's both take a version-1 file to the current schema,
    keep its data, and end with the layout a new file gets."""
    with trio.fail_after(GUARD):
        fresh = tmp_path / "fresh.db"
        async with open_relations(f"sqlite:{fresh}"):
            pass
        by_relations, by_store = tmp_path / "by-relations.db", tmp_path / "by-store.db"
        make_v1_file(by_relations)
        make_v1_file(by_store)
        async with open_relations(f"sqlite:{by_relations}", wall=Wall(EPOCH)) as relations:
            assert await relations.list() == []
            assert await relations.add("alice", "bob")
        assert clean_flag(by_relations) == 1  # the relations' opener leaves the flag alone
        async with open_store(f"sqlite:{by_store}", wall=Wall(EPOCH)) as store:
            (gone,) = await store.history(limit=10, before=None)
            assert (gone.code, gone.peak_participants) == ("GONE1", 4)
        for db in (by_relations, by_store):
            assert schema(db) == schema(fresh)
            conn = sqlite3.connect(db)
            assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
            assert conn.execute("SELECT code, seq FROM sessions").fetchall() == [("OLD01", 3)]
            conn.close()
        async with open_store(f"sqlite:{by_relations}", wall=Wall(EPOCH)) as store:
            assert (await store.closed_session("GONE1")) is not None
        async with open_relations(f"sqlite:{by_relations}") as relations:
            assert [(r.ward, r.guardian) for r in await relations.list()] == [("alice", "bob")]


async def test_relations_are_indexed_both_ways(db: Path) -> None:
    """Looking up by ward and by guardian are both index searches, not table scans."""
    with trio.fail_after(GUARD):
        async with open_relations(f"sqlite:{db}"):
            pass
    conn = sqlite3.connect(db)
    for column in ("ward", "guardian"):
        plan = " ".join(
            row[-1]
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN SELECT * FROM relations WHERE {column} = 'x'"
            )
        )
        assert plan.startswith("SEARCH"), plan
    conn.close()


async def test_a_newer_schema_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(
        StoreError,
        match=rf"^cannot open the session store .*: schema version {SCHEMA_VERSION + 1} is newer than this server's {SCHEMA_VERSION}$",
    ):
        async with open_relations(f"sqlite:{db}"):
            pass  # pragma: no cover


async def test_relations_and_the_session_store_share_the_file(db: Path) -> None:
    """Both connections write the same file at once; the store still shuts down clean."""
    with trio.fail_after(GUARD):
        async with (
            open_store(f"sqlite:{db}", wall=Wall(EPOCH)) as store,
            open_relations(f"sqlite:{db}", wall=Wall(EPOCH)) as relations,
        ):
            for n in range(20):
                store.save(change(f"S{n:04d}", 1, 3))
                assert await relations.add(f"ward-{n}", "guardian")
            store.close(
                ClosedSession(
                    code="S0000",
                    host_user_id="u-host",
                    started_at="a",
                    ended_at="b",
                    ended_wall=EPOCH,
                    duration_s=1.0,
                    reason="manual_stop",
                    peak_participants=2,
                )
            )
            await store.commit()
            assert len(await relations.wards("guardian")) == 20
        assert clean_flag(db) == 1
        async with open_store(f"sqlite:{db}", wall=Wall(EPOCH)) as store:
            loaded = await store.load()
            assert loaded.clean and len(loaded.sessions) == 19


# ------------------------------------------------------------------------------ the command


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the command in-process: its status, stdout and stderr."""
    status = relations_main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_the_command_adds_lists_and_removes(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:{db}"
    assert run(["--store", store, "add", "alice", "bob"], capsys) == (
        0,
        "added: bob is a guardian of alice\n",
        "",
    )
    assert run(["--store", store, "add", "alice", "bob"], capsys) == (
        1,
        "",
        "trio-sessions relations: nothing changed: bob is already a guardian of alice\n",
    )
    assert run(["add", "carol", "bob", "--store", store], capsys)[0] == 0  # --store after it
    status, out, err = run(["--store", store, "list"], capsys)
    assert status == 0 and err == ""
    assert [line.split("\t")[:2] for line in out.splitlines()] == [
        ["alice", "bob"],
        ["carol", "bob"],
    ]
    status, out, _ = run(["--store", store, "list", "--ward", "carol", "--json"], capsys)
    (listed,) = json.loads(out)
    assert status == 0 and (listed["ward"], listed["guardian"]) == ("carol", "bob")
    assert listed["created_at"].endswith("+00:00")
    assert run(["--store", store, "remove", "alice", "bob"], capsys) == (
        0,
        "removed: bob is no longer a guardian of alice\n",
        "",
    )
    assert run(["--store", store, "remove", "alice", "bob"], capsys) == (
        1,
        "",
        "trio-sessions relations: nothing changed: bob is not a guardian of alice\n",
    )
    assert run(["--store", store, "list", "--json", "--ward", "alice"], capsys) == (0, "[]\n", "")


def test_the_command_refuses_bad_usage_and_bad_stores(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit status 2 for a usage error, a bad id, the memory store, or a file it cannot use."""
    store = f"sqlite:{db}"
    for argv in ([], ["add", "alice"], ["frobnicate"], ["list", "--ward"]):
        status, _, err = run(["--store", store, *argv], capsys)
        assert status == 2 and "usage: trio-sessions relations" in err, argv
    assert run(["--store", store, "add", "alice", "alice"], capsys) == (
        2,
        "",
        "trio-sessions relations: a ward cannot be their own guardian\n",
    )
    assert run(["--store", "memory", "list"], capsys) == (
        2,
        "",
        "trio-sessions relations: the memory store keeps no relations: name the server's"
        " sqlite:PATH\n",
    )
    assert run(["--store", "redis:x", "list"], capsys)[0] == 2
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database, not at all, no" * 100)
    status, _, err = run(["--store", f"sqlite:{garbage}", "list"], capsys)
    assert status == 2
    assert err.startswith(f"trio-sessions relations: cannot open the session store {garbage}: ")
    status, out, _ = run(["--help"], capsys)
    assert status == 0 and "add" in out and "remove" in out and "list" in out


def test_the_store_comes_from_the_environment_by_default(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRIO_SESSIONS_STORE names the file; without it, sqlite:trio-sessions.db in the cwd."""
    monkeypatch.setenv("TRIO_SESSIONS_STORE", f"sqlite:{db}")
    assert run(["add", "alice", "bob"], capsys)[0] == 0
    monkeypatch.delenv("TRIO_SESSIONS_STORE")
    monkeypatch.chdir(tmp_path)
    assert run(["add", "dora", "eve"], capsys)[0] == 0
    assert (tmp_path / "trio-sessions.db").is_file()
    assert run(["--store", f"sqlite:{db}", "list"], capsys)[1].startswith("alice\tbob\t")


def test_the_command_runs_as_a_process(db: Path) -> None:
    """Exit statuses and output as a shell sees them, through the server's command line
    (``trio-sessions relations ...``)."""

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", CLI, "--store", f"sqlite:{db}", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=GUARD,
            check=False,
        )

    added = cli("add", "alice", "bob")
    assert (added.returncode, added.stdout) == (0, "added: bob is a guardian of alice\n")
    assert cli("add", "alice", "bob").returncode == 1
    listed = cli("list", "--json")
    assert listed.returncode == 0
    assert [(r["ward"], r["guardian"]) for r in json.loads(listed.stdout)] == [("alice", "bob")]
    assert cli("remove", "alice", "bob").returncode == 0
    assert cli("remove", "alice", "bob").returncode == 1
    assert cli("add", "alice").returncode == 2


async def test_the_command_changes_what_an_open_store_sees(db: Path) -> None:
    """Relations added or removed by the command, in-process or as another process, show in
    a RelationStore already open on the file, while a session store writes it too."""
    store_spec = f"sqlite:{db}"
    with trio.fail_after(GUARD):
        async with (
            open_store(store_spec) as store,
            open_relations(store_spec) as relations,
        ):
            assert await relations.guardians("alice") == []
            status = await trio.to_thread.run_sync(
                relations_main, ["--store", store_spec, "add", "alice", "bob"]
            )
            assert status == 0
            assert await relations.guardians("alice") == ["bob"]
            store.save(change("LIVE1", 1, 2))
            process = await trio.run_process(
                [sys.executable, "-c", CLI, "--store", store_spec, "add", "alice", "carol"],
                cwd=ROOT,
                env={**os.environ},
                capture_stdout=True,
                check=False,
            )
            assert process.returncode == 0
            assert await relations.guardians("alice") == ["bob", "carol"]
            status = await trio.to_thread.run_sync(
                relations_main, ["--store", store_spec, "remove", "alice", "bob"]
            )
            assert status == 0
            assert await relations.guardians("alice") == ["carol"]
            await store.commit()
        assert clean_flag(db) == 1
