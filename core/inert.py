"""Make untrusted text inert before it reaches a terminal.

Every C0/C1 control, DEL and bidi control becomes a visible escape (`\\x1b`, `\\u202e`):
nothing is deleted, so the operator sees that something odd was there. Markup is not a
concern here: callers render the result as plain text (`rich.text.Text`, `markup=False`).
"""

from __future__ import annotations

import json
from typing import Any

_BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _escape(code: int) -> str:
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


_TABLE = {c: _escape(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0), *_BIDI)}


def inert(value: object, limit: int = 2000) -> str:
    """`value` as a single safe line: controls escaped, truncated to `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + f"… (+{len(text) - limit} chars)"
    return text.translate(_TABLE)


def inert_json(value: Any, limit: int = 4000) -> str:
    """Pretty JSON of untrusted data, every string in it made inert, kept multi-line."""
    pretty = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    if len(pretty) > limit:
        pretty = pretty[:limit] + f"\n… (+{len(pretty) - limit} chars)"
    return "\n".join(inert(line, limit) for line in pretty.split("\n"))
