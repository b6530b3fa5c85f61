"""bitsandbytes' weight formats: NF4 / FP4 blockwise 4-bit and LLM.int8().

Definitions (REFERENCE.md §3; C++ in ``cpp/src/formats/bnb4.cpp`` and
``cpp/src/quantizers/llm_int8.cpp``, documented in ``cpp/include/lowbit/bnb.hpp``):

* **NF4 / FP4** (formats ``"nf4"``, ``"fp4"``): the weight is flattened row-major and cut into
  blocks of ``blocksize`` values (blocks run across row boundaries, as in bitsandbytes); each
  block stores its absmax (float32) and one 4-bit code per value, two codes per byte with the
  first value in the high nibble. With double quantization the absmax values are themselves
  quantized: ``offset = mean(absmax)``, then 8-bit codes over bnb's dynamic map in blocks of
  256 with a float32 absmax per block.
* **LLM.int8()** (format ``"llm_int8"``): ``CB = round(W * 127 / rowmax)`` int8 and
  ``SCB = rowmax`` float32 per output row. ``x @ q`` runs the mixed product: input features
  with any ``|x| >= threshold`` in float16 precision, the rest as int8 x int8.

Arrays of a :class:`~lowbit.tensor.QuantizedTensor` of these formats:

====================  ==========================  ==========================================
name                  dtype, shape                meaning
====================  ==========================  ==========================================
qweight               uint8 [ceil(out*in/2)]      packed 4-bit codes of the flattened weight
absmax                float32 [n_blocks]          absmax per block (no double quantization)
                      uint8 [n_blocks]            its 8-bit codes (double quantization)
nested_absmax         float32 [ceil(n_blocks/256)] absmax of the absmax codes (double quant)
nested_quant_map      float32 [256] (optional)    the 8-bit map when it is not DYNAMIC_MAP
CB                    int8 [out, in]              LLM.int8 codes
SCB                   float32 [out]               LLM.int8 row absmax
====================  ==========================  ==========================================

``params``: ``blocksize``, ``double_quant``, ``nested_blocksize``, ``nested_offset`` (4-bit);
``threshold`` (LLM.int8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _core
from .tensor import Layout, QuantizedTensor, register_layout

if TYPE_CHECKING:
    from .config import BnbConfig

__all__ = [
    "DYNAMIC_MAP", "FP4_CODE", "NESTED_BLOCKSIZE", "NF4_CODE", "code4", "dequantize_4bit", "int8_linear",
    "dequantize_absmax", "quantize_4bit", "quantize_int8",
]

#: The 16 NF4 code values in index order (float32, [-1, 1]).
NF4_CODE: np.ndarray = _core.bnb_code4("nf4")
#: bitsandbytes' own FP4 table in index order (bit 3 = sign), float32.
FP4_CODE: np.ndarray = _core.bnb_code4("fp4")
#: bnb's signed 8-bit dynamic map used for double quantization, float32 [256] ascending.
DYNAMIC_MAP: np.ndarray = _core.bnb_dynamic_map()
#: Block size of the double quantization of the absmax values.
NESTED_BLOCKSIZE = 256

for _a in (NF4_CODE, FP4_CODE, DYNAMIC_MAP):
    _a.setflags(write=False)


def code4(quant_type: str) -> np.ndarray:
    """The 16 code values of ``"nf4"`` or ``"fp4"`` (read-only float32)."""
    if quant_type == "nf4":
        return NF4_CODE
    if quant_type == "fp4":
        return FP4_CODE
    raise ValueError(f"quant_type must be 'nf4' or 'fp4', got {quant_type!r}")


def _float32_matrix(W: npt.ArrayLike, name: str = "W") -> np.ndarray:
    """W as a C-contiguous float32 (out, in) array; TypeError/ValueError naming the problem."""
    W = np.asarray(W)
    if W.dtype.name == "bfloat16":  # ml_dtypes
        W = W.astype(np.float32)
    if W.dtype.kind != "f":
        raise TypeError(f"{name} must be a float array (float32, float16, bfloat16 or float64), got dtype {W.dtype}")
    if W.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (out_features, in_features) array, got shape {W.shape}")
    if W.size == 0:
        raise ValueError(f"{name} must be non-empty, got shape {W.shape}")
    return np.ascontiguousarray(W, dtype=np.float32)


# ----------------------------------------------------------------------------- 4-bit
def quantize_4bit(W: npt.ArrayLike, quant_type: str = "nf4", blocksize: int = 64, double_quant: bool = False,
                  config: "BnbConfig | None" = None) -> QuantizedTensor:
    """NF4/FP4 blockwise quantization of ``W`` (float, shape ``(out, in)``), as bitsandbytes.

    ``blocksize``: a power of two in 32..4096. ``double_quant``: also quantize the absmax
    values (8-bit, blocks of 256, mean offset). ValueError for NaN/inf, an empty W or a bad
    blocksize.
    """
    code4(quant_type)
    W32 = _float32_matrix(W)
    packed, absmax = _core.bnb_quantize_4bit(W32, quant_type, blocksize)
    params: dict[str, Any] = {"blocksize": int(blocksize), "double_quant": bool(double_quant)}
    arrays = {"qweight": packed, "absmax": absmax}
    if double_quant:
        qabs, nested, offset = _core.bnb_double_quantize(absmax, NESTED_BLOCKSIZE)
        arrays.update(absmax=qabs, nested_absmax=nested)
        params.update(nested_blocksize=NESTED_BLOCKSIZE, nested_offset=float(offset))
    return QuantizedTensor(format=quant_type, shape=W32.shape, arrays=arrays,
                           group_size=min(int(blocksize), W32.shape[1]), sym=True, config=config, params=params)


def dequantize_absmax(q: QuantizedTensor) -> np.ndarray:
    """float32 ``[n_blocks]`` absmax of an nf4/fp4 tensor (double quantization resolved)."""
    a, p = q.arrays, q.params
    absmax = a["absmax"]
    if p.get("double_quant"):
        absmax = _core.bnb_dequantize_blockwise(absmax, a["nested_absmax"], a.get("nested_quant_map", DYNAMIC_MAP),
                                                p["nested_blocksize"], np.float32(p["nested_offset"]))
    return absmax


def dequantize_4bit(q: QuantizedTensor) -> np.ndarray:
    """float32 ``(out, in)`` reconstruction of an nf4/fp4 tensor (``code[q] * absmax``)."""
    n = q.shape[0] * q.shape[1]
    return _core.bnb_dequantize_4bit(q.arrays["qweight"], dequantize_absmax(q), n, q.format,
                                     q.params["blocksize"]).reshape(q.shape)


def _prepare_4bit(q: QuantizedTensor) -> Any:
    from .lut import bnb4_kernel  # nibble kernels through a 16-entry table (lowbit/qmatmul.hpp)

    return bnb4_kernel(q)


def _arrays_4bit(q: QuantizedTensor) -> dict[str, tuple[Any, tuple[int, ...]]]:
    p = q.params
    for key in ("blocksize", "double_quant"):
        if key not in p:
            raise ValueError(f"a {q.format} tensor needs params[{key!r}]")
    _core.bnb_code4(q.format)
    bs = p["blocksize"]
    if not isinstance(bs, int) or bs < 32 or bs > 4096 or bs & (bs - 1):
        raise ValueError(f"params['blocksize'] must be a power of two in 32..4096, got {bs!r}")
    n = q.shape[0] * q.shape[1]
    n_blocks = -(-n // bs)
    spec: dict[str, tuple[Any, tuple[int, ...]]] = {"qweight": (np.uint8, ((n + 1) // 2,))}
    if p["double_quant"]:
        nb2 = p.get("nested_blocksize")
        if not isinstance(nb2, int) or nb2 <= 0 or "nested_offset" not in p:
            raise ValueError("a double-quantized tensor needs params 'nested_blocksize' (int > 0) and 'nested_offset'")
        spec.update(absmax=(np.uint8, (n_blocks,)), nested_absmax=(np.float32, (-(-n_blocks // nb2),)))
    else:
        spec["absmax"] = (np.float32, (n_blocks,))
    return spec


BNB_4BIT = Layout("bnb_4bit", _arrays_4bit, dequantize_4bit,
                  optional_arrays=lambda q: ({"nested_quant_map": (np.float32, (256,))}
                                             if q.params.get("double_quant") else {}),
                  prepare=_prepare_4bit)
register_layout(("nf4", "fp4"), BNB_4BIT)


# ----------------------------------------------------------------------------- LLM.int8()
def quantize_int8(W: npt.ArrayLike, threshold: float = 6.0, config: "BnbConfig | None" = None, *,
                  round_to_float16: bool = True) -> QuantizedTensor:
    """LLM.int8() weights of ``W`` (float ``(out, in)``): CB int8 and SCB float32 per row.

    ``threshold`` (>= 0; 0 = no decomposition) is kept in ``params`` and used by ``x @ q``.
    ``round_to_float16``: quantize ``float16(W)``, as bitsandbytes' Int8Params does (so the
    codes equal those of a transformers ``load_in_8bit`` model); ValueError when a weight
    is beyond float16's range. False: quantize the float32 values.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0 \
            or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
    W32 = _float32_matrix(W)
    if round_to_float16:
        big = np.isfinite(W32) & (np.abs(W32) > np.float32(65504))  # NaN/inf: the core's error
        if big.any():
            r, c = np.argwhere(big)[0]
            raise ValueError(f"W[{r}, {c}] = {W32[r, c]} is beyond float16's range (bitsandbytes quantizes "
                             f"float16 weights); pass round_to_float16=False")
        W32 = W32.astype(np.float16).astype(np.float32)
    CB, SCB = _core.int8_rowwise_quantize(W32)
    return QuantizedTensor(format="llm_int8", shape=W32.shape, arrays={"CB": CB, "SCB": SCB},
                           group_size=W32.shape[1], sym=True, config=config,
                           params={"threshold": float(threshold)})


