"""Reader for Hugging Face model folders (``config.json`` + safetensors + ``tokenizer.json``).

Weights come from ``model.safetensors``, or from the shards a ``model.safetensors.index.json``
names in its ``weight_map``. Every tensor is a read-only ``np.memmap`` view into its file, found
through the safetensors header (8-byte little-endian header length, a JSON table of dtype, shape
and byte range per tensor, then the data). The ``safetensors`` package's own NumPy loader copies
each tensor into memory and has no bfloat16, so the header is read here: BF16 tensors come back
as ``ml_dtypes.bfloat16`` views when ``ml_dtypes`` is installed (the NumPy dtype every
bf16-aware library uses), and as float32 copies otherwise.

Only Llama-family tensor names are kept (``model.embed_tokens.weight``, ``model.layers.{i}...``,
``model.norm.weight``, ``lm_head.weight``); others, such as ``model.rotary_emb.inv_freq``, are
dropped and listed in ``metadata["dropped_tensors"]``. With tied embeddings ``lm_head.weight`` is
left out even when the file stores it.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .model_files import ModelFiles
from .tokenizer import Tokenizer

__all__ = ["SUPPORTED_MODEL_TYPES", "read_hf_folder", "read_safetensors"]

SUPPORTED_MODEL_TYPES: tuple[str, ...] = ("llama", "mistral", "qwen2")

_LAYER_KEYS = ("input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
               "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
               "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")
_BIAS_KEYS = ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias")
_OPTIONAL_LAYER_KEYS = (*_BIAS_KEYS, "self_attn.o_proj.bias", "mlp.gate_proj.bias", "mlp.up_proj.bias",
                        "mlp.down_proj.bias")
_LAYER_NAME = re.compile(r"model\.layers\.(\d+)\.(.+)")
_GLOBAL = ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight")

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_MAX_HEADER = 100 << 20


def _bf16_dtype() -> Any:
    try:
        import ml_dtypes
    except ImportError:
        return None
    return ml_dtypes.bfloat16


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path: str | os.PathLike[str], *, keep: Callable[[str], bool] | None = None,
                     ) -> tuple[dict[str, np.ndarray], dict[str, str], list[str]]:
    """``({name: array}, {name: safetensors dtype}, [names not kept])`` of one .safetensors file,
    every array a read-only memory-mapped view (BF16: see the module docstring).

    ``keep(name)`` selects the tensors to return (default: all). Raises FileNotFoundError;
    ValueError naming the file when the header is malformed or a tensor lies outside the file
    (truncated); NotImplementedError naming the tensor for a kept one whose dtype NumPy cannot
    hold (FP8 ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: {size} bytes, too small for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
            raise ValueError(f"{path}: not a safetensors file (header length {n}, file size {size})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a safetensors file (header is not JSON: {e})") from e
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (header is not a JSON object)")
    header.pop("__metadata__", None)
    base = 8 + n
    data = np.memmap(path, dtype=np.uint8, mode="r") if size > base else np.zeros(0, np.uint8)
    arrays: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    skipped: list[str] = []
    for name, info in header.items():
        if keep is not None and not keep(name):
            skipped.append(name)
            continue
        try:
            dt, shape, (start, end) = info["dtype"], tuple(int(s) for s in info["shape"]), info["data_offsets"]
            start, end = int(start), int(end)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: malformed header entry for {name!r}: {info!r}") from e
        if not 0 <= start <= end or base + end > size:
            raise ValueError(f"{path}: tensor {name!r} spans bytes {start}..{end} of the data, but the file "
                             f"holds {size - base} (truncated?)")
        count = int(np.prod(shape, dtype=np.int64))
        if dt == "BF16":
            np_dt = np.dtype("<u2")
        elif dt in _DTYPES:
            np_dt = np.dtype(_DTYPES[dt]).newbyteorder("<")
        else:
            raise NotImplementedError(f"{path}: tensor {name!r} has safetensors dtype {dt}, which lowbit "
                                      f"cannot read")
        if end - start != np_dt.itemsize * count:
            raise ValueError(f"{path}: tensor {name!r} has {end - start} bytes, shape {list(shape)} {dt} "
                             f"needs {np_dt.itemsize * count}")
        a = data[base + start:base + end].view(np_dt).reshape(shape)
        if dt == "BF16":
            bf16 = _bf16_dtype()
            a = a.view(bf16) if bf16 is not None else _bf16_to_f32(a)
        arrays[name], dtypes[name] = a, dt
    return arrays, dtypes, skipped


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return d


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    single = folder / "model.safetensors"
    if index.is_file():
        wm = read_json_object(index).get("weight_map")
        if not isinstance(wm, dict) or not wm:
            raise ValueError(f"{index}: no 'weight_map'")
        files = []
        for shard in dict.fromkeys(wm.values()):
            p = folder / shard
            if not p.is_file():
                raise FileNotFoundError(f"{index} names shard {shard!r}, but {p} does not exist")
            files.append(p)
        return files
    if single.is_file():
        return [single]
    found = sorted(folder.glob("*.safetensors"))
    if found:
        return found
    other = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".gguf"))
    hint = f" (found {', '.join(other)}: only safetensors weights are read)" if other else ""
    raise FileNotFoundError(f"{folder}: no model.safetensors or model.safetensors.index.json{hint}")


