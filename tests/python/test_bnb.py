"""bitsandbytes' formats: NF4/FP4 blockwise codes, double quantization, LLM.int8(), the
BnbConfig method and bnb checkpoints.

Oracles: the NumPy reference in reference/bnb_ref.py (written from the definitions), golden
outputs of bitsandbytes itself on our inputs (fixtures/bnb_golden.npz, version recorded), and,
where the package is installed, bitsandbytes live (marker ``bitsandbytes``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core, bnb
from lowbit.export import from_bnb, load_bnb, save_bnb, to_bnb
from lowbit.export.bnb import config_from_quantization_config, quantization_config

from reference import bnb_ref as ref

GOLDEN = Path(__file__).parent / "fixtures" / "bnb_golden.npz"
QUANT_TYPES = ("nf4", "fp4")


def max_half_gap(code: np.ndarray) -> float:
    c = np.sort(code.astype(np.float64))
    return float(np.max(np.diff(c)) / 2)


def weights(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    W = (rng.standard_normal(shape) * rng.uniform(0.01, 3.0, size=(shape[0], 1))).astype(np.float32)
    W.flat[::9] = 0.0
    return W


# ----------------------------------------------------------------------------- codes
def test_nf4_code_is_the_published_table():
    assert np.array_equal(bnb.NF4_CODE, ref.NF4)
    c = bnb.NF4_CODE
    assert np.all(np.diff(c) > 0) and c[0] == -1 and c[-1] == 1 and c[7] == 0
    assert (c > 0).sum() == 8 and (c < 0).sum() == 7  # asymmetric: 8 positive, 7 negative, exact zero


def test_fp4_code_is_bnbs_own_table_not_e2m1():
    raw = np.array([0, 0.0625, 8, 12, 4, 6, 2, 3], np.float32)
    assert np.array_equal(bnb.FP4_CODE[:8], raw / np.float32(12))
    assert np.array_equal(bnb.FP4_CODE[8:], -raw / np.float32(12))  # bit 3 is the sign
    assert not np.array_equal(np.unique(np.abs(bnb.FP4_CODE)) * 6, [0, 0.5, 1, 1.5, 2, 3, 4, 6])


def test_dynamic_map_follows_its_construction():
    m = bnb.DYNAMIC_MAP
    assert m.shape == (256,) and m.dtype == np.float32
    assert np.array_equal(m, ref.dynamic_map())
    assert np.all(np.diff(m) > 0) and m[-1] == 1.0 and 0.0 in m and m[0] > -1.0
    assert m[127] == 0 and np.array_equal(m[:127], -m[128:255][::-1])  # signed, plus the extra 1.0 at the top


# ----------------------------------------------------------------------------- 4-bit
def test_nibble_order_first_element_high():
    # 1.0 -> nf4 code 15, -1.0 -> 0, 0.0 -> 7: the first value of each pair is the high nibble
    packed, absmax = _core.bnb_quantize_4bit(np.array([1.0, -1.0, 0.0], np.float32), "nf4", 64)
    assert packed.tolist() == [0xF0, 0x77] and absmax.tolist() == [1.0]  # odd count pads a 0.0 (code 7)
    packed, _ = _core.bnb_quantize_4bit(np.array([1.0, -1.0], np.float32), "fp4", 64)
    assert packed.tolist() == [0x3B]  # fp4: 1.0 is index 3, -1.0 is index 11


@pytest.mark.parametrize("quant_type", QUANT_TYPES)
def test_ties_go_to_the_lower_code(quant_type):
    code = bnb.code4(quant_type)
    order = np.argsort(code, kind="stable")
    s = code[order]
    mids = (s[:-1] + s[1:]) / np.float32(2)
    x = np.concatenate([[np.float32(1)], mids, np.nextafter(mids, np.float32(2))]).astype(np.float32)
    packed, _ = _core.bnb_quantize_4bit(x, quant_type, 64)
    q = np.empty(packed.size * 2, np.uint8)
    q[0::2], q[1::2] = packed >> 4, packed & 15
    on_mid, above = q[1:16], q[16:31]
    assert np.array_equal(on_mid, order[:15])  # exactly on a midpoint: the lower neighbour
    assert np.array_equal(above, order[1:])    # one ulp above: the upper neighbour


@pytest.mark.parametrize("quant_type", QUANT_TYPES)
@pytest.mark.parametrize("shape,blocksize", [((7, 70), 64), ((3, 33), 32), ((5, 64), 256), ((2, 1501), 4096),
                                             ((1, 1), 64), ((16, 128), 128)])
def test_4bit_matches_reference_bit_for_bit(quant_type, shape, blocksize, rng):
    W = weights(rng, shape)
    packed, absmax = _core.bnb_quantize_4bit(W, quant_type, blocksize)
    rp, ra = ref.quantize_4bit(W, quant_type, blocksize)
    assert np.array_equal(packed, rp)
    assert np.array_equal(absmax.view(np.uint32), ra.view(np.uint32))
    y = _core.bnb_dequantize_4bit(packed, absmax, W.size, quant_type, blocksize)
    assert np.array_equal(y, ref.dequantize_4bit(rp, ra, W.size, quant_type, blocksize))


@pytest.mark.parametrize("quant_type", QUANT_TYPES)
@pytest.mark.parametrize("blocksize", [32, 64, 4096])
def test_4bit_round_trip_within_half_the_largest_gap(quant_type, blocksize, rng):
    W = weights(rng, (19, 77))  # 77 columns: blocks cross row boundaries
    q = bnb.quantize_4bit(W, quant_type, blocksize)
    n = W.size
    absmax = np.repeat(q.arrays["absmax"], blocksize)[:n].reshape(W.shape)
    err = np.abs(q.dequantize() - W)
    assert np.all(err <= max_half_gap(bnb.code4(quant_type)) * absmax * (1 + 1e-6))
    assert q.arrays["absmax"].size == -(-n // blocksize)
    # the block maximum itself is exact (code +-1); zeros stay zero
    for b in range(q.arrays["absmax"].size):
        blk = W.ravel()[b * blocksize:(b + 1) * blocksize]
        i = np.argmax(np.abs(blk))
        assert q.dequantize().ravel()[b * blocksize + i] == blk[i]
    assert np.all(q.dequantize()[W == 0] == 0)


def test_blocks_run_across_rows():
    # row 0 holds small values, row 1 large ones; with 3 columns and blocksize 32 every block
    # mixes many rows, so a per-row absmax would give a different result
    rng = np.random.default_rng(7)
    W = rng.standard_normal((40, 3)).astype(np.float32) * np.arange(1, 41, dtype=np.float32)[:, None]
    q = bnb.quantize_4bit(W, "nf4", 32)
    flat = W.ravel()
    assert np.array_equal(q.arrays["absmax"], [np.abs(flat[i:i + 32]).max() for i in range(0, flat.size, 32)])


def test_all_zero_tail_block_stores_the_absmax_floor():
    W = np.zeros((1, 70), np.float32)
    W[0, :64] = 1.0
    q = bnb.quantize_4bit(W, "nf4", 64)
    assert q.arrays["absmax"][0] == 1.0 and q.arrays["absmax"][1] == np.float32(1e-38)  # bnb clamps the tail
    W2 = np.zeros((2, 64), np.float32)
    assert np.all(bnb.quantize_4bit(W2, "nf4", 64).arrays["absmax"] == 0)  # full blocks are not clamped
    assert np.all(bnb.quantize_4bit(W2, "nf4", 64).dequantize() == 0)


def test_thread_count_does_not_change_results(rng):
    W = weights(rng, (256, 300))
    before = lb.get_num_threads()
    try:
        lb.set_num_threads(1)
        a = _core.bnb_quantize_4bit(W, "nf4", 64)
        lb.set_num_threads(2)
        b = _core.bnb_quantize_4bit(W, "nf4", 64)
    finally:
        lb.set_num_threads(before)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ----------------------------------------------------------------------------- double quant
def test_double_quantization_matches_reference(rng):
    absmax = np.abs(rng.standard_normal(700)).astype(np.float32) + np.float32(0.1)
    q, a2, off = _core.bnb_double_quantize(absmax, 256)
    rq, ra2, roff = ref.double_quantize(absmax, 256)
    assert np.float32(off) == roff and np.array_equal(q, rq) and np.array_equal(a2, ra2)
    assert a2.size == 3
    # restore error: half the largest gap of the dynamic map times the block's absmax
    back = _core.bnb_dequantize_blockwise(q, a2, bnb.DYNAMIC_MAP, 256, off)
    bound = max_half_gap(bnb.DYNAMIC_MAP) * np.repeat(a2, 256)[:700]
    assert np.all(np.abs(back - absmax) <= bound * (1 + 1e-5) + 1e-7)


def test_double_quant_tensor_and_bits_per_weight(rng):
    W = weights(rng, (256, 512))
    plain = lb.quantize(W, lb.BnbConfig(bnb_4bit_quant_type="nf4"))
    dq = lb.quantize(W, lb.BnbConfig(bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True))
    assert plain.bits_per_weight == pytest.approx(4 + 32 / 64)
    assert dq.bits_per_weight == pytest.approx(4 + 8 / 64 + 32 / (64 * 256))
    assert np.array_equal(dq.arrays["qweight"], plain.arrays["qweight"])  # DQ changes only the absmax
    rel = np.linalg.norm(dq.dequantize() - W) / np.linalg.norm(W)
    assert rel < 1.02 * np.linalg.norm(plain.dequantize() - W) / np.linalg.norm(W) + 1e-3


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("blocksize", [0, 16, 48, 100, 8192, -64])
def test_bad_blocksize(blocksize):
    with pytest.raises(ValueError, match="blocksize"):
        _core.bnb_quantize_4bit(np.ones((2, 64), np.float32), "nf4", blocksize)
    with pytest.raises(ValueError, match="blocksize"):
        bnb.quantize_4bit(np.ones((2, 64), np.float32), "nf4", blocksize)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_rejected(bad):
    W = np.ones((3, 64), np.float32)
    W[1, 5] = bad
    with pytest.raises(ValueError, match="finite"):
        lb.quantize(W, lb.BnbConfig())
    with pytest.raises(ValueError, match="finite"):
        lb.quantize(W, lb.BnbConfig(load_in_4bit=False, load_in_8bit=True))
    q = lb.quantize(np.ones((3, 64), np.float32), lb.BnbConfig(load_in_4bit=False, load_in_8bit=True))
    x = np.ones((2, 64), np.float32)
    x[0, 0] = bad
    with pytest.raises(ValueError, match="x must be finite"):
        x @ q


def test_bad_shapes_and_types():
    for cfg in (lb.BnbConfig(), lb.BnbConfig(load_in_4bit=False, load_in_8bit=True)):
        with pytest.raises(ValueError, match="non-empty"):
            lb.quantize(np.zeros((0, 64), np.float32), cfg)
        with pytest.raises(ValueError, match="2-D"):
            lb.quantize(np.zeros(64, np.float32), cfg)
        with pytest.raises(TypeError, match="float"):
            lb.quantize(np.zeros((2, 64), np.int32), cfg)
    with pytest.raises(ValueError, match="quant_type"):
        _core.bnb_quantize_4bit(np.ones(4, np.float32), "int4", 64)
    with pytest.raises(ValueError, match="non-empty"):
        _core.bnb_quantize_4bit(np.ones(0, np.float32), "nf4", 64)
    with pytest.raises(ValueError, match="absmax must have shape"):
        _core.bnb_dequantize_4bit(np.zeros(32, np.uint8), np.ones(2, np.float32), 64, "nf4", 64)
    with pytest.raises(ValueError, match="ascending"):
        _core.bnb_quantize_blockwise(np.ones(8, np.float32), bnb.DYNAMIC_MAP[::-1].copy(), 256)
    q = lb.quantize(np.ones((4, 8), np.float32), lb.BnbConfig(load_in_4bit=False, load_in_8bit=True))
    with pytest.raises(ValueError, match="in_features=8"):
        np.ones((2, 7), np.float32) @ q
    with pytest.raises(NotImplementedError, match="has_fp16_weight"):
        lb.quantize(np.ones((4, 8), np.float32),
                    lb.BnbConfig(load_in_4bit=False, load_in_8bit=True, llm_int8_has_fp16_weight=True))


def test_inconsistent_tensor_is_rejected(rng):
    q = bnb.quantize_4bit(weights(rng, (4, 64)), "nf4", 64)
    with pytest.raises(ValueError, match="absmax must be float32"):
        lb.QuantizedTensor(format="nf4", shape=q.shape, arrays={**q.arrays, "absmax": q.arrays["absmax"][:-1]},
                           group_size=64, params=q.params)
    with pytest.raises(ValueError, match="blocksize"):
        lb.QuantizedTensor(format="nf4", shape=q.shape, arrays=q.arrays, group_size=64,
                           params={**q.params, "blocksize": 48})


# ----------------------------------------------------------------------------- LLM.int8()
def test_int8_weights_match_reference(rng):
    W = weights(rng, (33, 70))
    W[4] = 0.0
    CB, SCB = _core.int8_rowwise_quantize(W)
    rCB, rSCB = ref.int8_rowwise_quantize(W)
    assert np.array_equal(CB, rCB) and np.array_equal(SCB, rSCB)
    assert np.all(np.abs(CB).max(axis=1)[SCB > 0] == 127) and np.all(CB[4] == 0)
    back = _core.int8_rowwise_dequantize(CB, SCB)
    assert np.all(np.abs(back - W) <= SCB[:, None] / 127 / 2 * (1 + 1e-5))  # half a step per row


def test_int8_linear_matches_reference_and_finds_outliers(rng):
    W = weights(rng, (24, 50))
    q = bnb.quantize_int8(W, threshold=6.0)
    x = rng.standard_normal((7, 50)).astype(np.float32)
    x[1, 7], x[3, 20], x[4, 33], x[5, 40] = 9.0, -6.0, 5.99, -5.999
    bias = rng.standard_normal(24).astype(np.float32)
    y, n_out = _core.int8_linear(x, q.arrays["CB"], q.arrays["SCB"], 6.0, bias)
    ry, cols = ref.int8_linear(x, q.arrays["CB"], q.arrays["SCB"], 6.0, bias)
    assert cols.tolist() == [7, 20] and n_out == 2  # |x| >= threshold, 5.99 is not an outlier
    assert np.allclose(y, ry, rtol=1e-5, atol=1e-5)
    assert np.allclose(bnb.int8_linear(x, q, bias), y, rtol=0, atol=0)
    # without the decomposition the outlier columns are int8 too (and the big values dominate rowmax)
    y0, n0 = _core.int8_linear(x, q.arrays["CB"], q.arrays["SCB"], 0.0, None)
    ry0, c0 = ref.int8_linear(x, q.arrays["CB"], q.arrays["SCB"], 0.0)
    assert n0 == 0 and c0.size == 0 and np.allclose(y0, ry0, rtol=1e-5, atol=1e-5)


def test_int8_decomposition_lowers_the_error_with_outliers(rng):
    W = (rng.standard_normal((64, 256)) * 0.05).astype(np.float32)
    x = rng.standard_normal((32, 256)).astype(np.float32)
    x[:, [3, 77, 150]] *= 40  # LLM-style outlier features
    q = lb.quantize(W, lb.BnbConfig(load_in_4bit=False, load_in_8bit=True))
    exact = x @ q.dequantize().T
    with_dec = x @ q                                 # threshold 6.0 from the config
    without = bnb.int8_linear(x, q, threshold=0.0)
    e1 = np.linalg.norm(with_dec - exact) / np.linalg.norm(exact)
    e0 = np.linalg.norm(without - exact) / np.linalg.norm(exact)
    assert e1 < 0.01 and e0 > 3 * e1
    assert (x[None] @ q).shape == (1, 32, 64)       # leading dimensions kept


# ----------------------------------------------------------------------------- method + storage
@pytest.mark.parametrize("cfg", [lb.BnbConfig(), lb.BnbConfig(bnb_4bit_quant_type="fp4", bnb_4bit_blocksize=128),
                                 lb.BnbConfig(bnb_4bit_use_double_quant=True),
                                 lb.BnbConfig(load_in_4bit=False, load_in_8bit=True, llm_int8_threshold=4.0)],
                         ids=["nf4", "fp4-128", "nf4-dq", "int8"])
def test_quantize_save_load(cfg, rng, tmp_path):
    W = weights(rng, (48, 96))
    q = lb.quantize(W, cfg)
    assert q.config == cfg and q.format == ("llm_int8" if cfg.load_in_8bit else cfg.bnb_4bit_quant_type)
    assert lb.metrics.sqnr(W, q.dequantize()) > (35 if cfg.load_in_8bit else 15)
    q.save(tmp_path / "q.safetensors")
    back = lb.QuantizedTensor.load(tmp_path / "q.safetensors")
    assert back.config == cfg and back.params == q.params
    assert np.array_equal(back.dequantize(), q.dequantize())
    x = rng.standard_normal((3, 96)).astype(np.float32)
    assert np.array_equal(x @ back, x @ q)


def test_config_json_round_trip():
    for cfg in (lb.BnbConfig(bnb_4bit_use_double_quant=True, bnb_4bit_blocksize=256),
                lb.BnbConfig(load_in_4bit=False, load_in_8bit=True, llm_int8_threshold=0.0,
                             llm_int8_skip_modules=("lm_head",))):
        assert lb.load_config(cfg.to_json()) == cfg
        assert config_from_quantization_config(json.loads(json.dumps(quantization_config(cfg)))) == cfg


def test_quantization_config_as_transformers_writes_it():
    transformers = pytest.importorskip("transformers")
    for ours, theirs in ((lb.BnbConfig(), dict(load_in_4bit=True, bnb_4bit_quant_type="nf4")),
                         (lb.BnbConfig(bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=True),
                          dict(load_in_4bit=True, bnb_4bit_use_double_quant=True)),
                         (lb.BnbConfig(load_in_4bit=False, load_in_8bit=True), dict(load_in_8bit=True))):
        expect = transformers.BitsAndBytesConfig(**theirs).to_dict()
        got = quantization_config(ours)
        if ours.load_in_8bit:  # the 4-bit fields of an 8-bit config are unused; transformers keeps its defaults
            got["bnb_4bit_quant_type"] = expect["bnb_4bit_quant_type"]
        assert got == expect
    assert config_from_quantization_config({"quant_method": "bitsandbytes", "load_in_4bit": True}) == \
        lb.BnbConfig(bnb_4bit_quant_type="fp4")  # transformers' default quant type


@pytest.mark.parametrize("cfg", [lb.BnbConfig(), lb.BnbConfig(bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=True),
                                 lb.BnbConfig(load_in_4bit=False, load_in_8bit=True)], ids=["nf4", "fp4-dq", "int8"])
def test_bnb_checkpoint_round_trip(cfg, rng, tmp_path):
    layers = {"model.layers.0.mlp.down_proj": lb.quantize(weights(rng, (40, 72)), cfg),
              "model.layers.0.self_attn.q_proj": lb.quantize(weights(rng, (72, 72)), cfg),
              "model.norm.weight": np.ones(72, np.float32)}
    save_bnb(tmp_path, layers, cfg, model_config={"model_type": "llama", "hidden_size": 72})
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "llama" and saved["quantization_config"]["quant_method"] == "bitsandbytes"
    from safetensors.numpy import load_file
    names = set(load_file(str(tmp_path / "model.safetensors")))
    p = "model.layers.0.mlp.down_proj"
    if cfg.load_in_8bit:
        assert {f"{p}.weight", f"{p}.SCB", f"{p}.weight_format"} <= names
    else:
        qt = cfg.bnb_4bit_quant_type
        want = {f"{p}.weight", f"{p}.weight.absmax", f"{p}.weight.quant_map", f"{p}.weight.quant_state.bitsandbytes__{qt}"}
        if cfg.bnb_4bit_use_double_quant:
            want |= {f"{p}.weight.nested_absmax", f"{p}.weight.nested_quant_map"}
        assert want <= names
        state = json.loads(load_file(str(tmp_path / "model.safetensors"))[f"{p}.weight.quant_state.bitsandbytes__{qt}"]
                           .tobytes())
        assert state["shape"] == [40, 72] and state["blocksize"] == 64 and state["quant_type"] == qt
    back, back_cfg = load_bnb(tmp_path)
    assert back_cfg == cfg and set(back) == set(layers)
    for k, v in layers.items():
        if isinstance(v, lb.QuantizedTensor):
            assert back[k].format == v.format and np.array_equal(back[k].dequantize(), v.dequantize())
        else:
            assert np.array_equal(back[k], v)


def test_from_bnb_rejects_foreign_tables(rng):
    d = to_bnb(bnb.quantize_4bit(weights(rng, (4, 64)), "nf4", 64))
    with pytest.raises(ValueError, match="quant_map"):
        from_bnb({**d, "weight.quant_map": bnb.FP4_CODE.copy()})
    with pytest.raises(ValueError, match="weight_format"):
        from_bnb({"weight": np.zeros((2, 2), np.int8), "SCB": np.ones(2, np.float32),
                  "weight_format": np.array(1, np.uint8)})
    with pytest.raises(ValueError, match="neither"):
        from_bnb({"weight": np.zeros(4, np.uint8)})


def test_quantize_model_honours_skip_modules(shared_data_module):
    from lowbit.models import load_model
    model = load_model(shared_data_module / "models" / "stories260K" / "stories260K.bin")
    cfg = lb.BnbConfig(llm_int8_skip_modules=("mlp.down_proj",))
    qm = lb.quantize_model(model, cfg, None, progress=False)
    projs = {n: w for n, w in qm.weights.items() if n.endswith("proj.weight")}
    assert len(projs) == 7 * 5
    assert all(("down_proj" in n) == isinstance(w, np.ndarray) for n, w in projs.items())
    assert any(isinstance(w, lb.QuantizedTensor) and w.format == "nf4" for w in qm.weights.values())


# ----------------------------------------------------------------------------- golden (bnb's own output)
@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN)


def test_golden_codes_and_map(golden):
    assert str(golden["bnb_version"]) == "0.50.2"
    assert np.array_equal(golden["nf4_code"], bnb.NF4_CODE) and np.array_equal(golden["fp4_code"], bnb.FP4_CODE)
    assert np.array_equal(golden["dynamic_map"].view(np.uint32), bnb.DYNAMIC_MAP.view(np.uint32))


@pytest.mark.parametrize("case,quant_type,blocksize", [("nf4_64", "nf4", 64), ("fp4_4096", "fp4", 4096),
                                                       ("nf4_32", "nf4", 32), ("fp4_128", "fp4", 128)])
def test_golden_4bit(golden, case, quant_type, blocksize):
    W = golden[f"{case}.W"]
    q = bnb.quantize_4bit(W, quant_type, blocksize)
    assert np.array_equal(q.arrays["qweight"], golden[f"{case}.packed"])
    assert np.array_equal(q.arrays["absmax"].view(np.uint32), golden[f"{case}.absmax"].view(np.uint32))
    if f"{case}.dequant" in golden:
        assert np.array_equal(q.dequantize(), golden[f"{case}.dequant"])  # values (bnb's CPU kernel writes -0.0)
    if f"{case}.qabsmax" in golden:
        # the nested codes given bnb's offset (its float32 mean sums in another order: 1 ulp)
        off = golden[f"{case}.offset"]
        q8, a2 = _core.bnb_quantize_blockwise(q.arrays["absmax"] - off, bnb.DYNAMIC_MAP, 256)
        assert np.array_equal(q8, golden[f"{case}.qabsmax"]) and np.array_equal(a2, golden[f"{case}.nested_absmax"])
        dq = bnb.quantize_4bit(W, quant_type, blocksize, double_quant=True)
        assert dq.params["nested_offset"] == pytest.approx(float(off), rel=1e-6)


def test_golden_int8(golden):
    CB, SCB = _core.int8_rowwise_quantize(golden["int8.W"])
    assert np.array_equal(CB, golden["int8.CB"]) and np.array_equal(SCB, golden["int8.SCB"])
    X = golden["int8.X"]
    y, n_out = _core.int8_linear(X, CB, SCB, 6.0, None)
    cols = golden["int8.outlier_cols"]
    assert n_out == cols.size == 2
    # bnb multiplies float32 activations' outlier columns in float32; lowbit in float16:
    # the difference is bounded by the float16 rounding of both operands (2 * 2^-11 relative)
    W16 = _core.int8_rowwise_dequantize(CB, SCB)[:, cols]
    bound = (np.abs(X[:, cols]) @ np.abs(W16).T) * 2 * 2.0**-11 * 1.01 + 1e-6
    assert np.all(np.abs(y - golden["int8.y_float32"]) <= bound)


# ----------------------------------------------------------------------------- bitsandbytes live
@pytest.fixture(scope="module")
def bnb_lib():
    pytest.importorskip("torch")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F = pytest.importorskip("bitsandbytes.functional")
    import torch
    old = torch._dynamo.config.disable
    torch._dynamo.config.disable = True  # bnb's dequantize is torch.compile'd; eager is the definition
    yield F
    torch._dynamo.config.disable = old


def bnb_4bit_definition(F, packed, state) -> np.ndarray:
    """bitsandbytes' 4-bit dequantization by its definition, ``code[nibble] * absmax[block]``
    (high nibble first; the nested absmax through bnb's own blockwise dequantize)."""
    codes = packed.numpy().ravel()
    n = int(np.prod(state.shape))
    nib = np.stack([codes >> 4, codes & 15], axis=1).ravel()[:n]
    absmax = state.absmax
    if state.nested:
        absmax = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
    absmax = absmax.float().numpy()
    return (state.code.float().numpy()[nib] * np.repeat(absmax, state.blocksize)[:n]).reshape(tuple(state.shape))


def bnb_4bit_dequantize(F, packed, state) -> np.ndarray:
    """bnb's dequantize_4bit kernel, or its definition where the kernel disagrees with it:
    bitsandbytes 0.50.2's CPU kernel on AVX-512 machines returns other values for the blocks
    after the first of some shapes (e.g. 5 x 64 in blocks of 128), which lowbit does not copy."""
    kernel = F.dequantize_4bit(packed, state).numpy()
    definition = bnb_4bit_definition(F, packed, state)
    return kernel if np.allclose(kernel, definition, rtol=1e-6, atol=1e-7) else definition


@pytest.mark.bitsandbytes
@pytest.mark.parametrize("quant_type", QUANT_TYPES)
def test_live_4bit_and_nested_match_bitsandbytes(bnb_lib, quant_type, rng):
    import torch
    F = bnb_lib
    for shape, bs in (((33, 70), 64), ((300, 77), 32), ((4, 1000), 4096), ((5, 64), 128), ((7, 33), 64)):
        W = weights(rng, shape)
        qb, st = F.quantize_4bit(torch.from_numpy(W), blocksize=bs, quant_type=quant_type, compress_statistics=True)
        q = bnb.quantize_4bit(W, quant_type, bs, double_quant=True)
        assert np.array_equal(q.arrays["qweight"], qb.numpy().ravel())
        assert q.params["nested_offset"] == pytest.approx(st.offset.item(), rel=1e-6)
        assert np.array_equal(st.state2.code.numpy(), bnb.DYNAMIC_MAP)
        # bnb's CPU kernel for the nested 8-bit codes uses a 65536-entry lookup table instead of
        # the exact nearest code: at most one code apart, on a small fraction of the values
        # (and writes code 0 for a block of zeros, where lowbit writes the code of 0.0)
        live = np.repeat(st.state2.absmax.numpy() != 0, 256)[: q.arrays["absmax"].size]
        diff = np.abs(q.arrays["absmax"].astype(int) - st.absmax.numpy().astype(int))[live]
        assert diff.size == 0 or (diff.max() <= 1 and diff.mean() < 0.02)
        restored = F.dequantize_blockwise(st.absmax, st.state2) + st.offset
        assert np.allclose(bnb.dequantize_4bit(q), bnb_4bit_dequantize(F, qb, st), rtol=0.02, atol=1e-6)
        assert restored.shape == (q.arrays["absmax"].size,)
        # bnb dequantizes lowbit's export exactly as lowbit does, and the other way round
        d = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_bnb(q).items()}
        state = F.QuantState.from_dict({k[len("weight."):]: v for k, v in d.items() if k != "weight"}, device="cpu")
        assert np.array_equal(bnb_4bit_dequantize(F, d["weight"], state), q.dequantize())
        sd = {"weight." + k: v.numpy() for k, v in st.as_dict(packed=True).items()}
        sd["weight"] = qb.numpy()
        assert np.array_equal(from_bnb(sd).dequantize(), bnb_4bit_dequantize(F, qb, st))


