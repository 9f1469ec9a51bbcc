"""Bounded JSON: configs and traces are files a user hands us, and a file of ``[[[[...`` must
be one clear error, not a ``RecursionError`` traceback from the decoder or a renderer."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["NestingError", "loads_bounded"]


class NestingError(ValueError):
    """JSON nested deeper than allowed; the message says how deep and the limit."""


def _too_deep(value: Any, limit: int) -> bool:
    """True when containers nest more than ``limit`` levels (iterative: no recursion of our own)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def loads_bounded(text: str, limit: int) -> Any:
    """``json.loads(text)``, refusing containers nested more than ``limit`` deep.

    Raises :class:`json.JSONDecodeError` for bad JSON (as ``json.loads``) and
    :class:`NestingError` for nesting beyond ``limit`` or beyond what the decoder can recurse.
    """
    try:
        value = json.loads(text)
    except RecursionError as e:
        raise NestingError(f"nested deeper than the JSON decoder can follow (expected at most {limit} "
                           f"levels)") from e
    if _too_deep(value, limit):
        raise NestingError(f"nested more than {limit} levels deep (expected at most {limit})")
    return value
