"""NumPy oracle for bitsandbytes' formats, written here from the published definitions
(REFERENCE.md §3; bitsandbytes' functional.py and its reference "default" backend):

* NF4 code = create_normal_map(offset=0.9677083, use_extra_value=True) (the listed values),
  FP4 code = [0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3] / 12;
* blockwise 4-bit: flatten, absmax per block, full blocks scaled by x * (1/absmax), the tail
  block by x / absmax (its stored absmax clamped at 1e-38), clamp to [-1, 1], then
  torch.bucketize over the midpoints of the sorted code (a tie goes to the lower code), mapped
  back through the stable sort order; first value of a pair in the high nibble;
* double quantization: offset = mean(absmax), blockwise 8-bit (same rule, sorted code) of
  absmax - offset over create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8);
* LLM.int8(): CB = round_half_even(W * ((1/rowmax) * 127)); activations the same per row with
  entries |x| >= threshold left out, outlier columns zero in the int8 copy, int32 product
  scaled by (rowstat * SCB) * 6.200124e-05, plus the outlier columns in float16 precision.

Every float operation is a float32 operation, as in the reference (NumPy float32 arithmetic is
IEEE single precision, so the results are bit-exact where the C++ is).
"""

from __future__ import annotations

import numpy as np

F = np.float32
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)
FP4 = (np.array([0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3], dtype=np.float32)
       / np.float32(12))
TINY = F(1e-38)


def code4(quant_type: str) -> np.ndarray:
    return {"nf4": NF4, "fp4": FP4}[quant_type]


def dynamic_map() -> np.ndarray:
    """create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) in float32; the
    linspace points are start + step*j (first half) / end - step*(steps-1-j) (second half) with
    one rounding (the product is exact in float64)."""
    data = []
    for i in range(7):
        steps = 2 ** i + 1
        start, end = F(0.1), F(1.0)
        step = (end - start) / F(steps - 1)
        b = np.array([np.float64(start) + np.float64(step) * j if j < steps // 2
                      else np.float64(end) - np.float64(step) * (steps - 1 - j) for j in range(steps)]).astype(F)
        means = (b[:-1] + b[1:]) / F(2)
        scale = F(10.0 ** (i - 6))
        data += list(scale * means) + list(-scale * means)
    data += [F(0), F(1)]
    return np.sort(np.array(data, dtype=np.float32))


def _blocks(n: int, blocksize: int):
    for lo in range(0, n, blocksize):
        yield lo, min(n, lo + blocksize)


def _scaled(x: np.ndarray, blocksize: int) -> tuple[np.ndarray, np.ndarray]:
    """Scaled values in [-1, 1] and the stored absmax per block."""
    n = x.size
    out = np.empty(n, np.float32)
    absmax = []
    for lo, hi in _blocks(n, blocksize):
        am = np.abs(x[lo:hi]).max()
        if hi - lo == blocksize:
            absmax.append(am)
            out[lo:hi] = x[lo:hi] * (F(1) / max(am, TINY))
        else:
            am = max(am, TINY)
            absmax.append(am)
            out[lo:hi] = x[lo:hi] / am
    return np.clip(out, F(-1), F(1)), np.array(absmax, dtype=np.float32)


def nearest(sorted_code: np.ndarray, s: np.ndarray) -> np.ndarray:
    """torch.bucketize(s, midpoints, right=False): number of midpoints strictly below s."""
    mids = (sorted_code[:-1] + sorted_code[1:]) / F(2)
    return np.searchsorted(mids, s, side="left")


def quantize_4bit(x: np.ndarray, quant_type: str, blocksize: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(x, np.float32).ravel()
    code = code4(quant_type)
    order = np.argsort(code, kind="stable")
    s, absmax = _scaled(x, blocksize)
    if s.size % 2:
        s = np.append(s, F(0))
    q = order[nearest(code[order], s)].astype(np.uint8)
    return ((q[0::2] << 4) | q[1::2]).astype(np.uint8), absmax


def dequantize_4bit(packed: np.ndarray, absmax: np.ndarray, n: int, quant_type: str, blocksize: int) -> np.ndarray:
    q = np.empty(packed.size * 2, np.uint8)
    q[0::2], q[1::2] = packed >> 4, packed & 0x0F
    return code4(quant_type)[q[:n]] * np.repeat(absmax, blocksize)[:n]


def quantize_blockwise(x: np.ndarray, code: np.ndarray, blocksize: int) -> tuple[np.ndarray, np.ndarray]:
    s, absmax = _scaled(np.ascontiguousarray(x, np.float32).ravel(), blocksize)
    return nearest(code, s).astype(np.uint8), absmax


def double_quantize(absmax: np.ndarray, blocksize: int = 256) -> tuple[np.ndarray, np.ndarray, np.float32]:
    offset = F(np.mean(absmax, dtype=np.float64))
    q, absmax2 = quantize_blockwise(absmax - offset, dynamic_map(), blocksize)
    return q, absmax2, offset


def int8_rows(A: np.ndarray, rowmax: np.ndarray) -> np.ndarray:
    mult = np.where(rowmax > 0, (F(1) / np.where(rowmax > 0, rowmax, F(1))) * F(127), F(0)).astype(np.float32)
    return np.clip(np.rint(A * mult[:, None]), -127, 127).astype(np.int8)


def int8_rowwise_quantize(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    W = np.asarray(W, np.float32)
    rowmax = np.abs(W).max(axis=1)
    return int8_rows(W, rowmax), rowmax


def int8_linear(x: np.ndarray, CB: np.ndarray, SCB: np.ndarray, threshold: float,
                bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(y float32 [m, n], outlier column indices)."""
    x = np.asarray(x, np.float32)
    big = np.abs(x) >= F(threshold) if threshold > 0 else np.zeros(x.shape, bool)
    cols = np.nonzero(big.any(axis=0))[0]
    rowmax = np.where(big, F(0), np.abs(x)).max(axis=1)
    xq = int8_rows(np.where(big, F(0), x), rowmax)
    xq[:, cols] = 0
    acc = xq.astype(np.int64) @ CB.astype(np.int64).T
    y = acc.astype(np.float32) * (rowmax[:, None] * SCB[None, :]) * F(6.200124e-05)
    if bias is not None:
        y = y + bias.astype(np.float32)
    W16 = (CB[:, cols].astype(np.float32) * SCB[:, None] * F(7.874015718698502e-3)).astype(np.float16)
    y = y + x[:, cols].astype(np.float16).astype(np.float64) @ W16.astype(np.float64).T
    return y.astype(np.float32), cols
