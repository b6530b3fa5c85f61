"""Cross-check against a real peer: lowbit's forward pass gives the logits of transformers
(PyTorch CPU, float32) on the same weights and tokens, for stories260K and SmolLM2-135M.

Tolerance: 1e-4 relative (‖Δ‖/‖ref‖ over all logits). Both sides compute in float32 with
different summation orders; the observed differences are ~1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lowbit.models import fetch_model, load_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                        "ignore::UserWarning")


def rel(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))


def _interleaved_to_half(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder q/k rows from adjacent-pair RoPE (llama2.c) to rotate-half (transformers)."""
    rows, d = w.shape
    hd = rows // n_heads
    return w.reshape(n_heads, hd // 2, 2, d).transpose(0, 2, 1, 3).reshape(rows, d)


def test_stories260k_logits_equal_transformers(shared_data_module):
    m = load_model(shared_data_module / "models" / "stories260K" / "stories260K.bin")
    c = m.config
    hf_cfg = transformers.LlamaConfig(
        hidden_size=c.hidden_size, intermediate_size=c.intermediate_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
        vocab_size=c.vocab_size, rms_norm_eps=c.rms_norm_eps, max_position_embeddings=c.max_position_embeddings,
        tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta})
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    sd = {}
    for k, v in m.weights.items():
        v = np.array(v, dtype=np.float32)
        if k.endswith(("q_proj.weight", "k_proj.weight")):
            v = _interleaved_to_half(v, c.num_attention_heads if "q_proj" in k else c.num_key_value_heads)
        sd[k] = torch.from_numpy(v)
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected and all("rotary" in k for k in missing)
    toks = m.tokenizer.encode("Once upon a time, there was a little dog named Max. He liked to play in the park.")
    with torch.no_grad():
        want = hf(torch.tensor([toks])).logits[0].numpy()
    assert rel(m.forward(toks), want) < 1e-4


@pytest.fixture(scope="module")
def smollm2_pair():
    path = fetch_model("smollm2-135m")
    ours = load_model(path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                           dtype=torch.float32).eval()
    return ours, hf


def test_smollm2_logits_equal_transformers(smollm2_pair, shared_data_module):
    ours, hf = smollm2_pair
    text = (shared_data_module / "wikitext-2-raw" / "wiki.test.raw").read_text()[:600]
    toks = ours.tokenizer.encode(text)[:96]
    with torch.no_grad():
        want = hf(torch.tensor([toks])).logits[0].numpy()
    got = ours.forward(toks)
    assert got.shape == want.shape
    assert rel(got, want) < 1e-4
    assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.99


def test_smollm2_greedy_generation_equals_transformers(smollm2_pair):
    ours, hf = smollm2_pair
    prompt = ours.tokenizer.encode("The capital of France is")
    r = ours.generate(prompt, 16, stop_at_eos=False)
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, min_new_tokens=16)
    assert r.tokens == out[0, len(prompt):].tolist()
