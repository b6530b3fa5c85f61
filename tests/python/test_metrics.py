from __future__ import annotations

import math

import numpy as np
import pytest

import lowbit as lb
from lowbit import metrics


def test_known_values():
    W = np.array([[3.0, 4.0]], np.float32)
    Wh = np.array([[3.0, 3.0]], np.float32)
    assert metrics.mse(W, Wh) == pytest.approx(0.5)
    assert metrics.sqnr(W, Wh) == pytest.approx(10 * math.log10(25 / 1))
    assert metrics.cosine(W, Wh) == pytest.approx(21 / (5 * math.sqrt(18)))
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert metrics.relative_output_error(X, W, Wh) == pytest.approx(1 / 5)
    assert metrics.sqnr(W, W) == math.inf
    assert metrics.cosine(np.zeros((1, 2)), np.zeros((1, 2))) == 1.0


def test_accepts_quantized_tensor_and_orders_bit_widths(rng):
    W = rng.standard_normal((64, 128)).astype(np.float32)
    X = rng.standard_normal((32, 128)).astype(np.float32)
    sq = [metrics.sqnr(W, lb.quantize(W, lb.RTNConfig(bits=b, group_size=32))) for b in (2, 3, 4, 8)]
    assert sq == sorted(sq)
    # each extra bit halves the step: ~6 dB per bit at high resolution
    assert 5.0 < sq[3] - sq[2] < 7.0 * 4
    q4 = lb.quantize(W, lb.RTNConfig(bits=4, group_size=32))
    assert metrics.relative_output_error(X, W, q4) == pytest.approx(
        np.linalg.norm(X @ W.T - X @ q4.dequantize().T) / np.linalg.norm(X @ W.T), rel=1e-5)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        metrics.mse(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"X must have shape \(\.\.\., 3\)"):
        metrics.relative_output_error(np.zeros((4, 2)), np.ones((2, 3)), np.ones((2, 3)))