@pytest.mark.bitsandbytes
def test_live_int8_matches_bitsandbytes(bnb_lib, rng):
    import torch
    W = weights(rng, (40, 96))
    x = rng.standard_normal((9, 96)).astype(np.float32)
    x[2, 5], x[7, 60] = 12.0, -6.0
    CB, SCB, _ = torch.ops.bitsandbytes.int8_vectorwise_quant(torch.from_numpy(W.copy()), 0.0)
    q = bnb.quantize_int8(W, round_to_float16=False)
    assert np.array_equal(q.arrays["CB"], CB.numpy()) and np.array_equal(q.arrays["SCB"], SCB.numpy())
    CB16, SCB16, _ = torch.ops.bitsandbytes.int8_vectorwise_quant(torch.from_numpy(W).half(), 0.0)
    q16 = bnb.quantize_int8(W)  # the default rounds to float16 first, as bnb's Int8Params
    assert np.array_equal(q16.arrays["CB"], CB16.numpy()) and np.array_equal(q16.arrays["SCB"], SCB16.numpy())
    CA, SCA, cols = torch.ops.bitsandbytes.int8_vectorwise_quant(torch.from_numpy(x.copy()), 6.0)
    yb, _ = torch.ops.bitsandbytes.int8_mixed_scaled_mm(torch.from_numpy(x), CA, CB, SCA, SCB, cols, None)
    y = x @ q
    W16 = q.dequantize()[:, cols.numpy()]
    bound = (np.abs(x[:, cols.numpy()]) @ np.abs(W16).T) * 2 * 2.0**-11 * 1.01 + 1e-5
    assert cols.tolist() == [5, 60] and np.all(np.abs(y - yb.numpy()) <= bound)


