"""Plain-text helpers every stage shares."""

from __future__ import annotations

from collections.abc import Iterable

RANKS_SHOWN = 8


def rank_list(ranks: Iterable[int], limit: int = RANKS_SHOWN) -> str:
    """Ranks as `0, 1, 2 …`: sorted, the first `limit`, an ellipsis when there are more."""
    shown = sorted(ranks)
    text = ", ".join(str(r) for r in shown[:limit])
    return text + (" …" if len(shown) > limit else "")


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit] + " …"
