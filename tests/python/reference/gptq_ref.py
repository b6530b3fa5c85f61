"""GPTQ in NumPy, transcribed here from the published algorithm (Frantar et al. 2022,
Algorithm 1 with lazy batches, and the reference code's options as REFERENCE.md §1.3-1.6
describes them). float32 like the reference. The oracle for lowbit's C++ solver.

Deliberate, documented deviations shared with lowbit: the symmetric grid stays symmetric for
groups without negative values (rtn_ref.grid), act-order ties keep their original order
(stable sort), and U is checked for success instead of raising on the first failure.
"""

from __future__ import annotations

import numpy as np

from .rtn_ref import grid

F32 = np.float32


def find_params(x: np.ndarray, bits: int, sym: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-row grid of x [rows, k]."""
    return grid(x.min(axis=1), x.max(axis=1), bits, sym)


def quantize(w: np.ndarray, scale: np.ndarray, zero: np.ndarray, maxq: int) -> tuple[np.ndarray, np.ndarray]:
    q = np.clip(np.round(w / scale) + zero, 0, maxq)
    return q, (scale * (q - zero)).astype(F32)


def gar_perm(diag: np.ndarray, gs: int) -> np.ndarray:
    """GPTQModel's group-aware reordering: full groups by decreasing max diag, each group's columns by
    decreasing diag (stable sorts); a partial last group stays last."""
    full = len(diag) // gs
    groups = [g * gs + np.argsort(-diag[g * gs:(g + 1) * gs], kind="stable") for g in range(full)]
    order = np.argsort(-np.array([diag[g * gs:(g + 1) * gs].max() for g in range(full)]), kind="stable")
    return np.concatenate([groups[g] for g in order] + [np.arange(full * gs, len(diag))])


def gptq_ref(W, H, bits=4, group_size=128, sym=True, desc_act=False, static_groups=False, damp_percent=0.01,
             block_size=128, act_group_aware=False):
    """-> (codes uint8 [rows, cols] original order, scales [rows, G], zeros [rows, G], g_idx [cols], W_hat)."""
    W = np.array(W, dtype=F32)
    H = np.array(H, dtype=F32)
    rows, cols = W.shape
    maxq = 2**bits - 1
    gs = cols if group_size == -1 else group_size
    n_groups = -(-cols // gs)

    if gs == cols:  # whole-row grid, before dead columns are zeroed
        s_row, z_row = find_params(W, bits, sym)
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if static_groups and gs < cols:
        static = [find_params(W[:, g * gs:(g + 1) * gs], bits, sym) for g in range(n_groups)]
    perm = np.arange(cols)
    gar = act_group_aware and not desc_act and gs < cols
    if desc_act or gar:
        perm = np.argsort(-np.diag(H), kind="stable") if desc_act else gar_perm(np.diag(H), gs)
        W = W[:, perm]
        H = H[perm][:, perm]
    invperm = np.argsort(perm)

    damp = F32(damp_percent) * F32(np.mean(np.diag(H), dtype=np.float64))
    H[np.diag_indices(cols)] += damp
    L = np.linalg.cholesky(H)                    # float32 throughout, as the reference
    Linv = np.linalg.inv(L).astype(F32)
    Hinv = (Linv.T @ Linv).astype(F32)           # cholesky_inverse
    U = np.linalg.cholesky(Hinv).T.astype(F32)   # upper factor: Hinv = U^T U

    Q = np.zeros((rows, cols), dtype=F32)
    codes = np.zeros((rows, cols), dtype=np.uint8)
    scales = np.zeros((rows, n_groups), dtype=F32)
    zeros = np.zeros((rows, n_groups), dtype=F32)
    if gs == cols:
        scales[:, 0], zeros[:, 0] = s_row, z_row
    if static_groups and gs < cols:
        for g, (s, z) in enumerate(static):
            scales[:, g], zeros[:, g] = s, z
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            w = W1[:, i]
            d = U1[i, i]
            if gs < cols:
                if static_groups:
                    g = perm[col] // gs
                else:
                    g = col // gs
                    if col % gs == 0:  # fitted on W (not W1), as the reference does
                        scales[:, g], zeros[:, g] = find_params(W[:, col:col + gs], bits, sym)
            else:
                g = 0
            q, qf = quantize(w, scales[:, g], zeros[:, g], maxq)
            codes[:, col] = q.astype(np.uint8)
            Q[:, col] = qf
            e = ((w - qf) / d).astype(F32)
            W1[:, i:] -= np.outer(e, U1[i, i:]).astype(F32)
            Err1[:, i] = e
        W[:, i2:] -= (Err1 @ U[i1:i2, i2:]).astype(F32)

    if gar and not static_groups:  # the sweep's k-th group is original group perm[k * gs] // gs
        src = scales.copy(), zeros.copy()
        for k in range(n_groups):
            scales[:, perm[k * gs] // gs], zeros[:, perm[k * gs] // gs] = src[0][:, k], src[1][:, k]
    if static_groups or gs == cols or gar:
        g_idx = (np.arange(cols) // gs).astype(np.int32)
    else:
        g_idx = (invperm // gs).astype(np.int32)
    return codes[:, invperm], scales, zeros.astype(np.uint8), g_idx, Q[:, invperm]


def objective(W: np.ndarray, W_hat: np.ndarray, H: np.ndarray) -> float:
    """tr((W - W_hat) H (W - W_hat)^T) in float64."""
    D = np.asarray(W, np.float64) - np.asarray(W_hat, np.float64)
    return float(np.einsum("ij,jk,ik->", D, np.asarray(H, np.float64), D))
