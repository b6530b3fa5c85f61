"""llama.cpp's quantization mixtures: which ggml type each tensor of a Llama-family model gets.

``llama-quantize model.gguf out.gguf Q4_K_M`` does not quantize every tensor to Q4_K: its
``llama_tensor_get_type`` (src/llama-quant.cpp) picks a type per tensor from the mixture
(``llama_ftype``), the tensor's role and layer, and its row length. :func:`tensor_type` is that
rule for dense Llama-family models (llama, mistral, qwen2, smollm: no experts, no fused qkv),
written from llama.cpp's source and checked against the library itself (tests/python/
test_gguf_mixtures.py; the fixture records the llama.cpp version).

The rules, with ``i`` the layer and ``n`` the layer count and
``use_more_bits(i, n) = i < n/8 or i >= 7n/8 or (i - n/8) % 3 == 2`` (integer division):

* not quantized: 1-D tensors, norms, names not ending in ``weight``;
* ``output.weight`` (or ``token_embd.weight`` when the embeddings are tied): Q8_0 if the row
  length is not a multiple of the default type's block, else Q6_K (kept if the default is Q8_0);
* ``token_embd.weight`` (untied): the default type;
* ``attn_v``: Q2_K -> Q4_K if GQA >= 4 else Q3_K; Q3_K_M -> Q5_K for i < 2 else Q4_K;
  Q3_K_L -> Q5_K; Q4_K_M / Q5_K_M -> Q6_K if use_more_bits; Q4_K_S -> Q5_K for i < 4;
  a 70B Llama (80 layers, GQA) bumps Q3_K/Q4_K to Q5_K;
* ``ffn_down``: Q2_K -> Q3_K; Q3_K_M -> Q5_K for i < n/16 else Q4_K; Q3_K_L -> Q5_K;
  Q4_K_M / Q5_K_M -> Q6_K if use_more_bits; Q4_K_S -> Q5_K for i < n/8; Q4_0 / Q5_0 with an
  importance matrix -> Q4_1 / Q5_1 for i < n/8;
* ``attn_output``: Q2_K -> Q3_K, Q3_K_M -> Q4_K, Q3_K_L -> Q5_K;
* last, when the row length (``ne[0]``, the input features) is not a multiple of the type's
  block: Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and F16 if even that
  block does not divide it.

Type names are ggml's (``"q4_K"``, ``"q8_0"``, ``"f16"``): the names of lowbit's format table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MIXTURES", "PLAIN_TYPES", "FILE_TYPES", "BLOCK_SIZES", "default_type", "file_type_id", "ggml_type_name",
           "gguf_tensor_name", "tensor_type", "hf_layer_type", "expand_layer_config"]

# mixture (as llama-quantize spells it) -> (llama_ftype id, default ggml type)
MIXTURES: dict[str, tuple[int, str]] = {
    "Q4_0": (2, "q4_0"), "Q4_1": (3, "q4_1"), "Q8_0": (7, "q8_0"), "Q5_0": (8, "q5_0"), "Q5_1": (9, "q5_1"),
    "Q2_K": (10, "q2_K"), "Q3_K_S": (11, "q3_K"), "Q3_K_M": (12, "q3_K"), "Q3_K_L": (13, "q3_K"),
    "Q4_K_S": (14, "q4_K"), "Q4_K_M": (15, "q4_K"), "Q5_K_S": (16, "q5_K"), "Q5_K_M": (17, "q5_K"),
    "Q6_K": (18, "q6_K"),
}
# single ggml types a GGUFConfig may name, and the llama_ftype a file made of them carries
PLAIN_TYPES: dict[str, int | None] = {
    "F32": 0, "F16": 1, "BF16": 32, "Q4_0": 2, "Q4_1": 3, "Q5_0": 8, "Q5_1": 9, "Q8_0": 7, "Q2_K": 10,
    "Q3_K": None, "Q4_K": None, "Q5_K": None, "Q6_K": 18, "IQ4_NL": 25,
}
FILE_TYPES = {name: ftype for name, (ftype, _) in MIXTURES.items()}
# elements per block of the ggml types the rules can produce
BLOCK_SIZES: dict[str, int] = {
    "f32": 1, "f16": 1, "bf16": 1, "q4_0": 32, "q4_1": 32, "q5_0": 32, "q5_1": 32, "q8_0": 32, "iq4_nl": 32,
    "q2_K": 256, "q3_K": 256, "q4_K": 256, "q5_K": 256, "q6_K": 256,
}
_FALLBACK = {"q2_K": "q4_0", "q3_K": "q4_0", "q4_K": "q5_0", "q5_K": "q5_1", "q6_K": "q8_0"}

_BLK = re.compile(r"blk\.(\d+)\.")


def ggml_type_name(type_name: str) -> str:
    """``"Q4_K"`` / ``"q4_k"`` -> ``"q4_K"`` (ggml's spelling: lowercase, capital K)."""
    t = type_name.lower()
    return t[:-2] + "_K" if t.endswith("_k") else t


def default_type(mixture: str) -> str:
    """The ggml type most tensors of ``mixture`` get (``"Q4_K_M"`` -> ``"q4_K"``); a plain type
    (``"Q8_0"``, ``"F16"``) is its own default."""
    m = mixture.upper()
    if m in MIXTURES:
        return MIXTURES[m][1]
    if m in PLAIN_TYPES:
        return ggml_type_name(m)
    raise ValueError(f"unknown GGUF type or mixture {mixture!r}; known: {', '.join([*MIXTURES, *PLAIN_TYPES])}")


def file_type_id(mixture: str) -> int | None:
    """``general.file_type`` (llama_ftype) of a file quantized with ``mixture``; None when
    llama.cpp has no ftype for it (a uniform Q3_K/Q4_K/Q5_K file)."""
    m = mixture.upper()
    if m in MIXTURES:
        return MIXTURES[m][0]
    if m in PLAIN_TYPES:
        return PLAIN_TYPES[m]
    raise ValueError(f"unknown GGUF type or mixture {mixture!r}")


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _fallback(t: str, ncols: int) -> str:
    """llama.cpp's ``tensor_type_fallback``: a type whose block divides the row length."""
    if ncols % BLOCK_SIZES[t] == 0:
        return t
    if t not in _FALLBACK:
        raise ValueError(f"row length {ncols} is not a multiple of {t}'s block size {BLOCK_SIZES[t]} and llama.cpp "
                         f"defines no fallback type for {t}")
    t = _FALLBACK[t]
    return t if ncols % BLOCK_SIZES[t] == 0 else "f16"


def _quantizable(name: str, ndim: int) -> bool:
    return ndim >= 2 and name.endswith("weight") and "_norm.weight" not in name


def tensor_type(name: str, shape: tuple[int, ...], n_layers: int, mixture: str, *, tied_embeddings: bool = False,
                n_gqa: int = 1, has_imatrix: bool = False, is_70b: bool = False) -> str | None:
    """The ggml type llama.cpp's quantizer gives tensor ``name`` under ``mixture``.

    A plain type that is no llama.cpp file type (``"Q4_K"``, ``"Q3_K"``, ``"IQ4_NL"``) gives every
    quantizable tensor that type (with the row-length fallback).

    Args:
        name: GGUF tensor name (``"blk.3.attn_v.weight"``, ``"token_embd.weight"``).
        shape: the tensor's NumPy shape ``(out_features, in_features)``: the row length is the
            last entry (GGUF's ``ne[0]``).
        n_layers: decoder blocks of the model.
        mixture: ``"Q4_K_M"`` ... or a plain type ``"Q8_0"``; case-insensitive.
        tied_embeddings: the model has no ``output.weight`` (token_embd is also the output).
        n_gqa: query heads per key/value head.
        has_imatrix: an importance matrix is used (changes the Q4_0/Q5_0 ffn_down rule).
        is_70b: llama.cpp's LLM_TYPE_70B (a Llama with 80 layers and GQA).

    Returns:
        the ggml type name (``"q4_K"``, ``"q8_0"``, ``"f16"``), or None for a tensor llama.cpp
        leaves as it is (norms, 1-D tensors).
    """
    if not _quantizable(name, len(shape)):
        return None
    m = mixture.upper()
    new = default_type(m)
    if new in ("f32", "f16", "bf16"):
        return new
    ncols = int(shape[-1])
    if m not in MIXTURES:  # a single type that is no llama.cpp ftype (Q4_K, IQ4_NL...): every weight
        return _fallback(new, ncols)
    match = _BLK.match(name)
    i = int(match.group(1)) if match else -1
    n = n_layers
    if name == "output.weight" or (tied_embeddings and name == "token_embd.weight"):
        if ncols % BLOCK_SIZES[new]:
            new = "q8_0"
        elif new != "q8_0":
            new = "q6_K"
    elif name == "token_embd.weight":
        pass
    elif "attn_v.weight" in name:
        if m == "Q2_K":
            new = "q4_K" if n_gqa >= 4 else "q3_K"
        elif m == "Q3_K_M":
            new = "q5_K" if i < 2 else "q4_K"
        elif m == "Q3_K_L":
            new = "q5_K"
        elif m in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            new = "q6_K"
        elif m == "Q4_K_S" and i < 4:
            new = "q5_K"
        if is_70b and new in ("q3_K", "q4_K"):
            new = "q5_K"
    elif "ffn_down" in name:
        if m == "Q2_K":
            new = "q3_K"
        elif m == "Q3_K_M":
            new = "q5_K" if i < n // 16 else "q4_K"
        elif m == "Q3_K_L":
            new = "q5_K"
        elif m == "Q4_K_M":
            if _use_more_bits(i, n):
                new = "q6_K"
        elif m == "Q5_K_M" and _use_more_bits(i, n):
            new = "q6_K"
        elif m == "Q4_K_S" and i < n // 8:
            new = "q5_K"
        elif m in ("Q4_0", "Q5_0") and has_imatrix and i < n // 8:
            new = "q4_1" if m == "Q4_0" else "q5_1"
    elif "attn_output.weight" in name:
        if m == "Q2_K":
            new = "q3_K"
        elif m == "Q3_K_M":
            new = "q4_K"
        elif m == "Q3_K_L":
            new = "q5_K"
    return _fallback(new, ncols)


# ------------------------------------------------------------------ Hugging Face names
_HF_LAYER = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}
_HF_GLOBAL = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
_HF_RX = re.compile(r"model\.layers\.(\d+)\.(.+)\.(weight|bias)")


