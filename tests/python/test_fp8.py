"""FP8 (E4M3 / E5M2): bit-exact conversions against ml_dtypes (after clamping to +-max, since
lowbit saturates) and PyTorch's float8 casts, and the scaled FP8 weight quantizer."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core
from lowbit.methods.fp8 import FP8_MAX, fp8_bits, from_fp8_bits

ml_dtypes = pytest.importorskip("ml_dtypes")

ML = {"e4m3": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}
FMTS = ["e4m3", "e5m2"]
MANT = {"e4m3": 3, "e5m2": 2}
MIN_NORMAL = {"e4m3": 2.0 ** -6, "e5m2": 2.0 ** -14}


def ml_bits(x: np.ndarray, fmt: str) -> np.ndarray:
    """The reference: ml_dtypes' round-to-nearest-even cast of x clamped to +-max (NaN kept)."""
    m = np.float32(FP8_MAX[fmt])
    return np.clip(x.astype(np.float32), -m, m).astype(ML[fmt]).view(np.uint8)


def all_code_values(fmt: str) -> np.ndarray:
    return np.arange(256, dtype=np.uint8).view(ML[fmt]).astype(np.float32)


def boundary_cases(fmt: str) -> np.ndarray:
    """Every code value, the halfway points between adjacent codes and their float32
    neighbours, the largest finite value and beyond, subnormals, +-0, +-inf, NaN."""
    v = all_code_values(fmt)
    pos = np.unique(v[np.isfinite(v) & (v >= 0)])
    mid = ((pos[:-1].astype(np.float64) + pos[1:]) / 2).astype(np.float32)  # exact
    m = np.float32(FP8_MAX[fmt])
    sub = np.float32(2.0 ** (np.log2(MIN_NORMAL[fmt]) - MANT[fmt]))
    extra = np.array([m, np.nextafter(m, np.float32(np.inf)), m * 1.0625, m * 1.125, m * 2, 1e30,
                      np.finfo(np.float32).max, np.finfo(np.float32).tiny, np.float32(1e-45),
                      sub, sub / 2, np.nextafter(sub / 2, np.float32(1)), sub * 1.5, 0.0, np.inf, np.nan],
                     dtype=np.float32)
    base = np.concatenate([pos, mid, np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(np.inf)), extra])
    return np.concatenate([base, -base]).astype(np.float32)


def float32_sweep(step: int = 4093) -> np.ndarray:
    """Every step-th float32 bit pattern: all exponents, both signs, NaN payloads."""
    return np.arange(0, 2 ** 32, step, dtype=np.uint64).astype(np.uint32).view(np.float32)


@pytest.mark.parametrize("fmt", FMTS)
def test_encode_is_bit_exact_with_ml_dtypes_on_boundaries(fmt):
    x = boundary_cases(fmt)
    got, want = fp8_bits(x, fmt), ml_bits(x, fmt)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(float(x[i]), int(got[i]), int(want[i])) for i in bad[:10]]


@pytest.mark.parametrize("fmt", FMTS)
def test_encode_is_bit_exact_with_ml_dtypes_on_a_float32_sweep(fmt):
    x = float32_sweep()
    with np.errstate(invalid="ignore", over="ignore"):
        want = ml_bits(x, fmt)
    got = fp8_bits(x, fmt)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(float(x[i]), int(got[i]), int(want[i])) for i in bad[:10]]


@pytest.mark.parametrize("fmt", FMTS)
def test_decode_every_code(fmt):
    got = from_fp8_bits(np.arange(256, dtype=np.uint8), fmt)
    want = all_code_values(fmt)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    assert np.array_equal(from_fp8_bits(np.arange(256, dtype=np.uint8).view(ML[fmt]), fmt), got, equal_nan=True)


@pytest.mark.parametrize("fmt", FMTS)
def test_saturation_and_special_values(fmt):
    m = FP8_MAX[fmt]
    x = np.array([np.inf, -np.inf, 1e30, -1e30, m, np.nan, -np.nan, 0.0, -0.0], np.float32)
    y = from_fp8_bits(fp8_bits(x, fmt), fmt)
    assert list(y[:5]) == [m, -m, m, -m, m]
    assert np.isnan(y[5]) and np.isnan(y[6])
    assert y[7] == 0 and not np.signbit(y[7]) and y[8] == 0 and np.signbit(y[8])


