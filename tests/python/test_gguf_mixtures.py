"""llama.cpp's per-tensor type rules (lowbit.gguf_mixtures) against llama.cpp itself.

The fixture data/gguf_mixtures_smollm2.json holds the type llama.cpp's ``llama_model_quantize``
gave every tensor of SmolLM2-135M under each mixture, with and without an importance matrix
(made by data/make_gguf_mixture_fixture.py; the llama-cpp-python version is recorded in it), so
CI checks the rules without llama.cpp. Tests marked ``llama_cpp`` ask the library directly on
synthetic models whose shapes reach the branches SmolLM2 does not (rows that are multiples of
256, GQA 4, untied output, a 70B-shaped layer count).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lowbit.config import GGUFConfig
from lowbit.gguf_mixtures import (
    MIXTURES,
    default_type,
    expand_layer_config,
    file_type_id,
    gguf_tensor_name,
    tensor_type,
)
from lowbit.models.llama_config import LlamaConfig

FIXTURE = Path(__file__).parent / "fixtures" / "gguf_mixtures_smollm2.json"


@pytest.fixture(scope="module")
def smol_types() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("key,has_imatrix", [("types", False), ("types_with_imatrix", True)])
def test_smollm2_types_equal_llama_cpp(smol_types, key, has_imatrix):
    d = smol_types
    assert set(d[key]) == set(MIXTURES)
    for mixture, line in d[key].items():
        expected = line.split()
        assert len(expected) == len(d["names"])
        for name, shape, want in zip(d["names"], d["shapes"], expected):
            got = tensor_type(name, tuple(shape), d["n_layers"], mixture, tied_embeddings=True, n_gqa=3,
                              has_imatrix=has_imatrix)
            assert (got or "f32") == want, (mixture, name, shape)


def test_fixture_exercises_the_rules(smol_types):
    """The fixture is not trivial: mixtures differ per layer and fall back on 576-wide rows."""
    t = dict(zip(smol_types["names"], smol_types["types"]["Q4_K_M"].split()))
    assert t["token_embd.weight"] == "q8_0"          # tied: output rule, Q6_K -> Q8_0 (576 % 256)
    assert t["blk.0.attn_q.weight"] == "q5_0"        # Q4_K -> Q5_0 fallback
    assert t["blk.0.ffn_down.weight"] == "q6_K"      # 1536-wide rows: no fallback; use_more_bits(0, 30)
    assert t["blk.4.ffn_down.weight"] == "q4_K"      # not more bits: (4 - 3) % 3 == 1
    assert t["blk.5.ffn_down.weight"] == "q6_K"      # (5 - 3) % 3 == 2
    assert t["blk.2.attn_v.weight"] == "q8_0" and t["blk.3.attn_v.weight"] == "q5_0"
    q40 = dict(zip(smol_types["names"], smol_types["types_with_imatrix"]["Q4_0"].split()))
    assert q40["blk.2.ffn_down.weight"] == "q4_1" and q40["blk.3.ffn_down.weight"] == "q4_0"


def test_documented_rules_on_256_rows():
    n = 32
    tt = lambda name, m, **k: tensor_type(name, (1024, 4096), n, m, **k)  # noqa: E731
    assert tt("output.weight", "Q4_K_M") == "q6_K"
    assert tt("output.weight", "Q8_0") == "q8_0"
    assert tt("token_embd.weight", "Q4_K_M") == "q4_K"
    assert tt("token_embd.weight", "Q4_K_M", tied_embeddings=True) == "q6_K"
    assert [tt(f"blk.{i}.attn_v.weight", "Q3_K_M") for i in range(3)] == ["q5_K", "q5_K", "q4_K"]
    assert [tt(f"blk.{i}.attn_v.weight", "Q4_K_S") for i in (3, 4)] == ["q5_K", "q4_K"]
    assert tt("blk.7.attn_v.weight", "Q2_K", n_gqa=4) == "q4_K" and tt("blk.7.attn_v.weight", "Q2_K") == "q3_K"
    assert tt("blk.7.attn_v.weight", "Q3_K_S", is_70b=True) == "q5_K"
    assert tt("blk.1.ffn_down.weight", "Q3_K_M") == "q5_K" and tt("blk.2.ffn_down.weight", "Q3_K_M") == "q4_K"
    assert tt("blk.9.attn_output.weight", "Q2_K") == "q3_K"
    assert tt("blk.9.attn_q.weight", "Q2_K") == "q2_K"
    more = [i for i in range(n) if tt(f"blk.{i}.ffn_down.weight", "Q5_K_M") == "q6_K"]
    assert more == [i for i in range(n) if i < 4 or i >= 28 or (i - 4) % 3 == 2]
    assert tt("blk.0.attn_norm.weight", "Q4_K_M") is None
    assert tensor_type("blk.0.attn_norm.weight", (4096,), n, "Q4_K_M") is None
    assert tt("blk.0.ffn_up.weight", "F16") == "f16"


def test_fallbacks():
    assert tensor_type("blk.0.attn_q.weight", (576, 576), 30, "Q2_K") == "q4_0"
    assert tensor_type("blk.0.attn_q.weight", (576, 576), 30, "Q5_K_S") == "q5_1"
    assert tensor_type("blk.0.attn_q.weight", (64, 172), 5, "Q4_K_M") == "f16"  # not even 32 divides 172
    with pytest.raises(ValueError, match="no fallback"):
        tensor_type("blk.0.ffn_down.weight", (64, 172), 5, "Q4_0")


def test_names_and_ids():
    assert gguf_tensor_name("model.layers.12.self_attn.v_proj") == "blk.12.attn_v.weight"
    assert gguf_tensor_name("model.layers.0.self_attn.q_proj.bias") == "blk.0.attn_q.bias"
    assert gguf_tensor_name("model.embed_tokens.weight") == "token_embd.weight"
    assert gguf_tensor_name("lm_head") == "output.weight"
    with pytest.raises(ValueError, match="no GGUF name"):
        gguf_tensor_name("model.layers.0.mlp.experts.0.w1")
    assert file_type_id("q4_k_m") == 15 and file_type_id("Q8_0") == 7 and default_type("Q3_K_L") == "q3_K"
    with pytest.raises(ValueError, match="unknown"):
        default_type("Q4_K_X")


def _fake_smollm2(smol_types) -> SimpleNamespace:
    cfg = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                      num_key_value_heads=3, vocab_size=49152, head_dim=64, tie_word_embeddings=True)
    from lowbit.models.llama import BLOCK_LINEARS
    weights = {f"model.layers.{i}.{n}.weight": None for i in range(30) for n in BLOCK_LINEARS}
    shapes = dict(zip(smol_types["names"], smol_types["shapes"]))
    for k in weights:
        weights[k] = np.broadcast_to(np.float32(0), tuple(shapes[gguf_tensor_name(k)]))
    weights["model.embed_tokens.weight"] = np.broadcast_to(np.float32(0), (49152, 576))
    return SimpleNamespace(config=cfg, weights=weights)


@pytest.mark.parametrize("mixture", ["Q4_K_M", "Q3_K_M", "Q2_K", "Q4_0", "Q6_K"])
def test_expand_layer_config_per_linear(smol_types, mixture):
    """What the pipeline does with GGUFConfig(type=mixture): each linear gets llama.cpp's type."""
    model = _fake_smollm2(smol_types)
    want = dict(zip(smol_types["names"], smol_types["types"][mixture].split()))
    for name in model.weights:
        if name == "model.embed_tokens.weight":
            continue
        cfg = expand_layer_config(model, name[: -len(".weight")], GGUFConfig(type=mixture))
        assert cfg.type.lower().replace("_k", "_K") == want[gguf_tensor_name(name)], name
    plain = GGUFConfig(type="Q4_K_M", imatrix=None)
    assert expand_layer_config(model, "model.layers.0.mlp.up_proj", None) is None
    from lowbit.config import RTNConfig
    rtn = RTNConfig(bits=4)
    assert expand_layer_config(model, "model.layers.0.mlp.up_proj", rtn) is rtn
    assert expand_layer_config(model, "model.layers.0.mlp.up_proj", plain).type == "Q5_0"


