"""Table-lookup matmul (lowbit.lut, cpp/include/lowbit/lut_qmatmul.hpp) for nf4/fp4, hqq,
int4_tinygemm and fp8 weights.

Bound (lut_qmatmul.hpp): with A = sum_k (|table*scale| + |offset|) |x_k|, every path gives
|y - y_exact| <= gamma(Kp + 4) A (Kp = padded in_features); HQQ's reordering (q - z) s ->
q s + (-z s) adds at most 3u (|q s| + |z s|) per weight, inside the same slack. Tests check
against the float64 product of the format's own dequantize with tol = (Kp + 8) u A.

``q.prepare()`` runs HQQ up to 4 bits and int4_tinygemm on the grouped-int kernels instead
(lowbit.lut.affine_kernel): the table-lookup kernel of those formats is built explicitly here
(prepare_hqq / prepare_tinygemm); the routed path is checked against the int8 / float bounds
and for the very same W_hat.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core
from lowbit.bnb import quantize_4bit
from lowbit.config import FP8Config, HQQConfig, TorchAoConfig
from lowbit.lut import LutKernel, prepare_bnb4, prepare_hqq, prepare_tinygemm
from lowbit.tensor import PackedKernel
from lowbit.methods.hqq import _meta_values

U = 2.0 ** -24


def weights(out: int, inp: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((out, inp)).astype(np.float32) * np.float32(0.05)


def acts(M: int, inp: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((M, inp)).astype(np.float32)


# (id, out, in, builder): odd out, in not a multiple of 32/64 where the format allows it
CASES = {
    "nf4-64": (37, 256, lambda W: quantize_4bit(W, "nf4", 64)),
    "nf4-64-in96": (13, 96, lambda W: quantize_4bit(W, "nf4", 64)),            # blocks cross rows: groups of 32
    "nf4-128-in200-dq": (11, 200, lambda W: quantize_4bit(W, "nf4", 128, True)),  # groups of 8, padded
    "fp4-64-dq": (21, 192, lambda W: quantize_4bit(W, "fp4", 64, True)),
    "hqq4-64": (19, 192, lambda W: lb.quantize(W, HQQConfig(nbits=4, group_size=64))),
    "hqq3-48": (9, 144, lambda W: lb.quantize(W, HQQConfig(nbits=3, group_size=48))),
    "hqq2-32": (7, 96, lambda W: lb.quantize(W, HQQConfig(nbits=2, group_size=32))),
    "hqq8-64-qmeta": (16, 512, lambda W: lb.quantize(W, HQQConfig(nbits=8, group_size=64, quant_scale=True,
                                                                    quant_zero=True))),
    "hqq5-40": (5, 120, lambda W: lb.quantize(W, HQQConfig(nbits=5, group_size=40))),
    "tinygemm-32": (23, 160, lambda W: lb.quantize(W, TorchAoConfig(group_size=32))),
    "tinygemm-128": (9, 256, lambda W: lb.quantize(W, TorchAoConfig(group_size=128))),
    "fp8-e4m3-block": (130, 200, lambda W: lb.quantize(W, FP8Config(fmt="e4m3", strategy="block"))),
    "fp8-e5m2-channel": (17, 100, lambda W: lb.quantize(W, FP8Config(fmt="e5m2", strategy="channel"))),
    "fp8-e4m3-tensor": (9, 64, lambda W: lb.quantize(W, FP8Config(fmt="e4m3", strategy="tensor"))),
}

_cache: dict[str, lb.QuantizedTensor] = {}


def make(case: str) -> lb.QuantizedTensor:
    if case not in _cache:
        out, inp, build = CASES[case]
        _cache[case] = build(weights(out, inp, seed=len(case)))
    return _cache[case]


def routed_to_grouped(q: lb.QuantizedTensor) -> bool:
    """Whether q.prepare() runs q on the grouped-int kernels (lowbit.lut.affine_kernel, bnb4_kernel)."""
    return q.format in ("int4_tinygemm", "nf4", "fp4") or (q.format.startswith("hqq") and q.bits <= 4)


def kernel(q: lb.QuantizedTensor) -> LutKernel:
    """The table-lookup kernel of q (built explicitly for the formats q.prepare() routes)."""
    if q.format == "int4_tinygemm":
        return prepare_tinygemm(q)
    if q.format in ("nf4", "fp4"):
        return prepare_bnb4(q)
    if routed_to_grouped(q):
        return prepare_hqq(q, _meta_values(q, "scale"), _meta_values(q, "zero"))
    k = q.prepare().__dict__["_kernel"]
    assert isinstance(k, LutKernel), (q.format, k)
    return k


def magnitude(q: lb.QuantizedTensor) -> np.ndarray:
    """float64 [out, in] of |table*scale| + |offset| per weight."""
    W = q.dequantize().astype(np.float64)
    if q.format.startswith("hqq"):
        codes = _core.unpack_codes(q.arrays["qweight"], q.bits, q.shape[1]).astype(np.float64).reshape(-1)
        gid = np.arange(codes.size) // q.group_size
        s = _meta_values(q, "scale").astype(np.float64).reshape(-1)[gid]
        z = _meta_values(q, "zero").astype(np.float64).reshape(-1)[gid]
        return (np.abs(codes * s) + np.abs(z * s)).reshape(q.shape)
    if q.format == "int4_tinygemm":  # kernel: q s + (z - 8 s); reference: (q - 8) s + z
        bf = lambda a: np.repeat((a.astype(np.uint32) << 16).view(np.float32).astype(np.float64), q.group_size, 1)
        s, z = bf(q.arrays["scales_bf16"]), bf(q.arrays["zeros_bf16"])
        codes = np.round((W - z) / np.where(s == 0, 1, s)) + 8
        return np.abs(codes * s) + 8 * np.abs(s) + 2 * np.abs(z)
    return np.abs(W)


def bound(q: lb.QuantizedTensor, x: np.ndarray) -> np.ndarray:
    w = kernel(q).weights
    kp = q.shape[1] + 32 * w.n_groups
    return (kp + 8) * U * (np.abs(x.astype(np.float64)) @ magnitude(q).T) + 1e-30


def table_rounding(q: lb.QuantizedTensor) -> np.ndarray:
    """float64 [out, in]: how far nf4/fp4's int8 table moves each weight (<= absmax / 254, as
    max|table| = 1); 0 for the affine formats, whose integer codes are exact."""
    if q.format not in ("nf4", "fp4"):
        return np.zeros(q.shape)
    from lowbit.bnb import dequantize_absmax
    n = q.shape[0] * q.shape[1]
    absmax = np.repeat(dequantize_absmax(q).astype(np.float64), int(q.params["blocksize"]))[:n]
    return (absmax / 254.0).reshape(q.shape)


def int8_bound(q: lb.QuantizedTensor, x: np.ndarray) -> np.ndarray:
    """The grouped-int kernels' act="int8" bound (test_qmatmul.py): activations rounded to int8
    blocks move by <= max|x| / 254, table weights by table_rounding, plus float sums."""
    mag = magnitude(q) + table_rounding(q)
    amax = np.abs(x).max(axis=1, keepdims=True).astype(np.float64)
    ax = np.abs(x.astype(np.float64))
    sums = 64 * (q.shape[1] / 32 + 8) * U * ((ax + amax / 254.0) @ mag.T)
    return bound(q, x) + amax / 254.0 * mag.sum(axis=1)[None, :] + (ax + amax / 254.0) @ table_rounding(q).T + sums


@pytest.mark.parametrize("case", sorted(CASES))
def test_matmul_within_bound_of_dequantized_product(case):
    q = make(case)
    W = q.dequantize().astype(np.float64)
    for M in (1, 3, 9, 33):
        x = acts(M, q.shape[1], seed=M)
        want = x.astype(np.float64) @ W.T
        for act in ("float32", "int8"):
            got = q.matmul(x, act=act)
            assert got.dtype == np.float32 and got.shape == (M, q.shape[0])
            tol = int8_bound(q, x) if act == "int8" and routed_to_grouped(q) else bound(q, x)
            assert np.all(np.abs(got - want) <= tol), (case, M, act, float(np.abs(got - want).max()))


@pytest.mark.parametrize("case", [c for c in sorted(CASES) if c.startswith(("hqq2", "hqq3", "hqq4", "tinygemm", "nf4",
                                                                          "fp4"))])
def test_affine_formats_run_on_the_grouped_kernels_with_the_same_w_hat(case):
    """hqq <= 4 bits, tinygemm and nf4/fp4 prepare to PackedWeights; their act="float32" W_hat is the
    table-lookup kernel's, bit for bit (x = identity: every output is one product), and act="int8"
    really quantizes the activations (it differs from the float path)."""
    q = make(case)
    k = q.prepare().__dict__["_kernel"]
    assert isinstance(k, PackedKernel) and isinstance(k.packed, _core.PackedWeights), (case, k)
    eye = np.eye(q.shape[1], dtype=np.float32)
    lut_w = _core.lut_qmatmul(eye, kernel(q).weights, "float32")
    assert q.matmul(eye, act="float32").tobytes() == lut_w.tobytes()
    x = acts(5, q.shape[1], seed=7)
    assert not np.array_equal(q.matmul(x, act="int8"), q.matmul(x, act="float32"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_avx2_matches_scalar_definition(case):
    if "avx2" not in _core.supported_isas():
        pytest.skip("no AVX2 on this CPU/build")
    q = make(case)
    w = kernel(q).weights
    for M in (1, 2, 3, 7, 8, 9, 33):
        x = acts(M, q.shape[1], seed=10 + M)
        ref = _core.lut_qmatmul(x, w, "float32", "scalar").astype(np.float64)
        got = _core.lut_qmatmul(x, w, "float32", "avx2")
        assert np.all(np.abs(got - ref) <= 2 * bound(q, x)), (case, M)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical, NaNs (any payload) matching NaNs."""
    na, nb = np.isnan(a), np.isnan(b)
    return bool(np.array_equal(na, nb) and a[~na].tobytes() == b[~nb].tobytes())


