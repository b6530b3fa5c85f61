"""GPTQ checkpoint packing: bit-exact with an independent AutoGPTQ-style packer and with words
built by hand; v1 <-> v2 <-> canonical round trips; act-order g_idx kept."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core
from lowbit.export import from_gptq, to_gptq
from reference.gptq_pack_ref import gptq_pack_ref

from conftest import correlated_weights


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("group_size", [-1, 32, 128])
def test_pack_matches_reference_and_round_trips(bits, sym, group_size, rng):
    W = correlated_weights(rng, 64, 256)
    q = lb.quantize(W, lb.RTNConfig(bits=bits, group_size=group_size, sym=sym))
    codes = _core.unpack_codes(q.arrays["qweight"], bits, 256)
    for fmt, version in (("gptq", 1), ("gptq_v2", 2)):
        t = to_gptq(q, checkpoint_format=fmt)
        ref_qw, ref_qz = gptq_pack_ref(codes, q.arrays["zeros"], bits, version)
        assert t["qweight"].dtype == np.int32 and t["qweight"].shape == (256 * bits // 32, 64)
        assert t["qzeros"].shape == (q.n_groups, 64 * bits // 32)
        np.testing.assert_array_equal(t["qweight"], ref_qw)
        np.testing.assert_array_equal(t["qzeros"], ref_qz)
        assert t["scales"].dtype == np.float16 and t["scales"].shape == (q.n_groups, 64)
        np.testing.assert_array_equal(t["g_idx"], np.arange(256) // q.group_size)
        back = from_gptq(t, bits=bits, group_size=group_size, checkpoint_format=fmt, sym=sym)
        np.testing.assert_array_equal(back.arrays["qweight"], q.arrays["qweight"])
        np.testing.assert_array_equal(back.arrays["zeros"], q.arrays["zeros"])
        # scales went through float16: the only lossy step
        np.testing.assert_allclose(back.arrays["scales"], q.arrays["scales"], rtol=2**-11)
        assert "g_idx" not in back.arrays


def test_symmetric_zero_words():
    q = lb.quantize(np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32),
                    lb.RTNConfig(bits=4, group_size=32, sym=True))
    assert (to_gptq(q)["qzeros"].view(np.uint32) == 0x77777777).all()
    assert (to_gptq(q, checkpoint_format="gptq_v2")["qzeros"].view(np.uint32) == 0x88888888).all()
    q2 = lb.quantize(np.ones((16, 64), np.float32), lb.RTNConfig(bits=2, group_size=-1, sym=True))
    assert (to_gptq(q2)["qzeros"].view(np.uint32) == 0x55555555).all()  # z=2 -> 1 per field


def test_v1_to_v2_conversion_through_canonical(rng):
    W = correlated_weights(rng, 32, 64)
    q = lb.quantize(W, lb.RTNConfig(bits=4, group_size=32, sym=False))
    v1 = to_gptq(q, checkpoint_format="gptq")
    v2 = to_gptq(from_gptq(v1, bits=4, group_size=32, checkpoint_format="gptq"), checkpoint_format="gptq_v2")
    assert np.array_equal(v2["qzeros"], to_gptq(q, checkpoint_format="gptq_v2")["qzeros"])
    # v2 = v1 + 1 in every 4-bit field, modulo 16 (no carries across fields)
    z1 = _core.unpack_codes(v1["qzeros"].view(np.uint8), 4, 32)
    z2 = _core.unpack_codes(v2["qzeros"].view(np.uint8), 4, 32)
    assert np.array_equal((z1.astype(int) + 1) % 16, z2)


def test_act_order_g_idx_is_kept(rng):
    W = correlated_weights(rng, 32, 64)
    q = lb.quantize(W, lb.RTNConfig(bits=4, group_size=32))
    t = to_gptq(q)
    perm = rng.permutation(64)
    t["g_idx"] = (perm // 32).astype(np.int32)
    back = from_gptq(t, bits=4, group_size=32)
    assert np.array_equal(back.arrays["g_idx"], t["g_idx"])
    D = back.dequantize()
    codes = _core.unpack_codes(back.arrays["qweight"], 4, 64).astype(np.float32)
    g = t["g_idx"]
    want = back.arrays["scales"][:, g] * (codes - back.arrays["zeros"][:, g])
    assert np.array_equal(D, want)


def test_shapes_that_do_not_pack_are_rejected(rng):
    q = lb.quantize(correlated_weights(rng, 8, 36), lb.RTNConfig(bits=4, group_size=12))
    with pytest.raises(ValueError, match="multiple of 8"):
        to_gptq(q)
    q = lb.quantize(correlated_weights(rng, 32, 48), lb.RTNConfig(bits=3, group_size=16))
    with pytest.raises(ValueError, match="in_features \\(48\\) to be a multiple of 32"):
        to_gptq(q)
    q = lb.quantize(correlated_weights(rng, 32, 64), lb.RTNConfig(bits=5, group_size=16))
    with pytest.raises(NotImplementedError, match="2, 3, 4 or 8"):
        to_gptq(q)
    q = lb.quantize(correlated_weights(rng, 32, 64), lb.RTNConfig(bits=4, group_size=0))
    with pytest.raises(ValueError, match="per-tensor|per-channel or per-group"):
        to_gptq(q)
    with pytest.raises(ValueError, match="checkpoint_format"):
        to_gptq(lb.quantize(correlated_weights(rng, 32, 64), lb.RTNConfig()), checkpoint_format="marlin")
