"""HQQ: lowbit's C++ solver against the NumPy transcription (always), against committed outputs
of the hqq package (always) and against the live hqq package (marker ``hqq``, skipped when hqq
or torch is missing); the layout, the method, bad inputs.

Tolerances. Every operation before the zero-point update is one IEEE float32 operation in the
same order in all three implementations, so scales are compared bit for bit. A zero point is a
float32 mean of group_size terms (|term| <= 2^nbits + |z|); implementations sum in different
orders (NumPy pairwise, torch blocked, lowbit 8 double lanes), which moves the mean by a few
ulps of max(|z|, 1); 20 steps of a contracting fixed-point iteration keep it there, so zeros
may differ by ZERO_ULPS ulps. A code may then differ only where W*s + z lies within that
distance of a rounding tie (checked, not assumed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core
from lowbit.tensor import QuantizedTensor

from conftest import correlated_weights
from reference.hqq_ref import hqq_dequantize_ref, hqq_quantize_ref, lp_error, unpack_rows

ZERO_ULPS = 16
GOLDEN = Path(__file__).parent / "fixtures" / "hqq_golden.npz"

# (rows, cols, nbits, group_size, axis, round_zero, lp_norm): every width, both axes, odd shapes,
# groups that cross rows (axis 1, 40 x 120 with 48) and p = 1
CASES = [
    (64, 256, 4, 64, 1, True, 0.7), (64, 256, 4, 64, 0, True, 0.7), (48, 96, 2, 32, 1, False, 0.7),
    (48, 96, 3, 128, 0, False, 1.0), (32, 64, 8, 16, 1, False, 0.7), (32, 64, 1, 8, 0, False, 0.5),
    (40, 120, 5, 48, 1, False, 0.7), (40, 120, 6, 40, 0, False, 0.7), (7, 24, 4, 8, 1, True, 0.7),
]


def core_quantize(W, nbits, gs, axis, round_zero=False, **kw):
    qw, scale, zero, st = _core.hqq_quantize(W, nbits, gs, axis, True, round_zero, **kw)
    return unpack_rows(qw, nbits, W.shape[1]), scale, zero, st


def assert_same_solution(W, nbits, gs, axis, codes, scale, zero, ref_codes, ref_scale, ref_zero):
    np.testing.assert_array_equal(scale, ref_scale)  # bit for bit
    tol = ZERO_ULPS * np.spacing(np.maximum(np.abs(ref_zero), 1).astype(np.float32))
    assert np.all(np.abs(zero - ref_zero) <= tol), np.max(np.abs(zero - ref_zero) / tol)
    bad = codes != ref_codes
    if bad.any():  # only at rounding ties of W*s + z
        Wg = W.reshape(-1, gs) if axis == 1 else W.reshape(gs, -1)
        t = (Wg * (np.float32(1) / scale) + zero).reshape(W.shape)[bad]
        assert np.all(np.abs(codes[bad].astype(int) - ref_codes[bad]) == 1)
        assert np.all(np.abs(np.abs(t - np.floor(t)) - 0.5) < 1e-4), t


@pytest.mark.parametrize("rows,cols,nbits,gs,axis,rz,p", CASES)
def test_core_matches_numpy_reference(rows, cols, nbits, gs, axis, rz, p, rng):
    W = correlated_weights(rng, rows, cols)
    ref_codes, ref_scale, ref_zero, ref_errors = hqq_quantize_ref(W, nbits, gs, axis, round_zero=rz, lp_norm=p)
    codes, scale, zero, st = core_quantize(W, nbits, gs, axis, rz, lp_norm=p)
    assert scale.shape == ref_scale.shape == ((rows * cols // gs, 1) if axis == 1 else (1, rows * cols // gs))
    assert_same_solution(W, nbits, gs, axis, codes, scale, zero, ref_codes, ref_scale, ref_zero)
    assert st["steps"] == len(ref_errors) >= 2
    np.testing.assert_allclose(st["errors"], ref_errors, rtol=1e-6)


def test_solver_variants_match_reference(rng):
    W = correlated_weights(rng, 32, 128)
    for kw in ({"early_stop": False, "iters": 7}, {"iters": 1}, {"beta": 1.0, "lp_norm": 1.0}, {"beta": 100.0}):
        ref = hqq_quantize_ref(W, 3, 32, 1, **kw)
        got = core_quantize(W, 3, 32, 1, **kw)
        assert_same_solution(W, 3, 32, 1, *got[:3], *ref[:3])
        assert got[3]["steps"] == len(ref[3])
    assert core_quantize(W, 3, 32, 1, early_stop=False, iters=7)[3]["steps"] == 7


def test_early_stop_keeps_the_zero_of_the_last_step(rng):
    """hqq stops after the first non-improving step but keeps that step's update."""
    W = correlated_weights(rng, 32, 128)
    codes, scale, zero, st = core_quantize(W, 2, 32, 1)
    n = st["steps"]
    assert n < 20 and st["errors"][-1] >= min(st["errors"][:-1])
    _, _, zero_n, _ = core_quantize(W, 2, 32, 1, early_stop=False, iters=n)
    np.testing.assert_array_equal(zero, zero_n)


