"""AWQ GEMM checkpoints: the packing against a loop-by-loop reference of REFERENCE.md §2.7, bit-exact
round trips both ways, and whole-model save/load (lowbit.load_model reads the folder and runs it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lowbit as lb
from lowbit.data import Calibration
from lowbit.export import from_awq, save_awq, to_awq
from lowbit.models import load_model
from reference import awq_pack_ref as P
from test_awq import synthetic_model


def random_int4(rng, out, inp, gs, sym=False):
    W = rng.standard_normal((out, inp)).astype(np.float32)
    return lb.quantize(W, lb.AWQConfig(group_size=gs, zero_point=not sym))


@pytest.mark.parametrize("out,inp,gs", [(16, 64, 32), (40, 256, 128), (8, 96, -1)])
def test_pack_matches_reference_and_round_trips(rng, out, inp, gs):
    q = random_int4(rng, out, inp, gs)
    t = to_awq(q)
    g = inp if gs == -1 else gs
    unpacked = np.empty((out, inp), np.uint8)
    unpacked[:, 0::2] = q.arrays["qweight"] & 0xF
    unpacked[:, 1::2] = q.arrays["qweight"] >> 4
    assert t["qweight"].dtype == np.int32 and t["qweight"].shape == (inp, out // 8)
    assert np.array_equal(t["qweight"], P.pack(unpacked.T))
    assert np.array_equal(t["qzeros"], P.pack(q.arrays["zeros"].T)) and t["qzeros"].shape == (inp // g, out // 8)
    assert t["scales"].dtype == np.float16 and t["scales"].shape == (inp // g, out)
    back = from_awq(t, group_size=gs)
    assert np.array_equal(back.arrays["qweight"], q.arrays["qweight"])
    assert np.array_equal(back.arrays["zeros"], q.arrays["zeros"])
    assert np.array_equal(back.arrays["scales"], q.arrays["scales"].astype(np.float16).astype(np.float32))
    assert np.array_equal(back.dequantize(), P.dequantize(t["qweight"], t["qzeros"], t["scales"], g))
    # checkpoint -> lowbit -> checkpoint is bit-exact for any words
    t2 = {"qweight": rng.integers(-2**31, 2**31, (inp, out // 8), dtype=np.int64).astype(np.int32),
          "qzeros": rng.integers(-2**31, 2**31, (inp // g, out // 8), dtype=np.int64).astype(np.int32),
          "scales": rng.standard_normal((inp // g, out)).astype(np.float16)}
    again = to_awq(from_awq(t2, group_size=gs))
    assert all(np.array_equal(again[k], t2[k]) for k in t2)


def test_symmetric_tensors_export_their_zero_points(rng):
    q = random_int4(rng, 16, 64, 32, sym=True)
    t = to_awq(q)
    assert np.all(t["qzeros"].view(np.uint32) == 0x88888888)
    assert from_awq(t, group_size=32).sym


def test_unexportable_tensors_are_refused(rng):
    W = rng.standard_normal((16, 64)).astype(np.float32)
    with pytest.raises(ValueError, match="4-bit"):
        to_awq(lb.quantize(W, lb.AWQConfig(bits=3, group_size=32)))
    with pytest.raises(ValueError, match="multiple of 8"):
        to_awq(lb.quantize(W[:12], lb.AWQConfig(group_size=32)))
    with pytest.raises(ValueError, match="multiple of group_size"):
        to_awq(lb.quantize(W[:, :48], lb.AWQConfig(group_size=32)))
    with pytest.raises(ValueError, match="g_idx"):
        to_awq(lb.quantize(W, lb.GPTQConfig(group_size=32, desc_act=True), hessian=np.diag(np.arange(1, 65.0))))
    with pytest.raises(ValueError, match="qzeros must be"):
        from_awq({"qweight": np.zeros((64, 2), np.int32), "qzeros": np.zeros((3, 2), np.int32),
                  "scales": np.zeros((2, 16), np.float16)}, group_size=32)


def test_model_save_and_load(rng, tmp_path):
    m = synthetic_model(rng, kv_heads=2)
    calib = Calibration(rng.integers(0, 64, (4, 32)))
    q = lb.quantize_model(m, lb.AWQConfig(group_size=32), calib, progress=False)
    path = q.save(tmp_path / "awq", format="awq")
    cfg = json.loads((path / "config.json").read_text())
    qc = cfg["quantization_config"]
    assert qc == {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True, "version": "gemm",
                  "modules_to_not_convert": None}
    from safetensors.numpy import load_file
    files = load_file(str(path / "model.safetensors"))
    assert files["model.layers.0.self_attn.q_proj.qweight"].shape == (64, 8)
    assert files["model.layers.1.mlp.down_proj.scales"].dtype == np.float16
    loaded = load_model(path)
    assert loaded.source["format"] == "awq"
    # the same model with the checkpoint's float16 scales, bit for bit
    expect = dict(q.weights)
    for k, w in expect.items():
        if isinstance(w, lb.QuantizedTensor):
            a = dict(w.arrays, scales=w.arrays["scales"].astype(np.float16).astype(np.float32))
            expect[k] = lb.QuantizedTensor(format=w.format, shape=w.shape, arrays=a, group_size=w.group_size, sym=w.sym)
            got = loaded.weights[k]
            assert all(np.array_equal(got.arrays[n], expect[k].arrays[n]) for n in a), k
        else:
            assert np.array_equal(np.asarray(loaded.weights[k]), np.asarray(w)), k
    toks = calib.tokens[0]
    ref = lb.LlamaModel(q.config, expect)
    assert np.array_equal(loaded.forward(toks), ref.forward(toks))
    # float16 scales change the output little: compared with float32 activations, since int8 activation
    # rounding turns any small difference of the inputs into whole int8 steps
    loaded.matmul_act = q.matmul_act = "float32"
    assert np.abs(loaded.forward(toks) - q.forward(toks)).max() < 1e-2 * np.abs(q.forward(toks)).max()
    with pytest.raises(FileExistsError):
        save_awq(q, path)
    with pytest.raises(ValueError, match="no quantized weights"):
        save_awq(m, tmp_path / "dense")
    assert not (tmp_path / "dense").exists()
