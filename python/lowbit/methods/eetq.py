"""EETQ int8 weight-only: symmetric int8 per output channel, TensorRT-LLM's rounding.

Written in the grouped ``int8`` layout with one group per row (code ``q + 128``, zero 128):
``scale = amax / 128``, ``q = clamp(round_half_away(w / scale), -128, 127)``. EETQ's GPU
kernels additionally interleave the int8 weights; that is a kernel layout, not a numeric one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..config import EetqConfig
from ..quantize import register_method
from ..tensor import QuantizedTensor
from .torchao import int8_per_channel


@register_method(EetqConfig)
def quantize_eetq(W: npt.ArrayLike, config: EetqConfig, **_stats: Any) -> QuantizedTensor:
    if not isinstance(W, np.ndarray):
        W = np.asarray(W)
    return int8_per_channel(W, "eetq", config)