@pytest.mark.parametrize("quant_type", QUANT_TYPES)
def test_format_table_rows_agree_with_the_flat_quantizer(quant_type, rng):
    # when a row holds whole blocks, the table's per-row reference (absmax per group in
    # GroupParams.scales) gives the same bytes as bitsandbytes' flattened quantization
    W = weights(rng, (6, 128))
    q = bnb.quantize_4bit(W, quant_type, 64)
    absmax = q.arrays["absmax"].reshape(6, 2)
    zeros = np.zeros(2, np.uint8)
    for r in range(6):
        row = _core.quantize_row_ref(quant_type, W[r], absmax[r], zeros, 64)
        assert np.array_equal(row, q.arrays["qweight"].reshape(6, 64)[r])
        back = _core.dequantize_row_ref(quant_type, row, 128, absmax[r], zeros, 64)
        assert np.array_equal(back, q.dequantize()[r])
    info = lb.format_info(quant_type)
    assert info.bits == 4 and info.bits_per_weight == 4 and info.id >= 1000 and info.needs_group_params


def test_llm_int8_format_row(rng):
    W = weights(rng, (3, 40))
    q = bnb.quantize_int8(W, round_to_float16=False)
    for r in range(3):
        scale = q.arrays["SCB"][r:r + 1]
        row = _core.quantize_row_ref("llm_int8", W[r], scale, np.zeros(1, np.uint8), 40)
        assert np.array_equal(row.view(np.int8), q.arrays["CB"][r])
        assert np.array_equal(_core.dequantize_row_ref("llm_int8", row, 40, scale, np.zeros(1, np.uint8), 40),
                              q.dequantize()[r])


