"""GGUF / llama.cpp quantization of one matrix into a ggml block type ("blocks" layout).

``lowbit.quantize(W, GGUFConfig(type="Q4_K"), act_mean_sq=imatrix)`` writes, row for row, the
bytes llama.cpp's ``ggml_quantize_chunk`` writes for the same float32 input and importance
matrix (byte-exact; tested against llama.cpp itself). ``act_mean_sq`` is the optional imatrix:
float32 [in_features], the per-input-column mean of x^2. Its overall scale can move roundings
in ggml's weighted searches, so for bytes identical to a llama.cpp run pass the very values
llama.cpp used (its imatrix tool stores mean x^2 times the call count).

Mixture recipes (``Q4_K_M`` ...) pick a type per tensor and so apply to whole models
(:func:`lowbit.quantize_model`), not to one matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from ..config import GGUFConfig
from ..formats import format_info
from ..quantize import register_method
from ..tensor import QuantizedTensor

__all__ = ["ggml_format_name", "quantize_gguf"]


def ggml_format_name(gguf_type: str) -> str:
    """The format-table name of a ggml type: ``"Q4_K"`` -> ``"q4_K"``, ``"IQ4_NL"`` -> ``"iq4_nl"``."""
    t = gguf_type.strip()
    low = t.lower()
    return low[:-2] + "_K" if low.endswith("_k") else low


@register_method(GGUFConfig)
def quantize_gguf(W: npt.ArrayLike, config: GGUFConfig, *, act_mean_sq: Any = None,
                  **_stats: Any) -> QuantizedTensor:
    if config.is_mixture:
        raise ValueError(f"GGUFConfig(type={config.type!r}) is a per-tensor mixture: quantize a model with "
                         f"lowbit.quantize_model, or pick one ggml type (e.g. 'Q4_K') for a single matrix")
    fmt = ggml_format_name(config.type)
    info = format_info(fmt)
    W = np.asarray(W)
    if W.ndim != 2 or W.size == 0:
        raise ValueError(f"W must be a non-empty 2-D array (out_features, in_features), got shape {W.shape}")
    if W.dtype.kind != "f":
        raise TypeError(f"W must be a float array, got dtype {W.dtype}")
    W32 = np.ascontiguousarray(W, dtype=np.float32)
    if not np.all(np.isfinite(W32)):
        r, c = np.argwhere(~np.isfinite(W32))[0]
        raise ValueError(f"W holds a non-finite value at [{r}, {c}] ({W32[r, c]})")
    out_f, in_f = W32.shape
    if in_f % info.block_size:
        raise ValueError(f"{config.type} packs rows in blocks of {info.block_size}: in_features={in_f} is not "
                         f"a multiple (llama.cpp falls back to another type for such tensors)")
    qw = None
    if act_mean_sq is not None:
        qw = np.ascontiguousarray(act_mean_sq, dtype=np.float32)
        if qw.shape != (in_f,):
            raise ValueError(f"act_mean_sq (the imatrix) must have shape ({in_f},), got {qw.shape}")
        if not np.all(np.isfinite(qw)) or np.any(qw < 0):
            raise ValueError("act_mean_sq (the imatrix) must be finite and >= 0")
    qweight = _core.quantize_rows(fmt, W32, qw)
    return QuantizedTensor(format=fmt, shape=(out_f, in_f), arrays={"qweight": qweight},
                           group_size=info.block_size, config=config,
                           stats={"imatrix": qw is not None})