def gguf_tensor_name(hf_name: str) -> str:
    """Hugging Face tensor name -> GGUF name (``"model.layers.3.self_attn.v_proj.weight"`` ->
    ``"blk.3.attn_v.weight"``); a layer name without ``.weight`` gets ``.weight``."""
    name = hf_name if hf_name.endswith((".weight", ".bias")) else hf_name + ".weight"
    base, _, suffix = name.rpartition(".")
    if base in _HF_GLOBAL:
        return f"{_HF_GLOBAL[base]}.{suffix}"
    m = _HF_RX.fullmatch(name)
    if m and m.group(2) in _HF_LAYER:
        return f"blk.{m.group(1)}.{_HF_LAYER[m.group(2)]}.{m.group(3)}"
    raise ValueError(f"no GGUF name for tensor {hf_name!r} (not a Llama-family weight)")


def _model_facts(cfg: Any) -> dict[str, Any]:
    n_gqa = cfg.num_attention_heads // cfg.num_key_value_heads
    return {"tied_embeddings": bool(cfg.tie_word_embeddings), "n_gqa": n_gqa,
            "is_70b": cfg.model_type in ("llama", "mistral") and cfg.num_hidden_layers == 80 and n_gqa > 1}


def hf_layer_type(model: Any, hf_name: str, mixture: str, *, has_imatrix: bool = False) -> str | None:
    """:func:`tensor_type` for the weight of ``model`` (a LlamaModel) named in Hugging Face
    style (``"model.layers.0.mlp.down_proj"`` or with ``.weight``)."""
    name = hf_name if hf_name.endswith((".weight", ".bias")) else hf_name + ".weight"
    cfg = model.config
    if name == "model.embed_tokens.weight" and cfg.tie_word_embeddings and "lm_head.weight" in model.weights:
        facts = {**_model_facts(cfg), "tied_embeddings": False}
    else:
        facts = _model_facts(cfg)
    shape = tuple(model.weights[name].shape)
    return tensor_type(gguf_tensor_name(name), shape, cfg.num_hidden_layers, mixture, has_imatrix=has_imatrix, **facts)


def expand_layer_config(model: Any, hf_name: str, config: Any) -> Any:
    """For the pipeline: a GGUFConfig naming a mixture (``type="Q4_K_M"``) becomes the
    GGUFConfig of the concrete type llama.cpp gives this layer (``type="Q6_K"``, same imatrix);
    None when llama.cpp keeps the layer in F16 (no block divides its rows: the GGUF writer then
    stores it as F16). Any other config is returned unchanged."""
    from .config import GGUFConfig

    if not isinstance(config, GGUFConfig) or config.type.upper() not in MIXTURES:
        return config
    t = hf_layer_type(model, hf_name, config.type, has_imatrix=config.imatrix is not None)
    if t is None or t in ("f32", "f16", "bf16"):
        return None
    return GGUFConfig(type=t.upper(), imatrix=config.imatrix)


def mixture_summary(types: Mapping[str, str | None]) -> dict[str, int]:
    """How many tensors get each type (for reports)."""
    out: dict[str, int] = {}
    for t in types.values():
        if t is not None:
            out[t] = out.get(t, 0) + 1
    return dict(sorted(out.items()))
