"""The demo app (clients/js/demo/) in headless Chromium: a host and three participants.

Each page is in its own browser context (its own storage and network), as separate people are.
Each participant answers; pages reload mid-poll on both sides (one while an answer is in
flight) and resume without losing an answer; one participant's network drops (Playwright's
offline mode) while the host pushes state, and it resumes with the missed events replayed.
Then the server restarts mid-poll as in a deploy (SIGTERM, a new process on the same port and
SQLite file): every page reconnects and resumes, and an answer given after the restart joins
those given before, none lost or doubled.
The test asserts what the pages show; screenshots are kept under pytest's temporary directory.

The pages come from the server itself (``/demo/``, ``/client.js``), the WebSocket on the same
origin, as a user gets them after ``python server.py``.
Playwright drives Debian's Chromium (``executable_path``): it downloads no browser.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "clients" / "js"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
# After a restart the clients come back on their backoff (full jitter, doubling from 500 ms):
# usually within a second or two of the new server listening, a few seconds when unlucky.
RESTART_TIMEOUT_MS = 30_000
SHUTDOWN_WAIT_S = 15  # the server's --shutdown-timeout is 10 s
BIND_RETRY_S = 5  # how long a restart may find the port still busy
START_TIMEOUT_S = 15  # a server not listening by then is killed and the test fails

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')"
)
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="no chromium on PATH (tests/install-browser installs Debian's)"
    ),
    pytest.mark.slow,
]
expect = playwright_api.expect


# ---------------------------------------------------------------- servers


def _free_port() -> int:
    """A port nobody listens on now: the server is given it, so a restart keeps the origin."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DemoServer:
    """A real ``python server.py`` on a fixed port and SQLite file, which can be restarted.

    Short heartbeats, so a dropped page is noticed fast. ``stop()`` is a deploy's SIGTERM
    (clients told 1012, sessions flushed); ``start()`` again brings them back from the file.
    """

    def __init__(self, port: int, store: Path) -> None:
        self.port = port
        self.store = store
        self.process: subprocess.Popen[str] | None = None
        self.log: list[str] = []  # every run's stderr, in order
        self._drainer: threading.Thread | None = None

    def start(self) -> None:
        """Start it and return once it listens; retry only while the port is briefly busy."""
        server_dir = os.environ.get("TRIO_SESSIONS_SERVER_DIR", str(ROOT))
        args = [sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--store", f"sqlite:{self.store}", "--log-level", "info"]
        args += ["--heartbeat-interval", "0.5", "--rate-limit", "0"]
        deadline = time.monotonic() + BIND_RETRY_S
        while True:
            process = subprocess.Popen(args, cwd=server_dir, stderr=subprocess.PIPE, text=True)
            assert process.stderr is not None
            watchdog = threading.Timer(START_TIMEOUT_S, process.kill)  # ends a hung start
            watchdog.start()
            run: list[str] = []
            for line in process.stderr:
                run.append(line)
                if match := re.search(r"listening on ws://[\d.]+:(\d+)/ws", line):
                    watchdog.cancel()
                    assert int(match.group(1)) == self.port, line
                    self.log += run
                    self.process = process
                    self._drainer = threading.Thread(target=self._drain, args=(process,))
                    self._drainer.daemon = True
                    self._drainer.start()
                    return
            watchdog.cancel()
            process.wait()
            self.log += run
            if "Address already in use" in "".join(run) and time.monotonic() < deadline:
                time.sleep(0.1)  # a retry pause, not a wait on anything the test checks
                continue
            pytest.fail(f"server did not start on port {self.port}:\n" + "".join(run))

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:  # keeps its pipe drained
            self.log.append(line)

    def stop(self) -> int:
        """SIGTERM, as a deploy does; the exit status once it has closed and flushed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(SHUTDOWN_WAIT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"server did not stop within {SHUTDOWN_WAIT_S} s:\n" + self.output())
        self.process = None
        if self._drainer is not None:
            self._drainer.join(5)  # its last lines, for output()
        return status

    def kill(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None

    def output(self) -> str:
        return "".join(self.log)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DemoServer]:
    """The server, on a port picked here and a store file of its own, listening."""
    running = DemoServer(_free_port(), tmp_path / "sessions.db")
    running.start()
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture
def base_url(server: DemoServer) -> str:
    """The server itself serves the demo (``/demo/``) and the module (``/client.js``)."""
    return f"http://127.0.0.1:{server.port}"


# ---------------------------------------------------------------- the test


def test_demo_poll_survives_reloads_a_dropped_network_and_a_server_restart(
    base_url: str, server: DemoServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    shots = tmp_path_factory.mktemp("demo-screenshots")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        contexts = []
        try:

            def open_page(path: str):  # type: ignore[no-untyped-def]
                context = browser.new_context(viewport={"width": 900, "height": 800})
                contexts.append(context)
                page = context.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.errors = errors  # type: ignore[attr-defined]
                page.goto(base_url + path)
                return context, page

            def shoot(page, name: str) -> None:  # type: ignore[no-untyped-def]
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

            # The host opens a session and a poll.
            _, host = open_page("/demo/")
            host.click("text=Host a poll")
            host.click("#create")
            expect(host.locator("#code")).to_have_text(re.compile(r"\S+"))
            code = host.locator("#code").inner_text()
            link = host.locator("#link").inner_text()
            assert code in link and link.startswith(base_url + "/demo/join.html")
            host.click("#open-poll")
            expect(host.locator("#poll-question")).to_have_text("Which option do you prefer?")
            expect(host.locator("#connection")).to_have_text("connected")

            # Three participants join by the short link.
            people = {}
            for name in ("Ana", "Ben", "Cy"):
                context, page = open_page(link.removeprefix(base_url))
                expect(page.locator("#code")).to_have_value(code)
                page.fill("#name", name)
                page.click("#join-form button")
                expect(page.locator("#poll-question")).to_have_text("Which option do you prefer?")
                people[name] = (context, page)
            expect(host.locator("#participant-count")).to_have_text("3")
            ana, ben, cy = (people[n][1] for n in ("Ana", "Ben", "Cy"))

            # Ana answers; then reloads, and her page still shows it, received.
            ana.click("#options button[data-option=A]")
            expect(host.locator("#answer-count")).to_have_text("1")
            expect(ana.locator("#my-answer")).to_have_text("Your answer: A (received)")
            ana.reload()
            expect(ana.locator("#connection")).to_contain_text("resumed")
            expect(ana.locator("#my-answer")).to_have_text("Your answer: A (received)")

            # Ben reloads before answering, then answers while the host's page reloads.
            ben.reload()
            expect(ben.locator("#connection")).to_contain_text("resumed")
            ben.click("#options button[data-option=B]")
            host.reload()
            expect(host.locator("#connection")).to_contain_text("resumed")
            expect(host.locator("#answer-count")).to_have_text("2")
            expect(host.locator("#answers tr", has_text="Ana")).to_contain_text("A")
            expect(host.locator("#answers tr", has_text="Ben")).to_contain_text("B")
            expect(ben.locator("#my-answer")).to_have_text("Your answer: B (received)")
            shoot(host, "host-after-reload")

            # Cy's network drops; the host pushes the results meanwhile; Cy comes back and
            # is replayed what it missed, then answers.
            cy_context = people["Cy"][0]
            cy_context.set_offline(True)
            expect(cy.locator("#connection")).to_have_text("reconnecting…")
            shoot(cy, "cy-offline")
            host.click("#push")
            expect(ana.locator("#results")).to_have_text("Results: A 1 · B 1 · C 0")
            expect(cy.locator("#results")).to_be_hidden()
            cy_context.set_offline(False)
            expect(cy.locator("#connection")).to_contain_text(
                re.compile(r"resumed · [1-9]\d* missed events? replayed")
            )
            expect(cy.locator("#results")).to_have_text("Results: A 1 · B 1 · C 0")

            # The server restarts mid-poll, as in a deploy: SIGTERM (every page told 1012, the
            # sessions flushed to the SQLite file), then a new process on the same port and file.
            # Every page reconnects on its own and resumes its seat, replayed what it missed;
            # the answers given before are all there, the results pushed before still shown.
            pages = {"host": host, "Ana": ana, "Ben": ben, "Cy": cy}
            for name, page in pages.items():
                shoot(page, f"before-restart-{name}")
            assert server.stop() == 0, server.output()
            for page in pages.values():  # the server is down: nothing else can show
                expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
                expect(page.locator("#connection")).to_have_text("reconnecting…")
            server.start()
            assert "restored 1 sessions; 0 expired" in server.output(), server.output()
            for page in pages.values():
                expect(page.locator("#connection")).to_have_text(
                    re.compile(r"^resumed · \d+ missed events? replayed$"),
                    timeout=RESTART_TIMEOUT_MS,
                )
                expect(page.locator("#connection")).to_have_attribute("data-state", "resumed")
            expect(host.locator("#answer-count")).to_have_text("2")
            expect(host.locator("#answers tr")).to_have_count(2)
            expect(host.locator("#answers tr", has_text="Ana")).to_contain_text("A")
            expect(host.locator("#answers tr", has_text="Ben")).to_contain_text("B")
            expect(ana.locator("#my-answer")).to_have_text("Your answer: A (received)")
            expect(ben.locator("#my-answer")).to_have_text("Your answer: B (received)")
            for page in (ana, ben, cy):
                expect(page.locator("#results")).to_have_text("Results: A 1 · B 1 · C 0")
            for name, page in pages.items():
                shoot(page, f"after-restart-{name}")

            # Cy answers on the restarted server: every answer from before and after the
            # restart is on the host's page, once each.
            cy.click("#options button[data-option=C]")
            expect(host.locator("#answer-count")).to_have_text("3")
            expect(host.locator("#answers tr")).to_have_count(3)
            expect(host.locator("#answers tr", has_text="Ana")).to_contain_text("A")
            expect(host.locator("#answers tr", has_text="Ben")).to_contain_text("B")
            expect(host.locator("#answers tr", has_text="Cy")).to_contain_text("C")
            expect(cy.locator("#my-answer")).to_have_text("Your answer: C (received)")
            for page in (ana, ben, cy):
                expect(page.locator("#results")).to_have_text("Results: A 1 · B 1 · C 1")
            for page in pages.values():
                expect(page.locator("#error")).to_be_empty()
            for name, (_, page) in people.items():
                shoot(page, f"participant-{name}")
            shoot(host, "host-three-answers")

            # The host closes the session; everyone is told.
            host.click("#close-session")
            for page in (host, ana, ben, cy):
                expect(page.locator("#ended-reason")).to_have_text("manual_stop")
            for page in (host, ana, ben, cy):
                assert page.errors == [], page.errors  # type: ignore[attr-defined]
        finally:
            for context in contexts:
                context.close()
            browser.close()
    print(f"screenshots: {shots}")