@pytest.mark.parametrize("case", sorted(CASES))
def test_avx2_decode_is_bit_exact(case):
    """The prefill tile W_hat (table value * scale + offset) is elementwise: every ISA's decode
    (lookup, int conversion, FP8 bit arithmetic) must give the scalar definition's bits."""
    if "avx2" not in _core.supported_isas():
        pytest.skip("no AVX2 on this CPU/build")
    w = kernel(make(case)).weights
    assert _same(_core.lut_dequantize(w, "avx2"), _core.lut_dequantize(w, "scalar")), case


@pytest.mark.parametrize("table", ["e4m3", "e5m2", "nf4", "int16", "int256", "random256"])
def test_avx2_decode_covers_every_code(table):
    """Every code of each table kind (FP8 NaN / inf / subnormal / -0 codes included) decodes to
    the table entry's bits."""
    if "avx2" not in _core.supported_isas():
        pytest.skip("no AVX2 on this CPU/build")
    from lowbit.bnb import NF4_CODE

    n = 16 if table in ("nf4", "int16") else 256
    T = {"e4m3": lambda: _core.from_fp8_bits(np.arange(256, dtype=np.uint8), "e4m3"),
         "e5m2": lambda: _core.from_fp8_bits(np.arange(256, dtype=np.uint8), "e5m2"),
         "nf4": lambda: NF4_CODE, "int16": lambda: np.arange(16, dtype=np.float32),
         "int256": lambda: np.arange(256, dtype=np.float32),
         "random256": lambda: np.random.default_rng(3).standard_normal(256).astype(np.float32)}[table]()
    codes = np.concatenate([np.arange(n), np.random.default_rng(4).integers(0, n, 3 * n)]).astype(np.uint8)
    codes = codes.reshape(-1, 64)
    w = _core.prepare_lut(codes, T, np.ones((codes.shape[0], 1), np.float32), None, 64)
    assert w.decode == {"e4m3": "e4m3", "e5m2": "e5m2", "int16": "int", "int256": "int"}.get(table, "table")
    got = _core.lut_dequantize(w, "avx2")
    assert _same(got, _core.lut_dequantize(w, "scalar"))
    assert _same(got, np.asarray(T, np.float32)[codes])
    x = acts(3, 64)
    y, ref = _core.lut_qmatmul(x, w, "float32", "avx2"), _core.lut_qmatmul(x, w, "float32", "scalar")
    assert np.array_equal(np.isnan(y), np.isnan(ref))


