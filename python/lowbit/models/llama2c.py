"""Reader for llama2.c ``.bin`` checkpoints (karpathy/llama2.c "legacy" export, float32).

Layout: a 7 x int32 header ``dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
seq_len`` (a negative vocab_size means the classifier is stored separately), then float32
arrays in this order: token embedding, attention RMSNorm weights, wq, wk, wv, wo, FFN RMSNorm
weights, w1, w2, w3, final RMSNorm weight, the RoPE tables (freq_cis real and imaginary,
unused), and the classifier if unshared. Weights are ``[out, in]`` row-major, as PyTorch.

Tensors are returned under Hugging Face Llama names (``model.layers.0.self_attn.q_proj.weight``
...), memory-mapped read-only. (Note: llama2.c's RoPE pairs adjacent dimensions, so q/k are
*not* in the Hugging Face rotate-half order; the model runtime accounts for it.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Llama2cConfig", "read_llama2c"]

_HEADER_INTS = 7


@dataclass(frozen=True)
class Llama2cConfig:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_size


def read_llama2c(path: str | os.PathLike[str]) -> tuple[Llama2cConfig, dict[str, np.ndarray]]:
    """Read a llama2.c checkpoint: ``(config, {hf_name: float32 array})``.

    Raises FileNotFoundError, or ValueError naming the file when the header is implausible or
    the file size does not match what the header implies (truncated or not a llama2.c file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    size = path.stat().st_size
    if size < 4 * _HEADER_INTS:
        raise ValueError(f"{path}: {size} bytes is too small for a llama2.c header")
    header = np.fromfile(path, dtype="<i4", count=_HEADER_INTS)
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = (int(v) for v in header)
    shared = vocab > 0
    vocab = abs(vocab)
    if min(dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len) <= 0 or dim % n_heads or n_heads % n_kv:
        raise ValueError(f"{path}: not a llama2.c checkpoint (header {header.tolist()})")
    cfg = Llama2cConfig(dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len, shared)
    hs, kv = cfg.head_size, cfg.kv_dim
    L = n_layers
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("embed", (vocab, dim)), ("rms_att", (L, dim)), ("wq", (L, dim, dim)), ("wk", (L, kv, dim)),
        ("wv", (L, kv, dim)), ("wo", (L, dim, dim)), ("rms_ffn", (L, dim)), ("w1", (L, hidden, dim)),
        ("w2", (L, dim, hidden)), ("w3", (L, hidden, dim)), ("rms_final", (dim,)),
        ("freq_cis_real", (seq_len, hs // 2)), ("freq_cis_imag", (seq_len, hs // 2)),
    ]
    if not shared:
        shapes.append(("wcls", (vocab, dim)))
    n_floats = sum(int(np.prod(s)) for _, s in shapes)
    expect = 4 * (_HEADER_INTS + n_floats)
    if size != expect:
        raise ValueError(f"{path}: {size} bytes, but its header {header.tolist()} implies {expect} "
                         f"(truncated, or not a llama2.c float32 checkpoint)")
    data = np.memmap(path, dtype="<f4", mode="r", offset=4 * _HEADER_INTS, shape=(n_floats,))
    raw: dict[str, np.ndarray] = {}
    off = 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        raw[name] = data[off:off + n].reshape(shape)
        off += n

    t: dict[str, np.ndarray] = {"model.embed_tokens.weight": raw["embed"], "model.norm.weight": raw["rms_final"]}
    t["lm_head.weight"] = raw["embed"] if shared else raw["wcls"]
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = raw["rms_att"][i]
        t[p + "self_attn.q_proj.weight"] = raw["wq"][i]
        t[p + "self_attn.k_proj.weight"] = raw["wk"][i]
        t[p + "self_attn.v_proj.weight"] = raw["wv"][i]
        t[p + "self_attn.o_proj.weight"] = raw["wo"][i]
        t[p + "post_attention_layernorm.weight"] = raw["rms_ffn"][i]
        t[p + "mlp.gate_proj.weight"] = raw["w1"][i]
        t[p + "mlp.down_proj.weight"] = raw["w2"][i]
        t[p + "mlp.up_proj.weight"] = raw["w3"][i]
    return cfg, t
