"""The C load generator for the fan-out benchmarks: ``loadgen.c`` (one thread, epoll), the
build step that compiles it with the machine's gcc when a benchmark runs (``build.py``), and
the Python class that drives it like the Node.js generator (``generator.py``)."""