@pytest.mark.parametrize("fmt", FMTS)
def test_torch_float8_casts_agree_after_clamping(fmt):
    """PyTorch's CPU casts round the same way. As seen in torch 2.13: float8_e4m3fn already
    saturates, float8_e5m2 overflows to inf (hence the clamp), and its NaN byte is 0x7f where
    ml_dtypes (and lowbit) write 0x7e: only NaN-ness is compared there."""
    torch = pytest.importorskip("torch")
    tdt = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}[fmt]
    x = np.concatenate([boundary_cases(fmt), float32_sweep(65521)])
    m = np.float32(FP8_MAX[fmt])
    with np.errstate(invalid="ignore"):
        clamped = np.clip(x, -m, m)
    want = torch.from_numpy(clamped).to(tdt).view(torch.uint8).numpy()
    got = fp8_bits(x, fmt)
    nan = np.isnan(x)
    assert np.array_equal(got[~nan], want[~nan])
    assert np.isnan(from_fp8_bits(got[nan], fmt)).all()


@pytest.mark.parametrize("fmt", FMTS)
def test_format_table_rows_are_the_same_conversion(fmt, rng):
    info = lb.format_info(f"f8_{fmt}")
    assert info.id >= 1000 and info.bits == 8 and info.type_size == 1 and info.block_size == 1
    assert info.roundtrip_rel_tol == 2.0 ** -(MANT[fmt] + 1)
    x = (rng.standard_normal(333) * 4).astype(np.float32)
    data = _core.quantize_row_ref(f"f8_{fmt}", x)
    assert np.array_equal(data, fp8_bits(x, fmt))
    assert np.array_equal(_core.dequantize_row_ref(f"f8_{fmt}", data, x.size), from_fp8_bits(data, fmt))


@pytest.mark.parametrize("fmt", FMTS)
def test_relative_error_bound_in_the_normal_range(fmt, rng):
    """|x - fp8(x)| <= 2^-(m+1) |x| for min_normal <= |x| <= max (half an ulp), and at most half
    the smallest subnormal step below it."""
    m = FP8_MAX[fmt]
    x = np.exp(rng.uniform(np.log(MIN_NORMAL[fmt] / 64), np.log(m), 20000)).astype(np.float32)
    x *= rng.choice([-1, 1], x.size).astype(np.float32)
    y = from_fp8_bits(fp8_bits(x, fmt), fmt)
    err = np.abs(y.astype(np.float64) - x)
    tol = 2.0 ** -(MANT[fmt] + 1)
    normal = np.abs(x) >= MIN_NORMAL[fmt]
    assert np.all(err[normal] <= tol * np.abs(x[normal]))
    assert np.all(err[~normal] <= MIN_NORMAL[fmt] * tol)


# ----------------------------------------------------------------------------- quantizer

