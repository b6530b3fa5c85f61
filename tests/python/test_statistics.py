"""HessianAccumulator: the reference's running average, sample counting, column statistics."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit as lb


def test_matches_numpy_and_is_batching_independent(rng):
    n = 70
    X = rng.standard_normal((6, 33, n)).astype(np.float32)
    one = lb.HessianAccumulator(n)
    one.add(X)
    many = lb.HessianAccumulator(n)
    for b in range(6):
        many.add(X[b:b + 1])
    want = 2.0 / 6 * np.einsum("bti,btj->ij", X.astype(np.float64), X.astype(np.float64))
    for acc in (one, many):
        H = acc.hessian()
        assert H.dtype == np.float32 and H.shape == (n, n)
        np.testing.assert_allclose(H, want, rtol=2e-5, atol=1e-4)
        np.testing.assert_array_equal(H, H.T)
        assert acc.n_samples == 6 and acc.n_tokens == 6 * 33
    flat = X.reshape(-1, n).astype(np.float64)
    np.testing.assert_allclose(one.act_mean_sq(), np.mean(flat**2, axis=0), rtol=1e-12)
    np.testing.assert_allclose(one.act_mean_abs(), np.mean(np.abs(flat), axis=0), rtol=1e-12)


def test_sample_counting_follows_the_reference(rng):
    n = 8
    acc = lb.HessianAccumulator(n)
    acc.add(rng.standard_normal((10, n)))          # 2-D: one sample
    assert acc.n_samples == 1
    acc.add(rng.standard_normal((3, 10, n)))       # (B, T, n): B samples
    assert acc.n_samples == 4
    acc.add(rng.standard_normal((2, 3, 5, n)))     # leading dims multiply
    assert acc.n_samples == 10
    acc.add(rng.standard_normal((5, n)), n_samples=7)
    assert acc.n_samples == 17
    acc.reset()
    assert acc.n_samples == 0 and np.all(acc.hessian() == 0)


def test_float64_accumulation_is_more_precise(rng):
    n = 64
    X = (rng.standard_normal((4000, n)) + 100).astype(np.float32)  # large mean: cancellation-prone
    want = 2.0 * X.astype(np.float64).T @ X.astype(np.float64)
    errs = {}
    for dtype in ("float32", "float64"):
        acc = lb.HessianAccumulator(n, dtype=dtype)
        for chunk in np.split(X, 8):
            acc.add(chunk, n_samples=1)
        H = acc.hessian()
        assert H.dtype == np.dtype(dtype)
        errs[dtype] = np.abs(H - want / 8).max() / np.abs(want / 8).max()  # N = 8 samples
    assert errs["float64"] < errs["float32"] and errs["float64"] < 1e-12


def test_half_precision_batches(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    n = 32
    X = rng.standard_normal((50, n)).astype(np.float32)
    for dt in (np.float16, ml_dtypes.bfloat16):
        Xh = X.astype(dt)
        a, b = lb.HessianAccumulator(n), lb.HessianAccumulator(n)
        a.add(Xh)
        b.add(Xh.astype(np.float32))
        np.testing.assert_array_equal(a.hessian(), b.hessian())


def test_identical_for_one_and_two_threads(rng):
    X = rng.standard_normal((700, 300)).astype(np.float32)
    out = []
    for t in (1, 2):
        lb.set_num_threads(t)
        acc = lb.HessianAccumulator(300)
        acc.add(X)
        out.append((acc.hessian().tobytes(), acc.act_mean_sq().tobytes()))
    assert out[0] == out[1]


def test_errors(rng):
    acc = lb.HessianAccumulator(16)
    with pytest.raises(ValueError, match=r"X must have shape \(\.\.\., 16\)"):
        acc.add(np.ones((4, 15), np.float32))
    X = np.ones((4, 16), np.float32)
    X[2, 9] = np.nan
    with pytest.raises(ValueError, match=r"X\[2, 9\]"):
        acc.add(X)
    assert acc.n_samples == 0, "a rejected batch leaves the accumulator unchanged"
    with pytest.raises(ValueError, match="at least one token"):
        acc.add(np.ones((0, 16), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        acc.add(np.ones((4, 16), np.int64))
    with pytest.raises(ValueError, match="dtype must be"):
        lb.HessianAccumulator(16, dtype="float16")
    with pytest.raises(ValueError, match="in_features must be > 0"):
        lb.HessianAccumulator(0)
    with pytest.raises(TypeError):
        lb.HessianAccumulator(16.0)
