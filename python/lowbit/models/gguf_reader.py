"""Reader for GGUF model files (llama.cpp's format) into :class:`ModelFiles`.

The file is opened with the ``gguf`` package's memory-mapped ``GGUFReader``. F32 and F16 tensors
are returned as read-only views of the file, BF16 ones as ``ml_dtypes.bfloat16`` views when
``ml_dtypes`` is installed (float32 copies otherwise), and quantized ones (Q4_0 ... Q6_K, IQ*,
...) dequantized to float32 with ``gguf.quants.dequantize``.

Layout. GGUF lists a tensor's dimensions fastest-first (``ne0, ne1``); a weight with GGUF shape
``[in, out]`` is the row-major ``[out, in]`` matrix PyTorch uses, which is what is returned.
llama.cpp's ``convert_hf_to_gguf.py`` reorders the rows of ``attn_q``/``attn_k`` for the llama
architecture: within each head (``n_head`` heads for q, ``n_head_kv`` for k) it interleaves the
two halves of Hugging Face's rotate-half layout, ``w.reshape(n, 2, d/2, in).swapaxes(1, 2)``
(d = rows per head). The reader undoes it, ``w.reshape(n, d/2, 2, in).swapaxes(1, 2)``, so q/k
come back in Hugging Face order. Qwen2 files are written without that permutation.

Names and config follow Hugging Face (see ``model_files``); ``lm_head.weight`` is absent when the
file has no ``output.weight`` (tied embeddings).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .model_files import ModelFiles

__all__ = ["SUPPORTED_ARCHITECTURES", "read_gguf", "read_gguf_metadata"]

SUPPORTED_ARCHITECTURES: tuple[str, ...] = ("llama", "qwen2")

# GGUF tensor name -> Hugging Face name, per layer (``blk.{i}.``) and global
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_REQUIRED_LAYER = ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
                   "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight")
_BLK = re.compile(r"blk\.(\d+)\.(.+)")
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
_FILE_TYPES_OF_FLOATS = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def _check_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not path.is_file():
        raise ValueError(f"{path}: not a file (a GGUF model is one .gguf file)")
    return path


def _open(path: Path) -> Any:
    from gguf import GGUFReader

    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path}: empty file, not a GGUF model")
    try:
        reader = GGUFReader(path, "r")
    except (MemoryError, RecursionError, KeyboardInterrupt):
        raise
    except Exception as e:  # the gguf package signals a bad file with many exception types
        raise ValueError(f"{path}: not a valid GGUF file, or truncated/corrupt ({type(e).__name__}: {e})") from e
    for t in reader.tensors:
        end = int(t.data_offset) + int(t.n_bytes)
        if end > size or t.data.nbytes != t.n_bytes:
            raise ValueError(f"{path}: truncated: tensor {t.name!r} needs bytes up to {end}, the file has {size}")
    return reader


def _field_value(reader: Any, key: str, path: Path) -> Any:
    try:
        return reader.fields[key].contents()
    except Exception as e:
        raise ValueError(f"{path}: cannot decode GGUF metadata key {key!r} ({type(e).__name__}: {e})") from e


def _metadata(reader: Any, path: Path) -> dict[str, Any]:
    return {k: _field_value(reader, k, path) for k in reader.fields}


def read_gguf_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """All key/value metadata of a GGUF file as plain Python values (``str``, ``int``, ``float``,
    ``bool``, lists of these). Raises FileNotFoundError, or ValueError naming the file."""
    path = _check_path(path)
    return _metadata(_open(path), path)


def _bf16_view(data: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        import ml_dtypes
    except ImportError:
        return None
    return data.view(ml_dtypes.bfloat16).reshape(shape)


def _unpermute_rows(w: np.ndarray, n_head: int, name: str, path: Path) -> np.ndarray:
    """Undo llama.cpp's per-head row interleave of attn_q/attn_k (weights and biases)."""
    rows = w.shape[0]
    if n_head <= 0 or rows % (2 * n_head):
        raise ValueError(f"{path}: {name} has {rows} rows, not a multiple of 2 x {n_head} heads")
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class _Tensor:
    """One GGUF tensor and how to turn it into the Hugging Face array."""

    def __init__(self, rt: Any, hf_name: str, path: Path, n_head_unpermute: int | None,
                 keep_quantized: bool = False) -> None:
        self.rt = rt
        self.hf_name = hf_name
        self.path = path
        self.n_head = n_head_unpermute
        self.shape = tuple(int(d) for d in reversed(rt.shape.tolist()))
        self.type_name = rt.tensor_type.name
        self.keep_quantized = keep_quantized

    def _packed(self) -> Any:
        """The tensor as a QuantizedTensor of its ggml format (rows of packed bytes, q/k rows
        moved whole), or None when lowbit's format table lacks the type."""
        from ..formats import FORMATS
        from ..tensor import QuantizedTensor

        fmt = next((f for f in FORMATS.values() if f.is_gguf_type and f.id == int(self.rt.tensor_type)), None)
        if fmt is None or not fmt.is_quantized or len(self.shape) != 2:
            return None
        rows = np.asarray(self.rt.data).view(np.uint8).reshape(self.shape[0], -1)
        if self.n_head is not None:
            rows = np.ascontiguousarray(_unpermute_rows(rows, self.n_head, self.rt.name, self.path))
        return QuantizedTensor(format=fmt.name, shape=self.shape, arrays={"qweight": rows},
                               group_size=fmt.block_size)

    def load(self) -> Any:
        from gguf import GGMLQuantizationType as T
        from gguf.quants import dequantize

        rt = self.rt
        if self.keep_quantized and rt.tensor_type not in (T.F32, T.F16, T.BF16):
            q = self._packed()
            if q is not None:
                return q
        if rt.tensor_type in (T.F32, T.F16):
            a = rt.data.reshape(self.shape)
        elif rt.tensor_type == T.BF16 and (v := _bf16_view(rt.data, self.shape)) is not None:
            a = v
        elif rt.tensor_type in (T.F64, T.I8, T.I16, T.I32, T.I64):
            raise NotImplementedError(f"{self.path}: tensor {rt.name!r} has ggml type {self.type_name}, "
                                      f"not a weight type")
        else:
            try:
                a = dequantize(rt.data, rt.tensor_type)
            except NotImplementedError as e:
                raise NotImplementedError(f"{self.path}: tensor {rt.name!r} has ggml type {self.type_name}, which "
                                          f"the gguf package cannot dequantize ({e})") from e
            except Exception as e:
                raise ValueError(f"{self.path}: cannot dequantize tensor {rt.name!r} ({self.type_name}): {e}") from e
            a = a.reshape(self.shape)
        if self.n_head is not None:
            a = _unpermute_rows(a, self.n_head, rt.name, self.path)
        return a


