"""``trio-sessions-load``: drive a running server with simulated sessions and report.

One load process per core it is given (``--processes``), each a Trio run with its share of the
sessions (:mod:`load._runner`); the plan comes from the command line (:mod:`load._options`), the
report and its verdict from :mod:`load._report`, the live display from :mod:`load._display`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from ._options import parse_args
from ._report import print_report
from ._runner import run


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point; exits 1 when the run fell short (see the verdict)."""
    plan, args = parse_args(argv)
    figures = run(plan, show_progress=not args.no_progress)
    print_report(figures)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(figures, file, indent=2)
    sys.exit(0 if figures["verdict"]["ok"] else 1)