def test_int8_rounds_weights_to_float16_like_bnb():
    W = np.array([[1.0 + 2.0**-13, -0.3, 0.7]], np.float32)  # 1 + 2^-13 is not a float16
    q = bnb.quantize_int8(W)
    assert q.arrays["SCB"][0] == np.float32(np.float16(W[0, 0]))
    assert bnb.quantize_int8(W, round_to_float16=False).arrays["SCB"][0] == W[0, 0]
    with pytest.raises(ValueError, match="float16's range"):
        bnb.quantize_int8(np.array([[1e5, 1.0]], np.float32))


# ----------------------------------------------------------------------------- transformers checkpoints
@pytest.mark.bitsandbytes
@pytest.mark.parametrize("kind", ["nf4", "fp4-dq", "int8"])
def test_transformers_checkpoints_round_trip(bnb_lib, kind, tmp_path):
    """transformers + bitsandbytes write a checkpoint that lowbit reads (same codes as lowbit's
    own quantization), and lowbit writes one that transformers loads and runs (same logits)."""
    transformers = pytest.importorskip("transformers")
    import torch
    from transformers.utils import logging as tf_logging
    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
    cfg = {"nf4": lb.BnbConfig(bnb_4bit_quant_type="nf4"),
           "fp4-dq": lb.BnbConfig(bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=True),
           "int8": lb.BnbConfig(load_in_4bit=False, load_in_8bit=True)}[kind]
    torch.manual_seed(0)
    tiny = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, vocab_size=96, max_position_embeddings=64)
    fp = transformers.LlamaForCausalLM(tiny)
    fp.save_pretrained(tmp_path / "fp")
    state = {k: v.detach().numpy().copy() for k, v in fp.state_dict().items()}
    linears = sorted(k[: -len(".weight")] for k in state if k.startswith("model.layers.") and "proj" in k)
    tq = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "fp", quantization_config=transformers.BitsAndBytesConfig(**quantization_config(cfg)),
        device_map="cpu", dtype=torch.float32)
    tq.save_pretrained(tmp_path / "theirs")

    layers, back_cfg = load_bnb(tmp_path / "theirs")
    assert back_cfg == cfg and set(linears) <= set(layers)
    for name in linears:
        ours, theirs = lb.quantize(state[name + ".weight"], cfg), layers[name]
        assert theirs.format == ours.format and theirs.shape == ours.shape
        if cfg.load_in_8bit:
            assert np.array_equal(theirs.arrays["CB"], ours.arrays["CB"])
            assert np.array_equal(theirs.arrays["SCB"], ours.arrays["SCB"])
        else:
            assert np.array_equal(theirs.arrays["qweight"], ours.arrays["qweight"])
            w = tq.get_submodule(name).weight
            assert np.array_equal(theirs.dequantize(), bnb_lib.dequantize_4bit(w.data, w.quant_state).numpy())

    ours_layers = {k: v for k, v in state.items() if k[: -len(".weight")] not in linears}
    ours_layers.update({name: lb.quantize(state[name + ".weight"], cfg) for name in linears})
    model_config = json.loads((tmp_path / "fp" / "config.json").read_text())
    save_bnb(tmp_path / "ours", ours_layers, cfg, model_config=model_config)
    lq = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours", device_map="cpu", dtype=torch.float32)
    ids = torch.arange(1, 17)[None]
    with torch.no_grad():
        a, b = lq(ids).logits.numpy(), tq(ids).logits.numpy()
    if cfg.bnb_4bit_use_double_quant and not cfg.load_in_8bit:
        # bnb's CPU kernel rounds a few nested absmax codes differently (see above)
        assert np.allclose(a, b, rtol=1e-2, atol=1e-2)
    else:
        assert np.array_equal(a, b)
