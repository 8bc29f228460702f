"""The documentation names what the code has: every flag, close code and error code."""

from __future__ import annotations

from pathlib import Path

import attrs

from actors import Config
from protocol import CLOSE_REASONS, CloseCode, ErrorCode

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_flag_is_in_the_configuration_table() -> None:
    table = (DOCS / "operations.md").read_text().split("## The session store")[0]
    missing = [
        field.name
        for field in attrs.fields(Config)
        if f"| `--{field.name.replace('_', '-')}` |" not in table
    ]
    assert missing == []


def test_every_close_code_error_code_and_close_reason_is_in_the_protocol() -> None:
    protocol = (DOCS / "protocol.md").read_text()
    assert [c for c in CloseCode if f"| {c.value} |" not in protocol] == []
    assert [c for c in ErrorCode if f"| `{c.value}` |" not in protocol] == []
    assert [r for r in CLOSE_REASONS if f"`{r}`" not in protocol] == []
