"""The JavaScript client (clients/js/): its Node test suite, and its type check.

``node --test clients/js/test/`` starts a real ``python server.py`` per suite and drives the ES
module through drops, blackholes, replay, snapshots and reloads, and, against a server with a
key, through token refresh, close codes 4004 / 4005 / 1013, live sessions and user notices (see
clients/js/test/). Node 20
needs ``--experimental-websocket`` for its built-in WebSocket; Node 22+ has it on by default.
The type check (``tsc --noEmit``: the module against trio-sessions.d.ts) runs when TypeScript
is installed (``npm ci --prefix clients/js``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "clients" / "js"
NODE = shutil.which("node")
TSC = JS / "node_modules" / "typescript" / "bin" / "tsc"

pytestmark = [
    pytest.mark.skipif(
        NODE is None, reason="node is not installed (Debian's nodejs package, Node 20+)"
    ),
    pytest.mark.slow,
]


def _node_flags() -> list[str]:
    has_websocket = subprocess.run(
        [NODE, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"], check=False
    )
    return [] if has_websocket.returncode == 0 else ["--experimental-websocket"]


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_node_suite() -> None:
    result = _run([NODE, *_node_flags(), "--test", "clients/js/test/"], timeout=300)
    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]
    assert "# fail 0" in result.stdout
    assert "# pass 0" not in result.stdout, "the Node suite ran no test"


@pytest.mark.skipif(not TSC.exists(), reason="TypeScript not installed: npm ci --prefix clients/js")
def test_types() -> None:
    result = _run([NODE, str(TSC), "--noEmit", "-p", str(JS / "tsconfig.json")], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