def _normalize_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """config.json keys, with the ones the runtime needs filled in (transformers' defaults)."""
    cfg = dict(raw)
    heads = int(cfg["num_attention_heads"])
    if cfg.get("num_key_value_heads") is None:
        cfg["num_key_value_heads"] = heads
    if cfg.get("head_dim") is None:
        cfg["head_dim"] = int(cfg["hidden_size"]) // heads
    rope_params = dict(cfg.get("rope_parameters") or {})      # transformers >= 5 writes these
    if cfg.get("rope_theta") is None:
        cfg["rope_theta"] = float(rope_params.get("rope_theta", 10000.0))
    scaling = cfg.get("rope_scaling")
    if scaling is None and rope_params.get("rope_type", "default") != "default":
        scaling = {k: v for k, v in rope_params.items() if k != "rope_theta"}
    if isinstance(scaling, dict) and scaling.get("rope_type", scaling.get("type")) == "default":
        scaling = None
    cfg["rope_scaling"] = scaling
    cfg.setdefault("tie_word_embeddings", False)
    cfg.setdefault("attention_bias", cfg["model_type"] == "qwen2")
    cfg.setdefault("rms_norm_eps", 1e-6)
    cfg.setdefault("max_position_embeddings", 2048)
    if cfg.get("torch_dtype") is None and cfg.get("dtype") is not None:
        cfg["torch_dtype"] = cfg["dtype"]
    return cfg


def _special_ids(folder: Path, cfg: dict[str, Any], tok: Any) -> None:
    """bos/eos ids: config.json, else generation_config.json, else tokenizer_config.json tokens."""
    gen = folder / "generation_config.json"
    gen_cfg = read_json_object(gen) if gen.is_file() else {}
    tc = folder / "tokenizer_config.json"
    tok_cfg = read_json_object(tc) if tc.is_file() else {}
    for key in ("bos_token_id", "eos_token_id"):
        if cfg.get(key) is None and gen_cfg.get(key) is not None:
            cfg[key] = gen_cfg[key]
        if cfg.get(key) is None and tok is not None:
            token = tok_cfg.get(key.replace("_id", ""))
            if isinstance(token, dict):
                token = token.get("content")
            if isinstance(token, str) and tok.token_to_id(token) is not None:
                cfg[key] = tok.token_to_id(token)
        cfg.setdefault(key, None)