class _LazyTensors(Mapping):
    """name -> array, converted (dequantized) on every access; nothing is cached."""

    def __init__(self, tensors: Mapping[str, _Tensor]) -> None:
        self._t = dict(tensors)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._t[name].load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._t)

    def __len__(self) -> int:
        return len(self._t)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._t[name].shape


def _get_int(meta: Mapping[str, Any], key: str, path: Path, default: int | None = None) -> int:
    v = meta.get(key, default)
    if v is None:
        raise ValueError(f"{path}: GGUF metadata has no {key!r}")
    if isinstance(v, list):
        if not v or any(x != v[0] for x in v):
            raise NotImplementedError(f"{path}: {key} differs between layers ({v[:8]}...), not supported")
        v = v[0]
    return int(v)


def _rope_scaling(meta: Mapping[str, Any], arch: str) -> dict[str, Any] | None:
    kind = meta.get(f"{arch}.rope.scaling.type")
    factor = meta.get(f"{arch}.rope.scaling.factor")
    if kind in (None, "none") and factor in (None, 1.0):
        return None
    out: dict[str, Any] = {"rope_type": kind or "linear"}
    if factor is not None:
        out["factor"] = float(factor)
    for gguf_key, hf_key in (("original_context_length", "original_max_position_embeddings"),
                             ("attn_factor", "attention_factor"), ("yarn_beta_fast", "beta_fast"),
                             ("yarn_beta_slow", "beta_slow"), ("finetuned", "finetuned")):
        v = meta.get(f"{arch}.rope.scaling.{gguf_key}")
        if v is not None:
            out[hf_key] = v
    return out


