"""FP8 weights: OCP E4M3 ("fn", max 448) or E5M2 (max 57344) with float32 scales per tensor,
output channel or block (calibration-free).

Layout of the formats ``f8_e4m3`` / ``f8_e5m2`` (``QuantizedTensor.arrays``):

=========  ==========================  ====================================================
name       dtype, shape                meaning
=========  ==========================  ====================================================
qweight    uint8 [out, in]             FP8 bytes of ``W / scale`` (round to nearest even,
                                       saturating: never NaN for finite weights)
scales     float32 [ceil(out/br),      one scale per tile of ``br x bc`` weights:
           ceil(in/bc)]                tensor (br, bc) = (out, in); channel (1, in);
                                       block (128, 128) or ``weight_block_size``
=========  ==========================  ====================================================

``W_hat[r, c] = scales[r // br, c // bc] * fp8(qweight[r, c])``; ``params["block_size"]`` holds
``[br, bc]`` and ``params["strategy"]`` the strategy. ``scales`` is the multiplier that
DeepSeek-V3 / transformers call ``weight_scale_inv`` and compressed-tensors ``weight_scale``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from ..config import FP8Config
from ..quantize import register_method
from ..tensor import Layout, QuantizedTensor, register_layout

__all__ = ["FP8_MAX", "fp8_bits", "from_fp8_bits"]

#: Largest finite value of each FP8 encoding.
FP8_MAX = {"e4m3": 448.0, "e5m2": 57344.0}


def fp8_bits(x: npt.ArrayLike, fmt: str = "e4m3") -> np.ndarray:
    """float32 array (any shape) -> uint8 FP8 bytes, same shape.

    Round to nearest even, saturating: finite values beyond the largest finite value and
    +-inf become +-max; NaN stays NaN. Equal to ``ml_dtypes.float8_e4m3fn`` (``float8_e5m2``)
    applied to ``np.clip(x, -max, max)``.
    """
    return _core.fp8_bits(np.asarray(x, dtype=np.float32), fmt)


def from_fp8_bits(bits: npt.ArrayLike, fmt: str = "e4m3") -> np.ndarray:
    """uint8 FP8 bytes (or an ml_dtypes float8 array) -> float32, exact."""
    return _core.from_fp8_bits(np.asarray(bits), fmt)


def _fmt(q: QuantizedTensor) -> str:
    return q.format.removeprefix("f8_")


def _block(q: QuantizedTensor) -> tuple[int, int]:
    br, bc = q.params["block_size"]
    return int(br), int(bc)


def _fp8_arrays(q: QuantizedTensor) -> dict[str, tuple[Any, tuple[int, ...]]]:
    out, inp = q.shape
    br, bc = _block(q)
    return {"qweight": (np.uint8, (out, inp)), "scales": (np.float32, (-(-out // br), -(-inp // bc)))}


def _fp8_dequantize(q: QuantizedTensor) -> np.ndarray:
    br, bc = _block(q)
    return _core.fp8_dequantize(q.arrays["qweight"], q.arrays["scales"], _fmt(q), br, bc)


def _fp8_prepare(q: QuantizedTensor) -> Any:
    from ..lut import prepare_fp8  # table-lookup kernel (lut_qmatmul.hpp)

    return prepare_fp8(q)


FP8 = Layout("fp8", _fp8_arrays, _fp8_dequantize, prepare=_fp8_prepare)
register_layout(("f8_e4m3", "f8_e5m2"), FP8)


@register_method(FP8Config)
def quantize_fp8(W: npt.ArrayLike, config: FP8Config, **_stats: Any) -> QuantizedTensor:
    if not isinstance(W, np.ndarray):
        W = np.asarray(W)
    codes, scales, (br, bc) = _core.fp8_quantize(W, config.fmt, config.strategy, config.weight_block_size)
    return QuantizedTensor(format=f"f8_{config.fmt}", shape=W.shape, arrays={"qweight": codes, "scales": scales},
                           group_size=bc, per_tensor=config.strategy == "tensor", sym=True, config=config,
                           params={"strategy": config.strategy, "block_size": [br, bc]})
