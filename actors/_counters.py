"""What the session actors count, for metrics: one instance per supervisor, shared by its actors
(all of them run on the one Trio thread)."""

from __future__ import annotations

from collections import Counter

import attrs


@attrs.define
class ActorCounters:
    """Events published by type, and resumes by outcome (``replayed``: the missed events were
    sent; ``snapshot``: the full state was; ``refused``: the token was not accepted)."""

    events: Counter[str] = attrs.Factory(Counter)
    resumes: Counter[str] = attrs.Factory(Counter)
