"""float16 / bfloat16 bit conversions (round to nearest even), the ones lowbit's core uses.

``fp16_bits`` gives the same bits as ``x.astype(np.float16)``; ``bf16_bits`` the standard
bfloat16 rounding (as ml_dtypes and PyTorch; NaN becomes a quiet NaN).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from . import _core

__all__ = ["bf16_bits", "fp16_bits", "from_bf16_bits", "from_fp16_bits"]


def fp16_bits(x: npt.ArrayLike) -> np.ndarray:
    """float32 array (any shape) -> uint16 IEEE binary16 bits, same shape."""
    return _core.fp16_bits(np.asarray(x, dtype=np.float32))


def bf16_bits(x: npt.ArrayLike) -> np.ndarray:
    """float32 array (any shape) -> uint16 bfloat16 bits, same shape."""
    return _core.bf16_bits(np.asarray(x, dtype=np.float32))


def from_fp16_bits(bits: np.ndarray) -> np.ndarray:
    """uint16 binary16 bits (or a float16 array) -> float32, exact."""
    return _core.from_fp16_bits(bits)


def from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bits (or an ml_dtypes.bfloat16 array) -> float32, exact."""
    return _core.from_bf16_bits(bits)