def read_hf_folder(path: str | os.PathLike[str]) -> ModelFiles:
    """Read a Hugging Face Llama/Mistral/Qwen2 folder: ``config.json`` (required), safetensors
    weights (single file or sharded with an index), ``tokenizer.json`` (optional: tokenizer is
    None without it).

    Raises FileNotFoundError for a missing folder, ``config.json`` or weight file (a shard named
    by the index but absent: the message names both); ValueError naming the file for an
    unsupported ``model_type``, malformed files, or missing required tensors (first few listed).
    """
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (a Hugging Face model is a folder with config.json)")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: a Hugging Face model folder needs a config.json")
    raw_cfg = read_json_object(cfg_path)
    mt = raw_cfg.get("model_type")
    if mt not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{cfg_path}: model_type {mt!r} is not supported; supported: "
                         f"{', '.join(SUPPORTED_MODEL_TYPES)}")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        if not isinstance(raw_cfg.get(key), int):
            raise ValueError(f"{cfg_path}: {key!r} missing or not an integer")
    cfg = _normalize_config(raw_cfg)

    files = _weight_files(folder)
    tensors: dict[str, Any] = {}
    dtypes: dict[str, str] = {}
    source: dict[str, str] = {}
    dropped: list[str] = []
    n_layers = int(cfg["num_hidden_layers"])
    def is_llama_name(name: str) -> bool:
        m = _LAYER_NAME.fullmatch(name)
        return name in _GLOBAL or bool(m and int(m.group(1)) < n_layers
                                       and m.group(2) in (*_LAYER_KEYS, *_OPTIONAL_LAYER_KEYS))

    for f in files:
        arrays, dts, skipped = read_safetensors(f, keep=is_llama_name)
        dropped += skipped
        for name, a in arrays.items():
            if name in tensors:
                raise ValueError(f"{f}: tensor {name!r} is also in {source[name]}")
            tensors[name], dtypes[name], source[name] = a, dts[name], f.name

    if cfg["tie_word_embeddings"] and "lm_head.weight" in tensors:
        del tensors["lm_head.weight"], dtypes["lm_head.weight"]
    required = ["model.embed_tokens.weight", "model.norm.weight",
                *(f"model.layers.{i}.{k}" for i in range(n_layers) for k in _LAYER_KEYS)]
    if not cfg["tie_word_embeddings"]:
        required.append("lm_head.weight")
    if cfg["attention_bias"]:
        required += [f"model.layers.{i}.{k}" for i in range(n_layers) for k in _BIAS_KEYS]
    missing = [n for n in required if n not in tensors]
    if missing:
        qc = raw_cfg.get("quantization_config")
        hint = (f" (the checkpoint is pre-quantized with quant_method={qc.get('quant_method')!r}, which this "
                f"reader does not load)") if isinstance(qc, dict) else ""
        raise ValueError(f"{folder}: {len(missing)} required tensors missing from "
                         f"{', '.join(p.name for p in files)}, e.g. {', '.join(missing[:5])}{hint}")
    tok_path = folder / "tokenizer.json"
    backend = None
    if tok_path.is_file():
        from tokenizers import Tokenizer as HFTokenizer

        try:
            backend = HFTokenizer.from_file(str(tok_path))
        except Exception as e:  # tokenizers raises a plain Exception for malformed files
            raise ValueError(f"{tok_path}: cannot load tokenizer ({e})") from e
    _special_ids(folder, cfg, backend)
    tokenizer = None
    if backend is not None:
        eos = cfg["eos_token_id"]
        tokenizer = Tokenizer.from_tokenizers(backend, bos_id=cfg["bos_token_id"],
                                              eos_id=eos[0] if isinstance(eos, list) and eos else eos)
    metadata = {
        "files": [p.name for p in files],
        "dtypes": dtypes,
        "dropped_tensors": dropped,
        "tokenizer_file": tok_path.name if backend is not None else None,
    }
    return ModelFiles(path=folder, format="hf", config=cfg, tensors=tensors, tokenizer=tokenizer, metadata=metadata)
