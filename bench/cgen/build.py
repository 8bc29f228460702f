"""Compiles ``loadgen.c`` with the machine's gcc into a cache directory, at benchmark time.

No binary is kept in the source tree: the executable goes to ``$XDG_CACHE_HOME`` (or
``~/.cache``, or the system's temporary directory) under ``trio-sessions-bench/``, named by a
hash of the source, the compiler's version and the flags, so a changed source or compiler is
rebuilt and an unchanged one is not. ``python -m bench.cgen.build`` builds and prints the path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "loadgen.c"
FLAGS = ["-O2", "-Wall", "-Wextra", "-std=gnu11"]


class BuildError(RuntimeError):
    """gcc is missing or refused the source."""


def compiler() -> str | None:
    """The C compiler to use: ``$CC`` if set, else gcc (None if there is none)."""
    return shutil.which(os.environ.get("CC", "gcc"))


def cache_dir() -> Path:
    """Where built generators are kept (created if missing)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    for candidate in (Path(base), Path(tempfile.gettempdir())):
        directory = candidate / "trio-sessions-bench"
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(directory, os.W_OK):
            return directory
    raise BuildError("no writable cache directory for the C load generator")


def _version(cc: str) -> str:
    done = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.stdout else cc


def build(force: bool = False) -> Path:
    """The path of the compiled generator, compiling it first if this source was not yet."""
    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler: install gcc (Debian: apt-get install gcc)")
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(_version(cc).encode())
    digest.update(" ".join(FLAGS).encode())
    target = cache_dir() / f"loadgen-{digest.hexdigest()[:16]}"
    if target.exists() and not force:
        return target
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    done = subprocess.run(
        [cc, *FLAGS, "-o", str(partial), str(SOURCE)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BuildError(f"gcc failed on {SOURCE.name}:\n{done.stderr}")
    if done.stderr.strip():  # warnings: show them, the generator still runs
        print(done.stderr, file=sys.stderr)
    os.replace(partial, target)  # atomic: a concurrent build never sees half a file
    return target


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))