def test_solver_lowers_the_error_of_the_min_max_grid(rng):
    W = correlated_weights(rng, 128, 256)
    for nbits in (2, 3, 4):
        init = lb.quantize(W, lb.HQQConfig(nbits=nbits, optimize=False)).dequantize()
        opt = lb.quantize(W, lb.HQQConfig(nbits=nbits)).dequantize()
        assert lp_error(W, opt) < lp_error(W, init)
        assert np.abs(W - opt).mean() < np.abs(W - init).mean()


def test_no_optimize_is_the_min_max_grid(rng):
    W = correlated_weights(rng, 16, 64)
    codes, scale, zero, _ = hqq_quantize_ref(W, 4, 16, 1, optimize=False, round_zero=True)
    q = lb.quantize(W, lb.HQQConfig(nbits=4, group_size=16, optimize=False))
    assert q.stats["steps"] == 0
    np.testing.assert_array_equal(unpack_rows(q.arrays["qweight"], 4, 64), codes)
    np.testing.assert_array_equal(q.arrays["zero"], zero)  # no solver: exactly equal
    assert np.all(zero == np.round(zero))  # round_zero is on for 4 bits by default


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_bit_identical_for_any_thread_count(threads, rng):
    W = correlated_weights(rng, 160, 512)  # several work chunks on both axes
    lb.set_num_threads(1)
    base = [_core.hqq_quantize(W, 4, 64, axis) for axis in (0, 1)]
    lb.set_num_threads(threads)
    for axis, b in zip((0, 1), base):
        got = _core.hqq_quantize(W, 4, 64, axis)
        for x, y in zip(got[:3], b[:3]):
            np.testing.assert_array_equal(x, y)
        assert got[3] == b[3]


def test_simd_step_equals_the_scalar_loop(isa, rng):
    """The 4-lane step is the scalar loop, bit for bit (odd sizes hit the tails; a few large
    errors take the shrinkage path, constant groups the range guard)."""
    W = correlated_weights(rng, 30, 70)
    W[3, :] = 0.25
    W[5, ::7] = 40.0
    base = {}
    lb.force_isa("scalar")
    for axis, gs in ((1, 35), (0, 30), (1, 10), (0, 7)):
        base[axis, gs] = _core.hqq_quantize(W, 2, gs, axis)
    lb.force_isa(isa)
    for (axis, gs), b in base.items():
        got = _core.hqq_quantize(W, 2, gs, axis)
        for x, y in zip(got[:3], b[:3]):
            np.testing.assert_array_equal(x, y)
        assert got[3] == b[3]


def test_dtypes_and_strides_read_as_float32(rng):
    W = correlated_weights(rng, 32, 128)
    base = _core.hqq_quantize(W, 4, 32, 1)
    Wt = np.asfortranarray(W)  # non-contiguous rows
    for other in (Wt, W.astype(np.float64), np.ascontiguousarray(W.T).T):
        got = _core.hqq_quantize(other, 4, 32, 1)
        for x, y in zip(got[:3], base[:3]):
            np.testing.assert_array_equal(x, y)
    W16 = W.astype(np.float16)
    got = _core.hqq_quantize(W16, 4, 32, 1)
    ref = _core.hqq_quantize(W16.astype(np.float32), 4, 32, 1)
    np.testing.assert_array_equal(got[0], ref[0])


# ------------------------------------------------------------------------- the hqq package

