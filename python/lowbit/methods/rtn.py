"""RTN: round to nearest on the min-max grid (calibration-free)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from ..config import RTNConfig
from ..quantize import register_method
from ..formats import grouped_int_format
from ..tensor import QuantizedTensor


@register_method(RTNConfig)
def quantize_rtn(W: npt.ArrayLike, config: RTNConfig, **_stats: Any) -> QuantizedTensor:
    if not isinstance(W, np.ndarray):
        W = np.asarray(W)
    qweight, scales, zeros, group_size = _core.rtn_quantize(W, config.bits, config.group_size, config.sym)
    return QuantizedTensor(format=grouped_int_format(config.bits).name, shape=W.shape, arrays={
        "qweight": qweight, "scales": scales, "zeros": zeros,
    }, group_size=group_size, per_tensor=config.group_size == 0, sym=config.sym, config=config)
