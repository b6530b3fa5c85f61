"""The NumPy reference forward pass on the real stories260K model: greedy decoding reproduces
the sample its authors documented (doc_stories260K.md, llama2.c run.c at temperature 0)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lowbit.models.llama2c import read_llama2c, read_llama2c_vocab
from lowbit.models.llama_ref import LlamaShape, _rope, forward_reference, greedy_reference


@pytest.fixture(scope="module")
def model(shared_data_module):
    d = shared_data_module / "models" / "stories260K"
    cfg, t = read_llama2c(d / "stories260K.bin")
    vocab = read_llama2c_vocab(d / "tok512.bin", cfg.vocab_size)
    shape = LlamaShape(cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size)
    doc = (d / "doc_stories260K.md").read_text()
    sample = re.search(r"-t 0\.0\n(.*?)\n```", doc, re.S).group(1)
    return shape, t, vocab, sample


def test_greedy_decoding_reproduces_the_documented_sample(model):
    shape, t, vocab, sample = model
    tokens = greedy_reference(shape, t, [1], 120, stop=1)
    text = vocab.decode(tokens)
    assert len(text) > 300
    assert sample.startswith(text), f"diverged at char {next(i for i, (a, b) in enumerate(zip(text, sample)) if a != b)}"


def test_causality_and_prefix_consistency(model):
    shape, t, _, _ = model
    toks = [1, 400, 27, 301, 90, 12]
    full = forward_reference(shape, t, toks)
    part = forward_reference(shape, t, toks[:3])
    np.testing.assert_allclose(full[:3], part, rtol=1e-10, atol=1e-10)


def test_rope_variants_rotate_pairs():
    x = np.random.default_rng(0).standard_normal((5, 2, 8))
    for kind in ("interleaved", "half"):
        y = _rope(x, LlamaShape(16, 1, 2, 2, 10, rope=kind))
        np.testing.assert_allclose(y[0], x[0])  # position 0: identity
        np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1))  # rotations keep norms


def test_vocab_errors(tmp_path, shared_data_module):
    p = tmp_path / "tok.bin"
    p.write_bytes((shared_data_module / "models" / "stories260K" / "tok512.bin").read_bytes()[:100])
    with pytest.raises(ValueError, match="tok.bin"):
        read_llama2c_vocab(p, 512)