def test_matches_committed_hqq_outputs():
    """Outputs of hqq 0.2.8.post1 (torch 2.13 CPU) on the stored weights; see fixtures/make_hqq_golden.py."""
    g = np.load(GOLDEN)
    W = g["W"]
    keys = sorted(k[:-6] for k in g.files if k.endswith("_codes"))
    assert len(keys) == 8
    for key in keys:
        nbits, gs, axis, rz = (int(part[1:] if not part.startswith("rz") else part[2:]) for part in key.split("_"))
        codes, scale, zero, _ = core_quantize(W, nbits, gs, axis, bool(rz))
        assert_same_solution(W, nbits, gs, axis, codes, scale, zero, g[key + "_codes"], g[key + "_scale"],
                             g[key + "_zero"])
        ref_hat = hqq_dequantize_ref(g[key + "_codes"], g[key + "_scale"], g[key + "_zero"], gs, axis)
        cfg = lb.HQQConfig(nbits=nbits, group_size=gs, axis=axis, round_zero=bool(rz))
        mine = lb.quantize(W, cfg).dequantize()
        assert lp_error(W, mine) <= lp_error(W, ref_hat) * (1 + 1e-5)
        assert np.mean((W - mine) ** 2) <= np.mean((W - ref_hat) ** 2) * (1 + 1e-5)


@pytest.mark.hqq
@pytest.mark.parametrize("rows,cols,nbits,gs,axis,rz,p", [c for c in CASES if c[6] == 0.7])
def test_parity_with_the_hqq_package(rows, cols, nbits, gs, axis, rz, p, rng):
    torch = pytest.importorskip("torch")
    quantize_mod = pytest.importorskip("hqq.core.quantize")
    Quantizer = quantize_mod.Quantizer
    W = correlated_weights(rng, rows, cols)
    Wq, meta = Quantizer.quantize(torch.from_numpy(W), nbits=nbits, group_size=gs, axis=axis, round_zero=rz,
                                  optimize=True, bitpack=False, device="cpu")
    ref_codes = Wq.numpy().reshape(W.shape).astype(np.uint8)
    codes, scale, zero, _ = core_quantize(W, nbits, gs, axis, rz)
    assert_same_solution(W, nbits, gs, axis, codes, scale, zero, ref_codes, meta["scale"].numpy(),
                         meta["zero"].numpy())
    # hqq's own dequantization, in float32, against QuantizedTensor.dequantize
    meta["compute_dtype"] = torch.float32
    W_hqq = Quantizer.dequantize(Wq, meta).numpy()
    W_mine = lb.quantize(W, lb.HQQConfig(nbits=nbits, group_size=gs, axis=axis, round_zero=rz)).dequantize()
    np.testing.assert_allclose(W_mine, W_hqq, rtol=0, atol=float(np.abs(W).max()) * 1e-5)
    assert lp_error(W, W_mine) <= lp_error(W, W_hqq) * (1 + 1e-5)
    assert np.mean((W - W_mine) ** 2) <= np.mean((W - W_hqq) ** 2) * (1 + 1e-5)


@pytest.mark.hqq
@pytest.mark.parametrize("axis", [0, 1])
def test_meta_quantization_matches_the_hqq_package(axis, rng):
    torch = pytest.importorskip("torch")
    Quantizer = pytest.importorskip("hqq.core.quantize").Quantizer
    W = correlated_weights(rng, 128, 256)
    q = lb.quantize(W, lb.HQQConfig(quant_zero=True, quant_scale=True, axis=axis))
    Wq, meta = Quantizer.quantize(torch.from_numpy(W), nbits=4, group_size=64, axis=axis, round_zero=True,
                                  bitpack=False, device="cpu")
    zq, mz = Quantizer.quantize(meta["zero"], nbits=8, channel_wise=False, group_size=None, optimize=False,
                                bitpack=False, device="cpu")
    sq, ms = Quantizer.quantize(meta["scale"], nbits=8, channel_wise=True, group_size=128, optimize=False,
                                bitpack=False, device="cpu")
    np.testing.assert_array_equal(q.arrays["scale_q"], sq.numpy().reshape(q.arrays["scale_q"].shape))
    np.testing.assert_array_equal(q.arrays["scale_meta_scale"].ravel(), ms["scale"].numpy().ravel())
    zero_codes_match = np.mean(q.arrays["zero_q"] == zq.numpy().reshape(q.arrays["zero_q"].shape))
    assert zero_codes_match > 0.99  # the zeros themselves agree to a few ulps (see module doc)
    for m in (mz, ms):
        m["compute_dtype"] = torch.float32
    meta.update(zero=Quantizer.dequantize(zq, mz), scale=Quantizer.dequantize(sq, ms), compute_dtype=torch.float32)
    W_hqq = Quantizer.dequantize(Wq, meta).numpy()
    np.testing.assert_allclose(q.dequantize(), W_hqq, rtol=0, atol=float(np.abs(W).max()) * 1e-2)
    assert np.mean((W - q.dequantize()) ** 2) <= np.mean((W - W_hqq) ** 2) * 1.01


# ------------------------------------------------------------------------- method and layout

