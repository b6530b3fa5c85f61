"""GPTQ: parity with the NumPy transcription of the published algorithm for every option
combination, quality against RTN, damping and degenerate Hessians, determinism, errors."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core
from lowbit.export import from_gptq, to_gptq
from reference.gptq_ref import gptq_ref, objective


def correlated_inputs(rng, tokens: int, n: int) -> np.ndarray:
    """Layer inputs with realistic structure: correlated features and a few outlier channels."""
    mix = np.eye(n) + 0.5 * rng.standard_normal((n, n)) / np.sqrt(n)
    X = rng.standard_normal((tokens, n)) @ mix
    X[:, rng.choice(n, size=3, replace=False)] *= 3
    return X.astype(np.float32)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    n, rows = 256, 256
    X = correlated_inputs(rng, 2048, n)
    acc = lb.HessianAccumulator(n)
    acc.add(X.reshape(8, 256, n))
    W = (rng.standard_normal((rows, n)) * 0.02).astype(np.float32)
    return W, acc.hessian(), X


COMBOS = list(itertools.product([2, 3, 4, 8], [-1, 32, 100, 128], [True, False], [False, True], [False, True]))


@pytest.fixture(scope="module")
def well_conditioned():
    """The parity problem: mildly correlated inputs, many tokens per feature."""
    rng = np.random.default_rng(7)
    n, rows = 256, 256
    X = (rng.standard_normal((4096, n)) @ (np.eye(n) + 0.2 * rng.standard_normal((n, n)) / np.sqrt(n)))
    acc = lb.HessianAccumulator(n)
    acc.add(X.astype(np.float32).reshape(16, 256, n))
    W = (rng.standard_normal((rows, n)) * 0.02).astype(np.float32)
    return W, acc.hessian(), {}


def _compare(problem, combo):
    """lowbit vs the reference for one option combination (cached per module)."""
    W, H, cache = problem
    if combo not in cache:
        bits, group_size, sym, desc_act, static_groups = combo
        cfg = lb.GPTQConfig(bits=bits, group_size=group_size, sym=sym, desc_act=desc_act,
                            static_groups=static_groups)
        q = lb.quantize(W, cfg, hessian=H)
        ref = gptq_ref(W, H, bits, group_size, sym, desc_act, static_groups)
        cache[combo] = (q, ref, objective(W, q.dequantize(), H), objective(W, ref[4], H))
    return cache[combo]


# lowbit computes the same GPTQ in a different float32 order (left-looking blocks, a
# reversed Cholesky factor instead of an inverse): an update can land on the other side of
# a rounding tie and move one code by one step. That happens to ~1e-4 of the codes and moves
# the objective by up to ~2e-4 relative for a few combinations (most at 8 bits, where the
# objective is tiny), up or down: the same size as the difference between the reference run
# with a float32 and with a float64 factorization. Per combination we bound it by 5e-4; over
# all 128 combinations the mean deviation must stay under 1e-4 and unbiased.
@pytest.mark.parametrize("bits, group_size, sym, desc_act, static_groups", COMBOS)
def test_matches_reference(well_conditioned, bits, group_size, sym, desc_act, static_groups):
    W = well_conditioned[0]
    q, (codes, scales, zeros, g_idx, _), o, o_ref = _compare(well_conditioned, (bits, group_size, sym, desc_act,
                                                                               static_groups))
    got = _core.unpack_codes(q.arrays["qweight"], bits, W.shape[1]).astype(int)
    differ = got != codes
    assert differ.mean() <= 1e-3, f"{differ.sum()} codes differ"
    assert np.all(np.abs(got - codes)[differ] == 1)
    np.testing.assert_array_equal(q.arrays.get("g_idx", np.arange(W.shape[1]) // q.group_size), g_idx)
    assert abs(o - o_ref) <= 5e-4 * o_ref
    assert q.stats["objective"] == pytest.approx(o, rel=1e-5)
    if static_groups or group_size == -1:  # grids fitted before the sweep: identical
        np.testing.assert_array_equal(q.arrays["scales"], scales)
        np.testing.assert_array_equal(q.arrays["zeros"], zeros)


def test_objective_matches_reference_on_average(well_conditioned):
    dev = np.array([(o - o_ref) / o_ref for *_, o, o_ref in (_compare(well_conditioned, c) for c in COMBOS)])
    assert np.mean(np.abs(dev)) <= 1e-4
    assert abs(np.mean(dev)) <= 2e-5  # no systematic gain or loss: only rounding noise
    assert np.mean(np.abs(dev) <= 1e-4) >= 0.9


@pytest.mark.parametrize("bits, group_size", [(3, 128), (4, 128), (4, -1), (2, 64)])
def test_beats_rtn_on_correlated_inputs(problem, bits, group_size):
    W, H, X = problem
    q = lb.quantize(W, lb.GPTQConfig(bits=bits, group_size=group_size), hessian=H)
    r = lb.quantize(W, lb.RTNConfig(bits=bits, group_size=group_size))
    assert q.stats["objective_rtn"] == pytest.approx(objective(W, r.dequantize(), H), rel=1e-5)
    assert q.stats["objective"] < 0.9 * q.stats["objective_rtn"]
    # and on the layer outputs themselves
    assert lb.metrics.relative_output_error(X, W, q) < lb.metrics.relative_output_error(X, W, r)


@pytest.fixture(scope="module")
def outlier_channels():
    """16 of 256 input channels 10x louder than the rest: where quantization order matters."""
    rng = np.random.default_rng(3)
    n = 256
    X = correlated_inputs(rng, 1024, n)
    X[:, rng.choice(n, 16, replace=False)] *= 10
    H = 2 * X.T.astype(np.float64) @ X / 4
    W = (rng.standard_normal((128, n)) * 0.02).astype(np.float32)
    return W, H


def test_act_order_helps_with_outlier_channels(outlier_channels):
    W, H = outlier_channels
    plain = lb.quantize(W, lb.GPTQConfig(bits=3, group_size=-1), hessian=H).stats["objective"]
    ordered = lb.quantize(W, lb.GPTQConfig(bits=3, group_size=-1, desc_act=True), hessian=H).stats["objective"]
    assert ordered < plain


def test_identical_bytes_for_one_and_two_threads(problem):
    W, H, _ = problem
    cfg = lb.GPTQConfig(bits=4, group_size=32, desc_act=True, sym=False)
    out = []
    for t in (1, 2):
        lb.set_num_threads(t)
        q = lb.quantize(W, cfg, hessian=H)
        out.append([q.arrays[k].tobytes() for k in sorted(q.arrays)] + [q.stats["objective"]])
    assert out[0] == out[1]


def test_every_isa_agrees_to_rounding(problem, isa):
    W, H, _ = problem
    q = lb.quantize(W, lb.GPTQConfig(bits=4, group_size=128), hessian=H)
    lb.force_isa("scalar")
    ref = lb.quantize(W, lb.GPTQConfig(bits=4, group_size=128), hessian=H)
    differ = q.arrays["qweight"] != ref.arrays["qweight"]
    assert differ.mean() <= 1e-3
    assert q.stats["objective"] == pytest.approx(ref.stats["objective"], rel=1e-4)


def test_dead_columns_and_rank_deficient_hessian():
    rng = np.random.default_rng(5)
    n = 96
    X = rng.standard_normal((40, n)).astype(np.float32)  # 40 tokens < 96 features: rank 40
    X[:, [3, 50]] = 0  # two inputs never fire
    acc = lb.HessianAccumulator(n)
    acc.add(X)
    W = rng.standard_normal((32, n)).astype(np.float32)
    q = lb.quantize(W, lb.GPTQConfig(bits=4, group_size=32), hessian=acc)
    assert q.stats["dead_columns"] == 2
    D = q.dequantize()
    assert np.all(np.isfinite(D))
    assert np.all(D[:, [3, 50]] == 0)  # dead inputs get zero weights, as the reference
    # an all-zero Hessian: every column is dead, nothing fails
    q = lb.quantize(W, lb.GPTQConfig(bits=4, group_size=32), hessian=np.zeros((n, n), np.float32))
    assert q.stats["dead_columns"] == n and np.all(q.dequantize() == 0)


def test_failed_factorization_raises_damping_and_warns():
    rng = np.random.default_rng(6)
    n = 64
    A = rng.standard_normal((256, n))
    H = A.T @ A / 256
    H -= 0.025 * np.mean(np.diag(H)) * np.eye(n) + np.min(np.linalg.eigvalsh(H)) * np.eye(n)  # indefinite
    W = rng.standard_normal((16, n)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="succeeded with"):
        q = lb.quantize(W, lb.GPTQConfig(bits=4, group_size=-1, damp_percent=0.01), hessian=H)
    assert q.stats["damp_retries"] >= 1 and q.stats["damp_percent_used"] > 0.01
    assert np.all(np.isfinite(q.dequantize()))
    with pytest.raises(ValueError, match="not positive definite"):
        lb.quantize(W, lb.GPTQConfig(damp_percent=0.01, group_size=-1), hessian=-np.eye(n) * 5 + np.ones((n, n)))


@pytest.mark.parametrize("H, exc, match", [
    (np.eye(8, 9, dtype=np.float32), ValueError, r"H must be square, got shape \(8, 9\)"),
    (np.eye(9, dtype=np.float32), ValueError, r"must match in_features=8"),
    (np.ones(8, dtype=np.float32), ValueError, "2-D"),
    (np.eye(8, dtype=np.int32), TypeError, "float32 or float64"),
])
def test_bad_hessians(H, exc, match):
    with pytest.raises(exc, match=match):
        lb.quantize(np.ones((4, 8), np.float32), lb.GPTQConfig(group_size=-1), hessian=H)


def test_non_finite_inputs_are_named():
    H = np.eye(8, dtype=np.float32)
    H[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"H must be finite, but H\[2, 5\]"):
        lb.quantize(np.ones((4, 8), np.float32), lb.GPTQConfig(group_size=-1), hessian=H)
    W = np.ones((4, 8), np.float32)
    W[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"W must be finite, but W\[3, 1\]"):
        lb.quantize(W, lb.GPTQConfig(group_size=-1), hessian=np.eye(8))
    with pytest.raises(ValueError, match="needs the layer's input Hessian"):
        lb.quantize(W, lb.GPTQConfig())
    with pytest.raises(ValueError, match="has seen no data"):
        lb.quantize(W, lb.GPTQConfig(), hessian=lb.HessianAccumulator(8))


def test_mse_grid_search_runs_and_does_not_hurt(problem):
    W, H, _ = problem
    base = lb.quantize(W, lb.GPTQConfig(bits=3, group_size=128), hessian=H)
    mse = lb.quantize(W, lb.GPTQConfig(bits=3, group_size=128, mse=True), hessian=H)
    assert not np.array_equal(base.arrays["scales"], mse.arrays["scales"])
    assert mse.stats["objective"] < 1.05 * base.stats["objective"]


@pytest.mark.parametrize("desc_act, static_groups", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("fmt", ["gptq", "gptq_v2"])
def test_packs_to_the_gptq_checkpoint_layout(problem, desc_act, static_groups, fmt):
    W, H, _ = problem
    q = lb.quantize(W, lb.GPTQConfig(bits=4, group_size=64, desc_act=desc_act, static_groups=static_groups,
                                     sym=False), hessian=H)
    t = to_gptq(q, checkpoint_format=fmt)
    if desc_act and not static_groups:
        assert not np.array_equal(t["g_idx"], np.arange(256) // 64)  # act-order: non-monotone g_idx
    back = from_gptq(t, bits=4, group_size=64, checkpoint_format=fmt, sym=False)
    scales16 = q.arrays["scales"].astype(np.float16).astype(np.float32)
    q16 = lb.QuantizedTensor(format="int4", shape=q.shape, arrays={**q.arrays, "scales": scales16},
                             group_size=64, sym=False)
    np.testing.assert_array_equal(back.dequantize(), q16.dequantize())


def test_config_fields_reach_the_solver(problem):
    W, H, _ = problem
    a = lb.quantize(W, lb.GPTQConfig(bits=4, damp_percent=0.01), hessian=H)
    b = lb.quantize(W, lb.GPTQConfig(bits=4, damp_percent=0.2), hessian=H)
    assert a.stats["damp_percent_used"] == 0.01 and b.stats["damp_percent_used"] == 0.2
    assert not np.array_equal(a.arrays["qweight"], b.arrays["qweight"])
    c = lb.quantize(W, lb.GPTQConfig(bits=4, block_size=32), hessian=H)  # lazy batch size: same math
    assert c.stats["objective"] == pytest.approx(a.stats["objective"], rel=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lb.quantize(W, lb.GPTQConfig(bits=4), hessian=H.astype(np.float64))  # float64 H accepted


# ---- group-aware reordering (GPTQModel's act_group_aware) ------------------------------------
GAR_COMBOS = list(itertools.product([3, 4], [32, 96], [True, False], [False, True]))  # 96: a partial last group


@pytest.mark.parametrize("bits, group_size, sym, static_groups", GAR_COMBOS)
def test_group_aware_reordering_matches_reference(problem, bits, group_size, sym, static_groups):
    W, H, _ = problem
    q = lb.quantize(W, lb.GPTQConfig(bits=bits, group_size=group_size, sym=sym, static_groups=static_groups,
                                     act_group_aware=True), hessian=H)
    codes, scales, zeros, g_idx, W_hat = gptq_ref(W, H, bits, group_size, sym, static_groups=static_groups,
                                                 act_group_aware=True)
    assert "g_idx" not in q.arrays  # groups stay contiguous: the plain GPTQ checkpoint layout
    np.testing.assert_array_equal(g_idx, np.arange(W.shape[1]) // group_size)
    got = _core.unpack_codes(q.arrays["qweight"], bits, W.shape[1]).astype(int)
    differ = got != codes
    assert differ.mean() <= 1e-3, f"{differ.sum()} codes differ"
    assert np.all(np.abs(got - codes)[differ] == 1)
    o, o_ref = objective(W, q.dequantize(), H), objective(W, W_hat, H)
    assert abs(o - o_ref) <= 5e-4 * o_ref
    if static_groups:
        np.testing.assert_array_equal(q.arrays["scales"], scales)
    else:  # the grids are fitted during the sweep: the remapped groups agree to float rounding
        np.testing.assert_allclose(q.arrays["scales"], scales, rtol=1e-5)
    # the reordering is a real one (not the identity) on this Hessian
    plain = lb.quantize(W, lb.GPTQConfig(bits=bits, group_size=group_size, sym=sym, static_groups=static_groups),
                        hessian=H)
    assert not np.array_equal(plain.arrays["qweight"], q.arrays["qweight"])


def test_group_aware_reordering_helps_with_outlier_channels(outlier_channels):
    W, H = outlier_channels
    obj = {gar: lb.quantize(W, lb.GPTQConfig(bits=3, group_size=64, act_group_aware=gar), hessian=H).stats["objective"]
           for gar in (False, True)}
    assert obj[True] < obj[False]


def test_group_aware_reordering_is_ignored_with_desc_act_and_per_row_groups(problem):
    W, H, _ = problem
    for kw in ({"desc_act": True}, {"group_size": -1}):
        a = lb.quantize(W, lb.GPTQConfig(bits=4, **kw), hessian=H)
        b = lb.quantize(W, lb.GPTQConfig(bits=4, act_group_aware=True, **kw), hessian=H)
        assert all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
