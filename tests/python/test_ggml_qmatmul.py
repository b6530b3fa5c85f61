"""Quantized matmul of GGUF block weights as llama.cpp computes it (``_core.ggml_qmatmul``,
``QuantizedTensor.matmul`` on the "blocks" layout).

What must hold:

* activations are quantized byte for byte as ggml-cpu's from_float of the weight type's
  vec_dot_type (q8_0 / q8_1 / q8_K): golden bytes from llama.cpp (committed), and live;
* each output is ggml's vec_dot: integer parts exact, so ours and llama.cpp's differ by float
  summation order only: ``|err| <= (n_blocks + 4) * 4u * sum_k |x_k| |W_hat[r, k]|``;
* vs the float32 product of W_hat (``act="float32"``), the activation rounding bound: each
  x_k moves by at most ``d/2 * (1 + 2^-11) + 2^-11 |x_k|`` (d = max|x| / 127 over its block of
  32, or 256 for q8_K whose d is float32: no 2^-11 term there), so
  ``|err| <= sum_k |W_hat[r, k]| (d_k/2 (1 + 2^-11) + 2^-11 |x_k|)`` + float rounding;
* AVX2 vs the scalar definition: the same float-order bound; threads 1 vs 2: bit-identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core
from conftest import matmul_acts as acts

U = 2.0 ** -24
TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "iq4_nl", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K")
K_TYPES = ("q2_K", "q3_K", "q4_K", "q5_K", "q6_K")
VEC_DOT_TYPE = {"q4_0": "q8_0", "q5_0": "q8_0", "q8_0": "q8_0", "iq4_nl": "q8_0", "q4_1": "q8_1", "q5_1": "q8_1",
                **{t: "q8_K" for t in K_TYPES}}
GOLDEN = Path(__file__).resolve().parent / "fixtures" / "ggml_qmatmul_golden.npz"


def block(t: str) -> int:
    return 256 if t in K_TYPES else 32


def weights(t: str, out: int, inp: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = (rng.standard_t(5, (out, inp)) * rng.uniform(0.01, 1.0, (out, 1))).astype(np.float32)
    if out > 2:
        W[1, : inp // 2] = 0.0
    return _core.quantize_rows(t, W)




def float_scale(t: str, qw: np.ndarray, x: np.ndarray) -> np.ndarray:
    """sum_k |x_k| |W_hat[r, k]| (float64) [M, out]: the scale of float rounding errors."""
    return np.abs(x.astype(np.float64)) @ np.abs(_core.dequantize_rows(t, qw, x.shape[1]).astype(np.float64)).T


def order_bound(t: str, qw: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Two results of the same integer dots summed in different float orders."""
    return (x.shape[1] // block(t) + 4) * 4 * U * float_scale(t, qw, x)


def act_rounding_bound(t: str, qw: np.ndarray, x: np.ndarray) -> np.ndarray:
    """sum_k |W_hat[r, k]| (d_k/2 (1 + 2^-11) + 2^-11 |x_k|) + float rounding, [M, out] (float64)."""
    n = x.shape[1]
    b = block(VEC_DOT_TYPE[t])
    xb = np.abs(x.astype(np.float64)).reshape(x.shape[0], n // b, b)
    d = np.repeat(xb.max(axis=2) / 127.0, b, axis=1)  # [M, n]
    fp16 = 0.0 if VEC_DOT_TYPE[t] == "q8_K" else 2.0 ** -11
    per_k = d / 2 * (1 + fp16) + fp16 * np.abs(x.astype(np.float64))
    Wa = np.abs(_core.dequantize_rows(t, qw, n).astype(np.float64))
    return per_k @ Wa.T + (n + 8) * U * float_scale(t, qw, x)


def within(got: np.ndarray, want: np.ndarray, bound: np.ndarray) -> tuple[bool, float]:
    excess = np.abs(got.astype(np.float64) - want.astype(np.float64)) - bound
    return bool((excess <= 0).all()), float(excess.max())


# ------------------------------------------------------------------ golden (llama.cpp 0.3.36)
@pytest.fixture(scope="module")
def golden():
    z = np.load(GOLDEN)
    return z, json.loads(bytes(z["meta"]).decode())


@pytest.mark.parametrize("at", ["q8_0", "q8_1", "q8_K"])
def test_activation_bytes_match_llama_cpp_golden(golden, at):
    z, meta = golden
    ours = _core.ggml_quantize_act(at, z["X"])
    assert np.array_equal(ours, z[f"{at}/xq"]), f"{at} activation bytes differ from ggml-cpu {meta['peer']}"


@pytest.mark.parametrize("t", TYPES)
def test_matmul_matches_llama_cpp_golden(golden, t, isa):
    z, meta = golden
    assert meta["vec_dot_type"][t] == VEC_DOT_TYPE[t] == _core.ggml_vec_dot_type(t)
    qw, X = z[f"{t}/w"], z["X"]
    w = _core.prepare_ggml(t, qw, qw.shape[0], X.shape[1])
    assert w.act_type == VEC_DOT_TYPE[t]
    y = _core.ggml_qmatmul(X, w, "int8")
    ok, ex = within(y, z[f"{t}/y"], order_bound(t, qw, X))
    assert ok, f"{t} ({isa}): differs from ggml-cpu's vec_dot {meta['peer']} beyond float order (by {ex:.3g})"
    assert np.array_equal(y[1], np.zeros_like(y[1])), "an all-zero activation row gives exact zeros"


# ------------------------------------------------------------------ kernels vs definitions
@pytest.mark.parametrize("t", TYPES)
def test_simd_matches_scalar_and_float_bound(t, isa):
    b = block(t)
    for out, inp in ((7, b), (33, 3 * b)):
        qw = weights(t, out, inp)
        w = _core.prepare_ggml(t, qw, out, inp)
        for M in (1, 2, 3, 7, 8, 9, 33):
            x = acts(M, inp, seed=M)
            ref = _core.ggml_qmatmul(x, w, "int8", "scalar")
            got = _core.ggml_qmatmul(x, w, "int8", isa)
            ok, ex = within(got, ref, order_bound(t, qw, x))
            assert ok, f"{t} {isa} out={out} in={inp} M={M}: vs scalar by {ex:.3g}"
            f32 = _core.ggml_qmatmul(x, w, "float32", isa)
            ok, ex = within(f32, x.astype(np.float64) @ _core.dequantize_rows(t, qw, inp).astype(np.float64).T,
                            (inp + 8) * U * float_scale(t, qw, x))
            assert ok, f"{t} {isa} M={M}: act=float32 is not the float product of W_hat (by {ex:.3g})"
            ok, ex = within(got, f32, act_rounding_bound(t, qw, x))
            assert ok, f"{t} {isa} M={M}: int8 activations beyond their rounding bound (by {ex:.3g})"


@pytest.mark.parametrize("t", TYPES)
def test_prefill_512_rows_matches_scalar(t):
    inp = 2 * block(t)
    qw = weights(t, 19, inp, seed=3)
    w = _core.prepare_ggml(t, qw, 19, inp)
    x = acts(512, inp, seed=4)
    ref = _core.ggml_qmatmul(x, w, "int8", "scalar")
    for isa in _core.supported_isas():
        got = _core.ggml_qmatmul(x, w, "int8", isa)
        assert within(got, ref, order_bound(t, qw, x))[0], (t, isa)
    # every row's result is that of the row alone (tiles never change a row's arithmetic)
    assert np.array_equal(_core.ggml_qmatmul(x[300:301], w, "int8"), _core.ggml_qmatmul(x, w, "int8")[300:301])


@pytest.mark.parametrize("act", ["int8", "float32"])
def test_bit_identical_for_1_and_2_threads(act):
    for t in ("q4_1", "q6_K"):
        qw = weights(t, 300, 512)
        w = _core.prepare_ggml(t, qw, 300, 512)
        for M in (1, 9, 130):
            x = acts(M, 512)
            lb.set_num_threads(1)
            one = _core.ggml_qmatmul(x, w, act)
            lb.set_num_threads(2)
            two = _core.ggml_qmatmul(x, w, act)
            assert one.tobytes() == two.tobytes(), (t, act, M)


@pytest.mark.parametrize("t", ["q4_0", "q5_1", "q3_K", "q6_K"])
def test_zeros_huge_and_nan_inputs(t, isa):
    inp = block(t)
    qw = weights(t, 5, inp)
    w = _core.prepare_ggml(t, qw, 5, inp)
    x = acts(4, inp)
    x[0] = 0.0
    # huge, as far as ggml's fp16 fields allow: q8_0's d = amax/127 and q8_1's s = d * sum(codes)
    # (<= 32 amax) must stay below 65504, else they are inf, in llama.cpp as here
    x[2] *= (1500.0 if VEC_DOT_TYPE[t] == "q8_1" else 5e6) / np.abs(x[2]).max()
    x[3, 3] = np.nan
    for act in ("int8", "float32"):
        y = _core.ggml_qmatmul(x, w, act)
        assert np.array_equal(y[0], np.zeros(5, np.float32)), (t, act)
        assert np.isfinite(y[:3]).all(), (t, act)
        assert np.isnan(y[3]).all(), (t, act)
    y8, y32 = _core.ggml_qmatmul(x[:3], w, "int8"), _core.ggml_qmatmul(x[:3], w, "float32")
    assert within(y8, y32, act_rounding_bound(t, qw, x[:3]))[0], t


def test_half_and_bfloat16_inputs_are_read_exactly():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    qw = weights("q4_K", 9, 512)
    w = _core.prepare_ggml("q4_K", qw, 9, 512)
    x = acts(5, 512)
    for dt in (np.float16, ml_dtypes.bfloat16):
        xh = x.astype(dt)
        assert np.array_equal(_core.ggml_qmatmul(xh, w), _core.ggml_qmatmul(xh.astype(np.float32), w)), dt


def test_errors():
    qw = weights("q4_0", 4, 64)
    w = _core.prepare_ggml("q4_0", qw, 4, 64)
    with pytest.raises(ValueError, match="int8_token"):
        _core.ggml_qmatmul(np.ones((1, 64), np.float32), w, "int8_token")
    with pytest.raises(ValueError, match="act must be"):
        _core.ggml_qmatmul(np.ones((1, 64), np.float32), w, "int4")
    with pytest.raises(ValueError, match="in_features=64"):
        _core.ggml_qmatmul(np.ones((1, 32), np.float32), w)
    with pytest.raises(ValueError, match="qweight"):
        _core.prepare_ggml("q4_0", qw[:, :-1], 4, 64)
    with pytest.raises(ValueError, match="multiple of"):
        _core.prepare_ggml("q4_K", np.zeros((1, 144), np.uint8), 1, 250)
    with pytest.raises(NotImplementedError, match="no GGUF matmul kernel"):
        _core.prepare_ggml("q8_K", np.zeros((1, 292), np.uint8), 1, 256)
    with pytest.raises(ValueError, match="act_type"):
        _core.ggml_quantize_act("q4_0", np.ones((1, 32), np.float32))


# ------------------------------------------------------------------ QuantizedTensor / runtime
def blocks_tensor(t: str, out: int, inp: int) -> lb.QuantizedTensor:
    return lb.QuantizedTensor(format=t, shape=(out, inp), arrays={"qweight": weights(t, out, inp)},
                              group_size=block(t))


@pytest.mark.parametrize("t", ["q5_0", "q4_K"])
def test_tensor_matmul_uses_the_kernel(t, monkeypatch):
    q = blocks_tensor(t, 11, 512)
    x = acts(3, 512)
    want = _core.ggml_qmatmul(x, _core.prepare_ggml(t, q.arrays["qweight"], 11, 512), "int8")
    monkeypatch.setattr(lb.QuantizedTensor, "dequantize", lambda self: pytest.fail("matmul dequantized"))
    assert np.array_equal(q.matmul(x), want)
    assert np.array_equal(x @ q, want)
    assert q.matmul(x[None], act="float32").shape == (1, 3, 11)
    with pytest.raises(ValueError, match="int8_token"):
        q.matmul(x, act="int8_token")


def test_blocks_without_a_kernel_still_multiply():
    W = np.random.default_rng(0).standard_normal((3, 256)).astype(np.float32)
    q = lb.QuantizedTensor(format="q8_K", shape=(3, 256), arrays={"qweight": _core.quantize_rows("q8_K", W)},
                           group_size=256)
    x = acts(2, 256)
    np.testing.assert_allclose(q.matmul(x), x @ q.dequantize().T, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------ llama.cpp live
@pytest.fixture(scope="module")
def peer():
    pytest.importorskip("llama_cpp")
    from lowbit.peers import ggml
    try:
        ggml.cpu_lib()
    except (ggml.PeerMissing, OSError) as e:
        pytest.skip(f"llama-cpp-python has no usable libggml-cpu: {e}")
    return ggml


@pytest.mark.llama_cpp
@pytest.mark.parametrize("t", TYPES)
def test_live_llama_cpp_mul_mat(peer, t, isa):
    rng = np.random.default_rng(sum(map(ord, t)) + 7)
    b = block(t)
    for inp in (b, 3 * b):
        W = (rng.standard_t(4, (9, inp)) * rng.uniform(1e-3, 10, (9, 1))).astype(np.float32)
        qw = peer.quantize(t, W)
        x = (rng.standard_normal((6, inp)) * rng.uniform(1e-3, 100, (6, 1))).astype(np.float32)
        x[4, ::5] *= 40.0
        at = peer.vec_dot_type(t)
        assert at == _core.ggml_vec_dot_type(t)
        assert np.array_equal(_core.ggml_quantize_act(at, x), peer.cpu_from_float(at, x)), (t, inp)
        y = _core.ggml_qmatmul(x, _core.prepare_ggml(t, qw, 9, inp), "int8")
        ok, ex = within(y, peer.cpu_mul_mat(t, qw, x), order_bound(t, qw, x))
        assert ok, f"{t} in={inp} ({isa}): differs from llama.cpp {peer.version()} by {ex:.3g} beyond float order"


@pytest.mark.llama_cpp
@pytest.mark.parametrize("t", TYPES)
def test_live_llama_cpp_graph_mul_mat(peer, t):
    """Against a real ggml_mul_mat graph (ggml-cpu's own tiling and kernels, 2 threads)."""
    rng = np.random.default_rng(sum(map(ord, t)) + 11)
    inp = 2 * block(t)
    qw = _core.quantize_rows(t, rng.standard_normal((37, inp)).astype(np.float32))
    w = _core.prepare_ggml(t, qw, 37, inp)
    for M in (1, 5, 70):
        x = rng.standard_normal((M, inp)).astype(np.float32)
        from lowbit.peers import ggml_matmul

        mm = ggml_matmul.MatMul(t, [qw], inp, M=M, threads=2, repack=False)
        try:
            want = mm.run(x).copy()
        finally:
            mm.close()
        ok, ex = within(_core.ggml_qmatmul(x, w), want, order_bound(t, qw, x))
        assert ok, f"{t} M={M}: differs from ggml_mul_mat {peer.version()} by {ex:.3g} beyond float order"