def test_avx2_matches_scalar_at_prefill_size():
    if "avx2" not in _core.supported_isas():
        pytest.skip("no AVX2 on this CPU/build")
    for case in ("nf4-128-in200-dq", "hqq8-64-qmeta"):
        q = make(case)
        w = kernel(q).weights
        x = acts(512, q.shape[1], seed=5)
        ref = _core.lut_qmatmul(x, w, "float32", "scalar").astype(np.float64)
        assert np.all(np.abs(_core.lut_qmatmul(x, w, "float32", "avx2") - ref) <= 2 * bound(q, x)), case


def test_prepare_layout_per_family():
    """4-bit codes stay nibbles (16-entry table), FP8 and 5..8-bit HQQ take a byte."""
    expect = {"nf4-64": (16, False, "table"), "fp4-64-dq": (16, False, "table"), "tinygemm-32": (16, True, "int"),
              "hqq4-64": (16, True, "int"), "hqq5-40": (256, True, "int"), "fp8-e4m3-block": (256, False, "e4m3"),
              "fp8-e5m2-channel": (256, False, "e5m2")}
    for case, (ts, off, dec) in expect.items():
        q = make(case)
        w = kernel(q).weights
        assert (w.table_size, w.has_offset, w.decode) == (ts, off, dec), case
        assert w.nbytes < 4 * q.shape[0] * q.shape[1] / 2, case  # well under float32's 4 bytes
    assert not kernel(make("nf4-64")).weights.reordered and kernel(make("nf4-128-in200-dq")).weights.reordered


