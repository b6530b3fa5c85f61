"""Quantized matmul kernels (``_core.qmatmul`` / ``QuantizedTensor.matmul``).

Every ISA path against the scalar definition and against float64 dequantize-then-matmul, with
the error bounds the math gives:

* ``act="float32"``: a float32 GEMM of W_hat: ``|err| <= (K + 2) u sum_k |x_k W_hat[r,k]|``;
* ``act="int8"``: activations rounded to int8 blocks: each ``x_k`` moves by at most
  ``d/2 <= max|x| / 254``, so ``|err| <= sum_k |W_hat[r,k]| max|x| / 254`` (+ float rounding);
* ``act="int8_token"`` (W8A8): bit-exact against an integer reference written here.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core
from conftest import matmul_acts as acts

U = 2.0 ** -24

# (bits, out, in, group_size, sym, act_order)
CASES = [
    (4, 37, 256, 128, False, False),
    (4, 33, 200, 64, True, False),    # in not a multiple of 32, partial last group
    (4, 9, 77, -1, False, False),     # per channel, odd in
    (8, 37, 256, 32, True, False),
    (8, 5, 100, -1, False, False),
    (2, 11, 96, 16, False, False),    # groups smaller than a kernel block
    (3, 13, 150, 48, False, True),    # act-order with groups not aligned to 32
    (5, 7, 130, 64, True, False),
    (6, 6, 64, 0, False, False),      # per tensor
    (7, 5, 90, 30, False, False),
    (4, 17, 300, 128, False, True),   # act-order
    (8, 9, 160, 32, False, True),
]
MS = [1, 2, 3, 7, 8, 9, 33]


def make_q(bits: int, out: int, inp: int, group_size: int, sym: bool, act_order: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    W = (rng.standard_t(df=5, size=(out, inp)) * 0.02).astype(np.float32)
    q = lb.quantize(W, lb.RTNConfig(bits=bits, group_size=group_size, sym=sym))
    if act_order:
        # a scrambled g_idx: group g takes the columns of a random permutation's g-th slice
        perm = rng.permutation(inp)
        g_idx = np.empty(inp, np.int32)
        g_idx[perm] = np.arange(inp) // q.group_size
        q = lb.QuantizedTensor(format=q.format, shape=q.shape, arrays={**q.arrays, "g_idx": g_idx},
                               group_size=q.group_size, per_tensor=q.per_tensor, sym=q.sym)
    return q




def float_bound(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    K = x.shape[1]
    return (K + 2) * U * (np.abs(x.astype(np.float64)) @ np.abs(W.astype(np.float64)).T)


def int8_bound(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    absW = np.abs(W.astype(np.float64))
    amax = np.abs(x).max(axis=1, keepdims=True).astype(np.float64)
    rounding = amax / 254.0 * absW.sum(axis=1)[None, :]
    sums = 64 * (x.shape[1] / 32 + 8) * U * ((np.abs(x.astype(np.float64)) + amax / 254.0) @ absW.T)
    return rounding + sums + 1e-30


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"int{c[0]}-{c[1]}x{c[2]}-g{c[3]}-{'sym' if c[4] else 'asym'}"
                         f"{'-actorder' if c[5] else ''}")
def test_matmul_within_bounds_of_dequantized_product(case, isa):
    q = make_q(*case)
    W = q.dequantize()
    packed = q.prepare()
    for M in MS:
        x = acts(M, case[2], seed=M)
        want = x.astype(np.float64) @ W.T.astype(np.float64)
        y32 = q.matmul(x, act="float32")
        assert y32.dtype == np.float32 and y32.shape == (M, case[1])
        assert np.all(np.abs(y32 - want) <= float_bound(x, W) + 1e-30), (isa, M)
        y8 = q.matmul(x, act="int8")
        err = np.abs(y8 - want)
        assert np.all(err <= int8_bound(x, W)), (isa, M, float(err.max()))
        # the bound is not vacuous: int8 rounding really changes the result a little
        if M > 3:
            assert err.max() > 0
    assert packed is q


@pytest.mark.parametrize("case", CASES[:6], ids=str)
def test_simd_matches_scalar_definition(case):
    if len(_core.supported_isas()) == 1:
        pytest.skip("only the scalar path on this CPU")
    q = make_q(*case, seed=3)
    packed = _core.prepare_grouped(q.arrays["qweight"], q.arrays["scales"], q.arrays["zeros"], q.bits,
                                   q.shape[0], q.shape[1], q.group_size, q.per_tensor, q.arrays.get("g_idx"))
    W = np.abs(q.dequantize().astype(np.float64))
    for M in MS + [512]:
        x = acts(M, case[2], seed=10 + M)
        ref = _core.qmatmul(x, packed, "int8", "scalar")
        T = (np.abs(x.astype(np.float64)) + np.abs(x).max(axis=1, keepdims=True) / 254.0) @ W.T
        tol = 4 * (packed.n_blocks + packed.n_groups + 16) * U * T + 1e-30
        for isa_name in _core.supported_isas()[1:]:
            got = _core.qmatmul(x, packed, "int8", isa_name)
            assert np.all(np.abs(got.astype(np.float64) - ref) <= tol), (isa_name, M)
            # the float path dequantizes to the same bits on every ISA; only the GEMM differs
            f_ref = _core.qmatmul(x, packed, "float32", "scalar")
            f_got = _core.qmatmul(x, packed, "float32", isa_name)
            assert np.all(np.abs(f_got - f_ref) <= 2 * float_bound(x, q.dequantize()) + 1e-30)


def w8a8_reference(x: np.ndarray, q: lb.QuantizedTensor) -> np.ndarray:
    """Per-token int8 activations x per-channel int8 weights, integer accumulation (int64 here)."""
    w_int = q.arrays["qweight"].astype(np.int64) - q.arrays["zeros"].astype(np.int64).reshape(-1, 1)
    amax = np.abs(x).max(axis=1).astype(np.float32)
    d = amax / np.float32(127)
    inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
    a = np.clip(np.rint(x * inv[:, None]), -127, 127).astype(np.int64)
    acc = a @ w_int.T
    s = q.arrays["scales"].reshape(-1).astype(np.float32)
    if s.size == 1:
        s = np.repeat(s, q.shape[0])
    return (s[None, :] * d[:, None]).astype(np.float32) * acc.astype(np.float32)


@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("inp", [64, 77, 1000])
def test_w8a8_bit_exact_against_integer_reference(sym, inp, isa):
    q = make_q(8, 13, inp, -1, sym, False, seed=inp)
    for M in (1, 2, 7, 9, 33):
        x = acts(M, inp, seed=M)
        got = q.matmul(x, act="int8_token")
        want = w8a8_reference(x, q)
        assert got.tobytes() == want.tobytes(), (isa, M)
        # per-token scales: each x_k moves by at most max|x_m| / 254, as for the block path
        W = q.dequantize()
        assert np.all(np.abs(got - x.astype(np.float64) @ W.T.astype(np.float64)) <= int8_bound(x, W))


def test_w8a8_needs_8_bit_per_channel():
    with pytest.raises(NotImplementedError, match="int8_token"):
        make_q(4, 8, 64, -1, True, False).matmul(np.ones((1, 64), np.float32), act="int8_token")
    with pytest.raises(NotImplementedError, match="one group"):
        make_q(8, 8, 64, 32, True, False).matmul(np.ones((1, 64), np.float32), act="int8_token")


@pytest.mark.parametrize("act", ["int8", "float32"])
def test_bit_identical_for_1_and_2_threads(act):
    q = make_q(4, 300, 512, 128, False, False)
    for M in (1, 8, 130):
        x = acts(M, 512)
        lb.set_num_threads(1)
        one = q.matmul(x, act=act)
        lb.set_num_threads(2)
        two = q.matmul(x, act=act)
        assert one.tobytes() == two.tobytes(), (act, M)


def test_half_and_bfloat16_inputs_are_read_exactly():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    q = make_q(4, 21, 96, 32, False, False)
    x = acts(5, 96)
    for dt in (np.float16, ml_dtypes.bfloat16):
        xl = x.astype(dt)
        for act in ("int8", "float32"):
            assert q.matmul(xl, act=act).tobytes() == q.matmul(xl.astype(np.float32), act=act).tobytes()


def test_zeros_huge_and_nan_inputs():
    q = make_q(4, 19, 128, 32, False, False)
    W = q.dequantize().astype(np.float64)
    assert not q.matmul(np.zeros((3, 128), np.float32)).any()
    big = acts(4, 128) * np.float32(1e20)
    want = big.astype(np.float64) @ W.T
    got = q.matmul(big)
    assert np.all(np.isfinite(got)) and np.all(np.abs(got - want) <= int8_bound(big, W))
    x = acts(3, 128)
    x[1, 40] = np.nan
    y = q.matmul(x)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    assert y[[0, 2]].tobytes() == q.matmul(x[[0, 2]]).tobytes()


def test_shapes_and_errors():
    q = make_q(4, 12, 64, 32, False, False)
    x3 = acts(6, 64).reshape(2, 3, 64)
    assert q.matmul(x3).shape == (2, 3, 12)
    assert (x3 @ q).shape == (2, 3, 12)
    assert q.matmul(np.ones((0, 64), np.float32)).shape == (0, 12)
    # non-contiguous and float64 inputs are accepted (copied)
    xs = acts(4, 128)[:, ::2]
    np.testing.assert_array_equal(q.matmul(xs), q.matmul(np.ascontiguousarray(xs)))
    np.testing.assert_array_equal(q.matmul(xs.astype(np.float64)), q.matmul(np.ascontiguousarray(xs)))
    with pytest.raises(ValueError, match="act must be"):
        q.matmul(np.ones((1, 64), np.float32), act="int4")
    with pytest.raises(ValueError, match="in_features=64"):
        q.matmul(np.ones((1, 65), np.float32))
    packed = q.prepare().__dict__["_kernel"]
    assert callable(packed)
    p = _core.prepare_grouped(q.arrays["qweight"], q.arrays["scales"], q.arrays["zeros"], 4, 12, 64, 32)
    assert (p.rows, p.cols, p.bits, p.container, p.n_blocks, p.n_groups, p.reordered) == (12, 64, 4, "nibble", 2, 2, False)
    with pytest.raises(ValueError, match="x must be"):
        _core.qmatmul(np.ones((2, 63), np.float32), p)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        _core.qmatmul(np.ones((2, 64), np.int32), p)
    if "avx512" not in _core.supported_isas():
        with pytest.raises(NotImplementedError, match="avx512"):
            _core.qmatmul(np.ones((2, 64), np.float32), p, "int8", "avx512")


def test_act_order_is_resolved_at_prepare():
    q = make_q(4, 16, 256, 64, False, True)
    p = _core.prepare_grouped(q.arrays["qweight"], q.arrays["scales"], q.arrays["zeros"], 4, 16, 256, 64,
                              False, q.arrays["g_idx"])
    assert p.reordered and p.n_blocks == 8
    x = acts(3, 256)
    want = x.astype(np.float64) @ q.dequantize().T.astype(np.float64)
    assert np.all(np.abs(_core.qmatmul(x, p, "float32") - want) <= float_bound(x, q.dequantize()) + 1e-30)


def test_matmul_never_dequantizes(monkeypatch):
    """matmul runs the packed kernel; W_hat is never materialised."""
    q = make_q(4, 24, 64, 32, False, False)
    calls = []
    monkeypatch.setattr(type(q), "dequantize", lambda self: calls.append(1) or pytest.fail("dequantized"))
    x = acts(2, 64)
    q.matmul(x)
    q.matmul(x, act="float32")
    assert not calls


@pytest.mark.parametrize("act", ["int8", "int8_token"])
def test_batch_invariant(act, isa):
    """A row's output does not depend on the other rows of the call (decode vs prefill tiles,
    register-tile tails): each token gets the same bits alone or in a batch."""
    q = make_q(8 if act == "int8_token" else 4, 37, 200, -1 if act == "int8_token" else 64, False, False)
    x = acts(33, 200)
    batch = q.matmul(x, act=act)
    for k in range(33):
        assert batch[k].tobytes() == q.matmul(x[k:k + 1], act=act)[0].tobytes(), k
    assert batch[:9].tobytes() == q.matmul(x[:9], act=act).tobytes()


def test_prepared_tensor_pickles_without_its_kernel():
    import copy
    import pickle

    q = make_q(4, 8, 64, 32, False, False).prepare()
    x = acts(2, 64)
    r = pickle.loads(pickle.dumps(q))
    assert "_kernel" not in r.__dict__
    assert r.matmul(x).tobytes() == q.matmul(x).tobytes() == copy.deepcopy(q).matmul(x).tobytes()


def test_int8_peak_probe_reports_a_rate_and_checks_its_argument():
    if "avx2" not in _core.supported_isas():
        with pytest.raises(NotImplementedError):
            _core.int8_peak(0.02)
        return
    p = _core.int8_peak(0.02)
    assert p["gops"] > 0 and p["threads"] >= 1
    assert "AVX" in p["instruction"]
    with pytest.raises(ValueError, match="seconds"):
        _core.int8_peak(0.0)


def test_prepare_affine_float_zero_formats_and_errors():
    """W_hat = s * code + offset (HQQ / tinygemm float zeros) on the grouped kernels: the float
    path reproduces s * code + offset bit for bit; the int8 path stays within the int8 bound."""
    rng = np.random.default_rng(5)
    out, inp, gs = 13, 96, 32
    codes = rng.integers(0, 16, size=(out, inp), dtype=np.uint8)
    s = rng.uniform(0.01, 0.02, size=(out, inp // gs)).astype(np.float32)
    off = rng.uniform(-0.2, 0.0, size=(out, inp // gs)).astype(np.float32)
    p = _core.prepare_affine(codes, s, off, 4, gs)
    W = np.repeat(s, gs, axis=1) * codes.astype(np.float32) + np.repeat(off, gs, axis=1)
    eye = np.eye(inp, dtype=np.float32)
    assert _core.qmatmul(eye, p, "float32").tobytes() == np.ascontiguousarray(W.T).tobytes()
    x = acts(9, inp)
    want = x.astype(np.float64) @ W.T.astype(np.float64)
    assert np.all(np.abs(_core.qmatmul(x, p, "int8") - want) <= int8_bound(x, W))
    with pytest.raises(ValueError, match="bits must be in"):
        _core.prepare_affine(codes, s, off, 5, gs)
    with pytest.raises(ValueError, match="codes must be < 2\\^bits = 8"):
        _core.prepare_affine(codes, s, off, 3, gs)
    with pytest.raises(ValueError, match="group_size must divide"):
        _core.prepare_affine(codes, s, off, 4, 40)
    with pytest.raises(ValueError, match="offset must have shape|offset"):
        _core.prepare_affine(codes, s, off[:, :1], 4, gs)
    bad = s.copy()
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="must be finite"):
        _core.prepare_affine(codes, bad, off, 4, gs)
    with pytest.raises(TypeError, match="codes must have dtype uint8"):
        _core.prepare_affine(codes.astype(np.int32), s, off, 4, gs)


@pytest.mark.parametrize("gs", [64, 16])  # groups of 16: padded to 32-column blocks
def test_table4_nibbles_every_isa_against_the_int8_table_reference(gs, isa):
    """prepare_table4 (NF4/FP4): act="int8" multiplies round(127 t / max|t|) * max|t| / 127 against
    int8 blocks: checked against that integer reference in float64 on every ISA, with odd rows."""
    rng = np.random.default_rng(11)
    out, inp = 19, 128
    table = np.sort(rng.uniform(-1.0, 1.0, 16)).astype(np.float32)
    table[7] = 0.0
    codes = rng.integers(0, 16, size=(out, inp), dtype=np.uint8)
    s = rng.uniform(0.5, 2.0, size=(out, inp // gs)).astype(np.float32)
    p = _core.prepare_table4(codes, table, s, gs)
    tmax = np.abs(table).max()
    t8 = np.rint(127 * (table / tmax)).astype(np.float64)
    W8 = np.repeat(s.astype(np.float64), gs, axis=1) * t8[codes] * (tmax / 127.0)
    bw = 32 if gs % 32 == 0 else gs  # activation block: a 32-column block holds one group of 16
    for M in (1, 2, 3, 8, 9, 33):
        x = acts(M, inp, seed=M)
        xb = x.reshape(M, -1, bw).astype(np.float64)
        d = np.abs(x.reshape(M, -1, bw)).max(axis=2, keepdims=True).astype(np.float32) / np.float32(127)
        a = np.clip(np.rint(x.reshape(M, -1, bw) * np.where(d > 0, np.float32(1) / np.where(d > 0, d, 1), 0)), -127, 127)
        xq = (a * d).reshape(M, inp).astype(np.float64)   # the int8 activations as values
        want = xq @ W8.T
        got = _core.qmatmul(x, p, "int8", isa)
        tol = 64 * (inp / 32 + 8) * U * ((np.abs(xb).reshape(M, inp) + np.abs(x).max()) @ np.abs(W8).T) + 1e-30
        assert np.all(np.abs(got - want) <= tol), (isa, M)
        for k in (0, M // 2, M - 1):  # batch invariant: a row alone (decode tile) gets the same bits
            assert got[k].tobytes() == _core.qmatmul(x[k:k + 1], p, "int8", isa)[0].tobytes(), (isa, M, k)
    W = np.repeat(s, gs, axis=1) * table[codes]
    eye = np.eye(inp, dtype=np.float32)
    assert _core.qmatmul(eye, p, "float32", isa).tobytes() == np.ascontiguousarray(W.T).tobytes()
    with pytest.raises(ValueError, match="codes must be < 16"):
        _core.prepare_table4(codes + 16, table, s, gs)
    with pytest.raises(ValueError, match="all zeros"):
        _core.prepare_table4(codes, np.zeros(16, np.float32), s, gs)
    with pytest.raises(ValueError, match="table must have shape|table"):
        _core.prepare_table4(codes, table[:8], s, gs)
