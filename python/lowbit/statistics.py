"""Statistics of a linear layer's inputs, gathered in one pass for every method.

:class:`HessianAccumulator` keeps ``H = 2/N * sum x x^T`` (GPTQ), and per input column the mean
of ``x^2`` (llama.cpp's importance matrix) and of ``|x|`` (AWQ). N counts samples (sequences),
as GPTQ's reference does; the mean statistics are per token.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from . import _core

__all__ = ["HessianAccumulator"]


class HessianAccumulator:
    """Streaming accumulator of a linear layer's input statistics.

    Args:
        in_features: width of the layer's input (the ``in`` of ``W[out, in]``).
        dtype: ``"float32"`` (default, as the reference) or ``"float64"`` (products and
            running sum in double precision).

    Example::

        acc = lowbit.HessianAccumulator(4096)
        for X in batches:            # X: (batch, seq, 4096) or (tokens, 4096), float32/16/bf16
            acc.add(X)
        q = lowbit.quantize(W, lowbit.GPTQConfig(bits=4), hessian=acc)
    """

    def __init__(self, in_features: int, dtype: str = "float32") -> None:
        if isinstance(in_features, bool) or not isinstance(in_features, (int, np.integer)):
            raise TypeError(f"in_features must be an int, got {type(in_features).__name__}")
        self._acc = _core.HessianAccumulator(int(in_features), dtype)

    def add(self, X: npt.ArrayLike, n_samples: int | None = None) -> None:
        """Add a batch ``X`` of shape ``(..., in_features)``.

        ``n_samples`` defaults to the reference's count: 1 for a 2-D ``(tokens, in)`` batch,
        else the product of the leading dimensions before the sequence axis (``B`` for
        ``(B, T, in)``). The GIL is released while the batch is folded in.
        """
        X = np.asarray(X) if not isinstance(X, np.ndarray) else X
        n = self.in_features
        if X.ndim < 1 or X.shape[-1] != n:
            raise ValueError(f"X must have shape (..., {n}), got {X.shape}")
        if X.size == 0:
            raise ValueError(f"X must hold at least one token, got shape {X.shape}")
        if n_samples is None:
            n_samples = 1 if X.ndim <= 2 else math.prod(X.shape[:-2])
        self._acc.add(X.reshape(-1, n), int(n_samples))

    def reset(self) -> None:
        """Forget everything added so far."""
        self._acc.reset()

    @property
    def in_features(self) -> int:
        return int(self._acc.in_features)

    @property
    def n_samples(self) -> int:
        """Samples (sequences) added so far: the N of ``2/N * sum x x^T``."""
        return int(self._acc.n_samples)

    @property
    def n_tokens(self) -> int:
        return int(self._acc.n_tokens)

    @property
    def dtype(self) -> str:
        return str(self._acc.dtype)

    def hessian(self) -> np.ndarray:
        """``(in, in)`` symmetric H (float32 or float64, as the accumulator's dtype)."""
        return self._acc.hessian()

    def act_mean_sq(self) -> np.ndarray:
        """float64 ``(in,)``: mean of x^2 per input column over all tokens (the imatrix)."""
        return self._acc.act_mean_sq()

    def act_mean_abs(self) -> np.ndarray:
        """float64 ``(in,)``: mean of |x| per input column over all tokens (AWQ's statistic)."""
        return self._acc.act_mean_abs()

    def __repr__(self) -> str:
        return (f"HessianAccumulator(in_features={self.in_features}, dtype={self.dtype!r}, "
                f"n_samples={self.n_samples}, n_tokens={self.n_tokens})")