@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("nbits", [1, 2, 3, 4, 5, 6, 8])
def test_quantize_returns_the_hqq_layout(nbits, axis, rng, tmp_path):
    W = correlated_weights(rng, 24, 96)
    q = lb.quantize(W, lb.HQQConfig(nbits=nbits, group_size=32, axis=axis))
    assert q.format == f"hqq{nbits}" and q.params["axis"] == axis and not q.sym
    G = 24 * 96 // 32
    assert q.arrays["scale"].shape == ((G, 1) if axis == 1 else (1, G))
    assert q.arrays["qweight"].shape == (24, (96 * nbits + 7) // 8)
    codes = unpack_rows(q.arrays["qweight"], nbits, 96)
    assert codes.max() <= 2**nbits - 1
    np.testing.assert_array_equal(q.dequantize(),
                                  hqq_dequantize_ref(codes, q.arrays["scale"], q.arrays["zero"], 32, axis))
    assert q.bits_per_weight == pytest.approx(nbits + 2 * 32 / 32)  # float32 scale + zero per 32 weights
    q.save(tmp_path / "q.safetensors")
    back = QuantizedTensor.load(tmp_path / "q.safetensors")
    assert back.params == q.params and back.config == q.config
    np.testing.assert_array_equal(back.dequantize(), q.dequantize())
    x = rng.standard_normal((3, 96)).astype(np.float32)
    # float activations: float32-accurate (the default act="int8" rounds x to int8 blocks)
    np.testing.assert_allclose(q.matmul(x, act="float32"), x @ q.dequantize().T, rtol=1e-5, atol=1e-6)


def test_format_rows_use_float_zeros(rng):
    """The table's reference row conversion: (code - zero) * scale with a float zero."""
    x = rng.standard_normal(64).astype(np.float32)
    q = lb.quantize(x.reshape(1, 64), lb.HQQConfig(nbits=4, group_size=16, optimize=False, round_zero=False))
    info = lb.format_info("hqq4")
    assert info.needs_group_params and info.bits_per_weight == 4 and info.id == 1304
    codes = unpack_rows(q.arrays["qweight"], 4, 64)[0]
    np.testing.assert_array_equal(q.dequantize()[0],
                                  (codes - np.repeat(q.arrays["zero"].ravel(), 16)) * np.repeat(q.arrays["scale"].ravel(), 16))


@pytest.mark.parametrize("axis", [0, 1])
def test_meta_quantization_round_trip(axis, rng, tmp_path):
    W = correlated_weights(rng, 128, 256)
    plain = lb.quantize(W, lb.HQQConfig(axis=axis))
    q = lb.quantize(W, lb.HQQConfig(axis=axis, quant_zero=True, quant_scale=True))
    assert "scale" not in q.arrays and "zero" not in q.arrays
    assert q.bits_per_weight < plain.bits_per_weight - 0.7
    err_plain = np.abs(W - plain.dequantize()).mean()
    assert err_plain <= np.abs(W - q.dequantize()).mean() < 1.05 * err_plain
    q.save(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(QuantizedTensor.load(tmp_path / "m.safetensors").dequantize(), q.dequantize())
    with pytest.raises(ValueError, match="multiple of 128"):
        lb.quantize(W[:96, :64], lb.HQQConfig(quant_scale=True))  # 96 groups


def test_config_json_round_trip_and_hqq_defaults():
    cfg = lb.HQQConfig()
    assert (cfg.nbits, cfg.group_size, cfg.axis, cfg.lp_norm, cfg.beta, cfg.kappa, cfg.iters) == (4, 64, 1, 0.7, 10.0, 1.01, 20)
    assert cfg.effective_round_zero and not lb.HQQConfig(nbits=3).effective_round_zero
    for c in (cfg, lb.HQQConfig(nbits=2, group_size=16, axis=0, round_zero=False, quant_zero=True, early_stop=False)):
        assert lb.load_config(c.to_json()) == c
    with pytest.raises(ValueError, match="nbits"):
        lb.HQQConfig(nbits=7)


def test_bad_inputs(rng):
    W = correlated_weights(rng, 16, 96)
    with pytest.raises(ValueError, match="group_size=40 must divide the number of weights 16 x 96"):
        lb.quantize(W, lb.HQQConfig(group_size=40))
    with pytest.raises(ValueError, match="group_size=128 must be <= in_features=96"):
        lb.quantize(W, lb.HQQConfig(group_size=128))
    for bad in (np.nan, np.inf, -np.inf):
        V = W.copy()
        V[5, 17] = bad
        with pytest.raises(ValueError, match=r"W must be finite, but W\[5, 17\]"):
            lb.quantize(V, lb.HQQConfig(group_size=32))
    huge = np.full((2, 32), 3e38, np.float32)
    huge[0, 0] = -3e38
    with pytest.raises(ValueError, match="span more than the float32 range"):
        lb.quantize(huge, lb.HQQConfig(group_size=32))
    with pytest.raises(ValueError, match="non-empty"):
        lb.quantize(np.zeros((0, 64), np.float32), lb.HQQConfig())
    with pytest.raises(ValueError, match="2-D"):
        lb.quantize(np.zeros(64, np.float32), lb.HQQConfig())
    with pytest.raises(TypeError, match="floating-point"):
        lb.quantize(np.zeros((4, 64), np.int32), lb.HQQConfig())
    with pytest.raises(ValueError, match="nbits must be one of"):
        _core.hqq_quantize(W, 7, 32, 1)
    with pytest.raises(ValueError, match="axis must be 0 or 1"):
        _core.hqq_quantize(W, 4, 32, 2)
    q = lb.quantize(W, lb.HQQConfig(group_size=32))
    with pytest.raises(ValueError, match="params\\['axis'\\]"):
        QuantizedTensor(format="hqq4", shape=q.shape, arrays=q.arrays, group_size=32)
    with pytest.raises(ValueError, match="zero must be float32"):
        QuantizedTensor(format="hqq4", shape=q.shape, arrays={**q.arrays, "zero": q.arrays["zero"].astype(np.float16)},
                        group_size=32, params=q.params)
    with pytest.raises(ValueError, match="scale must have shape"):
        _core.hqq_dequantize(q.arrays["qweight"], q.arrays["scale"].T, q.arrays["zero"], 4, 16, 96, 32, 1)


def test_constant_and_tiny_range_groups():
    """hqq's guards: a range <= 1e-4 gets inverse scale 1, and it is capped at 2e4."""
    W = np.zeros((2, 32), np.float32)
    W[0, :16] = 0.5
    W[1, :16] = np.linspace(0, 5e-4, 16, dtype=np.float32)
    q = lb.quantize(W, lb.HQQConfig(group_size=16, optimize=False, round_zero=False))
    np.testing.assert_array_equal(q.arrays["scale"].ravel()[[0, 1, 3]], [1, 1, 1])
    assert q.arrays["scale"].ravel()[2] == np.float32(1) / np.float32(2e4)
    np.testing.assert_allclose(q.dequantize(), W, rtol=0, atol=2.6e-5)  # half a step of 5e-5
    # hqq's quirk, kept: with round_zero the constant 0.5 group gets zero round(-0.5) = 0 and
    # its code round(0.5) = 0, so it dequantizes to 0
    qr = lb.quantize(W, lb.HQQConfig(group_size=16, optimize=False, round_zero=True))
    codes, scale, zero, _ = hqq_quantize_ref(W, 4, 16, 1, optimize=False, round_zero=True)
    np.testing.assert_array_equal(qr.dequantize(), hqq_dequantize_ref(codes, scale, zero, 16, 1))
    assert qr.dequantize()[0, 0] == 0
    opt = lb.quantize(W, lb.HQQConfig(group_size=16))
    assert np.isfinite(opt.dequantize()).all()


def test_quantize_model_with_hqq(shared_data_module, tmp_path):
    from lowbit.models import load_model

    model = load_model(shared_data_module / "models" / "stories260K" / "stories260K.bin")
    cfg = lb.HQQConfig(nbits=4, group_size=32)
    q = lb.quantize_model(model, cfg, progress=False)
    names = model.linear_names()[:-1]
    for n in names[:3]:
        got = q.weights[n + ".weight"]
        want = lb.quantize(np.asarray(model.weights[n + ".weight"]), cfg)
        assert got.format == "hqq4" and all(np.array_equal(got.arrays[k], want.arrays[k]) for k in want.arrays)
    logits = q.forward(np.arange(1, 17))
    dense = model.forward(np.arange(1, 17))
    assert np.isfinite(logits).all()
    assert np.linalg.norm(logits - dense) < 0.2 * np.linalg.norm(dense)
    q.save(tmp_path / "m")  # the model folder format carries the hqq arrays and params
    back = load_model(tmp_path / "m")
    np.testing.assert_array_equal(back.forward(np.arange(1, 17)), logits)


def test_cli_builds_hqq_configs():
    from lowbit.cli import _method_config

    assert _method_config("hqq", 3, 64, False, True, None) == lb.HQQConfig(nbits=3, group_size=64)
