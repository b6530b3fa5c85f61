"""Table-lookup matmul kernels for NF4/FP4, HQQ, tinygemm int4 and FP8 weights.

Every one of these formats is ``W_hat[r, c] = table[code[r, c]] * scale[r, g] + offset[r, g]``
(``g`` the group of column c); :func:`lut_kernel` repacks that once into
``_core.LutWeights`` (C++: ``cpp/include/lowbit/lut_qmatmul.hpp``) and the ``prepare_*``
functions below resolve each format into (codes, table, scale, offset, group size):

==============  ================  ==================  ==================  =================
format          table             scale               offset              group (per row)
==============  ================  ==================  ==================  =================
nf4 / fp4       16 code values    absmax (double      none                gcd(blocksize, in)
                                  quant resolved)
hqq<b>          0 .. 2^b - 1      s                   -z * s (rounded)    gcd(group, in)
int4_tinygemm   0 .. 15           s (bf16)            z - 8 s (rounded)   group_size
f8_e4m3/e5m2    256 FP8 values    scales tile         none                block column
==============  ================  ==================  ==================  =================

Integer tables (HQQ, tinygemm) decode by int -> float conversion and the OCP FP8 tables by bit
arithmetic (both bit-exact with the table); other tables (NF4/FP4) by a register lookup.

Rounding: NF4/FP4 and FP8 compute the same float32 ``W_hat`` as their dequantize (``table *
scale``); HQQ's ``(q - z) * s`` becomes ``q * s + (-z * s)`` and tinygemm's ``(q - 8) * s + z``
becomes ``q * s + (z - 8 s)``: each differs from the format's own float32 dequantize by at most
``3 u (|q s| + |offset| + |z s|)`` per weight (u = 2^-24; z s -> 8 s, z for tinygemm), inside the
kernel bound ``gamma(Kp + 4) * sum_k (|table * scale| + |offset|) |x_k|`` (lut_qmatmul.hpp)
plus that term, which the tests add.

``act``: the kernels take float activations only; ``"int8"`` (QuantizedTensor.matmul's
default) runs the same float path, ``"int8_token"`` raises NotImplementedError.

``q.prepare()`` of nf4/fp4 uses the nibble kernels through a 16-entry table instead
(:func:`bnb4_kernel`, ``_core.prepare_table4``): exact for ``act="float32"``, the table rounded
to int8 for ``"int8"``.

``q.prepare()`` of HQQ up to 4 bits and of int4_tinygemm uses the grouped-int kernels instead
(:func:`affine_kernel`, ``_core.prepare_affine``): their weights are ``s * code + offset`` with
integer codes, which is that layout with a float offset, so ``act="int8"`` gets the int8-block
decode and prefill kernels of GPTQ/AWQ weights, and ``"float32"`` the same ``W_hat`` as here.
The table-lookup kernel stays their float reference (``prepare_hqq`` / ``prepare_tinygemm``).

Formats the kernel does not cover return None from their prepare (QuantizedTensor.matmul then
dequantizes): HQQ with ``axis=0`` (a different group for every column of a row).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from . import _core
from .tensor import PackedKernel

if TYPE_CHECKING:
    from .tensor import QuantizedTensor

__all__ = ["LutKernel", "affine_kernel", "bnb4_kernel", "hqq_kernel", "lut_kernel", "prepare_bnb4", "prepare_fp8",
           "prepare_hqq", "prepare_tinygemm", "tinygemm_kernel"]


class LutKernel(PackedKernel):
    """``kernel(x, act) -> float32 [M, out]``: a prepared ``_core.LutWeights`` and its product.

    ``weights`` (= ``packed``) is the LutWeights (tests pass it to ``_core.lut_qmatmul`` with
    ``isa=``; the model's C++ layer loop calls it directly).
    """

    __slots__ = ()

    def __init__(self, weights: "_core.LutWeights") -> None:
        super().__init__(_core.lut_qmatmul, weights)

    @property
    def weights(self) -> "_core.LutWeights":
        return self.packed

    def __call__(self, x: np.ndarray, act: str = "float32") -> np.ndarray:
        return _core.lut_qmatmul(x, self.packed, act)


def lut_kernel(codes: np.ndarray, table: np.ndarray, scale: np.ndarray, offset: np.ndarray | None,
               group_size: int) -> LutKernel:
    """Repack ``W_hat = table[codes] * scale + offset`` (codes uint8 [out, in], table float32
    [16 | 256], scale/offset float32 [out, ceil(in / group_size)]) once for the kernel."""
    return LutKernel(_core.prepare_lut(np.ascontiguousarray(codes, np.uint8), np.ascontiguousarray(table, np.float32),
                                       np.ascontiguousarray(scale, np.float32),
                                       None if offset is None else np.ascontiguousarray(offset, np.float32),
                                       int(group_size)))


def _row_groups(flat_group: int, inp: int) -> int:
    """Columns per kernel group when groups of ``flat_group`` run over the row-major flattened
    weight: their boundaries fall on multiples of gcd(flat_group, in) in every row."""
    return flat_group if inp % flat_group == 0 else math.gcd(flat_group, inp)


def _per_row(values: np.ndarray, flat_group: int, out: int, inp: int, gs: int) -> np.ndarray:
    """values [n flat groups] -> [out, in / gs]: the flat group of each kernel group."""
    starts = np.arange(out, dtype=np.int64)[:, None] * inp + np.arange(inp // gs, dtype=np.int64)[None, :] * gs
    return np.ascontiguousarray(values.reshape(-1)[starts // flat_group], dtype=np.float32)


def _bnb4_parts(q: "QuantizedTensor") -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """nf4/fp4: codes uint8 [out, in], the 16 code values, absmax per (row, kernel group), group."""
    from .bnb import code4, dequantize_absmax

    out, inp = q.shape
    n = out * inp
    packed = q.arrays["qweight"]
    codes = np.empty(2 * packed.size, np.uint8)
    codes[0::2] = packed >> 4
    codes[1::2] = packed & 0x0F
    bs = int(q.params["blocksize"])
    gs = _row_groups(bs, inp)
    scale = _per_row(dequantize_absmax(q), bs, out, inp, gs)
    return codes[:n].reshape(out, inp), code4(q.format), scale, gs


def prepare_bnb4(q: "QuantizedTensor") -> LutKernel:
    """nf4/fp4 (bitsandbytes blockwise, flattened, high nibble first): table = the 16 code
    values, scale = absmax per block (double quantization resolved here, once)."""
    codes, table, scale, gs = _bnb4_parts(q)
    return lut_kernel(codes, table, scale, None, gs)


def bnb4_kernel(q: "QuantizedTensor") -> PackedKernel:
    """The kernel ``q.prepare()`` uses for nf4/fp4: the nibble kernels through a 16-entry table
    (``_core.prepare_table4``): ``act="float32"`` multiplies tiles of the exact ``table * absmax``;
    ``"int8"`` uses the table rounded to int8 (``|error| <= absmax / 254`` per weight) against int8
    activation blocks, the fast decode path. Any block size (groups below 32 columns are padded)."""
    codes, table, scale, gs = _bnb4_parts(q)
    packed = _core.prepare_table4(np.ascontiguousarray(codes), np.ascontiguousarray(table, np.float32), scale, int(gs))
    return PackedKernel(_core.qmatmul, packed)


def _hqq_parts(q: "QuantizedTensor", scale: np.ndarray, zero: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """hqq<b>, axis=1: codes uint8 [out, in], scale s and offset -z*s per (row, kernel group), group."""
    out, inp = q.shape
    codes = _core.unpack_codes(q.arrays["qweight"], q.bits, inp)
    gs = _row_groups(q.group_size, inp)
    s = _per_row(scale, q.group_size, out, inp, gs)
    z = _per_row(zero, q.group_size, out, inp, gs)
    return codes, s, -z * s, gs


def prepare_hqq(q: "QuantizedTensor", scale: np.ndarray, zero: np.ndarray) -> LutKernel | None:
    """hqq<b> with axis=1 (scale/zero float32 [n groups, 1]): table 0..2^b-1, offset -z*s."""
    if q.params.get("axis") != 1:
        return None
    codes, s, offset, gs = _hqq_parts(q, scale, zero)
    table = np.arange(16 if q.bits <= 4 else 256, dtype=np.float32)
    return lut_kernel(codes, table, s, offset, gs)


def affine_kernel(codes: np.ndarray, scale: np.ndarray, offset: np.ndarray, bits: int, group_size: int) -> PackedKernel:
    """``W_hat = scale * code + offset`` with a float zero (codes < 2^bits <= 16) on the grouped-int
    kernels (``_core.prepare_affine``, lowbit/qmatmul.hpp): ``act="int8"`` quantizes activations to
    int8 blocks (the fast decode path of GPTQ/AWQ weights), ``"float32"`` multiplies dequantized
    tiles, which hold the table-lookup kernel's very ``W_hat`` (``s * code + offset``, two roundings)."""
    return PackedKernel(_core.qmatmul, _core.prepare_affine(np.ascontiguousarray(codes, np.uint8),
                                                            np.ascontiguousarray(scale, np.float32),
                                                            np.ascontiguousarray(offset, np.float32),
                                                            int(bits), int(group_size)))


def hqq_kernel(q: "QuantizedTensor", scale: np.ndarray, zero: np.ndarray) -> PackedKernel | None:
    """The kernel ``q.prepare()`` uses for hqq: the grouped-int kernels up to 4 bits, the
    table-lookup kernel above (their codes do not fit nibbles); None for axis=0."""
    if q.params.get("axis") != 1:
        return None
    if q.bits > 4:
        return prepare_hqq(q, scale, zero)
    codes, s, offset, gs = _hqq_parts(q, scale, zero)
    return affine_kernel(codes, s, offset, q.bits, gs)


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _tinygemm_parts(q: "QuantizedTensor") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int4_tinygemm: codes uint8 [out, in], scale s and offset ``z - 8 s`` (rounded once)."""
    out, inp = q.shape
    a = q.arrays
    packed = a["qweight"]
    codes = np.empty((out, 2 * packed.shape[1]), np.uint8)
    codes[:, 0::2] = packed & 0x0F
    codes[:, 1::2] = packed >> 4
    s = _bf16_to_f32(a["scales_bf16"])
    offset = _bf16_to_f32(a["zeros_bf16"]) - np.float32(8) * s
    return codes[:, :inp], s, offset


def prepare_tinygemm(q: "QuantizedTensor") -> LutKernel:
    """int4_tinygemm: ``(q - 8) s + z`` as table 0..15, scale s, offset ``z - 8 s`` (rounded once)."""
    codes, s, offset = _tinygemm_parts(q)
    return lut_kernel(codes, np.arange(16, dtype=np.float32), s, offset, q.group_size)


def tinygemm_kernel(q: "QuantizedTensor") -> PackedKernel:
    """The kernel ``q.prepare()`` uses for int4_tinygemm: the grouped-int kernels (affine_kernel)."""
    codes, s, offset = _tinygemm_parts(q)
    return affine_kernel(codes, s, offset, 4, q.group_size)


def prepare_fp8(q: "QuantizedTensor") -> LutKernel:
    """f8_e4m3 / f8_e5m2: table = the 256 FP8 values, scale = the scale of each (row, block column)."""
    out, inp = q.shape
    br, bc = (int(v) for v in q.params["block_size"])
    table = _core.from_fp8_bits(np.arange(256, dtype=np.uint8), q.format.removeprefix("f8_"))
    scale = np.repeat(q.arrays["scales"], br, axis=0)[:out]
    return lut_kernel(q.arrays["qweight"], table, scale, None, min(bc, inp))
