"""float16/bfloat16 conversions: bit-exact with NumPy's float16 and the standard bf16 rounding."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit as lb


def special_floats() -> np.ndarray:
    f = np.finfo(np.float32)
    h = np.finfo(np.float16)
    vals = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, -np.nan, f.max, -f.max, f.tiny, f.smallest_subnormal,
            float(h.max), 65519.99, 65520.0, 65536.0, float(h.tiny), float(h.smallest_subnormal),
            float(h.smallest_subnormal) / 2, float(h.smallest_subnormal) * 1.5, 1 + 2**-11, 1 + 3 * 2**-11,
            1 + 2**-8, 1 + 3 * 2**-8, 3.3895314e38]
    return np.array(vals, dtype=np.float32)


def random_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random bit patterns (every exponent, NaN payloads included) plus values near fp16's range."""
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    near = (rng.standard_normal(n) * np.exp2(rng.uniform(-26, 17, n))).astype(np.float32)
    return np.concatenate([bits.view(np.float32), near, special_floats()])


def test_fp16_bits_equal_numpy_astype(rng):
    x = random_floats(rng, 1 << 20)
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    got = lb.fp16_bits(x)
    assert got.dtype == np.uint16 and got.shape == x.shape
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{bad.size} mismatches, first x bits {x[bad[:3]].view(np.uint32)}"


def test_every_fp16_value_decodes_like_numpy():
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    want = h.view(np.float16).astype(np.float32)
    got = lb.from_fp16_bits(h)
    assert np.array_equal(got.view(np.uint32)[~np.isnan(want)], want.view(np.uint32)[~np.isnan(want)])
    assert np.array_equal(np.isnan(got), np.isnan(want))
    # float16 arrays are accepted directly (same bits)
    assert np.array_equal(lb.from_fp16_bits(h.view(np.float16)).view(np.uint32)[:100], got.view(np.uint32)[:100])


def bf16_reference(x: np.ndarray) -> np.ndarray:
    """Round to nearest even on the top 16 bits, NaN -> quiet NaN (written here, integer math)."""
    u = x.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    return np.where(nan, ((u >> 16) & 0x8000).astype(np.uint16) | np.uint16(0x7FC0), rounded).astype(np.uint16)


def test_bf16_bits_equal_reference_rounding(rng):
    x = random_floats(rng, 1 << 20)
    assert np.array_equal(lb.bf16_bits(x), bf16_reference(x))


def test_bf16_matches_ml_dtypes(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = random_floats(rng, 1 << 18)
    x = x[~np.isnan(x)]  # ml_dtypes keeps NaN payloads; lowbit canonicalises them (documented)
    want = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    assert np.array_equal(lb.bf16_bits(x), want)
    b = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    dec = lb.from_bf16_bits(b)
    ref = b.view(ml_dtypes.bfloat16).astype(np.float32)
    same = np.isnan(ref)
    assert np.array_equal(np.isnan(dec), same)
    assert np.array_equal(dec[~same].view(np.uint32), ref[~same].view(np.uint32))


def test_conversions_keep_shape_and_reject_bad_dtypes():
    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4)
    assert lb.fp16_bits(x).shape == (2, 3, 4)
    assert lb.from_fp16_bits(lb.fp16_bits(x)).shape == (2, 3, 4)
    with pytest.raises(TypeError, match="uint16"):
        lb.from_fp16_bits(np.zeros(4, dtype=np.int32))
