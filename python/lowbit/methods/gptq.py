"""GPTQ: error-compensating column-by-column quantization with the inverse Hessian.

Needs ``hessian=``: the (in, in) matrix ``2/N * sum x x^T`` of the layer's inputs, as an array
or a :class:`~lowbit.HessianAccumulator`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from ..config import GPTQConfig
from ..quantize import register_method
from ..statistics import HessianAccumulator
from ..formats import grouped_int_format
from ..tensor import QuantizedTensor


@register_method(GPTQConfig, needs=("hessian",))
def quantize_gptq(W: npt.ArrayLike, config: GPTQConfig, *, hessian: Any = None, **_stats: Any) -> QuantizedTensor:
    if hessian is None:
        raise ValueError("GPTQ needs the layer's input Hessian: lowbit.quantize(W, GPTQConfig(...), hessian=H), "
                         "H from lowbit.HessianAccumulator(in_features).add(X)")
    if isinstance(hessian, HessianAccumulator):
        if hessian.n_samples == 0:
            raise ValueError("the HessianAccumulator passed as hessian= has seen no data (call .add(X) first)")
        hessian = hessian.hessian()
    if not isinstance(W, np.ndarray):
        W = np.asarray(W)
    qweight, scales, zeros, g_idx, group_size, stats = _core.gptq_quantize(
        W, hessian, bits=config.bits, group_size=config.group_size, sym=config.sym, desc_act=config.desc_act,
        static_groups=config.static_groups, damp_percent=config.damp_percent,
        damp_auto_increment=config.damp_auto_increment, block_size=config.block_size, mse=config.mse,
        act_group_aware=config.act_group_aware)
    if stats["damp_retries"]:
        warnings.warn(f"GPTQ: the Cholesky factorization failed with damp_percent={config.damp_percent}; "
                      f"succeeded with {stats['damp_percent_used']:.4g} after {stats['damp_retries']} increase(s)",
                      RuntimeWarning, stacklevel=3)
    arrays = {"qweight": qweight, "scales": scales, "zeros": zeros}
    if not np.array_equal(g_idx, np.arange(W.shape[1], dtype=np.int32) // group_size):
        arrays["g_idx"] = g_idx  # act-order without static groups: groups are not contiguous
    return QuantizedTensor(format=grouped_int_format(config.bits).name, shape=W.shape, arrays=arrays, group_size=group_size,
                           per_tensor=False, sym=config.sym, config=config, stats=dict(stats))
