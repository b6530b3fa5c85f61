"""RTN: bit-exact with the NumPy transcription of the grid, error bounds, edge values,
determinism across threads and ISA paths, and every input dtype/stride."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lowbit as lb
from lowbit import _core
from reference.rtn_ref import rtn_ref

from conftest import correlated_weights

BITS = [2, 3, 4, 5, 6, 7, 8]


def slack(bits: int) -> float:
    """Relative slack on the half-step bound: the float32 scale carries a rounding error of
    2^-24 relative, which the top code (maxq steps from the zero) amplifies maxq times."""
    return 1 + 2**bits * 2**-22


def codes_of(q: lb.QuantizedTensor) -> np.ndarray:
    return _core.unpack_codes(q.arrays["qweight"], q.bits, q.shape[1])


def assert_matches_reference(W, bits, group_size, sym):
    q = lb.quantize(W, lb.RTNConfig(bits=bits, group_size=group_size, sym=sym))
    codes, scales, zeros, gs = rtn_ref(W, bits, group_size, sym)
    assert q.group_size == gs
    np.testing.assert_array_equal(q.arrays["scales"].view(np.uint32), scales.view(np.uint32))
    np.testing.assert_array_equal(q.arrays["zeros"], zeros)
    np.testing.assert_array_equal(codes_of(q), codes)
    return q


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("group_size", [-1, 0, 16, 32, 48, 128])
@pytest.mark.parametrize("sym", [True, False])
def test_bit_exact_with_reference(bits, group_size, sym, rng):
    W = correlated_weights(rng, 33, 200)  # 200 columns: partial last group for 16/32/48/128
    assert_matches_reference(W, bits, group_size, sym)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("sym", [True, False])
def test_every_weight_within_half_a_step(bits, sym, rng):
    W = correlated_weights(rng, 17, 130)
    q = lb.quantize(W, lb.RTNConfig(bits=bits, group_size=32, sym=sym))
    step = np.repeat(q.arrays["scales"], 32, axis=1)[:, :130]
    err = np.abs(q.dequantize().astype(np.float64) - W)  # float64: no rounding in the test itself
    # sym puts +amax exactly half a step past the top code (GPTQ's grid [-8s, 7s] at 4 bits)
    assert np.all(err <= step / 2 * slack(bits))
    # the range always contains 0, so exact zeros stay exact
    W0 = W.copy()
    W0[:, ::7] = 0
    assert np.all(lb.quantize(W0, lb.RTNConfig(bits=bits, group_size=32, sym=sym)).dequantize()[:, ::7] == 0)


def test_symmetric_zero_point_and_scale():
    W = np.array([[-1.0, 0.5, 0.25, 3.0]], dtype=np.float32)
    q = lb.quantize(W, lb.RTNConfig(bits=4, group_size=-1, sym=True))
    assert q.arrays["zeros"][0, 0] == 8
    assert q.arrays["scales"][0, 0] == np.float32(6.0) / np.float32(15)  # 2*amax/maxq
    # a group with no negative value is still symmetric (documented fix of the reference quirk)
    q = lb.quantize(np.array([[0.5, 2.0]], np.float32), lb.RTNConfig(bits=4, group_size=-1, sym=True))
    assert q.arrays["scales"][0, 0] == np.float32(4.0) / np.float32(15)
    assert np.abs(q.dequantize() - [[0.5, 2.0]]).max() <= q.arrays["scales"][0, 0] / 2


@pytest.mark.parametrize("sym", [True, False])
def test_all_zero_rows_and_constant_rows(sym):
    W = np.zeros((4, 70), dtype=np.float32)
    W[2] = -4.25
    q = assert_matches_reference(W, 4, 32, sym)
    D = q.dequantize()
    assert np.all(D[[0, 1, 3]] == 0)
    assert np.all(np.abs(D[2] + 4.25) <= q.arrays["scales"][2].max() / 2)


@pytest.mark.parametrize("scale", [1e-42, 1e-30, 1e30, 1e38])
def test_huge_and_tiny_magnitudes(scale, rng):
    W = (rng.uniform(-1, 1, size=(9, 64)) * scale).astype(np.float32)
    for sym in (True, False):
        q = assert_matches_reference(W, 4, 16, sym)
        D = q.dequantize()
        assert np.all(np.isfinite(D))
        step = np.repeat(q.arrays["scales"], 16, axis=1)
        assert np.all(np.abs(D.astype(np.float64) - W) <= step / 2 * slack(4) + 1e-45)
    # near float32's limit the float32 span overflows; the scale stays finite
    W = np.array([[-3e38, 3e38, 1.0]], dtype=np.float32)
    q = assert_matches_reference(W, 8, -1, False)
    assert np.isfinite(q.arrays["scales"]).all()


def test_per_tensor_uses_one_scale(rng):
    W = correlated_weights(rng, 20, 50)
    q = lb.quantize(W, lb.RTNConfig(bits=8, group_size=0))
    assert q.per_tensor and q.arrays["scales"].shape == (1, 1)
    assert q.arrays["scales"][0, 0] == np.float32(2 * np.abs(W).max()) / np.float32(255)


def test_identical_bytes_for_any_thread_count_and_isa(isa, rng):
    W = correlated_weights(rng, 301, 515)
    results = []
    for threads in (1, 2):
        lb.set_num_threads(threads)
        q = lb.quantize(W, lb.RTNConfig(bits=3, group_size=128, sym=False))
        results.append(q)
    lb.force_isa("scalar")
    lb.set_num_threads(1)
    ref = lb.quantize(W, lb.RTNConfig(bits=3, group_size=128, sym=False))
    for q in results:
        for k in ("qweight", "scales", "zeros"):
            assert q.arrays[k].tobytes() == ref.arrays[k].tobytes(), (isa, k)


def test_inputs_read_in_place_whatever_dtype_or_strides(rng):
    W = correlated_weights(rng, 40, 96)
    cfg = lb.RTNConfig(bits=4, group_size=32)
    ref = lb.quantize(W, cfg)

    def same(q):
        return all(np.array_equal(q.arrays[k], ref.arrays[k]) for k in ("qweight", "scales", "zeros"))

    assert same(lb.quantize(np.asfortranarray(W), cfg))      # column-major
    assert same(lb.quantize(np.ascontiguousarray(W.T).T, cfg))  # transposed view
    big = np.zeros((80, 192), np.float32)
    big[::2, ::2] = W
    assert same(lb.quantize(big[::2, ::2], cfg))             # both strides > 1
    ro = W.copy()
    ro.setflags(write=False)
    assert same(lb.quantize(ro, cfg))                        # read-only is fine: only read
    assert same(lb.quantize(W.astype(np.float64), cfg))      # float64 converted to float32
    assert same(lb.quantize(W.tolist(), cfg))                # nested lists too
    flipped = lb.quantize(W[::-1], cfg)                      # negative stride
    assert np.array_equal(flipped.arrays["scales"], ref.arrays["scales"][::-1])
    # float16 input == float32 input of the same values
    h = W.astype(np.float16)
    q16 = lb.quantize(h, cfg)
    q32 = lb.quantize(h.astype(np.float32), cfg)
    assert np.array_equal(q16.arrays["qweight"], q32.arrays["qweight"])


def test_bfloat16_input(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    W = correlated_weights(rng, 16, 64).astype(ml_dtypes.bfloat16)
    cfg = lb.RTNConfig(bits=4, group_size=32)
    assert np.array_equal(lb.quantize(W, cfg).arrays["qweight"], lb.quantize(W.astype(np.float32), cfg).arrays["qweight"])


@settings(max_examples=60, deadline=None)
@given(
    W=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
                 elements=st.floats(-1e6, 1e6, width=32, allow_subnormal=True)),
    bits=st.integers(2, 8),
    group_size=st.sampled_from([-1, 0, 1, 3, 8, 32]),
    sym=st.booleans(),
)
def test_property_matches_reference_and_bound(W, bits, group_size, sym):
    q = assert_matches_reference(W, bits, group_size, sym)
    D = q.dequantize()
    assert np.all(np.isfinite(D))
    # inside the grid's range every error is at most half a step
    gs = q.group_size
    s = np.broadcast_to(np.repeat(q.arrays["scales"], gs, axis=1)[:, :W.shape[1]], W.shape)
    z = np.broadcast_to(np.repeat(q.arrays["zeros"], gs, axis=1)[:, :W.shape[1]], W.shape).astype(np.float64)
    lo, hi = -z * s, (2**bits - 1 - z) * s
    inside = (W >= lo) & (W <= hi)
    assert np.all(np.abs(D.astype(np.float64) - W)[inside] <= s[inside] / 2 * slack(bits) + 1e-30)
