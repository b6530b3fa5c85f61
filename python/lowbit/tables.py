"""Plain-text tables for the CLI and notebooks (no dependency beyond the standard library)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_table"]


def _cell(v: Any, fmt: str | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return format(v, fmt or ".4g")
    return str(v)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str | None]]) -> str:
    """Render rows as an aligned table.

    ``columns`` lists ``(key, header, float_format)``; numbers are right-aligned, text left.
    """
    cells = [[_cell(r.get(k), f) for k, _, f in columns] for r in rows]
    headers = [h for _, h, _ in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(r.get(k), (int, float)) or r.get(k) is None for r in rows) for k, _, _ in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    return "\n".join(out)
