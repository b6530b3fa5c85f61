"""NumPy transcription of HQQ (REFERENCE.md §4): hqq's ``Quantizer.quantize`` with its default
solver ``optimize_weights_proximal_legacy``, in float32 as hqq runs on the CPU. The oracle for
lowbit's C++ ``hqq_quantize``; written from the published algorithm, whole-array and short.

Two details copied on purpose because they change results: torch evaluates ``max_v / denom``
as ``max_v * (1 / denom)``, and the solver keeps the zero of the step whose error stopped
improving (it does not roll back). ``beta`` stays constant (``kappa`` is never applied).
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def shrink_lp(x: np.ndarray, beta: float, lp_norm: float) -> np.ndarray:
    """sign(x) * relu(|x| - |x|^(p-1) / beta), float32 (p = 1: soft threshold 1/beta)."""
    a = np.abs(x)
    inv_beta = F32(1.0 / beta)
    if lp_norm == 1:
        u = a - inv_beta
    else:
        with np.errstate(divide="ignore"):  # 0^(p-1) = inf -> relu(-inf) = 0, as in torch
            u = a - inv_beta * np.power(a, F32(lp_norm - 1))
    return np.sign(x) * np.maximum(u, F32(0))


def hqq_quantize_ref(W: np.ndarray, nbits: int, group_size: int, axis: int, *, optimize: bool = True,
                     round_zero: bool = False, lp_norm: float = 0.7, beta: float = 10.0, iters: int = 20,
                     early_stop: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Returns (codes uint8 W.shape, scale float32, zero float32, errors); scale/zero have hqq's
    shapes [G, 1] (axis 1) or [1, G] (axis 0), G = W.size / group_size."""
    W = np.asarray(W, dtype=F32)
    Wg = W.reshape(-1, group_size) if axis == 1 else W.reshape(group_size, -1)
    maxq = F32(2**nbits - 1)
    lo = Wg.min(axis=axis, keepdims=True)
    hi = Wg.max(axis=axis, keepdims=True)
    denom = hi - lo
    with np.errstate(divide="ignore"):
        s = maxq * (F32(1) / denom)
    s = np.where(np.abs(denom) <= F32(1e-4), F32(1), s)
    s = np.minimum(s, F32(2e4))
    z = -lo * s
    if round_zero:
        z = np.round(z)
    errors: list[float] = []
    if optimize:
        best = F32(np.inf)
        for _ in range(iters):
            Wq = np.clip(np.round(Wg * s + z), 0, maxq)
            Wr = (Wq - z) / s
            We = shrink_lp(Wg - Wr, beta, lp_norm)
            z = np.mean(Wq - (Wg - We) * s, axis=axis, keepdims=True, dtype=F32)
            err = F32(np.abs(Wg - Wr).mean(dtype=np.float64))
            errors.append(float(err))
            if early_stop:
                if err < best:
                    best = err
                else:
                    break
    Wq = np.clip(np.round(Wg * s + z), 0, maxq)
    return Wq.reshape(W.shape).astype(np.uint8), (F32(1) / s).astype(F32), z.astype(F32), errors


def hqq_dequantize_ref(codes: np.ndarray, scale: np.ndarray, zero: np.ndarray, group_size: int,
                       axis: int) -> np.ndarray:
    """(codes - zero) * scale per group, float32, back in the shape of ``codes``."""
    c = codes.astype(F32)
    cg = c.reshape(-1, group_size) if axis == 1 else c.reshape(group_size, -1)
    return ((cg - zero) * scale).reshape(codes.shape)


def unpack_rows(qweight: np.ndarray, bits: int, cols: int) -> np.ndarray:
    """lowbit's LSB-first row bit streams -> uint8 codes [rows, cols]."""
    b = np.unpackbits(qweight, axis=1, bitorder="little")[:, :cols * bits]
    b = b.reshape(qweight.shape[0], cols, bits).astype(np.uint16)
    return (b << np.arange(bits, dtype=np.uint16)).sum(axis=-1).astype(np.uint8)


def lp_error(W: np.ndarray, W_hat: np.ndarray, p: float = 0.7) -> float:
    """mean |W - W_hat|^p in float64: the objective HQQ's solver targets."""
    return float(np.mean(np.abs(W.astype(np.float64) - W_hat.astype(np.float64)) ** p))