@pytest.mark.parametrize("case", ["nf4-64", "hqq3-48", "tinygemm-32", "fp8-e4m3-block"])
def test_bit_identical_for_1_and_2_threads(case):
    q = make(case)
    before = lb.get_num_threads() if hasattr(lb, "get_num_threads") else _core.get_num_threads()
    try:
        for M in (1, 8, 130):
            x = acts(M, q.shape[1])
            lb.set_num_threads(1)
            one = q.matmul(x)
            lb.set_num_threads(2)
            two = q.matmul(x)
            assert one.tobytes() == two.tobytes(), (case, M)
    finally:
        lb.set_num_threads(before)


def test_half_and_bfloat16_inputs_are_read_exactly():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    q = make("hqq4-64")
    x = acts(5, q.shape[1])
    for dt in (np.float16, ml_dtypes.bfloat16):
        xl = x.astype(dt)
        assert q.matmul(xl).tobytes() == q.matmul(xl.astype(np.float32)).tobytes()


@pytest.mark.parametrize("case", ["nf4-64-in96", "hqq5-40", "tinygemm-32", "fp8-e5m2-channel"])
def test_zeros_huge_and_nan_inputs(case):
    q = make(case)
    inp = q.shape[1]
    for M in (3, 12):
        assert not q.matmul(np.zeros((M, inp), np.float32)).any()
        big = acts(M, inp) * np.float32(1e30)
        want = big.astype(np.float64) @ q.dequantize().astype(np.float64).T
        got = q.matmul(big)
        tol = int8_bound(q, big) if routed_to_grouped(q) else bound(q, big)
        assert np.all(np.isfinite(got)) and np.all(np.abs(got - want) <= tol), (case, M)
    x = acts(3, inp)
    x[1, inp // 2] = np.nan
    y = q.matmul(x)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    assert y[[0, 2]].tobytes() == q.matmul(x[[0, 2]]).tobytes()  # rows independent (decode)


def test_matmul_never_dequantizes(monkeypatch):
    q = make("fp4-64-dq")
    q.prepare()
    x = acts(4, q.shape[1])
    want = q.matmul(x)
    monkeypatch.setattr(type(q), "dequantize", lambda self: (_ for _ in ()).throw(AssertionError("dequantized")))
    np.testing.assert_array_equal(q.matmul(x), want)


def test_hqq_axis0_falls_back_to_dequantize():
    q = lb.quantize(weights(8, 64), HQQConfig(nbits=4, group_size=32, axis=0))
    assert q.prepare().__dict__["_kernel"] is None
    x = acts(2, 64)
    np.testing.assert_allclose(q.matmul(x), x @ q.dequantize().T, rtol=1e-5, atol=1e-5)


def test_errors():
    q = make("nf4-64")
    w = kernel(q).weights
    x = acts(2, q.shape[1])
    with pytest.raises(NotImplementedError, match="int8_token"):
        q.matmul(x, act="int8_token")
    with pytest.raises(ValueError, match="act must be"):
        q.matmul(x, act="int4")
    with pytest.raises(ValueError, match="in_features"):
        _core.lut_qmatmul(acts(2, 10), w)
    with pytest.raises(TypeError, match="LutWeights"):
        _core.lut_qmatmul(x, None)
    codes = np.zeros((3, 64), np.uint8)
    s = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match="16 or 256"):
        _core.prepare_lut(codes, np.zeros(8, np.float32), s, None, 32)
    codes[2, 5] = 16
    with pytest.raises(ValueError, match=r"codes\[2, 5\] = 16"):
        _core.prepare_lut(codes, np.zeros(16, np.float32), s, None, 32)
    with pytest.raises(ValueError, match="scale"):
        _core.prepare_lut(np.zeros((3, 64), np.uint8), np.zeros(16, np.float32), np.ones((3, 3), np.float32), None, 32)
    with pytest.raises(TypeError, match="codes"):
        _core.prepare_lut(np.zeros((3, 64), np.int32), np.zeros(16, np.float32), s, None, 32)
    with pytest.raises(ValueError, match="group_size"):
        _core.prepare_lut(np.zeros((3, 64), np.uint8), np.zeros(16, np.float32), s, None, 0)


