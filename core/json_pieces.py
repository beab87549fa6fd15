"""A model's JSON text in pieces: one large sequence field encoded a chunk at a time.

At 100k actions a plan's or a plan result's whole JSON text is tens of MB, and the encoder's
buffer, the decoded text and every concatenation around it each hold another copy at once.
Written piece by piece, the same bytes never exist whole in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel

#: Items of the large field encoded at a time.
ITEMS_PER_PIECE = 2048


def model_json_pieces(
    model: BaseModel,
    field: str,
    encode_items: Callable[[list[Any]], bytes],
    *,
    exclude: frozenset[str] = frozenset(),
    per_piece: int | None = None,
) -> Iterator[str]:
    """`model.model_dump_json(exclude=exclude)`, the same text, in pieces.

    `field` is a sequence field; `encode_items` encodes a list of its items as a JSON array
    exactly as the field's own serializer does (a `TypeAdapter(list[Item]).dump_json`).
    The other fields are encoded by the model itself, in its field order. `per_piece`:
    items encoded at a time (default ITEMS_PER_PIECE).
    """
    step = per_piece or ITEMS_PER_PIECE
    names = [name for name in type(model).model_fields if name not in exclude]
    at = names.index(field)
    head = model.model_dump_json(include=set(names[:at]))[1:-1] if at else ""
    tail = model.model_dump_json(include=set(names[at + 1 :]))[1:-1] if at + 1 < len(names) else ""
    items: Sequence[Any] = getattr(model, field)
    yield "{" + (head + "," if head else "") + f'"{field}":['
    for start in range(0, len(items), step):
        encoded = encode_items(list(items[start : start + step]))
        yield ("," if start else "") + encoded[1:-1].decode("utf-8")
    yield "]" + ("," + tail if tail else "") + "}"
