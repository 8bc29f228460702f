"""``python -m load``: the same as ``trio-sessions-load``."""

from ._cli import main

main()
