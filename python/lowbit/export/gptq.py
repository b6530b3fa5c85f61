"""The GPTQ checkpoint layout (AutoGPTQ / transformers / vLLM ``quant_method: "gptq"``).

Per linear layer: ``qweight`` int32 ``[in*bits/32, out]`` (packed along the input dimension),
``qzeros`` int32 ``[n_groups, out*bits/32]``, ``scales`` float16 ``[n_groups, out]``,
``g_idx`` int32 ``[in]``. ``checkpoint_format="gptq"`` (v1) stores zero-1, ``"gptq_v2"``
stores the zero itself. See REFERENCE.md §1.8 and ``cpp/include/lowbit/gptq_layout.hpp``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import _core
from ..formats import grouped_int_format
from ..tensor import QuantizedTensor

__all__ = ["from_gptq", "to_gptq"]

_VERSIONS = {"gptq": 1, "gptq_v2": 2}


def _version(checkpoint_format: str) -> int:
    if checkpoint_format not in _VERSIONS:
        raise ValueError(f"checkpoint_format must be one of {sorted(_VERSIONS)}, got {checkpoint_format!r}")
    return _VERSIONS[checkpoint_format]


def to_gptq(q: QuantizedTensor, *, checkpoint_format: str = "gptq") -> dict[str, np.ndarray]:
    """Pack a grouped QuantizedTensor (2/3/4/8 bits, per-channel or per-group) into GPTQ tensors.

    Returns ``{"qweight", "qzeros", "scales", "g_idx"}``. Scales are stored as float16, as every
    GPTQ checkpoint does: the only lossy step (relative error <= 2^-11 per scale).
    """
    v = _version(checkpoint_format)
    if q.per_tensor:
        raise ValueError("the GPTQ layout has per-channel or per-group scales; re-quantize with group_size=-1 or > 0")
    out, inp = q.shape
    a = q.arrays
    qweight, qzeros = _core.gptq_pack(a["qweight"], a["zeros"], q.bits, out, inp, q.group_size, v)
    g_idx = a.get("g_idx")
    if g_idx is None:
        g_idx = (np.arange(inp, dtype=np.int32) // q.group_size).astype(np.int32)
    return {
        "qweight": qweight,
        "qzeros": qzeros,
        "scales": np.ascontiguousarray(a["scales"].T).astype(np.float16),
        "g_idx": np.ascontiguousarray(g_idx, dtype=np.int32),
    }


def from_gptq(tensors: Mapping[str, np.ndarray], *, bits: int, group_size: int,
              checkpoint_format: str = "gptq", sym: bool = True) -> QuantizedTensor:
    """Read GPTQ tensors (``qweight``, ``qzeros``, ``scales``, optional ``g_idx``) back.

    ``group_size`` is the checkpoint's (``-1`` = one group). A ``g_idx`` that is not the
    contiguous ``i // group_size`` (act-order) is kept in the result.
    """
    v = _version(checkpoint_format)
    for name in ("qweight", "qzeros", "scales"):
        if name not in tensors:
            raise ValueError(f"GPTQ tensors must include {name!r}; got {sorted(tensors)}")
    qweight = np.asarray(tensors["qweight"])
    if qweight.ndim != 2 or qweight.dtype != np.int32:
        raise ValueError(f"qweight must be int32 [in*bits/32, out], got {qweight.dtype} {qweight.shape}")
    out = qweight.shape[1]
    inp = qweight.shape[0] * 32 // bits
    gs = inp if group_size == -1 else int(group_size)
    codes, zeros = _core.gptq_unpack(qweight, np.asarray(tensors["qzeros"]), bits, out, inp, gs, v)
    scales = np.asarray(tensors["scales"])
    n_groups = zeros.shape[1]
    if scales.shape != (n_groups, out):
        raise ValueError(f"scales must have shape ({n_groups}, {out}), got {scales.shape}")
    arrays = {"qweight": codes, "scales": np.ascontiguousarray(scales.T, dtype=np.float32), "zeros": zeros}
    g_idx = tensors.get("g_idx")
    if g_idx is not None:
        g_idx = np.asarray(g_idx, dtype=np.int32)
        if not np.array_equal(g_idx, np.arange(inp, dtype=np.int32) // min(gs, inp)):
            arrays["g_idx"] = np.ascontiguousarray(g_idx)
    return QuantizedTensor(format=grouped_int_format(bits).name, shape=(out, inp), arrays=arrays, group_size=min(gs, inp),
                           per_tensor=False, sym=sym)
