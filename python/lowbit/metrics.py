"""Error metrics between a weight matrix and its reconstruction.

Every function takes the original ``W`` and either a reconstruction array or a
:class:`~lowbit.QuantizedTensor` (dequantized on the fly); sums are taken in float64.
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import numpy.typing as npt

from .tensor import QuantizedTensor

__all__ = ["cosine", "mse", "relative_output_error", "sqnr"]

Recon = Union[npt.ArrayLike, QuantizedTensor]


def _pair(W: npt.ArrayLike, W_hat: Recon) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(W_hat, QuantizedTensor):
        W_hat = W_hat.dequantize()
    a = np.asarray(W, dtype=np.float64)
    b = np.asarray(W_hat, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"W and W_hat must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("W must be non-empty")
    return a, b


def mse(W: npt.ArrayLike, W_hat: Recon) -> float:
    """Mean squared error ``mean((W - W_hat)^2)``."""
    a, b = _pair(W, W_hat)
    return float(np.mean((a - b) ** 2))


def sqnr(W: npt.ArrayLike, W_hat: Recon) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10 log10(sum W^2 / sum (W - W_hat)^2)``.

    ``inf`` for an exact reconstruction (and for W = 0 reconstructed exactly).
    """
    a, b = _pair(W, W_hat)
    noise = float(np.sum((a - b) ** 2))
    signal = float(np.sum(a * a))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine(W: npt.ArrayLike, W_hat: Recon) -> float:
    """Cosine similarity of the flattened matrices (1.0 = same direction)."""
    a, b = _pair(W, W_hat)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(np.dot(a.ravel(), b.ravel()) / (na * nb))


def relative_output_error(X: npt.ArrayLike, W: npt.ArrayLike, W_hat: Recon) -> float:
    """``||X W^T - X W_hat^T||_F / ||X W^T||_F`` for inputs X of shape (..., in_features).

    The quantity GPTQ and AWQ minimise (on calibration inputs), so it ranks methods the way a
    model's outputs would.
    """
    a, b = _pair(W, W_hat)
    x = np.asarray(X, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != a.shape[-1]:
        raise ValueError(f"X must have shape (..., {a.shape[-1]}), got {x.shape}")
    x = x.reshape(-1, a.shape[-1])
    ref = x @ a.T
    denom = float(np.linalg.norm(ref))
    if denom == 0.0:
        raise ValueError("X @ W.T is all zeros: the relative output error is undefined")
    return float(np.linalg.norm(ref - x @ b.T) / denom)