# ------------------------------------------------------------------------------ llama.cpp
@pytest.mark.llama_cpp
@pytest.mark.parametrize("layers,tied,kv_heads", [(16, False, 2), pytest.param(80, True, 2, marks=pytest.mark.slow)])
def test_synthetic_types_equal_llama_cpp(tmp_path, shared_data, layers, tied, kv_heads):
    """Rows that are multiples of 256 (no fallback), GQA 4, untied output; 80 layers with GQA is
    llama.cpp's "70B" (attn_v bump)."""
    pytest.importorskip("llama_cpp")
    import llama_cpp_peer
    from gguf import GGUFReader

    import lowbit as lb
    from lowbit.export.gguf import save_gguf
    from test_gguf_writer import synthetic_model

    stories = lb.load_model(shared_data / "models" / "stories260K" / "stories260K.bin")
    model = synthetic_model(stories, layers=layers, hidden=256, ffn=256, heads=8, kv_heads=kv_heads, tied=tied)
    src = save_gguf(model, tmp_path / "f32.gguf")
    mixtures = ["Q2_K", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q5_K_M", "Q6_K"]
    if layers == 80:
        mixtures = ["Q3_K_S", "Q4_K_M"]
    for m in mixtures:
        dst = tmp_path / f"{m}.gguf"
        llama_cpp_peer.quantize_gguf(src, dst, m)
        r = GGUFReader(dst)
        for t in r.tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            got = tensor_type(t.name, shape, layers, m, tied_embeddings=tied, n_gqa=8 // kv_heads,
                              is_70b=layers == 80)
            assert (got or "f32") == t.tensor_type.name.lower().replace("_k", "_K"), (m, t.name)
        dst.unlink()


def test_pipeline_expands_mixture(shared_data, monkeypatch):
    """resolve_layer_configs turns GGUFConfig(type=mixture) into one concrete type per linear
    (a layer llama.cpp keeps in F16 is left dense for the writer)."""
    import importlib

    import lowbit as lb
    from lowbit.pipeline import resolve_layer_configs
    qmod = importlib.import_module("lowbit.quantize")
    from test_gguf_writer import synthetic_model

    if GGUFConfig not in qmod._METHODS:  # the ggml quantizers are another module's; only the plan is tested
        monkeypatch.setitem(qmod._METHODS, GGUFConfig, lambda W, cfg, **s: None)
        monkeypatch.setitem(qmod._NEEDS, GGUFConfig, ())
    stories = lb.load_model(shared_data / "models" / "stories260K" / "stories260K.bin")
    model = synthetic_model(stories, layers=8)
    cfgs = resolve_layer_configs(model, GGUFConfig(type="Q4_K_M", imatrix=None))
    assert len(cfgs) == 8 * 7
    assert cfgs["model.layers.0.self_attn.v_proj"] == GGUFConfig(type="Q6_K")   # use_more_bits(0, 8)
    assert cfgs["model.layers.2.self_attn.v_proj"] == GGUFConfig(type="Q4_K")
    assert cfgs["model.layers.7.mlp.down_proj"] == GGUFConfig(type="Q6_K")
    assert cfgs["model.layers.3.mlp.up_proj"] == GGUFConfig(type="Q4_K")
    # stories260K: 172-wide ffn_down rows fit no block under Q4_K_M -> F16, left dense
    s = resolve_layer_configs(stories, GGUFConfig(type="Q4_K_M"))
    assert "model.layers.0.mlp.down_proj" not in s
    assert s["model.layers.0.mlp.up_proj"] == GGUFConfig(type="Q5_0")  # 64-wide rows: Q4_K -> Q5_0
    other = resolve_layer_configs(model, lb.RTNConfig(bits=4))
    assert set(v.quant_method for v in other.values()) == {"rtn"}


def test_plain_types_that_are_no_ftype_apply_everywhere():
    """GGUFConfig(type="Q4_K") is one type, not llama.cpp's Q4_K_M alias: output too."""
    assert tensor_type("output.weight", (512, 4096), 32, "Q4_K") == "q4_K"
    assert tensor_type("blk.0.attn_v.weight", (512, 4096), 32, "Q4_K") == "q4_K"
    assert tensor_type("blk.0.attn_v.weight", (512, 576), 32, "Q4_K") == "q5_0"
    assert tensor_type("token_embd.weight", (512, 576), 32, "IQ4_NL") == "iq4_nl"
