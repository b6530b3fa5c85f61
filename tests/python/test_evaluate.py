"""Evaluation on the real stories260K model: the two perplexity protocols against a direct
computation with the NumPy reference, KL divergence, per-layer errors, speed, and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import lowbit as lb
from lowbit.cli import main
from lowbit.data import eval_text, read_eval_text
from lowbit.evaluate import kl_divergence, layer_errors, perplexity, speed, windows
from lowbit.models import LlamaShape, forward_reference, load_model


@pytest.fixture(scope="module")
def story_text(shared_data_module):
    return (shared_data_module / "tinystories" / "TinyStoriesV2-GPT4-valid.head.txt").read_text()


@pytest.fixture(scope="module")
def rtn4(stories):
    w = dict(stories.weights)
    for name in stories.linear_names()[:-1]:
        w[name + ".weight"] = lb.quantize(np.asarray(w[name + ".weight"]), lb.RTNConfig(bits=3, group_size=32))
    return lb.LlamaModel(stories.config, w, stories.tokenizer)


def _ref_nll(m, tokens, first):
    c = m.config
    shape = LlamaShape(c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
                       c.vocab_size, c.rms_norm_eps, c.rope_theta, "interleaved")
    w = dict(m.weights)
    w["lm_head.weight"] = w["model.embed_tokens.weight"]
    lg = forward_reference(shape, w, tokens)
    lg = lg - lg.max(-1, keepdims=True)
    lp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    return [-lp[j, tokens[j + 1]] for j in range(first, len(tokens) - 1)]


def test_windows_follow_each_protocol():
    toks = np.arange(1000)
    g = windows(toks, 256, "gptq")
    assert len(g) == 3 and [w.start for w in g] == [0, 256, 512] and all(w.first_scored == 0 for w in g)
    c = windows(toks, 256, "llama.cpp", bos_id=1)
    assert [int(w.tokens[0]) for w in c] == [1, 1, 1] and int(c[1].tokens[1]) == 257 and c[0].first_scored == 128
    assert len(windows(toks, 256, "gptq", max_windows=2)) == 2
    with pytest.raises(ValueError, match="fewer than one window"):
        windows(toks[:10], 256)
    with pytest.raises(ValueError, match="protocol"):
        windows(toks, 256, "lm-eval")


def test_gptq_protocol_equals_direct_computation(stories, story_text):
    L = 128
    r = perplexity(stories, story_text, seq_len=L, max_windows=3)
    toks = stories.tokenizer.encode(story_text)
    nll = [x for i in range(3) for x in _ref_nll(stories, toks[i * L:(i + 1) * L], 0)]
    assert r.n_scored == 3 * (L - 1) == len(nll) and r.n_windows == 3
    assert r.nll == pytest.approx(np.mean(nll), rel=1e-5)
    assert r.ppl == pytest.approx(math.exp(np.mean(nll)), rel=1e-5)
    assert r.text_tokens == len(toks)


def test_llama_cpp_protocol_scores_second_half_after_bos(stories, story_text):
    L = 128
    r = perplexity(stories, story_text, seq_len=L, protocol="llama.cpp", max_windows=2)
    toks = stories.tokenizer.encode(story_text)
    nll = []
    for i in range(2):
        w = list(toks[i * L:(i + 1) * L])
        w[0] = 1  # the tokenizer adds BOS, so llama.cpp puts BOS first in every window
        nll += _ref_nll(stories, w, L // 2)
    assert r.n_scored == 2 * (L - 1 - L // 2) == len(nll)
    assert r.nll == pytest.approx(np.mean(nll), rel=1e-5)


def test_stories_perplexity_on_tinystories(stories, story_text):
    """The data card quotes ppl ~3.1 for this model with one BOS per story; the protocol's
    windows run across story boundaries (separators dropped), which costs a little: ~3.5 here.
    Uniform guessing is 512; with the literal '<|endoftext|>' lines left in it is ~6.4."""
    r = perplexity(stories, story_text.replace("<|endoftext|>\n", ""), seq_len=512)
    assert 3.0 < r.ppl < 4.0
    assert r.tokens_per_s > 0 and (r.peak_memory_mb is None or r.peak_memory_mb > 0)


def test_kl_divergence(stories, rtn4, story_text):
    same = kl_divergence(stories, stories, story_text, seq_len=128, max_windows=2)
    assert same.kld_mean == pytest.approx(0, abs=1e-9) and same.top1_agreement == 1.0 and same.delta_ppl == 0
    r = kl_divergence(rtn4, stories, story_text, seq_len=128, max_windows=2)
    assert r.kld_mean > 1e-3 and r.kld_p99 >= r.kld_median and r.kld_max >= r.kld_p99
    assert 0.3 < r.top1_agreement < 1.0
    assert r.ref_ppl == pytest.approx(same.ppl) and r.delta_ppl == pytest.approx(r.ppl - r.ref_ppl)
    p = perplexity(rtn4, story_text, seq_len=128, max_windows=2)
    assert r.ppl == pytest.approx(p.ppl, rel=1e-9)


def test_layer_errors(stories, rtn4):
    toks = stories.tokenizer.encode("Once upon a time, there was a little girl named Lily.")
    rows = layer_errors(rtn4, stories, toks)
    assert [r["layer"] for r in rows] == stories.linear_names()[:-1]
    assert all(0.01 < r["local_rel_err"] < 0.5 for r in rows)
    assert all(r["format"] == "int3" for r in rows)
    assert all(r["local_rel_err"] == 0 for r in layer_errors(stories, stories, toks))


def test_speed_figures(stories):
    s = speed(stories, prompt_tokens=16, new_tokens=4, repeats=1)
    assert s["prefill_tokens_per_s"] > 0 and s["decode_tokens_per_s"] > 0 and s["threads"] >= 1


def test_eval_text_protocols(tmp_path):
    raw = " = A = \n \n b c \n"
    assert eval_text(raw, "gptq") == " = A = \n\n\n \n\n\n b c \n"
    assert eval_text(raw, "llama.cpp") == raw
    p = tmp_path / "t.txt"
    p.write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_eval_text(p)
    with pytest.raises(FileNotFoundError, match="nope"):
        read_eval_text(tmp_path / "nope")


def test_cli_eval_generate_inspect(shared_data_module, capsys):
    model = str(shared_data_module / "models" / "stories260K" / "stories260K.bin")
    text = str(shared_data_module / "tinystories" / "TinyStoriesV2-GPT4-valid.head.txt")
    assert main(["eval", model, "--text", text, "--seq-len", "256", "--max-windows", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_windows"] == 2 and out["seq_len"] == 256 and 2 < out["ppl"] < 5
    assert main(["eval", model, "--text", text, "--seq-len", "128", "--max-windows", "1", "--reference", model]) == 0
    assert "top-1 agreement 100.00%" in capsys.readouterr().out
    assert main(["generate", model, "Once upon a time", "--max-new-tokens", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["tokens"]) <= 20 and out["text"]
    assert main(["inspect", model, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source_format"] == "llama2c" and out["n_tensors"] == 2 + 5 * 9  # embed, final norm, 9 per block (tied head)
    assert main(["inspect", model]) == 0
    assert "architecture: llama layers=5" in capsys.readouterr().out
    assert main(["eval", model, "--text", text, "--seq-len", "100000"]) == 2
    assert "max_position_embeddings" in capsys.readouterr().err
    assert main(["eval", model, "--text", text, "--dequantize"]) == 2
    assert "applies to .gguf files" in capsys.readouterr().err


def test_reset_peak_memory_starts_a_new_high_water_mark():
    from lowbit.evaluate import peak_memory_mb, reset_peak_memory

    big = np.ones(64 << 20, dtype=np.uint8)  # 64 MB, touched
    before = peak_memory_mb()
    del big
    if not reset_peak_memory():
        pytest.skip("this OS has no peak-memory reset")
    after = peak_memory_mb()
    assert before is not None and after is not None
    assert after < before - 32  # the 64 MB that was freed no longer counts
