"""The shape and hyper-parameters of a Llama-family decoder, read from Hugging Face config keys,
and its rotary-embedding frequencies (including the rope-scaling variants real configs use).

Field names follow transformers' ``LlamaConfig``. Both config styles are read: transformers 4
(``rope_theta`` + ``rope_scaling``) and transformers 5 (``rope_parameters``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["LlamaConfig", "SUPPORTED_MODEL_TYPES", "rope_frequencies"]

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")


@dataclass(frozen=True)
class LlamaConfig:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False          # q/k/v biases (Qwen2 has them)
    mlp_bias: bool = False
    model_type: str = "llama"
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    # llama2.c checkpoints keep q/k rows in the interleaved (adjacent pairs) RoPE order;
    # Hugging Face and GGUF-after-unpermute use rotate-half order.
    rope_interleaved: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "vocab_size", "head_dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"config {name} must be a positive int, got {v!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                             f"num_key_value_heads ({self.num_key_value_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"model_type {self.model_type!r} is not supported; supported: {SUPPORTED_MODEL_TYPES}")
        rope_frequencies(self)  # validates rope_scaling early

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @classmethod
    def from_hf(cls, d: Mapping[str, Any]) -> "LlamaConfig":
        """From a ``config.json`` dict. ValueError names a missing or unsupported key."""
        model_type = d.get("model_type", "llama")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is not supported; supported: {SUPPORTED_MODEL_TYPES}")
        missing = [k for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                               "vocab_size") if k not in d]
        if missing:
            raise ValueError(f"config is missing {missing}")
        heads = int(d["num_attention_heads"])
        rope_params = dict(d.get("rope_parameters") or {})
        theta = float(rope_params.pop("rope_theta", d.get("rope_theta", 10000.0)))
        scaling = d.get("rope_scaling") or (rope_params if rope_params else None)
        if scaling is not None:
            scaling = dict(scaling)
            kind = scaling.get("rope_type", scaling.get("type", "default"))
            scaling = None if kind == "default" else {**scaling, "rope_type": kind}
        eos = d.get("eos_token_id")
        return cls(
            hidden_size=int(d["hidden_size"]), intermediate_size=int(d["intermediate_size"]),
            num_hidden_layers=int(d["num_hidden_layers"]), num_attention_heads=heads,
            num_key_value_heads=int(d.get("num_key_value_heads") or heads), vocab_size=int(d["vocab_size"]),
            head_dim=int(d.get("head_dim") or int(d["hidden_size"]) // heads),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)), rope_theta=theta, rope_scaling=scaling,
            max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            attention_bias=bool(d.get("attention_bias", model_type == "qwen2")), mlp_bias=bool(d.get("mlp_bias", False)),
            model_type=model_type, bos_token_id=d.get("bos_token_id"),
            eos_token_id=eos[0] if isinstance(eos, list) and eos else eos,
            rope_interleaved=bool(d.get("rope_interleaved", False)),
        )

    def to_hf(self) -> dict[str, Any]:
        """A ``config.json`` dict (transformers 4 style keys, which transformers 5 also reads)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("extra", "rope_interleaved")}
        d["architectures"] = {"qwen2": ["Qwen2ForCausalLM"], "mistral": ["MistralForCausalLM"]}.get(
            self.model_type, ["LlamaForCausalLM"])
        d["hidden_act"] = "silu"
        if self.rope_interleaved:
            d["rope_interleaved"] = True
        return d


def rope_frequencies(cfg: LlamaConfig) -> tuple[np.ndarray, float]:
    """``(inv_freq float32 [head_dim/2], attention_scaling)`` as transformers computes them.

    Supports the default rotary embedding and the ``linear``, ``llama3`` (Llama 3.1+) and
    ``yarn`` scalings; ``dynamic`` NTK (which depends on the running sequence length) raises
    NotImplementedError.
    """
    d, base = cfg.head_dim, cfg.rope_theta
    exps = np.arange(0, d, 2, dtype=np.int64).astype(np.float32) / d
    inv = 1.0 / (base ** exps.astype(np.float64))
    s = cfg.rope_scaling
    if not s:
        return inv.astype(np.float32), 1.0
    kind = s.get("rope_type", s.get("type"))
    factor = float(s.get("factor", 1.0))
    if kind == "linear":
        return (inv / factor).astype(np.float32), 1.0
    if kind == "llama3":
        low, high = float(s.get("low_freq_factor", 1.0)), float(s.get("high_freq_factor", 4.0))
        old = float(s.get("original_max_position_embeddings", 8192))
        wavelen = 2 * math.pi / inv
        out = np.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * out / factor + smooth * out
        medium = ~(wavelen < old / high) & ~(wavelen > old / low)
        return np.where(medium, smoothed, out).astype(np.float32), 1.0
    if kind == "yarn":
        old = float(s.get("original_max_position_embeddings") or cfg.max_position_embeddings)
        beta_fast, beta_slow = float(s.get("beta_fast", 32.0)), float(s.get("beta_slow", 1.0))

        def mscale(scale: float, m: float = 1.0) -> float:
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        att = s.get("attention_factor")
        if att is None:
            if s.get("mscale") and s.get("mscale_all_dim"):
                att = mscale(factor, s["mscale"]) / mscale(factor, s["mscale_all_dim"])
            else:
                att = mscale(factor)

        def corr_dim(n_rot: float) -> float:
            return d * math.log(old / (n_rot * 2 * math.pi)) / (2 * math.log(base))

        lo, hi = corr_dim(beta_fast), corr_dim(beta_slow)
        if s.get("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, d - 1)
        if lo == hi:
            hi += 0.001
        ramp = np.clip((np.arange(d // 2, dtype=np.float64) - lo) / (hi - lo), 0, 1)
        extrap = 1 - ramp
        out = (inv / factor) * (1 - extrap) + inv * extrap
        return out.astype(np.float32), float(att)
    if kind == "dynamic":
        raise NotImplementedError("rope_scaling 'dynamic' (NTK, sequence-length dependent) is not supported yet")
    raise ValueError(f"unknown rope_scaling type {kind!r}; supported: linear, llama3, yarn")
