"""AWQ's search in NumPy, written here from the reference description (REFERENCE.md §2.3-2.6:
AutoAWQ's pseudo-quantizer, weight/activation means, duo-scaling grid, and clipping search).
Float32 weights and scales as the reference; losses in float64, computed directly on outputs
(no Gram-matrix shortcut), so it shares no shortcut with lowbit's C++ path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

F32 = np.float32


def pseudo_quantize(w: np.ndarray, bits: int, group_size: int, zero_point: bool = True) -> np.ndarray:
    """Q(w) on AWQ's grid, groups of ``group_size`` consecutive columns (last may be partial)."""
    w = np.asarray(w, dtype=F32)
    rows, cols = w.shape
    gs = cols if group_size <= 0 else min(group_size, cols)
    out = np.empty_like(w)
    for c0 in range(0, cols, gs):
        g = w[:, c0:c0 + gs]
        if zero_point:
            maxq = F32(2**bits - 1)
            hi, lo = g.max(axis=1, keepdims=True), g.min(axis=1, keepdims=True)
            scale = np.maximum(hi - lo, F32(1e-5)) / maxq
            zero = np.clip(-np.round(lo / scale), 0, maxq)
            out[:, c0:c0 + gs] = (np.clip(np.round(g / scale) + zero, 0, maxq) - zero) * scale
        else:
            amax = np.maximum(np.abs(g).max(axis=1, keepdims=True), F32(1e-5))
            scale = amax / F32(2 ** (bits - 1) - 1)
            out[:, c0:c0 + gs] = np.clip(np.round(g / scale), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1) * scale
    return out.astype(F32)


def weight_mean(weights: Sequence[np.ndarray], group_size: int) -> np.ndarray:
    """Mean over the stacked rows of |w| / (group max |w| + 1e-6), per input column."""
    w = np.concatenate([np.asarray(x, dtype=F32) for x in weights], axis=0)
    cols = w.shape[1]
    gs = cols if group_size <= 0 else min(group_size, cols)
    rel = np.empty_like(w)
    for c0 in range(0, cols, gs):
        g = np.abs(w[:, c0:c0 + gs])
        rel[:, c0:c0 + gs] = g / (g.max(axis=1, keepdims=True) + F32(1e-6))
    return rel.astype(np.float64).mean(axis=0).astype(F32)


def scales_for(x_mean: np.ndarray, w_mean: np.ndarray | None, alpha: float, duo: bool = True) -> np.ndarray:
    x = np.asarray(x_mean, dtype=F32)
    a = F32(alpha)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # powers in float64 rounded once to float32 (as lowbit): float32 pow differs by an ulp
        # between NumPy's SIMD paths
        s = (x.astype(np.float64) ** np.float64(a)).astype(F32)
        if duo:
            w = np.asarray(w_mean, dtype=F32).astype(np.float64)
            s = s / ((w ** np.float64(F32(1) - a)).astype(F32) + F32(1e-4))
        s = np.maximum(s, F32(1e-4))
        s = s / np.sqrt(s.max() * s.min())
    s[~np.isfinite(s)] = 1
    return s.astype(F32)


def search_scales(X: np.ndarray, weights: Sequence[np.ndarray], forward: Callable[[Sequence[np.ndarray]], np.ndarray],
                  *, bits: int = 4, group_size: int = 128, zero_point: bool = True, n_grid: int = 20,
                  duo: bool = True) -> tuple[int, np.ndarray, np.ndarray]:
    """The alpha grid search of one scaling group.

    X: the group's input [tokens, in]; weights: the group's linears [out_i, in];
    forward(ws): the inspected module's output with the linears' weights replaced by ws.
    Returns (best k, best scales, losses [n_grid]) with loss = mean squared output error.
    """
    x_mean = np.abs(np.asarray(X, dtype=np.float64)).mean(axis=0).astype(F32)
    w_mean = weight_mean(weights, group_size)
    ref = np.asarray(forward(weights), dtype=np.float64)
    losses = np.empty(n_grid)
    best, best_s = -1, None
    for k in range(n_grid):
        s = scales_for(x_mean, w_mean, k / n_grid, duo)
        ws = [pseudo_quantize(np.asarray(w, F32) * s, bits, group_size, zero_point) / s for w in weights]
        out = np.asarray(forward(ws), dtype=np.float64)
        losses[k] = np.mean((out - ref) ** 2)
        if best < 0 or losses[k] < losses[best]:
            best, best_s = k, s
    return best, best_s, losses


def clip_search(W: np.ndarray, X: np.ndarray, *, bits: int = 4, group_size: int = 128, zero_point: bool = True,
                n_grid: int = 20, max_shrink: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """max_val [out, G] and its error per (row, group): err = mean_t (x_g . (q(clamp w_g) - w_g))^2."""
    W = np.asarray(W, dtype=F32)
    X = np.asarray(X, dtype=np.float64)
    rows, cols = W.shape
    gs = cols if group_size <= 0 else min(group_size, cols)
    G = -(-cols // gs)
    max_val = np.empty((rows, G), F32)
    errs = np.empty((rows, G))
    for g in range(G):
        w = W[:, g * gs:(g + 1) * gs]
        x = X[:, g * gs:(g + 1) * gs]
        amax = np.abs(w).max(axis=1)
        best_err = np.full(rows, np.inf)
        best_val = amax.copy()
        ref = x @ w.astype(np.float64).T  # [tokens, rows]
        for i in range(max(1, int(max_shrink * n_grid))):
            m = (amax * F32(1 - i / n_grid)).astype(F32)[:, None]
            q = pseudo_quantize(np.clip(w, -m, m), bits, gs, zero_point)
            err = np.mean((x @ q.astype(np.float64).T - ref) ** 2, axis=0)
            better = err < best_err
            best_err[better] = err[better]
            best_val[better] = m[better, 0]
        max_val[:, g] = best_val
        errs[:, g] = best_err
    return max_val, errs


def apply_clip(W: np.ndarray, max_val: np.ndarray, group_size: int) -> np.ndarray:
    W = np.asarray(W, dtype=F32)
    gs = W.shape[1] if group_size <= 0 else min(group_size, W.shape[1])
    bound = np.repeat(max_val, gs, axis=1)[:, :W.shape[1]]
    return np.clip(W, -bound, bound).astype(F32)
