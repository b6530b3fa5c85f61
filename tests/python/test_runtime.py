"""The Llama runtime on the real stories260K model: equal to the NumPy reference forward pass,
KV-cache decoding equal to a full pass, the documented greedy sample, seeded sampling, thread
invariance, quantized linears in the same slots, and bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest

import lowbit as lb
from lowbit.models import LlamaConfig, LlamaShape, forward_reference, load_model, rope_frequencies


@pytest.fixture(scope="module")
def stories(shared_data_module):
    return load_model(shared_data_module / "models" / "stories260K" / "stories260K.bin")


def _ref_shape(m):
    c = m.config
    return LlamaShape(c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
                      c.vocab_size, c.rms_norm_eps, c.rope_theta, "interleaved" if c.rope_interleaved else "half")


def _ref_weights(m):
    w = dict(m.weights)
    w.setdefault("lm_head.weight", w["model.embed_tokens.weight"])
    return w


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


TOKENS = [1, 400, 27, 301, 90, 12, 7, 250, 511, 3, 44, 130, 2, 9, 77, 300, 18]


def test_config_and_structure(stories):
    c = stories.config
    assert (c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
            c.num_key_value_heads, c.vocab_size, c.head_dim) == (64, 172, 5, 8, 4, 512, 8)
    assert c.rope_interleaved and c.tie_word_embeddings
    assert stories.tokenizer.encode("Once upon a time")[0] == 1
    assert len(stories.linear_names()) == 5 * 7 + 1
    assert "stories260K" in repr(stories) or "llama" in repr(stories)


def test_forward_equals_numpy_reference(stories):
    """float32 C++ ops vs the float64 NumPy reference: the difference is float32 rounding
    accumulated over 5 blocks, ~1e-6 relative."""
    got = stories.forward(TOKENS)
    want = forward_reference(_ref_shape(stories), _ref_weights(stories), TOKENS)
    assert got.dtype == np.float32 and got.shape == (len(TOKENS), 512)
    assert rel(got, want) < 2e-5


def test_kv_cache_decode_equals_full_pass(stories):
    full = stories.forward(TOKENS)
    cache = stories.new_cache(32)
    part = [stories.forward(TOKENS[:5], cache)]
    for t in TOKENS[5:]:
        part.append(stories.forward([t], cache))
    assert cache.length == len(TOKENS)
    np.testing.assert_allclose(np.concatenate(part), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="exceeds the KV cache"):
        stories.forward(list(range(20)), cache)


def test_greedy_generation_reproduces_documented_sample(stories, shared_data_module):
    doc = (shared_data_module / "models" / "stories260K" / "doc_stories260K.md").read_text()
    sample = re.search(r"-t 0\.0\n(.*?)\n```", doc, re.S).group(1)
    r = stories.generate([1], 120, stop_at_eos=False)
    text = stories.tokenizer.decode([1] + r.tokens)
    assert len(text) > 300
    assert sample.startswith(text), f"diverged at char {next(i for i, (a, b) in enumerate(zip(text, sample)) if a != b)}"


def test_streaming_matches_generate_and_sampling_is_seeded(stories):
    pieces: list[str] = []
    r = stories.generate("Once upon a time", 40, temperature=0.8, top_p=0.95, seed=7, on_text=pieces.append)
    assert "".join(pieces) == r.text
    again = stories.generate("Once upon a time", 40, temperature=0.8, top_p=0.95, seed=7)
    other = stories.generate("Once upon a time", 40, temperature=0.8, top_p=0.95, seed=8)
    assert again.tokens == r.tokens and other.tokens != r.tokens
    assert r.prefill_tokens_per_s > 0 and r.stop_reason in ("eos", "length")
    top1 = stories.generate("Once upon a time", 10, temperature=1.0, top_k=1, seed=3)
    assert top1.tokens == stories.generate("Once upon a time", 10).tokens[:len(top1.tokens)]


def test_bit_identical_across_thread_counts(stories):
    lb.set_num_threads(1)
    one = stories.forward(TOKENS)
    lb.set_num_threads(2)
    two = stories.forward(TOKENS)
    assert one.tobytes() == two.tobytes()


def test_quantized_linears_run_in_the_same_slots(stories):
    """Replacing every linear by its 8-bit RTN QuantizedTensor changes the logits only a little;
    a 2-bit one changes them a lot (the slots really use the quantized weights)."""
    ref = stories.forward(TOKENS)
    errs = {}
    for bits in (8, 2):
        w = dict(stories.weights)
        for name in stories.linear_names()[:-1]:
            w[name + ".weight"] = lb.quantize(np.asarray(w[name + ".weight"]), lb.RTNConfig(bits=bits, group_size=32))
        q = lb.LlamaModel(stories.config, w, stories.tokenizer)
        errs[bits] = rel(q.forward(TOKENS), ref)
        assert "quantized_linears=35" in repr(q)
    assert errs[8] < 0.01 < errs[2]


def test_bad_input(stories, tmp_path):
    with pytest.raises(ValueError, match="out of range"):
        stories.forward([1, 512])
    with pytest.raises(ValueError, match="empty"):
        stories.forward([])
    with pytest.raises(FileNotFoundError, match="nope"):
        load_model(tmp_path / "nope.gguf")
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="x.bin"):
        load_model(bad)
    other = tmp_path / "x.txt"
    other.write_text("hello")
    with pytest.raises(ValueError, match="unrecognised"):
        load_model(other)
    w = dict(stories.weights)
    del w["model.layers.3.mlp.up_proj.weight"]
    with pytest.raises(ValueError, match="up_proj"):
        lb.LlamaModel(stories.config, w)
    w = dict(stories.weights)
    w["model.norm.weight"] = np.ones(63, np.float32)
    with pytest.raises(ValueError, match=r"model.norm.weight has shape \(63,\)"):
        lb.LlamaModel(stories.config, w)
    with pytest.raises(ValueError, match="max_new_tokens"):
        list(stories.stream([1], -1))


# ---- config and rope scaling ------------------------------------------------------------

BASE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=10, rope_theta=500000.0, max_position_embeddings=131072)


def test_config_reads_both_transformers_styles():
    a = LlamaConfig.from_hf({**BASE, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                      "high_freq_factor": 4.0,
                                                      "original_max_position_embeddings": 8192}})
    b = LlamaConfig.from_hf({**{k: v for k, v in BASE.items() if k != "rope_theta"},
                             "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                                 "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                 "original_max_position_embeddings": 8192}})
    assert a.rope_theta == b.rope_theta == 500000.0 and a.head_dim == 16
    np.testing.assert_array_equal(rope_frequencies(a)[0], rope_frequencies(b)[0])
    assert LlamaConfig.from_hf({**BASE, "rope_scaling": {"type": "default"}}).rope_scaling is None
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        LlamaConfig.from_hf({**BASE, "model_type": "gpt2"})
    with pytest.raises(ValueError, match="missing"):
        LlamaConfig.from_hf({"hidden_size": 8})
    with pytest.raises(NotImplementedError, match="dynamic"):
        LlamaConfig.from_hf({**BASE, "rope_scaling": {"type": "dynamic", "factor": 2.0}})
    with pytest.raises(ValueError, match="multiple"):
        LlamaConfig.from_hf({**BASE, "num_key_value_heads": 3})


@pytest.mark.parametrize("scaling", [
    None,
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 8192},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
])
def test_rope_frequencies_match_transformers(scaling):
    pytest.importorskip("torch")
    tr = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    d = {**BASE, "rope_scaling": scaling}
    ours, att = rope_frequencies(LlamaConfig.from_hf(d))
    hf_cfg = tr.LlamaConfig(**{k: v for k, v in d.items() if k != "rope_scaling"},
                            rope_parameters={"rope_type": "default", "rope_theta": BASE["rope_theta"], **(scaling or {})})
    kind = (scaling or {}).get("rope_type", "default")
    if kind == "default":
        # transformers 5 keeps the default init inside the rotary-embedding module
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
        inv, hf_att = LlamaRotaryEmbedding.compute_default_rope_parameters(hf_cfg)
    else:
        inv, hf_att = ROPE_INIT_FUNCTIONS[kind](hf_cfg, "cpu")
    np.testing.assert_allclose(ours, inv.numpy(), rtol=2e-6)
    assert att == pytest.approx(hf_att, rel=1e-6)
