"""The browser client and its demo as plain-HTTP routes: ``/client.js`` and ``/demo/``.

Files are served by WhiteNoise (a well-kept static-file server: content types, path safety,
caching headers), called through its WSGI interface from the accept loop's route. Every file is
read into memory once, at start-up, so answering never touches the disk on the Trio thread.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from whitenoise import WhiteNoise

CLIENT_DIR: Final = Path(__file__).resolve().parent.parent / "clients" / "js"
DEMO_PREFIX: Final = "/demo/"
CLIENT_PATH: Final = "/client.js"

Answer = tuple[int, str, bytes]


def _not_found(_environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"not found"]


class StaticFiles:
    """Answers ``/client.js`` and ``/demo/...`` from ``clients/js`` (``None``: not ours)."""

    def __init__(self, root: Path = CLIENT_DIR) -> None:
        # autorefresh: WhiteNoise looks a path up when asked instead of scanning the folders
        # (clients/js also holds node_modules); only the paths cached below are ever asked.
        self._app = WhiteNoise(_not_found, autorefresh=True, index_file=True)
        self._app.add_files(str(root / "demo"), prefix=DEMO_PREFIX)
        self._app.add_files(str(root), prefix="/js/")
        served = {CLIENT_PATH: "/js/trio-sessions.js", DEMO_PREFIX: DEMO_PREFIX}
        for file in sorted((root / "demo").iterdir()):
            if file.is_file():
                served[DEMO_PREFIX + file.name] = DEMO_PREFIX + file.name
        self._cache = {path: self._call(source) for path, source in served.items()}

    def __call__(self, path: str) -> Answer | None:
        """The answer for ``path``, from memory; ``None`` (404) for anything else."""
        return self._cache.get(path)

    def _call(self, path: str) -> Answer:
        status: list[str] = []
        headers: list[tuple[str, str]] = []

        def start_response(line: str, head: list[tuple[str, str]], *_exc: Any) -> None:
            status.append(line)
            headers.extend(head)

        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "0",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
        }
        body = b"".join(self._app(environ, start_response))
        code = int(status[0].split()[0])
        if code in (301, 302):  # /demo -> /demo/: serve the index under the path asked
            return self._call(dict(headers)["Location"])
        content_type = dict((k.lower(), v) for k, v in headers).get("content-type", "text/plain")
        return code, content_type, body
