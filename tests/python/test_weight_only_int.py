"""int8 per output channel (torchao / EETQ) and torchao's int4 "tinygemm" (float zero point):
bit-exact with NumPy references written from the definitions, with torchao's own output on
fixed weights (a committed fixture; live when torchao is installed), round trips, bad inputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core

from reference.weight_only_ref import (bf16_round, eetq_int8, tinygemm_dequantize, torchao_int4_tinygemm,
                                       torchao_int8)

ml_dtypes = pytest.importorskip("ml_dtypes")
FIXTURE = Path(__file__).with_name("fixtures") / "torchao_weight_only.npz"


def weights(rng, rows=24, cols=256):
    W = (rng.standard_t(5, (rows, cols)) * 0.02).astype(np.float32)
    W[:, 3] *= 25
    W[1] = 0.0
    W[2] += 3.0
    return W


def signed_codes(q: lb.QuantizedTensor) -> np.ndarray:
    assert q.format == "int8" and np.all(q.arrays["zeros"] == 128)
    return (q.arrays["qweight"].astype(np.int16) - 128).astype(np.int8)


def nibbles(packed: np.ndarray, cols: int) -> np.ndarray:
    return _core.unpack_codes(packed, 4, cols)


# ----------------------------------------------------------------------------- int8

def test_torchao_int8_matches_the_reference(rng):
    W = weights(rng)
    q = lb.quantize(W, lb.TorchAoConfig(quant_type="int8_weight_only"))
    want_q, want_s = torchao_int8(W)
    assert q.group_size == W.shape[1] and q.arrays["scales"].shape == (W.shape[0], 1)
    assert np.array_equal(q.arrays["scales"][:, 0], want_s)
    assert np.array_equal(signed_codes(q), want_q)
    assert np.array_equal(q.dequantize(), want_q.astype(np.float32) * want_s[:, None])
    # bound: half a step inside [-128, 127] * scale; the +amax end clips by at most one step
    err = np.abs(q.dequantize() - W)
    assert np.all(err <= want_s[:, None] * (0.5 + 1e-5) + (W == np.abs(W).max(1, keepdims=True)) * want_s[:, None])


def test_eetq_int8_matches_the_reference(rng):
    W = weights(rng)
    W[5, :4] = np.float32(2.5 / 128) * np.array([1, 3, -1, -3], np.float32)  # halfway cases
    q = lb.quantize(W, lb.EetqConfig())
    want_q, want_s = eetq_int8(W)
    assert np.array_equal(q.arrays["scales"][:, 0], want_s)
    assert np.array_equal(signed_codes(q), want_q)
    assert q.config == lb.EetqConfig() and q.bits_per_weight == pytest.approx(8 + 40 / W.shape[1])


def test_int8_rules_differ_only_in_scale_and_rounding(rng):
    W = weights(rng)
    a = lb.quantize(W, lb.TorchAoConfig(quant_type="int8_weight_only")).dequantize()
    b = lb.quantize(W, lb.EetqConfig()).dequantize()
    assert np.all(np.abs(a - b) <= np.abs(W).max(1, keepdims=True) / 127 * 1.01)
    # same storage as RTN int8 per channel (symmetric, zero 128)
    r = lb.quantize(W, lb.RTNConfig(bits=8, group_size=-1))
    assert r.format == "int8" and r.arrays["qweight"].shape == (W.shape[0], W.shape[1])


# ----------------------------------------------------------------------------- int4 tinygemm

@pytest.mark.parametrize("group_size", [32, 64, 128, 256])
def test_tinygemm_matches_the_reference(group_size, rng):
    W = weights(rng)
    q = lb.quantize(W, lb.TorchAoConfig(quant_type="int4_weight_only", group_size=group_size))
    want_q, sb, zb = torchao_int4_tinygemm(W, group_size)
    assert q.format == "int4_tinygemm" and not q.sym and q.group_size == group_size
    assert np.array_equal(lb.from_bf16_bits(q.arrays["scales_bf16"]), sb)
    assert np.array_equal(lb.from_bf16_bits(q.arrays["zeros_bf16"]), zb)
    assert np.array_equal(nibbles(q.arrays["qweight"], W.shape[1]), want_q)
    assert np.array_equal(q.dequantize(), tinygemm_dequantize(want_q, sb, zb, group_size))
    assert q.bits_per_weight == pytest.approx(4 + 32 / group_size)


def test_tinygemm_error_bound(rng):
    """Half a step, plus the bfloat16 roundings (2^-9 relative) of zero, scale and origin, plus
    the clipped ends: 0.5 s + 2^-8 (|zero| + 20 s)."""
    W = weights(rng)
    q = lb.quantize(W, lb.TorchAoConfig(group_size=64))
    s = np.repeat(lb.from_bf16_bits(q.arrays["scales_bf16"]), 64, 1)
    z = np.repeat(lb.from_bf16_bits(q.arrays["zeros_bf16"]), 64, 1)
    err = np.abs(q.dequantize() - W)
    assert np.all(err <= 0.5 * s + (np.abs(z) + 20 * s) * 2.0 ** -8)


def test_table_row_agrees_with_the_layout(rng):
    """The int4_tinygemm row of the format table (float zero points through its integer-zero
    fallback) is the same grid: z_int -> zero = (8 - z_int) * s."""
    x = rng.standard_normal(64).astype(np.float32)
    scales = np.array([0.25, 0.5], np.float32)
    zeros = np.array([8, 3], np.uint8)
    data = _core.quantize_row_ref("int4_tinygemm", x, scales, zeros, 32)
    y = _core.dequantize_row_ref("int4_tinygemm", data, 64, scales, zeros, 32)
    s = np.repeat(scales, 32)
    z = np.repeat(zeros, 32).astype(np.float32)
    assert np.allclose(y, s * (np.clip(np.rint(x / s + z), 0, 15) - z), atol=1e-6)


# ----------------------------------------------------------------------------- torchao itself

def torchao_or_none():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchao  # noqa: F401
            from torchao.quantization import quant_primitives
        return quant_primitives
    except Exception:
        return None


def test_torchao_golden_fixture():
    """torchao 0.18.0's outputs on fixed weights (zero row, constant row, far-from-zero row,
    exact halfway points), produced by fixtures/make_torchao_fixture.py."""
    f = np.load(FIXTURE)
    W = f["W"]
    q8 = lb.quantize(W, lb.TorchAoConfig(quant_type="int8_weight_only"))
    assert np.array_equal(q8.arrays["scales"][:, 0], f["int8_scale"])
    assert np.array_equal(signed_codes(q8), f["int8_q"])
    for g in (32, 128):
        q4 = lb.quantize(W, lb.TorchAoConfig(group_size=g))
        assert np.array_equal(q4.arrays["scales_bf16"], f[f"int4_g{g}_scale_bf16"]), g
        assert np.array_equal(q4.arrays["zeros_bf16"], f[f"int4_g{g}_zero_bf16"]), g
        assert np.array_equal(nibbles(q4.arrays["qweight"], W.shape[1]), f[f"int4_g{g}_q"]), g


def test_torchao_live(rng):
    qp = torchao_or_none()
    if qp is None:
        pytest.skip("torchao not installed")
    import torch

    W = weights(rng, rows=16, cols=512)
    w = torch.from_numpy(W)
    s8, z8 = qp.choose_qparams_affine(w, qp.MappingType.SYMMETRIC, (1, 512), torch.int8, -128, 127,
                                      scale_dtype=torch.float32, zero_point_dtype=torch.int8,
                                      eps=torch.finfo(torch.float32).eps)
    q8 = qp.quantize_affine(w, (1, 512), s8, z8, torch.int8, -128, 127).numpy()
    mine = lb.quantize(W, lb.TorchAoConfig(quant_type="int8_weight_only"))
    assert np.array_equal(signed_codes(mine), q8)
    s, z = qp._choose_qparams_affine_tinygemm(w, qp.MappingType.ASYMMETRIC, (1, 128), torch.int32, 0, 15,
                                              scale_dtype=torch.bfloat16, zero_point_dtype=torch.bfloat16)
    q = qp._quantize_affine_tinygemm(w, (1, 128), s, z, torch.int32, 0, 15).numpy()
    mine = lb.quantize(W, lb.TorchAoConfig(group_size=128))
    assert np.array_equal(nibbles(mine.arrays["qweight"], 512), q.astype(np.uint8))
    assert np.array_equal(mine.arrays["zeros_bf16"], z.reshape(16, -1).view(torch.uint16).numpy())


# ----------------------------------------------------------------------------- bad inputs, I/O

def test_bad_inputs():
    with pytest.raises(ValueError, match="not a multiple of group_size=128"):
        lb.quantize(np.ones((4, 192), np.float32), lb.TorchAoConfig(group_size=128))
    with pytest.raises(ValueError, match="group_size"):
        lb.TorchAoConfig(group_size=48)
    with pytest.raises(ValueError, match="quant_type"):
        lb.TorchAoConfig(quant_type="int4_dynamic")
    with pytest.raises(ValueError, match="weights"):
        lb.EetqConfig(weights="int4")
    for cfg in (lb.TorchAoConfig(), lb.TorchAoConfig(quant_type="int8_weight_only"), lb.EetqConfig()):
        W = np.ones((3, 64), np.float32)
        W[1, 9] = np.nan
        with pytest.raises(ValueError, match=r"W\[1, 9\]"):
            lb.quantize(W, cfg.replace(group_size=32) if isinstance(cfg, lb.TorchAoConfig) else cfg)
        with pytest.raises(ValueError, match="non-empty"):
            lb.quantize(np.ones((3, 0), np.float32), cfg)
    q = lb.quantize(np.ones((2, 64), np.float32), lb.TorchAoConfig(group_size=32))
    with pytest.raises(ValueError, match="scales_bf16 must have shape"):
        _core.tinygemm_dequantize(q.arrays["qweight"], q.arrays["scales_bf16"][:, :1], q.arrays["zeros_bf16"], 2,
                                  64, 32)
    with pytest.raises(ValueError, match="must be finite"):
        _core.tinygemm_dequantize(q.arrays["qweight"], q.arrays["scales_bf16"],
                                  lb.bf16_bits(np.full((2, 2), np.inf, np.float32)), 2, 64, 32)


def test_constant_and_zero_groups_are_exact():
    W = np.zeros((2, 64), np.float32)
    W[1] = 0.3
    q = lb.quantize(W, lb.TorchAoConfig(group_size=32))
    assert np.array_equal(q.dequantize()[0], W[0])
    assert np.allclose(q.dequantize()[1], bf16_round(np.float32(0.3) + np.float32(8) * np.finfo(np.float32).tiny))


def test_save_load_round_trip(tmp_path, rng):
    W = weights(rng, rows=8, cols=128)
    for cfg in (lb.TorchAoConfig(group_size=64), lb.TorchAoConfig(quant_type="int8_weight_only"), lb.EetqConfig()):
        q = lb.quantize(W, cfg)
        q.save(tmp_path / "q.safetensors")
        back = lb.QuantizedTensor.load(tmp_path / "q.safetensors")
        assert back.config == cfg and back.format == q.format
        assert np.array_equal(back.dequantize(), q.dequantize())


def test_quantize_model_calibration_free(shared_data, tmp_path):
    """quantize_model runs these methods without calibration data, layer by layer identical
    to quantize(), and saved/loaded as a model folder. stories260K's down_proj has 172 inputs,
    which no torchao int4 group size divides: a clear error, as torchao itself would skip it."""
    from lowbit.models import load_model

    model = load_model(shared_data / "models" / "stories260K" / "stories260K.bin")
    for cfg in (lb.FP8Config(strategy="block", weight_block_size=(32, 32)), lb.EetqConfig()):
        qm = lb.quantize_model(model, cfg, progress=False)
        for n in model.linear_names()[:-1]:
            want = lb.quantize(np.asarray(model.weights[n + ".weight"]), cfg)
            got = qm.weights[n + ".weight"]
            assert got.format == want.format and np.array_equal(got.dequantize(), want.dequantize()), n
        qm.save(tmp_path / cfg.quant_method)  # the lowbit model folder stores any registered layout
        back = load_model(tmp_path / cfg.quant_method)
        tokens = model.tokenizer.encode("Once upon a time")
        assert np.array_equal(back.forward(tokens), qm.forward(tokens))
    with pytest.raises(ValueError, match="in_features=172 is not a multiple of group_size=32"):
        lb.quantize_model(model, lb.TorchAoConfig(group_size=32), progress=False)


@pytest.mark.parametrize("cfg", [lb.FP8Config(), lb.FP8Config(fmt="e5m2", strategy="tensor"), lb.EetqConfig(),
                                 lb.TorchAoConfig(quant_type="int8_weight_only"), lb.TorchAoConfig(group_size=64)])
def test_bit_identical_for_any_thread_count(cfg, rng):
    W = weights(rng, rows=260, cols=1024)  # enough rows per thread for two threads to be used
    lb.set_num_threads(1)
    one = lb.quantize(W, cfg)
    lb.set_num_threads(2)
    two = lb.quantize(W, cfg)
    assert all(np.array_equal(one.arrays[k], two.arrays[k]) for k in one.arrays)
    assert np.array_equal(one.dequantize(), two.dequantize())
