"""``trio-sessions relations``: record, forget and list which guardians each ward has accepted.

::

    trio-sessions relations add WARD_ID GUARDIAN_ID
    trio-sessions relations remove WARD_ID GUARDIAN_ID
    trio-sessions relations list [--ward ID] [--json]

``--store SPEC`` (before or after the command; default ``$TRIO_SESSIONS_STORE``, else
``sqlite:trio-sessions.db``, as for the server) names the server's store file; the command may
run while the server does. Exit status: 0 done, 1 nothing changed (the relation was already
there, or was not), 2 bad usage or a store that cannot be opened or written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Final

import attrs
import trio

from ._api import StoreError
from ._open import DEFAULT_URL
from ._relations import open_relations

PROG: Final = "trio-sessions relations"
STORE_VARIABLE: Final = "TRIO_SESSIONS_STORE"
EXIT_OK: Final = 0
EXIT_UNCHANGED: Final = 1
EXIT_ERROR: Final = 2


def relations_main(argv: list[str]) -> int:
    """Run ``trio-sessions relations`` with ``argv`` (the words after ``relations``).

    Prints what it did (or the relations) on stdout and problems on stderr. Blocking: it runs
    its own ``trio.run``, so call it from a thread when inside Trio.

    Returns:
        The exit status: 0 done, 1 nothing changed, 2 bad usage or a store error.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit:  # argparse printed the help (0) or the usage error (2)
        return exit.code if isinstance(exit.code, int) else EXIT_ERROR
    if args.store == "memory":
        return _fail("the memory store keeps no relations: name the server's sqlite:PATH")
    try:
        status: int = trio.run(_run, args)
    except (StoreError, ValueError) as error:
        return _fail(str(error))
    return status


def _parser() -> argparse.ArgumentParser:
    store_help = f"the server's store, sqlite:PATH (env {STORE_VARIABLE}; default {DEFAULT_URL})"
    # --store is accepted before or after the command: the command's copy only overrides the
    # top-level value when it is given (default SUPPRESS).
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", metavar="SPEC", default=argparse.SUPPRESS, help=store_help)
    parser = argparse.ArgumentParser(
        prog=PROG, description="Record which guardians each ward has accepted (live sessions)."
    )
    parser.add_argument(
        "--store",
        metavar="SPEC",
        default=os.environ.get(STORE_VARIABLE, DEFAULT_URL),
        help=store_help,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in (
        ("add", "record that GUARDIAN_ID is a guardian of WARD_ID"),
        ("remove", "forget that GUARDIAN_ID is a guardian of WARD_ID"),
    ):
        command = commands.add_parser(name, parents=[store], help=summary, description=summary)
        command.add_argument("ward", metavar="WARD_ID")
        command.add_argument("guardian", metavar="GUARDIAN_ID")
    listing = commands.add_parser(
        "list", parents=[store], help="list relations", description="List relations."
    )
    listing.add_argument("--ward", metavar="ID", help="only this ward's guardians")
    listing.add_argument("--json", action="store_true", help="one JSON array of objects")
    return parser


async def _run(args: argparse.Namespace) -> int:
    async with open_relations(args.store) as relations:
        if args.command == "add":
            if await relations.add(args.ward, args.guardian):
                return _done(f"added: {args.guardian} is a guardian of {args.ward}")
            return _unchanged(f"{args.guardian} is already a guardian of {args.ward}")
        if args.command == "remove":
            if await relations.remove(args.ward, args.guardian):
                return _done(f"removed: {args.guardian} is no longer a guardian of {args.ward}")
            return _unchanged(f"{args.guardian} is not a guardian of {args.ward}")
        listed = await relations.list(args.ward)
    if args.json:
        print(json.dumps([attrs.asdict(relation) for relation in listed], indent=2))
    else:
        for relation in listed:
            print(f"{relation.ward}\t{relation.guardian}\t{relation.created_at}")
    return EXIT_OK


def _done(message: str) -> int:
    print(message)
    return EXIT_OK


def _unchanged(message: str) -> int:
    print(f"{PROG}: nothing changed: {message}", file=sys.stderr)
    return EXIT_UNCHANGED


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_ERROR
