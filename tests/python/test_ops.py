"""The model ops of the Llama runtime (lowbit._core): each against a float64 NumPy reference,
the KV-cache property of attention, every weight dtype/layout of linear, the same bits for
any thread count, and bad input rejected with a message naming the argument.

Error bounds: the ops compute in float32 (u = 2**-24 per rounding). A length-K float32 dot
product is within K*u*sum|x_k w_k| of the exact value (the classical bound; in practice
~sqrt(K)*u), so tests compare against float64 with bounds of that form, with a factor 2-4 of
slack; elementwise ops are within a few roundings, i.e. a few u relative.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from lowbit import _core
from lowbit.models.llama_ref import LlamaShape, _rmsnorm, _rope

U = 2.0**-24  # unit roundoff of float32


def f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def attention_ref(q, k, v, q_offset, scale):
    """Causal GQA in float64: q [T, nh, hd], k/v [S, nkv, hd] -> [T, nh*hd]."""
    T, nh, hd = q.shape
    S, nkv, _ = k.shape
    kk = np.repeat(k.astype(np.float64), nh // nkv, axis=1)          # query head h -> kv head h // group
    vv = np.repeat(v.astype(np.float64), nh // nkv, axis=1)
    s = np.einsum("thd,shd->hts", q.astype(np.float64), kk) * scale
    pos = q_offset + np.arange(T)
    s[:, np.arange(S)[None, :] > pos[:, None]] = -np.inf
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("hts,shd->thd", p, vv).reshape(T, nh * hd)


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def in_two_thread_counts(fn):
    """fn() with 1 and with 2 threads; the results must be the same bytes."""
    _core.set_num_threads(1)
    a = fn()
    _core.set_num_threads(2)
    b = fn()
    _core.set_num_threads(0)
    return a, b


# ---- rms_norm -----------------------------------------------------------------------------

@pytest.mark.parametrize("D", [1, 3, 577])
@pytest.mark.parametrize("M", [1, 7])
def test_rms_norm_matches_reference(rng, M, D):
    x = f32(rng.standard_normal((M, D)) * 3)
    w = f32(rng.uniform(0.5, 1.5, D))
    y = _core.rms_norm(x, w, 1e-5)
    ref = _rmsnorm(x.astype(np.float64), w.astype(np.float64), 1e-5)
    # mean, + eps, 1/sqrt and two products each round once: <= ~5u relative per element
    np.testing.assert_allclose(y, ref, rtol=8 * U, atol=0)
    assert y.dtype == np.float32 and y.shape == (M, D)


def test_rms_norm_empty_and_threads(rng):
    assert _core.rms_norm(np.zeros((0, 4), np.float32), np.ones(4, np.float32), 1e-6).shape == (0, 4)
    x = f32(rng.standard_normal((100, 129)))
    w = f32(rng.standard_normal(129))
    a, b = in_two_thread_counts(lambda: _core.rms_norm(x, w, 1e-6))
    assert a.tobytes() == b.tobytes()


def test_rms_norm_bad_inputs():
    x = np.ones((2, 4), np.float32)
    with pytest.raises(TypeError, match="x must have dtype float32"):
        _core.rms_norm(x.astype(np.float64), np.ones(4, np.float32), 1e-6)
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        _core.rms_norm(x, np.ones(5, np.float32), 1e-6)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, \*\)"):
        _core.rms_norm(np.ones(4, np.float32), np.ones(4, np.float32), 1e-6)


# ---- rope ---------------------------------------------------------------------------------

def inv_freq_of(hd, theta=10000.0):
    return f32(theta ** (-np.arange(0, hd, 2) / hd))


@pytest.mark.parametrize("style", ["interleaved", "half"])
@pytest.mark.parametrize("hd", [2, 6, 64])
def test_rope_matches_llama_reference(rng, style, hd):
    T, H = 7, 3
    x = f32(rng.standard_normal((T, H, hd)))
    ref = _rope(x.astype(np.float64), LlamaShape(dim=hd, n_layers=1, n_heads=1, n_kv_heads=1, vocab_size=1, rope=style))
    y = x.copy()
    assert _core.rope_(y, np.arange(T, dtype=np.int64), inv_freq_of(hd), style == "interleaved") is None
    # the op's angle is float32(p * float32(inv_freq)): off by <= 2u * angle (<= 2u * (T-1))
    # from the float64 angle; cos/sin and the rotation add a few u: bound on (|a| + |b|)
    bound = (2 * U * (T - 1) + 8 * U) * 2 * np.abs(x).max()
    np.testing.assert_allclose(y, ref, rtol=0, atol=bound)


@pytest.mark.parametrize("interleaved", [True, False])
def test_rope_positions_and_scaling_exact_definition(rng, interleaved):
    T, H, hd = 5, 2, 8
    pos = np.array([3, 17, 4, 1000, 0], np.int64)
    inv = inv_freq_of(hd, 500000.0)
    x = f32(rng.standard_normal((T, H, hd)))
    y = x.copy()
    _core.rope_(y, pos, inv, interleaved, 0.7)
    ang = (pos.astype(np.float32)[:, None] * inv[None, :]).astype(np.float64)  # float32 angle, as HF
    c = np.cos(ang)[:, None, :] * 0.7
    s = np.sin(ang)[:, None, :] * 0.7
    if interleaved:
        a, b = x[..., 0::2].astype(np.float64), x[..., 1::2].astype(np.float64)
        want = np.stack([a * c - b * s, b * c + a * s], axis=-1).reshape(T, H, hd)
    else:
        a, b = x[..., : hd // 2].astype(np.float64), x[..., hd // 2:].astype(np.float64)
        want = np.concatenate([a * c - b * s, b * c + a * s], axis=-1)
    # same angle: only cos/sin/scaling roundings and the rotation (a few u of |a| + |b|)
    np.testing.assert_allclose(y, want, rtol=0, atol=8 * U * 2 * np.abs(x).max())


def test_rope_rejects_what_it_cannot_modify_in_place():
    pos = np.arange(2, dtype=np.int64)
    inv = inv_freq_of(4)
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(TypeError, match="x must have dtype float32"):
        _core.rope_(x.astype(np.float64), pos, inv, True)
    with pytest.raises(TypeError, match="x must be a NumPy array"):
        _core.rope_(x.tolist(), pos, inv, True)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        _core.rope_(np.ones((2, 3, 8), np.float32)[..., ::2], pos, inv, True)
    ro = x.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="x is read-only"):
        _core.rope_(ro, pos, inv, True)
    with pytest.raises(ValueError, match="x must be a 3-D array"):
        _core.rope_(np.ones((2, 12), np.float32), pos, inv, True)
    with pytest.raises(ValueError, match="even head_dim"):
        _core.rope_(np.ones((2, 3, 5), np.float32), pos, inv, True)
    with pytest.raises(ValueError, match=r"positions must have shape \(2,\)"):
        _core.rope_(x, np.arange(3, dtype=np.int64), inv, True)
    with pytest.raises(TypeError, match="positions must have dtype int64"):
        _core.rope_(x, pos.astype(np.int32), inv, True)
    with pytest.raises(ValueError, match=r"inv_freq must have shape \(2,\)"):
        _core.rope_(x, pos, inv_freq_of(8), True)


def test_rope_threads(rng):
    x = f32(rng.standard_normal((64, 3, 16)))
    pos = np.arange(64, dtype=np.int64) * 7

    def run():
        y = x.copy()
        _core.rope_(y, pos, inv_freq_of(16), False)
        return y

    a, b = in_two_thread_counts(run)
    assert a.tobytes() == b.tobytes()


# ---- attention ----------------------------------------------------------------------------

@pytest.mark.parametrize("T,S,nh,nkv,hd,q_offset", [
    (1, 1, 1, 1, 1, 0), (7, 7, 8, 4, 16, 0), (7, 12, 8, 4, 16, 5), (7, 12, 3, 1, 5, 0),
    (1, 40, 3, 1, 64, 39), (5, 300, 2, 1, 17, 100),
    # T off the query tiles (64 queries for 9/3 heads, 192 for 4/4, 24 for 8/1), chunked
    # prefill (q_offset > 0, T > 1) across 256-key blocks, S far beyond the queries, decode
    # at SmolLM2's shape
    (63, 63, 9, 3, 64, 0), (65, 65, 8, 1, 8, 0), (257, 257, 4, 4, 64, 0), (257, 300, 9, 3, 128, 43),
    (65, 600, 8, 1, 128, 535), (7, 1000, 9, 3, 64, 200), (1, 2048, 9, 3, 64, 2047),
])
def test_attention_matches_reference(rng, T, S, nh, nkv, hd, q_offset):
    q = f32(rng.standard_normal((T, nh, hd)))
    k = f32(rng.standard_normal((S, nkv, hd)))
    v = f32(rng.standard_normal((S, nkv, hd)))
    scale = 1 / np.sqrt(hd)
    out = _core.attention(q, k, v, q_offset, scale)
    ref = attention_ref(q, k, v, q_offset, scale)
    # A float32 score errs by ~sqrt(hd)*u*scale*sum|q_i k_i| (<~5e-6 here, hd <= 128), which
    # changes its weight by that relative amount; the output, a weighted mean of v, averages
    # these errors, and exponentials (~2u each) and float32 sums over <= S keys add a few
    # u*sqrt(S). Observed: < 3e-7 * max|v|. Bound: 1e-5 * max|v| (relative to the outputs'
    # scale: single outputs near 0 have no scale of their own); a wrong mask is off by > 1e-2.
    assert out.shape == (T, nh * hd) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.abs(v).max())


def test_attention_large_scores(rng):
    """Scores of +-80 (sums of unshifted exponentials would near float32's max) over two key
    blocks; differences to the row maximum down to -160 underflow to weight 0. No inf/NaN."""
    T, S, nh, nkv, hd, q_offset = 70, 300, 4, 2, 64, 230
    q = f32(rng.uniform(-1, 1, (T, nh, hd)))
    k = f32(rng.uniform(-1, 1, (S, nkv, hd)))
    v = f32(rng.uniform(-1, 1, (S, nkv, hd)))
    dots = np.einsum("thd,shd->hts", q.astype(np.float64), np.repeat(k.astype(np.float64), nh // nkv, axis=1))
    visible = np.arange(S)[None, :] <= q_offset + np.arange(T)[:, None]
    scale = 80.0 / np.abs(dots[:, visible]).max()
    out = _core.attention(q, k, v, q_offset, scale)
    ref = attention_ref(q, k, v, q_offset, scale)
    # a score of 80 is rounded by 80u = 5e-6 and its 64-term dot product (scale*sum|q_i k_i|
    # ~ 100) adds ~ sqrt(64)*u*100 = 5e-5 of relative weight error: 1e-4 * max|v|
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(v).max())


def test_attention_kv_cache_steps_equal_one_batched_call(rng):
    """Decoding token by token over a growing cache prefix reproduces the batched pass.

    Up to rounding, not bit for bit: the batched call runs its GEMMs over tiles of queries,
    a step over one query, and the GEMM kernels may round a row differently with the tile's
    shape. Both are float32 results within a few u of the exact value: 1e-5 relative to the
    outputs' scale max|v| (single outputs near 0 have no relative scale of their own)."""
    T, nh, nkv, hd, Smax = 9, 6, 2, 12, 16
    q = f32(rng.standard_normal((T, nh, hd)))
    k = f32(rng.standard_normal((T, nkv, hd)))
    v = f32(rng.standard_normal((T, nkv, hd)))
    full = _core.attention(q, k, v, 0, 0.3)
    cache_k = np.full((Smax, nkv, hd), np.nan, np.float32)   # never read past the prefix
    cache_v = np.full((Smax, nkv, hd), np.nan, np.float32)
    for t in range(T):
        cache_k[t], cache_v[t] = k[t], v[t]
        step = _core.attention(q[t:t + 1], cache_k[:t + 1], cache_v[:t + 1], t, 0.3)
        np.testing.assert_allclose(step[0], full[t], rtol=0, atol=1e-5 * np.abs(v).max())
    # a chunk of 4 queries after a prefix of 5 (chunked prefill) is the last rows of the full pass
    part = _core.attention(q[5:], cache_k[:T], cache_v[:T], 5, 0.3)
    np.testing.assert_allclose(part, full[5:], rtol=0, atol=1e-5 * np.abs(v).max())


def test_attention_strided_and_copied_kv(rng):
    T, S, nh, nkv, hd = 3, 10, 4, 2, 8
    q = f32(rng.standard_normal((T, nh, hd)))
    k = f32(rng.standard_normal((S, nkv, hd)))
    v = f32(rng.standard_normal((S, nkv, hd)))
    want = _core.attention(q, k, v, S - T, 0.4)
    # head-major cache [nkv, Smax, hd] seen as [S, nkv, hd]: last axis contiguous, read in place
    ck = np.zeros((nkv, 16, hd), np.float32)
    cv = np.zeros((nkv, 16, hd), np.float32)
    ck[:, :S], cv[:, :S] = k.transpose(1, 0, 2), v.transpose(1, 0, 2)
    got = _core.attention(q, ck.transpose(1, 0, 2)[:S], cv.transpose(1, 0, 2)[:S], S - T, 0.4)
    assert got.tobytes() == want.tobytes()
    # Fortran order: the last axis is strided, so the op works on a copy
    got = _core.attention(q, np.asfortranarray(k), np.asfortranarray(v), S - T, 0.4)
    assert got.tobytes() == want.tobytes()


def test_attention_bad_inputs_and_empty(rng):
    q = np.ones((4, 8, 8), np.float32)
    k = np.ones((6, 2, 8), np.float32)
    with pytest.raises(ValueError, match="q_offset=3 with T=4"):
        _core.attention(q, k, k, 3, 1.0)
    with pytest.raises(ValueError, match="q_offset=-1"):
        _core.attention(q, k, k, -1, 1.0)
    with pytest.raises(ValueError, match="n_kv_heads dividing n_heads=8"):
        _core.attention(q, np.ones((6, 3, 8), np.float32), np.ones((6, 3, 8), np.float32), 0, 1.0)
    with pytest.raises(ValueError, match="k must be"):
        _core.attention(q, np.ones((6, 2, 4), np.float32), np.ones((6, 2, 4), np.float32), 0, 1.0)
    with pytest.raises(ValueError, match="v must have the shape of k"):
        _core.attention(q, k, np.ones((5, 2, 8), np.float32), 0, 1.0)
    with pytest.raises(TypeError, match="k must have dtype float32"):
        _core.attention(q, k.astype(np.float16), k, 0, 1.0)
    with pytest.raises(ValueError, match="q must have shape"):
        _core.attention(q[0], k, k, 0, 1.0)
    assert _core.attention(q[:0], k, k, 6, 1.0).shape == (0, 64)


def test_attention_threads(rng):
    q = f32(rng.standard_normal((13, 6, 16)))
    k = f32(rng.standard_normal((20, 3, 16)))
    a, b = in_two_thread_counts(lambda: _core.attention(q, k, k, 7, 0.25))
    assert a.tobytes() == b.tobytes()


# ---- silu_mul -----------------------------------------------------------------------------

def test_silu_mul_matches_reference_and_extremes(rng):
    g = f32(rng.uniform(-20, 20, (7, 33)))
    u = f32(rng.standard_normal((7, 33)))
    y = _core.silu_mul(g, u)
    g64 = g.astype(np.float64)
    # exp, 1 + e, the quotient and the product: a few roundings (expf is within ~1 ulp)
    np.testing.assert_allclose(y, g64 / (1 + np.exp(-g64)) * u, rtol=8 * U, atol=1e-37)
    ge = f32([[1e30, -1e30, np.inf, -np.inf, -100.0, 0.0]])
    ye = _core.silu_mul(ge, np.full_like(ge, 2.0))
    assert not np.isnan(ye).any()
    np.testing.assert_array_equal(ye, f32([[2e30, 0.0, np.inf, 0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"up must have shape \(1, 6\)"):
        _core.silu_mul(ge, np.ones((6, 1), np.float32))
    assert _core.silu_mul(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)).shape == (0, 3)


def test_silu_mul_threads(rng):
    g = f32(rng.standard_normal((40, 2000)) * 5)
    a, b = in_two_thread_counts(lambda: _core.silu_mul(g, g))
    assert a.tobytes() == b.tobytes()


# ---- linear -------------------------------------------------------------------------------

def linear_bound(x, W, bias=None):
    """|x @ W.T + b - exact| <= (K + 2) u sum_k |x_k w_k| (+|b|): float32 accumulation of K terms."""
    mag = np.abs(x.astype(np.float64)) @ np.abs(W.astype(np.float64)).T
    if bias is not None:
        mag += np.abs(bias)
    return 2 * (x.shape[1] + 2) * U * mag


@pytest.mark.parametrize("wdtype", [np.float32, np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("M", [1, 7, 300])
def test_linear_weight_dtypes_and_bias(rng, wdtype, M):
    K, N = 131, 70
    x = f32(rng.standard_normal((M, K)))
    W = rng.standard_normal((N, K)).astype(wdtype)
    b = f32(rng.standard_normal(N))
    W64 = W.astype(np.float64)  # the stored (already rounded) weights are the exact input
    y = _core.linear(x, W)
    assert y.shape == (M, N) and y.dtype == np.float32
    ref = x.astype(np.float64) @ W64.T
    assert np.all(np.abs(y - ref) <= linear_bound(x, W64))
    y = _core.linear(x, W, b)
    assert np.all(np.abs(y - (ref + b)) <= linear_bound(x, W64, b))


@pytest.mark.parametrize("layout", ["every_other_column", "fortran", "reversed_rows", "float64"])
@pytest.mark.parametrize("wdtype", [np.float32, np.float16])
def test_linear_weight_layouts(rng, layout, wdtype):
    M, K, N = 5, 67, 45
    x = f32(rng.standard_normal((M, K)))
    base = rng.standard_normal((N, 2 * K)).astype(wdtype)
    W = {"every_other_column": base[:, ::2], "fortran": base[:, :K].T.copy().T,
         "reversed_rows": base[::-1, :K], "float64": base[:, :K].astype(np.float64)}[layout]
    assert layout == "float64" or not W.flags.c_contiguous
    y = _core.linear(x, W)
    W64 = W.astype(np.float32).astype(np.float64)  # float64 weights are rounded to float32 first
    assert np.all(np.abs(y - x.astype(np.float64) @ W64.T) <= linear_bound(x, W64))


def test_linear_speed_shapes_still_correct(rng):
    # SmolLM2-135M's widest shapes stay cheap enough at M=1: lm_head-sized N, K=576
    x = f32(rng.standard_normal((1, 576)))
    W = f32(rng.standard_normal((8192, 576)) * 0.05)
    y = _core.linear(x, W)
    assert np.all(np.abs(y - x.astype(np.float64) @ W.T.astype(np.float64)) <= linear_bound(x, W))


def test_linear_bad_inputs_and_empty(rng):
    W = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"weight must be \[out_features, in_features=5\]"):
        _core.linear(np.ones((2, 5), np.float32), W)
    with pytest.raises(TypeError, match="x must have dtype float32"):
        _core.linear(np.ones((2, 4)), W)
    with pytest.raises(TypeError, match="weight must be a floating-point array"):
        _core.linear(np.ones((2, 4), np.float32), W.astype(np.int32))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        _core.linear(np.ones((2, 4), np.float32), W, np.ones(4, np.float32))
    with pytest.raises(TypeError, match="bias must have dtype float32"):
        _core.linear(np.ones((2, 4), np.float32), W, np.ones(3))
    assert _core.linear(np.zeros((0, 4), np.float32), W).shape == (0, 3)


@pytest.mark.parametrize("M", [1, 300])
def test_linear_threads(rng, M):
    x = f32(rng.standard_normal((M, 70)))
    for W in (f32(rng.standard_normal((200, 70))), rng.standard_normal((200, 70)).astype(ml_dtypes.bfloat16)):
        a, b = in_two_thread_counts(lambda: _core.linear(x, W, np.ones(200, np.float32)))
        assert a.tobytes() == b.tobytes()


# ---- logits -------------------------------------------------------------------------------

@pytest.mark.parametrize("V", [1, 3, 577])
def test_token_logprobs_matches_log_softmax(rng, V):
    T = 7
    logits = f32(rng.standard_normal((T, V)) * 10)
    targets = rng.integers(0, V, T)
    lp = _core.token_logprobs(logits, targets)
    assert lp.dtype == np.float64 and lp.shape == (T,)
    # both in double from the same float32 logits: agreement to double rounding
    np.testing.assert_allclose(lp, log_softmax(logits)[np.arange(T), targets], rtol=1e-12, atol=1e-12)


def test_token_logprobs_bad_targets_and_edges():
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"targets\[1\] = 4 is outside the vocabulary \[0, 4\)"):
        _core.token_logprobs(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"targets\[0\] = -1"):
        _core.token_logprobs(logits, np.array([-1, 0, 0]))
    with pytest.raises(ValueError, match=r"targets must have shape \(3,\)"):
        _core.token_logprobs(logits, np.array([0, 1]))
    with pytest.raises(TypeError, match="logits must have dtype float32"):
        _core.token_logprobs(logits.astype(np.float64), np.array([0, 1, 2]))
    np.testing.assert_allclose(_core.token_logprobs(logits, np.array([0, 1, 2])), np.log(0.25), rtol=1e-15)
    rows = f32([[0, -np.inf, 0, 0], [np.nan, 0, 0, 0], [1e30, -1e30, 0, 0]])
    lp = _core.token_logprobs(rows, np.array([1, 0, 0]))
    assert lp[0] == -np.inf and np.isnan(lp[1]) and lp[2] == 0.0
    assert _core.token_logprobs(np.zeros((0, 4), np.float32), np.zeros(0, np.int64)).shape == (0,)


def test_kl_divergence_matches_numpy_and_argmax(rng):
    T, V = 7, 577
    ref = f32(rng.standard_normal((T, V)) * 4)
    kld, ra, la = _core.kl_divergence(ref, ref)
    assert np.all(kld == 0.0) and np.array_equal(ra, la)
    logits = f32(ref + rng.standard_normal((T, V)) * 0.3)
    kld, ra, la = _core.kl_divergence(ref, logits)
    lr, ll = log_softmax(ref), log_softmax(logits)
    want = (np.exp(lr) * (lr - ll)).sum(axis=-1)
    np.testing.assert_allclose(kld, want, rtol=1e-10, atol=1e-15)
    assert np.all(kld > 0)
    np.testing.assert_array_equal(ra, ref.argmax(axis=-1))
    np.testing.assert_array_equal(la, logits.argmax(axis=-1))
    assert kld.dtype == np.float64 and ra.dtype == np.int64


def test_kl_divergence_edges_and_errors():
    ref = f32([[1, 1, -np.inf], [0, 0, 0], [0, np.nan, 1]])
    log = f32([[0, 2, 2], [0, -np.inf, 0], [0, 0, 0]])
    kld, ra, la = _core.kl_divergence(ref, log)
    lz = np.log(1 + 2 * np.exp(2.0))
    assert np.isclose(kld[0], 0.5 * (np.log(0.5) + lz) + 0.5 * (np.log(0.5) - 2 + lz), rtol=1e-14)
    assert kld[1] == np.inf and np.isnan(kld[2])
    np.testing.assert_array_equal(ra, ref.argmax(axis=-1))   # ties: first; NaN: first NaN
    np.testing.assert_array_equal(la, log.argmax(axis=-1))
    with pytest.raises(ValueError, match=r"logits must have shape \(3, 3\)"):
        _core.kl_divergence(ref, log[:, :2])
    out = _core.kl_divergence(np.zeros((0, 5), np.float32), np.zeros((0, 5), np.float32))
    assert [a.shape for a in out] == [(0,), (0,), (0,)]


def test_kl_divergence_with_targets_gives_token_logprobs_bits(rng):
    ref = f32(rng.standard_normal((5, 301)) * 6)
    log = f32(ref + rng.standard_normal((5, 301)))
    log[2, 7] = np.nan
    t = np.array([0, 300, 5, 9, 150])
    kld, ra, la, lp_ref, lp = _core.kl_divergence(ref, log, t)
    assert lp_ref.tobytes() == _core.token_logprobs(ref, t).tobytes()
    assert lp.tobytes() == _core.token_logprobs(log, t).tobytes()
    assert kld.tobytes() == _core.kl_divergence(ref, log)[0].tobytes()
    with pytest.raises(ValueError, match="targets"):
        _core.kl_divergence(ref, log, t[:4])
    with pytest.raises(ValueError, match=r"targets\[1\] = 301 is outside"):
        _core.kl_divergence(ref, log, np.array([0, 301, 0, 0, 0]))


def test_logits_threads(rng):
    ref = f32(rng.standard_normal((9, 1000)))
    log = f32(rng.standard_normal((9, 1000)))
    a, b = in_two_thread_counts(lambda: _core.kl_divergence(ref, log)[0])
    assert a.tobytes() == b.tobytes()
    t = np.arange(9) * 100
    a, b = in_two_thread_counts(lambda: _core.token_logprobs(log, t))
    assert a.tobytes() == b.tobytes()


# ---- dtypes that are equal to float32 without being NumPy's float32 singleton ------------

def test_equal_dtype_objects_are_accepted_and_byte_order_respected(rng):
    x = f32(rng.standard_normal((3, 8)))
    w = f32(rng.standard_normal(8))
    le = w.view(np.dtype(np.float32).newbyteorder("<"))  # as a memmap / safetensors view carries
    assert le.dtype is not np.dtype(np.float32) and le.dtype == np.float32
    assert _core.rms_norm(x, le, 1e-6).tobytes() == _core.rms_norm(x, w, 1e-6).tobytes()
    tagged = w.astype(np.dtype(np.float32, metadata={"source": "test"}))
    assert _core.rms_norm(x, tagged, 1e-6).tobytes() == _core.rms_norm(x, w, 1e-6).tobytes()
    with pytest.raises(TypeError, match="weight must have dtype float32"):
        _core.rms_norm(x, w.astype(">f4"), 1e-6)       # big-endian: not float32 as stored
    W = f32(rng.standard_normal((5, 8)))
    for big in (W.astype(">f4"), W.astype(">f2")):    # weights in any byte order are converted
        np.testing.assert_allclose(_core.linear(x, big), _core.linear(x, big.astype(np.float32)), rtol=1e-6)
