"""A plain NumPy forward pass of a Llama-family decoder: the reference the C++ runtime will
be tested against (not the fast path).

RMSNorm, rotary embeddings, grouped-query causal attention and a SwiGLU MLP, in float64.
``rope="interleaved"`` rotates adjacent dimension pairs (llama2.c / Meta checkpoints);
``"half"`` rotates dimension i with i + head_dim/2 (Hugging Face checkpoints).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LlamaShape", "forward_reference", "greedy_reference"]


@dataclass(frozen=True)
class LlamaShape:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope: str = "interleaved"

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


def _rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rope(x: np.ndarray, shape: LlamaShape) -> np.ndarray:
    """x: (T, heads, head_dim), positions 0..T-1."""
    T, _, hd = x.shape
    freq = shape.rope_theta ** (-np.arange(0, hd, 2) / hd)          # (hd/2,)
    ang = np.arange(T)[:, None] * freq[None, :]                     # (T, hd/2)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if shape.rope == "interleaved":
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out
    a, b = x[..., : hd // 2], x[..., hd // 2:]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


def forward_reference(shape: LlamaShape, t: Mapping[str, np.ndarray], tokens: Sequence[int]) -> np.ndarray:
    """Logits (T, vocab) for a token sequence, every position attending causally to its past."""
    f = {k: np.asarray(v, dtype=np.float64) for k, v in t.items()}
    T = len(tokens)
    hd, nh, nkv = shape.head_dim, shape.n_heads, shape.n_kv_heads
    x = f["model.embed_tokens.weight"][np.asarray(tokens)]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(shape.n_layers):
        p = f"model.layers.{i}."
        h = _rmsnorm(x, f[p + "input_layernorm.weight"], shape.norm_eps)
        q = _rope((h @ f[p + "self_attn.q_proj.weight"].T).reshape(T, nh, hd), shape)
        k = _rope((h @ f[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, hd), shape)
        v = (h @ f[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, hd)
        rep = nh // nkv  # query head j uses kv head j // rep
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        s = np.einsum("thd,uhd->htu", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        o = np.einsum("htu,uhd->thd", s, v).reshape(T, nh * hd)
        x = x + o @ f[p + "self_attn.o_proj.weight"].T
        h = _rmsnorm(x, f[p + "post_attention_layernorm.weight"], shape.norm_eps)
        g, u = h @ f[p + "mlp.gate_proj.weight"].T, h @ f[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ f[p + "mlp.down_proj.weight"].T
    x = _rmsnorm(x, f["model.norm.weight"], shape.norm_eps)
    return x @ f["lm_head.weight"].T


def greedy_reference(shape: LlamaShape, t: Mapping[str, np.ndarray], prompt: Sequence[int], steps: int,
                     stop: int | None = None) -> list[int]:
    """Greedy decoding by re-running the whole sequence each step (slow, simple, exact)."""
    tokens = list(prompt)
    for _ in range(steps):
        nxt = int(np.argmax(forward_reference(shape, t, tokens)[-1]))
        if stop is not None and nxt == stop:
            break
        tokens.append(nxt)
    return tokens
