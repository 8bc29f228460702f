"""The load tool against ``python server.py``: its report, its JSON, and an honest shortfall."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from load import Stats

from .conftest import ROOT, running_server, server_process


def run_load(url: str, tmp_path: Path, *flags: str) -> tuple[int, str, dict]:
    out = tmp_path / "report.json"
    command = [sys.executable, "-m", "load", "--url", url, "--no-progress", "--json", str(out)]
    done = subprocess.run([*command, *flags], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, json.loads(out.read_text())


def test_report_and_json_against_the_server(tmp_path: Path) -> None:
    flags = ["--sessions", "2", "--participants", "6", "--rooms", "2", "--rate", "5"]
    flags += ["--patch-rate", "2", "--churn", "10", "--duration", "4", "--processes", "2"]
    with running_server() as server:
        flags += ["--metrics-url", server.admin_url + "/metrics"]  # /metrics is on the admin port
        code, stdout, report = run_load(server.url, tmp_path, *flags)
    assert code == 0, stdout
    assert "delivery ratio" in stdout and "verdict" in stdout
    assert report["clients"] == {"planned": 12, "connected": 12}
    messages = report["messages"]
    assert messages["sent"] > 0 and messages["expected"] == 5 * messages["sent"]
    assert messages["delivered"] == messages["expected"]  # churned clients got replays
    resumes = report["resumes"]
    assert resumes["drops"] > 0 and resumes["drops"] == resumes["replayed"] + resumes["snapshot"]
    assert report["patches"] > 0 and report["errors"] == {}
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert report["server"]["frames_sent_total"] >= messages["delivered"]
    assert report["verdict"] == {"ok": True, "shortfalls": []}


def test_an_overloaded_run_reports_the_shortfall_and_ends(tmp_path: Path) -> None:
    with server_process("--rate-limit", "2", "--rate-burst", "2") as url:
        flags = ["--sessions", "1", "--participants", "4", "--rate", "20", "--duration", "2"]
        code, stdout, report = run_load(url, tmp_path, *flags)
    assert code == 1, stdout
    assert report["errors"]["rate_limited"] > 0
    assert report["messages"]["ratio"] < 0.5
    assert any("delivered" in s for s in report["verdict"]["shortfalls"])


def test_latency_histogram_merges_and_ranks() -> None:
    a, b = Stats(), Stats()
    for ms in range(1, 101):
        (a if ms % 2 else b).record_latency(ms / 1000)
    a.merge(b)
    assert sum(a.latency.values()) == 100 and a.max_latency == 0.1
    assert 0.049 <= a.percentile(0.5) <= 0.052
    assert 0.098 <= a.percentile(0.99) <= 0.1
