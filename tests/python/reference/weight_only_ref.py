"""NumPy references for torchao's int8 / int4 ("tinygemm") weight-only quantizers and EETQ's
int8, written from their published definitions (REFERENCE.md §9.3, §9.5), float32 arithmetic
step by step as PyTorch evaluates it."""

from __future__ import annotations

import numpy as np

F32 = np.float32


def bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 -> nearest bfloat16 (ties to even) -> float32."""
    import ml_dtypes

    return np.asarray(x, F32).astype(ml_dtypes.bfloat16).astype(F32)


def torchao_int8(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """choose_qparams_affine(SYMMETRIC, int8, eps=finfo(f32).eps) + quantize_affine, per row.
    Returns (q int8 [out, in], scale float32 [out])."""
    amax = np.maximum(-np.minimum(W.min(1), 0), np.maximum(W.max(1), 0)).astype(F32)
    scale = np.maximum(amax / F32(127.5), np.finfo(F32).eps).astype(F32)
    inv = (F32(1) / scale).astype(F32)
    q = np.clip(np.rint(W * inv[:, None]), -128, 127).astype(np.int8)
    return q, scale


def eetq_int8(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TensorRT-LLM's symmetric_quantize (int8 weight-only): scale = amax / 128, C round()
    (half away from zero) of w / scale, clamp [-128, 127]. Zero rows: scale 0, q 0."""
    scale = (np.abs(W).max(1) * F32(1 / 128)).astype(F32)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (W / scale[:, None]).astype(np.float64)  # float32 quotient, rounded exactly below
    q = np.sign(r) * np.floor(np.abs(r) + 0.5)
    q[scale == 0, :] = 0
    return np.clip(q, -128, 127).astype(np.int8), scale


def torchao_int4_tinygemm(W: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_choose_qparams_affine_tinygemm + _quantize_affine_tinygemm for a float32 weight with
    bfloat16 scale/zero dtypes. Returns (q uint8 [out, in] in 0..15, scale, zero) with scale and
    zero float32 [out, in/group] holding bfloat16 values."""
    out, inp = W.shape
    g = W.reshape(out, inp // group_size, group_size)
    lo, hi = g.min(-1), g.max(-1)
    scale = np.maximum((hi - lo) / F32(15), np.finfo(F32).tiny).astype(F32)
    zero = (lo + scale * F32(8)).astype(F32)
    sb, zb = bf16_round(scale), bf16_round(zero)
    origin = bf16_round(zb - sb * F32(8))
    q = np.clip(np.rint((g - origin[..., None]) / sb[..., None]), 0, 15).astype(np.uint8)
    return q.reshape(out, inp), sb, zb


def tinygemm_dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, group_size: int) -> np.ndarray:
    s = np.repeat(scale, group_size, 1)
    z = np.repeat(zero, group_size, 1)
    return ((q.astype(F32) - F32(8)) * s + z).astype(F32)
