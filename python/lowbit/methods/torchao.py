"""torchao weight-only int4 ("tinygemm", float zero point) and int8 (per channel).

``TorchAoConfig(quant_type="int4_weight_only", group_size=128)`` writes the format
``int4_tinygemm``:

============  =========================  =================================================
name          dtype, shape               meaning
============  =========================  =================================================
qweight       uint8 [out, ceil(in/2)]    4-bit codes q in [0, 15], LSB first (as int4)
scales_bf16   uint16 [out, in/g]         bfloat16 bits of each group's scale
zeros_bf16    uint16 [out, in/g]         bfloat16 bits of each group's float zero point
============  =========================  =================================================

``W_hat = (q - 8) * scale + zero`` (torchao's float zero-point domain; the codes are the same
numbers torchao feeds to its tinygemm packing). ``quant_type="int8_weight_only"`` writes the
grouped ``int8`` format with one group per row: code ``q + 128``, zero 128, ``scale =
amax / 127.5`` (torchao's ``choose_qparams_affine`` SYMMETRIC rule).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from ..config import TorchAoConfig
from ..quantize import register_method
from ..tensor import Layout, QuantizedTensor, register_layout


def _tinygemm_arrays(q: QuantizedTensor) -> dict[str, tuple[Any, tuple[int, ...]]]:
    out, inp = q.shape
    if inp % q.group_size:
        raise ValueError(f"int4_tinygemm needs in_features={inp} to be a multiple of group_size={q.group_size}")
    groups = inp // q.group_size
    return {"qweight": (np.uint8, (out, (inp + 1) // 2)), "scales_bf16": (np.uint16, (out, groups)),
            "zeros_bf16": (np.uint16, (out, groups))}


def _tinygemm_dequantize(q: QuantizedTensor) -> np.ndarray:
    a = q.arrays
    return _core.tinygemm_dequantize(a["qweight"], a["scales_bf16"], a["zeros_bf16"], q.shape[0], q.shape[1],
                                     q.group_size)


def _tinygemm_prepare(q: QuantizedTensor) -> Any:
    from ..lut import tinygemm_kernel  # grouped-int kernels (lowbit.lut.affine_kernel)

    return tinygemm_kernel(q)


TINYGEMM = Layout("tinygemm", _tinygemm_arrays, _tinygemm_dequantize, prepare=_tinygemm_prepare)
register_layout("int4_tinygemm", TINYGEMM)


def int8_per_channel(W: np.ndarray, rule: str, config: Any) -> QuantizedTensor:
    """Symmetric int8 per output channel in the grouped int8 layout (rule "torchao" or "eetq")."""
    qweight, scales, zeros = _core.int8_channel_quantize(W, rule)
    return QuantizedTensor(format="int8", shape=W.shape, arrays={"qweight": qweight, "scales": scales, "zeros": zeros},
                           group_size=W.shape[1], per_tensor=False, sym=True, config=config)


@register_method(TorchAoConfig)
def quantize_torchao(W: npt.ArrayLike, config: TorchAoConfig, **_stats: Any) -> QuantizedTensor:
    if not isinstance(W, np.ndarray):
        W = np.asarray(W)
    if config.quant_type == "int8_weight_only":
        return int8_per_channel(W, "torchao", config)
    qweight, scales, zeros = _core.tinygemm_quantize(W, config.group_size)
    return QuantizedTensor(format="int4_tinygemm", shape=W.shape,
                           arrays={"qweight": qweight, "scales_bf16": scales, "zeros_bf16": zeros},
                           group_size=config.group_size, per_tensor=False, sym=False, config=config)
