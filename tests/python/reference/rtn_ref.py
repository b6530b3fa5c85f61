"""NumPy transcription of the min-max grid + round-to-nearest (GPTQ's Quantizer.find_params /
quantize, REFERENCE.md §1.4), written here as the oracle for lowbit's C++ RTN.

Differences from the published code, all deliberate and documented in lowbit's grid.hpp:
symmetric groups without negative values are still symmetric; float32 range overflow falls
back to float64; the scale is floored at the smallest normal float32.
"""

from __future__ import annotations

import numpy as np

TINY = np.float32(np.finfo(np.float32).tiny)


def grid(xmin_raw: np.ndarray, xmax_raw: np.ndarray, bits: int, sym: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero (float32) for groups spanning [xmin_raw, xmax_raw]."""
    maxq = np.float32(2**bits - 1)
    xmin = np.minimum(xmin_raw.astype(np.float32), np.float32(0))
    xmax = np.maximum(xmax_raw.astype(np.float32), np.float32(0))
    if sym:
        amax = np.maximum(-xmin, xmax)
        xmin, xmax = -amax, amax
    both_zero = (xmin == 0) & (xmax == 0)
    xmin = np.where(both_zero, np.float32(-1), xmin)
    xmax = np.where(both_zero, np.float32(1), xmax)
    with np.errstate(over="ignore"):
        span = xmax - xmin
    scale = (span / maxq).astype(np.float32)
    wide = ~np.isfinite(span)
    if wide.any():
        scale[wide] = ((xmax[wide].astype(np.float64) - xmin[wide].astype(np.float64)) / float(maxq)).astype(np.float32)
    scale = np.where(scale >= TINY, scale, TINY).astype(np.float32)
    if sym:
        zero = np.full_like(scale, np.float32((2**bits) // 2))
    else:
        zero = np.clip(np.round(-xmin / scale), 0, maxq).astype(np.float32)
    return scale, zero


def rtn_ref(W: np.ndarray, bits: int, group_size: int, sym: bool):
    """-> (codes uint8 [out, in], scales float32 [srows, G], zeros uint8 [srows, G], group_size)."""
    W = np.asarray(W, dtype=np.float32)
    out, inp = W.shape
    maxq = np.float32(2**bits - 1)
    per_tensor = group_size == 0
    gs = inp if group_size <= 0 or group_size > inp else group_size
    n_groups = -(-inp // gs)
    codes = np.empty((out, inp), dtype=np.uint8)
    srows = 1 if per_tensor else out
    scales = np.empty((srows, n_groups), dtype=np.float32)
    zeros = np.empty((srows, n_groups), dtype=np.uint8)
    if per_tensor:
        s, z = grid(np.array([W.min()]), np.array([W.max()]), bits, sym)
    for g in range(n_groups):
        x = W[:, g * gs:(g + 1) * gs]
        if not per_tensor:
            s, z = grid(x.min(axis=1), x.max(axis=1), bits, sym)
            scales[:, g], zeros[:, g] = s, z.astype(np.uint8)
        q = np.clip(np.round(x / s[:, None]) + z[:, None], 0, maxq)
        codes[:, g * gs:(g + 1) * gs] = q.astype(np.uint8)
    if per_tensor:
        scales[:], zeros[:] = s[0], np.uint8(z[0])
    return codes, scales, zeros, gs
