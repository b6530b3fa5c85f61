"""Bad input raises a clear Python exception naming the argument; nothing crashes."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core

CFG = lb.RTNConfig(bits=4, group_size=32)


@pytest.mark.parametrize("W, exc, match", [
    (np.zeros((4, 8), dtype=np.int32), TypeError, r"W must be a floating-point array .*int32"),
    (np.zeros((4, 8), dtype=np.complex64), TypeError, "W must be a floating-point"),
    (np.zeros((4, 8), dtype=bool), TypeError, "W must be a floating-point"),
    (np.zeros(8, dtype=np.float32), ValueError, r"W must be a 2-D array .*got a 1-D array of shape \(8,\)"),
    (np.zeros((2, 4, 8), dtype=np.float32), ValueError, r"2-D .* shape \(2, 4, 8\)"),
    (np.zeros((0, 8), dtype=np.float32), ValueError, r"W must be non-empty, got shape \(0, 8\)"),
    (np.zeros((4, 0), dtype=np.float32), ValueError, "non-empty"),
    (np.float32(3.0), ValueError, "2-D"),
    ("weights", TypeError, "floating-point"),
])
def test_bad_weights(W, exc, match):
    with pytest.raises(exc, match=match):
        lb.quantize(W, CFG)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("group_size", [32, -1, 0])
def test_non_finite_weights_name_the_element(bad, group_size):
    W = np.ones((6, 40), np.float32)
    W[4, 17] = bad
    with pytest.raises(ValueError, match=r"W must be finite, but W\[4, 17\]"):
        lb.quantize(W, lb.RTNConfig(bits=4, group_size=group_size))


def test_non_finite_error_is_the_same_for_any_thread_count():
    W = np.ones((200, 40), np.float32)
    W[150, 3] = np.nan
    W[20, 9] = np.inf
    for t in (1, 2):
        lb.set_num_threads(t)
        with pytest.raises(ValueError, match=r"W\[20, 9\]"):
            lb.quantize(W, CFG)


@pytest.mark.parametrize("kwargs, match", [
    (dict(bits=1), "bits"), (dict(bits=9), "bits"), (dict(group_size=-2), "group_size"),
    (dict(bits=4.0), "bits"), (dict(sym="yes"), "sym"),
])
def test_bad_config_values(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        lb.RTNConfig(**kwargs)


def test_core_checks_params_too():
    W = np.ones((4, 8), np.float32)
    with pytest.raises(ValueError, match="bits must be in 2..8, got 9"):
        _core.rtn_quantize(W, 9, 4, True)
    with pytest.raises(ValueError, match="group_size"):
        _core.rtn_quantize(W, 4, -5, True)


def test_not_a_config_and_unknown_stats():
    W = np.ones((4, 8), np.float32)
    with pytest.raises(TypeError, match="config must be a QuantConfig"):
        lb.quantize(W, {"bits": 4})
    with pytest.raises(TypeError, match="unknown statistics"):
        lb.quantize(W, CFG, hesian=np.eye(8))


def test_unimplemented_method_raises_not_implemented(monkeypatch):
    # every config class has a quantizer today: take one away to see what a user of an
    # older build would get
    import sys
    lq = sys.modules["lowbit.quantize"]  # the module (lowbit.quantize is also the function)
    cfg = lb.HQQConfig()
    monkeypatch.delitem(lq._METHODS, type(cfg))
    with pytest.raises(NotImplementedError, match=f"quant_method '{cfg.quant_method}'"):
        lb.quantize(np.ones((4, 8), np.float32), cfg)
    assert cfg.quant_method not in lb.available_methods()


def test_dequantize_rejects_inconsistent_arrays():
    q = lb.quantize(np.ones((4, 8), np.float32), CFG)
    a = q.arrays
    with pytest.raises(TypeError, match="scales must have dtype float32"):
        _core.dequantize_grouped(a["qweight"], a["scales"].astype(np.float64), a["zeros"], 4, 4, 8, 8)
    with pytest.raises(ValueError, match=r"qweight must have shape \(4, 4\)"):
        _core.dequantize_grouped(a["qweight"][:, :2], a["scales"], a["zeros"], 4, 4, 8, 8)
    with pytest.raises(ValueError, match="does not fit in 4 bits"):
        _core.dequantize_grouped(a["qweight"], a["scales"], a["zeros"] + 16, 4, 4, 8, 8)
    with pytest.raises(ValueError, match="g_idx"):
        _core.dequantize_grouped(a["qweight"], a["scales"], a["zeros"], 4, 4, 8, 8, False, np.full(8, 3, np.int32))
    with pytest.raises(ValueError, match="scales"):
        _core.dequantize_grouped(a["qweight"], np.full_like(a["scales"], np.nan), a["zeros"], 4, 4, 8, 8)
    with pytest.raises(ValueError, match="must be int32"):
        lb.QuantizedTensor(format="int4", shape=(4, 8), arrays={**a, "g_idx": np.zeros(8, np.int64)}, group_size=8)
    with pytest.raises(ValueError, match="missing array 'zeros'"):
        lb.QuantizedTensor(format="int4", shape=(4, 8), arrays={"qweight": a["qweight"], "scales": a["scales"]},
                           group_size=8)


def test_pack_codes_rejects_codes_that_do_not_fit():
    with pytest.raises(ValueError, match=r"codes\[1, 2\]=16 does not fit in 4 bits"):
        _core.pack_codes(np.array([[0, 1, 2], [3, 4, 16]], np.uint8), 4)
    with pytest.raises(TypeError, match="codes must have dtype uint8"):
        _core.pack_codes(np.zeros((2, 2), np.int64), 4)


def test_isa_override_errors():
    with pytest.raises(ValueError, match="'scalar', 'avx2', 'avx512'"):
        lb.force_isa("sse9")
    with pytest.raises(TypeError):
        lb.force_isa(2)
    for isa in ("avx2", "avx512", "neon"):
        if isa not in _core.supported_isas():
            with pytest.raises(NotImplementedError, match="not supported"):
                lb.force_isa(isa)
