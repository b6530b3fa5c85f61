"""The C++ layer loop (_core.LlamaRuntime) against LlamaModel's Python loop, which defines it:
bit-identical logits and KV cache for dense, grouped-int and GGUF-block weights, prefill and
decode, with and without a cache; rebuilt when weights change; fallback and errors."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit as lb
from lowbit.models.llama import LlamaModel


def run(model: LlamaModel, native: bool, prompt: list[int], steps: int = 3, cache_len: int = 96):
    """Logits of a prefill, `steps` decode steps (with cache), a cache-less forward, and the cache."""
    model.native_loop = native
    try:
        cache = model.new_cache(cache_len)
        out = [model.forward(prompt, cache)]
        out += [model.forward([prompt[i % len(prompt)]], cache) for i in range(steps)]
        out.append(model.forward(prompt, last_only=True))
        out.append(model.forward(prompt[:5]))
        return out, cache.k.copy(), cache.v.copy()
    finally:
        model.native_loop = True


def assert_same(model: LlamaModel, prompt: list[int]) -> None:
    (py_out, py_k, py_v), (c_out, c_k, c_v) = run(model, False, prompt), run(model, True, prompt)
    assert model.native_runtime() is not None
    for a, b in zip(py_out, c_out):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(py_k, c_k)
    np.testing.assert_array_equal(py_v, c_v)


PROMPT = [1, 403, 29, 77, 5, 18, 240, 9, 61, 33, 2, 150]


def test_dense_model_is_bit_identical(stories):
    assert_same(stories, PROMPT)


@pytest.mark.parametrize("act", ["int8", "float32"])
def test_quantized_model_is_bit_identical(stories, act):
    q = lb.quantize_model(stories, lb.RTNConfig(bits=4, group_size=32), progress=False)
    q.matmul_act = act
    assert_same(q, PROMPT)


def test_gguf_blocks_are_bit_identical(stories):
    g = LlamaModel(stories.config, dict(stories.weights), stories.tokenizer)
    for name, w in stories.weights.items():  # GGUF Q8_0 where the row length allows (not down_proj: 172)
        if name.startswith("model.layers.") and w.ndim == 2 and w.shape[1] % 32 == 0:
            g.set_weight(name, lb.quantize(w, lb.GGUFConfig(type="Q8_0")))
    assert isinstance(g.native_runtime(), lb._core.LlamaRuntime)
    assert_same(g, PROMPT)


@pytest.mark.parametrize("cfg", [lb.BnbConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_blocksize=32),
                                 lb.HQQConfig(nbits=4, group_size=32), lb.FP8Config()],
                         ids=["nf4", "hqq4", "fp8"])
def test_table_lookup_formats_are_bit_identical(stories, cfg):
    q = lb.quantize_model(stories, cfg, progress=False)
    assert isinstance(q.native_runtime(), lb._core.LlamaRuntime)
    assert_same(q, PROMPT)


def test_one_and_two_threads_agree(stories):
    out = []
    for t in (1, 2):
        lb.set_num_threads(t)
        out.append(stories.forward(PROMPT))
    np.testing.assert_array_equal(out[0], out[1])


def test_rebuilt_when_a_weight_or_the_activation_mode_changes(stories):
    q = lb.quantize_model(stories, lb.RTNConfig(bits=4, group_size=32), progress=False)
    rt = q.native_runtime()
    assert q.native_runtime() is rt  # cached
    before = q.forward(PROMPT)
    name = "model.layers.0.mlp.down_proj.weight"
    q.set_weight(name, stories.weights[name])  # back to dense: a different object
    assert q.native_runtime() is not rt
    after = q.forward(PROMPT)
    assert not np.array_equal(before, after)
    q.native_loop = False
    np.testing.assert_array_equal(q.forward(PROMPT), after)
    q.native_loop = True
    rt2 = q.native_runtime()
    q.matmul_act = "float32"
    assert q.native_runtime() is not rt2


def test_a_linear_without_a_cpp_kernel_falls_back_to_python(stories):
    q = lb.quantize_model(stories, lb.RTNConfig(bits=4, group_size=32), progress=False)
    w = q.weights["model.layers.1.self_attn.o_proj.weight"].prepare()
    packed = w.__dict__["_kernel"]
    w.__dict__["_kernel"] = lambda x, act: packed(x, act)  # a kernel only Python can call
    assert q.native_runtime() is None
    q.native_loop = False
    ref = q.forward(PROMPT)
    q.native_loop = True
    np.testing.assert_array_equal(q.forward(PROMPT), ref)


def test_an_act_the_kernels_refuse_raises_as_in_python(stories):
    q = lb.quantize_model(stories, lb.RTNConfig(bits=4, group_size=32), progress=False)
    q.matmul_act = "int8_token"  # W8A8 needs 8-bit per-channel weights
    errors = []
    for native in (False, True):
        q.native_loop = native
        with pytest.raises((ValueError, NotImplementedError)) as e:
            q.forward(PROMPT)
        errors.append((type(e.value), str(e.value)))
    assert errors[0] == errors[1] and "int8_token" in errors[0][1]


def test_cache_overflow_and_empty_input_raise(stories):
    cache = stories.new_cache(8)
    with pytest.raises(ValueError, match="exceeds the KV cache"):
        stories.forward(list(range(1, 12)), cache)
    with pytest.raises(ValueError, match="must not be empty"):
        stories.forward([], cache)


def test_runtime_checks_its_arguments(stories):
    rt = stories.native_runtime()
    c = stories.config
    x = np.zeros((2, c.hidden_size), np.float32)
    with pytest.raises(ValueError, match="hidden"):
        rt.forward(np.zeros((2, c.hidden_size + 1), np.float32), 0)
    with pytest.raises(TypeError, match="float32"):
        rt.forward(x.astype(np.float64), 0)
    with pytest.raises(ValueError, match="start at 0"):
        rt.forward(x.copy(), 3)
    bad = np.zeros((c.num_hidden_layers + 1, 8, c.num_key_value_heads, c.head_dim), np.float32)
    with pytest.raises(ValueError, match="cache_k"):
        rt.forward(x.copy(), 0, bad, bad)


def test_model_pickles_and_copies_without_its_runtime(stories):
    import copy
    import pickle

    q = lb.quantize_model(stories, lb.RTNConfig(bits=4, group_size=32), progress=False)
    ref = q.forward(PROMPT)
    assert q.native_runtime() is not None
    for r in (pickle.loads(pickle.dumps(q)), copy.deepcopy(q)):
        np.testing.assert_array_equal(r.forward(PROMPT), ref)