def int8_linear(x: npt.ArrayLike, q: QuantizedTensor, bias: npt.ArrayLike | None = None,
                threshold: float | None = None) -> np.ndarray:
    """LLM.int8() product ``x @ W_hat.T (+ bias)`` with outlier-column decomposition.

    x: float ``(..., in_features)``; q: an ``llm_int8`` tensor; bias: float32 ``(out,)`` or
    None; threshold: overrides ``q.params["threshold"]``. Returns float32 ``(..., out)``.
    """
    if not isinstance(q, QuantizedTensor) or q.format != "llm_int8":
        raise TypeError(f"q must be an llm_int8 QuantizedTensor, got {q!r}")
    x = np.asarray(x)
    if x.dtype.name == "bfloat16":
        x = x.astype(np.float32)
    if x.dtype.kind not in "fiu" or x.ndim == 0:
        raise TypeError(f"x must be a numeric array of shape (..., {q.shape[1]}), got dtype {x.dtype} ndim {x.ndim}")
    if x.shape[-1] != q.shape[1]:
        raise ValueError(f"x.shape[-1] must equal in_features={q.shape[1]}, got x.shape={x.shape}")
    x2 = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, q.shape[1])
    t = q.params.get("threshold", 6.0) if threshold is None else threshold
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    y, _ = _core.int8_linear(x2, q.arrays["CB"], q.arrays["SCB"], float(t), b)
    return y.reshape(*x.shape[:-1], q.shape[0])


LLM_INT8 = Layout(
    "llm_int8",
    lambda q: {"CB": (np.int8, q.shape), "SCB": (np.float32, (q.shape[0],))},
    lambda q: _core.int8_rowwise_dequantize(q.arrays["CB"], q.arrays["SCB"]),
    # LLM.int8 multiplies without dequantizing; it has one activation mode of its own
    prepare=lambda q: lambda x, act: int8_linear(x, q))
register_layout("llm_int8", LLM_INT8)