def _build_config(meta: Mapping[str, Any], arch: str, present: Mapping[str, _Tensor], path: Path) -> dict[str, Any]:
    a = arch
    hidden = _get_int(meta, f"{a}.embedding_length", path)
    n_layers = _get_int(meta, f"{a}.block_count", path)
    n_heads = _get_int(meta, f"{a}.attention.head_count", path)
    n_kv = _get_int(meta, f"{a}.attention.head_count_kv", path, n_heads)
    head_dim = _get_int(meta, f"{a}.attention.key_length", path, hidden // n_heads if n_heads else 0)
    embd = present.get("model.embed_tokens.weight")
    vocab = embd.shape[0] if embd is not None else _get_int(meta, f"{a}.vocab_size", path,
                                                           len(meta.get("tokenizer.ggml.tokens") or []) or None)
    ffn = _get_int(meta, f"{a}.feed_forward_length", path)
    name = str(meta.get("general.name") or "")
    model_type = "qwen2" if arch == "qwen2" else ("mistral" if "mistral" in name.lower() else "llama")
    float_types = {t.type_name for n, t in present.items() if n.endswith("proj.weight")}
    dtype = _FILE_TYPES_OF_FLOATS.get(float_types.pop()) if len(float_types) == 1 else None
    cfg: dict[str, Any] = {
        "model_type": model_type,
        "architectures": [_ARCHITECTURES[model_type]],
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "vocab_size": int(vocab),
        "rms_norm_eps": float(meta.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(meta.get(f"{a}.rope.freq_base", 10000.0)),
        "rope_scaling": _rope_scaling(meta, a),
        "max_position_embeddings": _get_int(meta, f"{a}.context_length", path, 2048),
        "tie_word_embeddings": "lm_head.weight" not in present,
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"),
        "attention_bias": arch == "qwen2" or "model.layers.0.self_attn.q_proj.bias" in present,
        "hidden_act": "silu",
        "mlp_bias": False,
        "torch_dtype": dtype or "float32",   # the dtype of the arrays returned for the linear weights
    }
    if model_type == "mistral":
        cfg["sliding_window"] = None         # GGUF does not record it; llama.cpp runs Mistral without one
    return cfg


def _check_shapes(cfg: Mapping[str, Any], tensors: Mapping[str, _Tensor], path: Path) -> None:
    h, f, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    expect = {"model.embed_tokens.weight": (cfg["vocab_size"], h), "model.norm.weight": (h,),
              "lm_head.weight": (cfg["vocab_size"], h)}
    per_layer = {"input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,),
                 "self_attn.q_proj.weight": (q, h), "self_attn.k_proj.weight": (kv, h),
                 "self_attn.v_proj.weight": (kv, h), "self_attn.o_proj.weight": (h, q),
                 "self_attn.q_proj.bias": (q,), "self_attn.k_proj.bias": (kv,), "self_attn.v_proj.bias": (kv,),
                 "mlp.gate_proj.weight": (f, h), "mlp.up_proj.weight": (f, h), "mlp.down_proj.weight": (h, f)}
    for i in range(cfg["num_hidden_layers"]):
        expect.update({f"model.layers.{i}.{k}": v for k, v in per_layer.items()})
    for name, t in tensors.items():
        if name in expect and t.shape != expect[name]:
            raise ValueError(f"{path}: tensor {t.rt.name!r} ({name}) has shape {list(t.shape)}, "
                             f"the metadata implies {list(expect[name])}")


def read_gguf(path: str | os.PathLike[str], *, tokenizer: bool = True, lazy: bool = False,
              keep_quantized: bool = False) -> ModelFiles:
    """Read a GGUF model file (architectures ``llama`` — including Mistral files — and ``qwen2``).

    Returns tensors under Hugging Face Llama names: F32/F16 (and, with ``ml_dtypes``, BF16) as
    read-only memory-mapped views, quantized types dequantized to float32; q/k rows in Hugging
    Face rotate-half order. With ``lazy=True`` the mapping converts a tensor each time it is
    accessed instead of all at once (for models too large to hold in float32). With
    ``keep_quantized=True`` quantized tensors whose ggml type is in lowbit's format table come
    back as QuantizedTensors holding the file's bytes (no dequantization).

    The tokenizer is rebuilt from the metadata (``gguf_tokenizer``); if its kind is not supported
    a warning is issued and ``tokenizer`` is None (the reason is in ``metadata["tokenizer_error"]``).

    Raises FileNotFoundError for a missing file; ValueError naming the file for an unsupported
    architecture, a file that is not GGUF, truncated or corrupt, or inconsistent with itself;
    NotImplementedError naming tensor and type for a tensor type the gguf package cannot dequantize.
    """
    from gguf import LlamaFileType

    from .gguf_tokenizer import build_gguf_tokenizer

    path = _check_path(path)
    reader = _open(path)
    meta = _metadata(reader, path)
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"{path}: GGUF architecture {arch!r} is not supported; supported architectures: "
                         f"{', '.join(SUPPORTED_ARCHITECTURES)} (Mistral files use 'llama')")
    if int(meta.get(f"{arch}.expert_count") or 0) > 0:
        raise NotImplementedError(f"{path}: mixture-of-experts {arch} model ({meta[f'{arch}.expert_count']} "
                                  f"experts) is not supported")
    n_heads = _get_int(meta, f"{arch}.attention.head_count", path)
    n_kv = _get_int(meta, f"{arch}.attention.head_count_kv", path, n_heads)
    n_layers = _get_int(meta, f"{arch}.block_count", path)

    tensors: dict[str, _Tensor] = {}
    ignored: list[str] = []
    rope_freqs = None
    for rt in reader.tensors:
        if rt.name in _GLOBAL_NAMES:
            tensors[_GLOBAL_NAMES[rt.name]] = _Tensor(rt, _GLOBAL_NAMES[rt.name], path, None, keep_quantized)
            continue
        if rt.name == "rope_freqs.weight":
            rope_freqs = _Tensor(rt, "rope_freqs", path, None)
            continue
        m = _BLK.fullmatch(rt.name)
        if m and m.group(2) in _LAYER_NAMES and int(m.group(1)) < n_layers:
            suffix = m.group(2)
            n_head = None
            if arch == "llama" and suffix.startswith("attn_q."):
                n_head = n_heads
            elif arch == "llama" and suffix.startswith("attn_k."):
                n_head = n_kv
            hf = f"model.layers.{m.group(1)}.{_LAYER_NAMES[suffix]}"
            tensors[hf] = _Tensor(rt, hf, path, n_head, keep_quantized)
        else:
            ignored.append(rt.name)

    present_gguf = {t.rt.name for t in tensors.values()}
    required = ["token_embd.weight", "output_norm.weight",
                *(f"blk.{i}.{s}" for i in range(n_layers) for s in _REQUIRED_LAYER)]
    missing = [n for n in required if n not in present_gguf]
    if missing:
        raise ValueError(f"{path}: {len(missing)} required tensors missing, e.g. {', '.join(missing[:5])}")

    config = _build_config(meta, arch, tensors, path)
    _check_shapes(config, tensors, path)

    arrays: Mapping[str, Any] = _LazyTensors(tensors) if lazy else {name: t.load() for name, t in tensors.items()}

    ft = meta.get("general.file_type")
    try:
        ft_name = LlamaFileType(int(ft)).name if ft is not None else None
    except ValueError:
        ft_name = None
    metadata: dict[str, Any] = {
        "architecture": arch,
        "general.name": meta.get("general.name"),
        "file_type": ft,
        "file_type_name": ft_name,
        "quantization_version": meta.get("general.quantization_version"),
        "gguf_version": meta.get("GGUF.version"),
        "ggml_types": {name: t.type_name for name, t in tensors.items()},
        "ignored_tensors": ignored,
        "gguf_kv": {k: v for k, v in meta.items() if not (isinstance(v, list) and len(v) > 64)},
    }
    if rope_freqs is not None:
        metadata["rope_freqs"] = np.asarray(rope_freqs.load(), dtype=np.float32)

    tok = None
    if tokenizer and meta.get("tokenizer.ggml.model") is not None:
        try:
            tok = build_gguf_tokenizer(meta, source=str(path))
        except NotImplementedError as e:
            metadata["tokenizer_error"] = str(e)
            warnings.warn(f"no tokenizer: {e}", stacklevel=2)
    return ModelFiles(path=path, format="gguf", config=config, tensors=arrays, tokenizer=tok, metadata=metadata)