def tile_amax(W: np.ndarray, br: int, bc: int) -> np.ndarray:
    out, inp = W.shape
    sr, sc = -(-out // br), -(-inp // bc)
    a = np.zeros((sr, sc), np.float32)
    for i in range(sr):
        for j in range(sc):
            a[i, j] = np.abs(W[i * br:(i + 1) * br, j * bc:(j + 1) * bc]).max()
    return a


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("strategy,block,expect_tile", [
    ("tensor", (128, 128), (200, 300)),
    ("channel", (128, 128), (1, 300)),
    ("block", (128, 128), (128, 128)),   # 200 x 300: partial edge tiles
    ("block", (64, 100), (64, 100)),
])
def test_quantizer_scales_codes_and_error(fmt, strategy, block, expect_tile, rng):
    W = (rng.standard_t(5, (200, 300)) * 0.05).astype(np.float32)
    W[:, 7] *= 30  # an outlier column
    cfg = lb.FP8Config(fmt=fmt, strategy=strategy, weight_block_size=block)
    q = lb.quantize(W, cfg)
    br, bc = expect_tile
    assert q.format == f"f8_{fmt}" and q.params == {"strategy": strategy, "block_size": [br, bc]}
    scales = q.arrays["scales"]
    assert scales.shape == (-(-200 // br), -(-300 // bc))
    assert np.array_equal(scales, tile_amax(W, br, bc) / np.float32(FP8_MAX[fmt]))
    s_full = np.repeat(np.repeat(scales, br, 0), bc, 1)[:200, :300]
    assert np.array_equal(q.arrays["qweight"], fp8_bits(W / s_full, fmt))  # float32 division, as the C++ does
    W_hat = q.dequantize()
    assert np.array_equal(W_hat, s_full * from_fp8_bits(q.arrays["qweight"], fmt))
    # error bound from the format: half an ulp relative in the normal range of W / scale
    tol = 2.0 ** -(MANT[fmt] + 1)
    err = np.abs(W_hat.astype(np.float64) - W)
    normal = np.abs(W / s_full) >= MIN_NORMAL[fmt]
    assert np.all(err[normal] <= tol * np.abs(W[normal]) * (1 + 1e-6))
    assert np.all(err[~normal] <= s_full[~normal] * MIN_NORMAL[fmt] * tol * (1 + 1e-6))
    assert np.abs(W_hat).max() == pytest.approx(np.abs(W).max(), rel=1e-6)  # the largest weight: max * scale
    assert q.bits_per_weight == pytest.approx(8 + 32 * scales.size / W.size)


def test_zero_tiles_and_tiny_tiles():
    W = np.zeros((4, 8), np.float32)
    W[0, :4] = 1e-40  # subnormal float32 weights: the scale does not vanish
    q = lb.quantize(W, lb.FP8Config(strategy="block", weight_block_size=(2, 4)))
    s = q.arrays["scales"]
    assert s[0, 0] > 0 and (s.ravel()[1:] == 0).all()
    assert np.all(q.dequantize()[1:] == 0) and np.all(q.dequantize()[0, 4:] == 0)
    assert np.all(np.isfinite(q.dequantize()))


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_input_dtypes_and_strides(dtype, rng):
    W = (rng.standard_normal((48, 64)) * 0.1).astype(dtype)
    cfg = lb.FP8Config(strategy="channel")
    q = lb.quantize(W[:, ::-1], cfg)
    ref = lb.quantize(np.ascontiguousarray(W[:, ::-1], dtype=np.float32), cfg)
    assert np.array_equal(q.arrays["qweight"], ref.arrays["qweight"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_rejected(bad):
    W = np.ones((3, 5), np.float32)
    W[2, 3] = bad
    with pytest.raises(ValueError, match=r"W\[2, 3\]"):
        lb.quantize(W, lb.FP8Config())


def test_bad_inputs():
    with pytest.raises(ValueError, match="non-empty"):
        lb.quantize(np.ones((0, 4), np.float32), lb.FP8Config())
    with pytest.raises(ValueError, match="2-D"):
        lb.quantize(np.ones(8, np.float32), lb.FP8Config())
    with pytest.raises(TypeError, match="floating-point"):
        lb.quantize(np.ones((2, 4), np.int32), lb.FP8Config())
    with pytest.raises(ValueError, match="weight_block_size"):
        lb.FP8Config(weight_block_size=(0, 128))
    with pytest.raises(ValueError, match="strategy"):
        lb.FP8Config(strategy="group")
    with pytest.raises(ValueError, match="fmt"):
        _core.fp8_bits(np.ones(2, np.float32), "e3m4")
    q = lb.quantize(np.ones((4, 8), np.float32), lb.FP8Config(strategy="block", weight_block_size=(2, 4)))
    with pytest.raises(ValueError, match="scales must have shape"):
        _core.fp8_dequantize(q.arrays["qweight"], q.arrays["scales"], "e4m3", 4, 4)
    with pytest.raises(ValueError, match="scales"):
        _core.fp8_dequantize(q.arrays["qweight"], -q.arrays["scales"], "e4m3", 2, 4)
    with pytest.raises(ValueError, match="scales must"):
        lb.QuantizedTensor(format="f8_e4m3", shape=(4, 8), arrays={"qweight": q.arrays["qweight"],
                           "scales": np.ones((1, 1), np.float32)}, group_size=4, params={"block_size": [2, 4]})


def test_save_load_round_trip(tmp_path, rng):
    W = rng.standard_normal((130, 70)).astype(np.float32)
    for cfg in (lb.FP8Config(), lb.FP8Config(fmt="e5m2", strategy="tensor")):
        q = lb.quantize(W, cfg)
        q.save(tmp_path / "w.safetensors")
        back = lb.QuantizedTensor.load(tmp_path / "w.safetensors")
        assert back.format == q.format and back.config == cfg and back.params == q.params
        assert np.array_equal(back.dequantize(), q.dequantize())
        x = rng.standard_normal((3, 70)).astype(np.float32)
        assert np.allclose(x @ back, x @ q.dequantize().T, rtol=1e-5, atol=1e-5)


def test_transformers_fine_grained_fp8_dict_means_128x128_blocks():
    """transformers' FineGrainedFP8Config (quant_method "fp8") writes these keys; loaded here it
    is the same block quantization (the default strategy)."""
    cfg = lb.load_config({"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]})
    assert cfg == lb.FP8Config() and cfg.strategy == "block" and cfg.weight_block_size == (128, 128)
    assert lb.load_config(cfg.to_json()) == cfg
