"""The demo app (clients/js/demo/) in headless Chromium: a host and three participants.

Each page is in its own browser context (its own storage and network), as separate people are.
Each participant answers; pages reload mid-poll on both sides (one while an answer is in
flight) and resume without losing an answer; one participant's network drops (Playwright's
offline mode) while the host pushes state, and it resumes with the missed events replayed.
The test asserts what the pages show; screenshots are kept under pytest's temporary directory.

The pages come from the server itself (``/demo/``, ``/client.js``), the WebSocket on the same
origin, as a user gets them after ``python server.py``.
Playwright drives Debian's Chromium (``executable_path``): it downloads no browser.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
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

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (tests/install-browser installs Debian's)"
)
expect = playwright_api.expect


# ---------------------------------------------------------------- servers


@pytest.fixture
def server_port() -> Iterator[int]:
    """A real ``python server.py`` with short heartbeats, so a dropped page is noticed fast."""
    server_dir = os.environ.get("TRIO_SESSIONS_SERVER_DIR", str(ROOT))
    args = [sys.executable, "server.py", "--port", "0", "--log-level", "info"]
    args += ["--heartbeat-interval", "0.5", "--rate-limit", "0"]
    env = {**os.environ, "TRIO_SESSIONS_STORE": "memory"}
    process = subprocess.Popen(args, cwd=server_dir, env=env, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    log = []
    for line in process.stderr:
        log.append(line)
        if match := re.search(r"listening on ws://[\d.]+:(\d+)/ws", line):
            break
    else:
        pytest.fail("server did not start:\n" + "".join(log))
    threading.Thread(target=process.stderr.read, daemon=True).start()  # keep its pipe drained
    try:
        yield int(match.group(1))
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def base_url(server_port: int) -> str:
    """The server itself serves the demo (``/demo/``) and the module (``/client.js``)."""
    return f"http://127.0.0.1:{server_port}"


# ---------------------------------------------------------------- the test


def test_demo_poll_survives_reloads_and_a_dropped_network(
    base_url: str, tmp_path_factory: pytest.TempPathFactory
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
            cy.click("#options button[data-option=C]")
            expect(host.locator("#answer-count")).to_have_text("3")
            expect(host.locator("#answers tr", has_text="Cy")).to_contain_text("C")
            expect(cy.locator("#results")).to_have_text("Results: A 1 · B 1 · C 1")
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