def test_prepared_tensor_pickles_without_its_kernel():
    import pickle

    q = make("tinygemm-128")
    x = acts(2, q.shape[1])
    y = q.matmul(x)
    q2 = pickle.loads(pickle.dumps(q))
    np.testing.assert_array_equal(q2.matmul(x), y)


# (int4_tinygemm needs in_features % group_size == 0, which stories260K's down_proj (172) is not)
@pytest.mark.parametrize("cfg", [lb.BnbConfig(bnb_4bit_quant_type="nf4"), HQQConfig(nbits=4, group_size=32),
                                 FP8Config(fmt="e4m3", strategy="channel")], ids=["nf4", "hqq4", "fp8"])
def test_llama_runtime_uses_the_kernel(shared_data_module, cfg):
    """stories260K quantized: the runtime's linears run the prepared kernels (prefill and decode),
    and its logits agree with the same model on the dequantized float32 weights."""
    from lowbit.models import load_model

    model = load_model(shared_data_module / "models" / "stories260K" / "stories260K.bin")
    qm = lb.quantize_model(model, cfg, None, progress=False)
    dense = lb.quantize_model(model, cfg, None, progress=False)
    names = [n for n, w in dense.weights.items() if isinstance(w, lb.QuantizedTensor)]
    assert names
    for n in names:
        dense.set_weight(n, dense.weights[n].dequantize())
    qm.matmul_act = "float32"  # nf4 / hqq4 run on the grouped-int kernels: compare their float path
    tokens = [1, 415, 218, 302, 272, 344, 287, 13, 5, 9, 11, 7]
    for t in (tokens, tokens[:1]):  # prefill (M = 12 > 8) and decode (M = 1)
        got, want = qm.forward(t), dense.forward(t)
        assert np.allclose(got, want, rtol=1e-3, atol=1e-4 * float(np.abs(want).max())), type(cfg).__name__
    want_kernel = LutKernel if isinstance(cfg, FP8Config) else PackedKernel
    assert all(type(qm.weights[n].__dict__.get("_kernel")) is want_kernel for n in names)
