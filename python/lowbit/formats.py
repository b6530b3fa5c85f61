"""The format table, read from the compiled core (never copied by hand).

``FORMATS`` maps a format name (``"int4"``, ``"f16"``, later ``"q4_K"``) to its
:class:`FormatInfo`. GGUF/ggml formats keep ggml's numeric ids; lowbit's own formats have ids
from 1000 up.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _core

__all__ = ["FORMATS", "FormatInfo", "format_info", "grouped_int_format"]


@dataclass(frozen=True)
class FormatInfo:
    """One row of the format table.

    Attributes:
        id: numeric id (ggml's for GGUF types, >= 1000 for lowbit's own).
        name: the format's name.
        bits: bits of one code.
        block_size: elements per block; type_size: bytes per block.
        bits_per_weight: 8 * type_size / block_size (codes only: excludes group scales/zeros
            stored beside them, see ``QuantizedTensor.bits_per_weight`` for the total).
        is_quantized: False for plain float storage (f32/f16/bf16).
        needs_group_params: scales/zeros are stored outside the codes (grouped int formats).
        partial_block_ok: a row may end inside a block (bit-stream formats).
        roundtrip_rel_tol: relative round-trip bound for float formats; -1 when the bound is
            half a quantization step (scale / 2).
        is_gguf_type: the id is a ggml type id.
        description: one line.
    """

    id: int
    name: str
    bits: int
    block_size: int
    type_size: int
    bits_per_weight: float
    is_quantized: bool
    needs_group_params: bool
    partial_block_ok: bool
    roundtrip_rel_tol: float
    is_gguf_type: bool
    description: str


FORMATS: dict[str, FormatInfo] = {row["name"]: FormatInfo(**row) for row in _core.format_table()}
_BY_ID: dict[int, FormatInfo] = {f.id: f for f in FORMATS.values()}


def format_info(key: str | int) -> FormatInfo:
    """Look a format up by name or numeric id; ValueError lists the known names."""
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise TypeError(f"format must be a name (str) or an id (int), got {type(key).__name__}")
    info = FORMATS.get(key) if isinstance(key, str) else _BY_ID.get(key)
    if info is None:
        raise ValueError(f"unknown format {key!r}; known formats: {', '.join(FORMATS)}")
    return info


def grouped_int_format(bits: int) -> FormatInfo:
    """The grouped integer format with ``bits``-bit codes (``int2`` ... ``int8``)."""
    return format_info(f"int{bits}")
