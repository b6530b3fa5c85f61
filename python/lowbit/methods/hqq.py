"""HQQ: half-quadratic quantization (calibration-free; float zero points).

``lowbit.quantize(W, HQQConfig(nbits=4, group_size=64))`` runs hqq's ``Quantizer.quantize``
with its default zero-point solver in C++ (``_core.hqq_quantize``) and returns a
:class:`~lowbit.tensor.QuantizedTensor` of format ``"hqq<nbits>"`` whose arrays mirror hqq's:

===========  ==========================  ================================================
name         dtype, shape                meaning
===========  ==========================  ================================================
qweight      uint8 [out, ceil(in*b/8)]   codes in W's (row, col) order, each row an LSB-first
                                         bit stream (lowbit's grouped packing)
scale        float32 [G, 1] / [1, G]     per-group step (hqq's ``meta["scale"]``), axis 1 / 0
zero         float32 [G, 1] / [1, G]     per-group float zero point (hqq's ``meta["zero"]``)
===========  ==========================  ================================================

``G = out * in / group_size``; ``W_hat = (code - zero[g]) * scale[g]`` where, on the
row-major flattened weight, element ``f`` is in group ``f // group_size`` (axis 1) or
``f % G`` (axis 0). ``params`` holds ``axis``, ``quant_zero`` and ``quant_scale``.

With ``quant_zero`` / ``quant_scale`` (hqq's deprecated meta-data quantization) ``zero`` /
``scale`` are replaced by 8-bit codes and their own HQQ metadata, quantized without the
solver exactly as hqq does: the zeros with one scale for the tensor, the scales in groups of
128 along hqq's axis 0 of the scale vector:
``zero_q`` uint8 (shape of ``zero``), ``zero_meta_scale`` / ``zero_meta_zero`` float32 [1, 1];
``scale_q`` uint8 (shape of ``scale``), ``scale_meta_scale`` / ``scale_meta_zero`` float32
[1, G/128].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from ..config import HQQConfig
from ..quantize import register_method
from ..tensor import Layout, QuantizedTensor, register_layout

__all__ = ["HQQ_FORMATS", "HQQ_LAYOUT", "quantize_hqq"]

HQQ_FORMATS = ("hqq1", "hqq2", "hqq3", "hqq4", "hqq5", "hqq6", "hqq8")
_META_BITS = 8          # hqq quantizes scale/zero metadata to 8 bits
_SCALE_META_GROUP = 128  # ... the scales in groups of 128 (axis 0), the zeros per tensor


def _n_groups(q: QuantizedTensor) -> int:
    return q.shape[0] * q.shape[1] // q.group_size


def _axis(q: QuantizedTensor) -> int:
    axis = q.params.get("axis")
    if axis not in (0, 1):
        raise ValueError(f"an HQQ tensor needs params['axis'] 0 or 1, got {axis!r}")
    return int(axis)


def _meta_shape(q: QuantizedTensor) -> tuple[int, int]:
    G = _n_groups(q)
    return (G, 1) if _axis(q) == 1 else (1, G)


def _hqq_arrays(q: QuantizedTensor) -> dict[str, tuple[Any, tuple[int, ...]]]:
    out, inp = q.shape
    if (out * inp) % q.group_size:
        raise ValueError(f"group_size={q.group_size} must divide the number of weights {out} x {inp}")
    ms = _meta_shape(q)
    spec: dict[str, tuple[Any, tuple[int, ...]]] = {"qweight": (np.uint8, (out, (inp * q.bits + 7) // 8))}
    if q.params.get("quant_zero"):
        spec.update(zero_q=(np.uint8, ms), zero_meta_scale=(np.float32, (1, 1)), zero_meta_zero=(np.float32, (1, 1)))
    else:
        spec["zero"] = (np.float32, ms)
    if q.params.get("quant_scale"):
        gm = _n_groups(q) // _SCALE_META_GROUP
        spec.update(scale_q=(np.uint8, ms), scale_meta_scale=(np.float32, (1, gm)),
                    scale_meta_zero=(np.float32, (1, gm)))
    else:
        spec["scale"] = (np.float32, ms)
    return spec


def _meta_values(q: QuantizedTensor, name: str) -> np.ndarray:
    """float32 ``scale`` or ``zero`` of q, dequantized first when stored as 8-bit codes."""
    a = q.arrays
    if name in a:
        return a[name]
    G = _n_groups(q)
    codes = a[name + "_q"].reshape(1, G)
    gs, axis = (G, 1) if name == "zero" else (_SCALE_META_GROUP, 0)
    return _core.hqq_dequantize(codes, a[name + "_meta_scale"], a[name + "_meta_zero"], _META_BITS, 1, G, gs,
                                axis).reshape(_meta_shape(q))


def _hqq_dequantize(q: QuantizedTensor) -> np.ndarray:
    return _core.hqq_dequantize(q.arrays["qweight"], _meta_values(q, "scale"), _meta_values(q, "zero"), q.bits,
                                q.shape[0], q.shape[1], q.group_size, _axis(q))


def _hqq_prepare(q: QuantizedTensor) -> Any:
    """Grouped-int kernels up to 4 bits, table lookup above (lowbit.lut.hqq_kernel): axis=1
    only; axis=0 dequantizes (returns None)."""
    from ..lut import hqq_kernel

    if _axis(q) != 1:
        return None
    return hqq_kernel(q, _meta_values(q, "scale"), _meta_values(q, "zero"))


HQQ_LAYOUT = Layout("hqq", _hqq_arrays, _hqq_dequantize, prepare=_hqq_prepare)
register_layout(HQQ_FORMATS, HQQ_LAYOUT)


def _quantize_meta(values: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """hqq's 8-bit quantization of a scale or zero vector (min/max, no solver, no rounding
    of the zero): zeros with one group for the tensor (``channel_wise=False``), scales in
    groups of 128 along axis 0 (``Quantizer.quantize``'s default axis)."""
    G = values.size
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(1, G)
    if name == "zero":
        gs, axis = G, 1
    else:
        if G % _SCALE_META_GROUP:
            raise ValueError(f"quant_scale needs the number of groups ({G}) to be a multiple of "
                             f"{_SCALE_META_GROUP} (hqq quantizes the scales in groups of {_SCALE_META_GROUP})")
        gs, axis = _SCALE_META_GROUP, 0
    codes, s, z, _ = _core.hqq_quantize(flat, nbits=_META_BITS, group_size=gs, axis=axis, optimize=False,
                                        round_zero=False)
    return {name + "_q": codes.reshape(values.shape), name + "_meta_scale": s.reshape(1, -1),
            name + "_meta_zero": z.reshape(1, -1)}


@register_method(HQQConfig)
def quantize_hqq(W: npt.ArrayLike, config: HQQConfig, **_stats: Any) -> QuantizedTensor:
    """HQQ-quantize ``W`` float ``(out_features, in_features)`` (float32/float16/bfloat16/
    float64, any strides) -> QuantizedTensor ``hqq<nbits>``. ``stats``: ``steps`` (solver
    iterations run) and ``errors`` (mean |W - W_hat| before each iteration's update)."""
    if not isinstance(W, np.ndarray):
        W = np.asarray(W)
    if W.ndim == 2 and W.size and config.group_size > W.shape[1]:
        raise ValueError(f"group_size={config.group_size} must be <= in_features={W.shape[1]} "
                         f"(W shape {W.shape})")
    qweight, scale, zero, st = _core.hqq_quantize(
        W, nbits=config.nbits, group_size=config.group_size, axis=config.axis, optimize=config.optimize,
        round_zero=config.effective_round_zero, lp_norm=config.lp_norm, beta=config.beta, iters=config.iters,
        early_stop=config.early_stop)
    arrays = {"qweight": qweight}
    arrays.update(_quantize_meta(scale, "scale") if config.quant_scale else {"scale": scale})
    arrays.update(_quantize_meta(zero, "zero") if config.quant_zero else {"zero": zero})
    params = {"axis": config.axis, "quant_zero": config.quant_zero, "quant_scale": config.quant_scale}
    return QuantizedTensor(format=f"hqq{config.nbits}", shape=W.shape, arrays=arrays, group_size=config.group_size,
                           per_tensor=False, sym=False, config=config, stats=dict(st), params=params)
