"""RFC 7386 JSON merge patch."""

from __future__ import annotations

from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """Return ``target`` amended by ``patch`` (RFC 7386). Neither argument is modified.

    Objects merge key by key, ``null`` deletes a key, anything else replaces. Untouched
    sub-objects are shared with ``target``, which is safe because state is never mutated in place.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
