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

import heapq
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


@dataclass(frozen=True)
class Llama2cVocab:
    """A llama2.c tokenizer file (``tok512.bin``): pieces and their BPE merge scores."""

    pieces: tuple[bytes, ...]
    scores: tuple[float, ...]
    max_token_length: int

    def decode_piece(self, prev_token: int, token: int) -> bytes:
        """The bytes of ``token`` as llama2.c's ``decode`` prints them after ``prev_token``:
        the leading space is dropped right after BOS (id 1) and ``<0xXX>`` pieces are raw bytes."""
        piece = self.pieces[token]
        if prev_token == 1 and piece.startswith(b" "):
            piece = piece[1:]
        if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
            try:
                return bytes([int(piece[3:5], 16)])
            except ValueError:
                pass
        return piece

    def encode(self, text: str, bos: bool = True) -> list[int]:
        """llama2.c's encoder: a dummy-prefix space, one token per UTF-8 character (raw bytes
        + 3 when the character has no piece), then repeatedly merge the adjacent pair whose
        merged piece has the highest score (the leftmost such pair on ties).

        Same result as llama2.c's quadratic rescan, in O(n log n): candidate pairs sit in a heap
        keyed by (-score, left position); entries made stale by earlier merges are skipped.
        """
        lookup = self._lookup()
        toks = [1] if bos else []
        ids = [lookup[b" "]] if text and b" " in lookup else []
        for ch in text:
            b = ch.encode("utf-8")
            ids.extend([lookup[b]] if b in lookup else [x + 3 for x in b])
        n = len(ids)
        nxt = list(range(1, n + 1))
        nxt[-1:] = [-1]
        prv = list(range(-1, n - 1))
        heap: list[tuple[float, int, int, int, int]] = []

        def push(i: int) -> None:
            j = nxt[i]
            if j != -1:
                m = lookup.get(self.pieces[ids[i]] + self.pieces[ids[j]])
                if m is not None:
                    heapq.heappush(heap, (-self.scores[m], i, ids[i], ids[j], m))

        for i in range(n - 1):
            push(i)
        alive = [True] * n
        while heap:
            _, i, a, b, m = heapq.heappop(heap)
            j = nxt[i]
            # stale: i was merged away, or i / its right neighbour changed since the push
            # (a merged piece is longer than its parts, so ids never change back)
            if not alive[i] or ids[i] != a or j == -1 or ids[j] != b:
                continue
            ids[i], alive[j] = m, False
            nxt[i] = nxt[j]
            if nxt[j] != -1:
                prv[nxt[j]] = i
            if prv[i] != -1:
                push(prv[i])
            push(i)
        return toks + [t for t, ok in zip(ids, alive) if ok]

    def _lookup(self) -> dict[bytes, int]:
        if not hasattr(self, "_piece_ids"):
            object.__setattr__(self, "_piece_ids", {p: i for i, p in enumerate(self.pieces)})
        return self._piece_ids  # type: ignore[attr-defined]

    def decode(self, tokens: "list[int]") -> str:
        """Concatenate the pieces of a token sequence that starts with BOS."""
        out = b"".join(self.decode_piece(p, t) for p, t in zip(tokens[:-1], tokens[1:]))
        return out.decode("utf-8", errors="replace")


def read_llama2c_vocab(path: str | os.PathLike[str], vocab_size: int) -> Llama2cVocab:
    """Read llama2.c's tokenizer file: int32 max_token_length, then per token float32 score,
    int32 length and the piece's bytes. ValueError names the file if it ends early."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 4:
        raise ValueError(f"{path}: too small for a llama2.c tokenizer")
    max_len = int(np.frombuffer(data, "<i4", 1, 0)[0])
    pieces, scores, off = [], [], 4
    for i in range(vocab_size):
        if off + 8 > len(data):
            raise ValueError(f"{path}: ends after {i} of {vocab_size} tokens")
        score = float(np.frombuffer(data, "<f4", 1, off)[0])
        n = int(np.frombuffer(data, "<i4", 1, off + 4)[0])
        off += 8
        if n < 0 or off + n > len(data):
            raise ValueError(f"{path}: token {i} has a bad length {n}")
        pieces.append(data[off:off + n])
        scores.append(score)
        off += n
    return Llama2cVocab(tuple(pieces), tuple(scores), max_len)


def read_llama2c_model(path: str | os.PathLike[str], tokenizer_path: str | os.PathLike[str] | None = None):
    """A llama2.c checkpoint as :class:`~lowbit.models.model_files.ModelFiles` (HF config keys).

    The tokenizer is ``tokenizer_path``, else ``tok{vocab_size}.bin`` or ``tokenizer.bin`` next
    to the checkpoint when present (else no tokenizer).
    """
    from .model_files import ModelFiles
    from .tokenizer import Tokenizer

    path = Path(path)
    cfg, tensors = read_llama2c(path)
    if tokenizer_path is None:
        for cand in (path.parent / f"tok{cfg.vocab_size}.bin", path.parent / "tokenizer.bin"):
            if cand.is_file():
                tokenizer_path = cand
                break
    tok = Tokenizer.from_llama2c(read_llama2c_vocab(tokenizer_path, cfg.vocab_size)) if tokenizer_path else None
    config = {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": cfg.dim,
        "intermediate_size": cfg.hidden_dim, "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_size, "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.seq_len, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": cfg.shared_classifier, "bos_token_id": 1, "eos_token_id": 2,
        "rope_interleaved": True, "torch_dtype": "float32",
    }
    if cfg.shared_classifier:
        tensors = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
    return ModelFiles(path, "llama2c", config, tensors, tok,
                      {"tokenizer_path": str(tokenizer_path) if tokenizer_path else None})
