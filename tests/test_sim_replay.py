"""A simulation is reproducible from its seed alone: the same frames at the same virtual times
in separate processes (plain ``trio.run``, different hash seeds), and another seed differs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from .conftest import ROOT

SCENARIO = ["--clients", "100", "--minutes", "15", "--faults", "0.2"]


def run_sim(seed: int, hash_seed: str) -> dict[str, str]:
    """``python -m sim`` in a fresh process; its report as ``{key: value}``."""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-m", "sim", *SCENARIO, "--seed", str(seed)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(re.findall(r"^(\w+): (.*)$", done.stdout, re.MULTILINE))


def test_the_same_seed_gives_the_same_frames_in_another_process() -> None:
    first, second = run_sim(5, hash_seed="1"), run_sim(5, hash_seed="2")
    assert first["invariants"] == "all hold" and int(first["frames"]) > 10_000
    assert int(first["resumes"]) > 0 and first["vanished_hosts"] == "1"  # the faults ran
    assert re.fullmatch(r"[0-9a-f]{32}", first["digest"])
    assert first == second
    other = run_sim(6, hash_seed="1")
    assert other["digest"] != first["digest"]
