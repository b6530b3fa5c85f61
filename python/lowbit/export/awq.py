"""The AWQ GEMM checkpoint layout (AutoAWQ / transformers / vLLM ``quant_method: "awq"``,
``version: "gemm"``), REFERENCE.md §2.7.

Per linear layer ``P`` (4-bit codes, groups of ``group_size`` input features):

==========  =======  ===============  ================================================
tensor      dtype    shape            content
==========  =======  ===============  ================================================
P.qweight   int32    [in, out/8]      codes packed along the *output* dimension
P.qzeros    int32    [in/gs, out/8]   zero points, same packing (stored as is, no -1)
P.scales    float16  [in/gs, out]
==========  =======  ===============  ================================================

Word ``(i, c)`` holds outputs ``8c .. 8c+7``: nibble ``k`` (bits ``4k .. 4k+3``) is output
``8c + ORDER[k]``, ``ORDER = [0, 2, 4, 6, 1, 3, 5, 7]`` (AutoAWQ's interleave for its GEMM
kernel). ``W[o, i] = (q[i, o] - z[i // gs, o]) * s[i // gs, o]``.

:func:`to_awq` / :func:`from_awq` convert one lowbit :class:`QuantizedTensor` (grouped int4);
:func:`save_awq` writes a whole model folder (config.json with ``quantization_config``,
safetensors, tokenizer) and :func:`read_awq_folder` reads one back (``lowbit.load_model``
recognises such folders). Scales are stored as float16, as every AWQ checkpoint does: the only
lossy step (relative error <= 2^-11 per scale); the checkpoint tensors round-trip bit-exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..formats import grouped_int_format
from ..tensor import QuantizedTensor

__all__ = ["AWQ_ORDER", "from_awq", "is_awq_folder", "read_awq_folder", "save_awq", "to_awq"]

AWQ_ORDER = np.array([0, 2, 4, 6, 1, 3, 5, 7])  # nibble k holds output 8c + AWQ_ORDER[k]
_PIECES = ("qweight", "qzeros", "scales")


def _pack_int4_awq(values: np.ndarray) -> np.ndarray:
    """uint8 [n, out] (values < 16) -> int32 [n, out/8] in AWQ's interleaved nibble order."""
    n, out = values.shape
    v = values.reshape(n, out // 8, 8)[:, :, AWQ_ORDER].astype(np.uint32)
    words = np.zeros((n, out // 8), np.uint32)
    for k in range(8):
        words |= v[:, :, k] << np.uint32(4 * k)
    return words.view(np.int32)


def _unpack_int4_awq(words: np.ndarray) -> np.ndarray:
    """int32 [n, out/8] -> uint8 [n, out] (inverse of :func:`_pack_int4_awq`)."""
    w = np.ascontiguousarray(words).view(np.uint32)
    n, m = w.shape
    out = np.empty((n, m, 8), np.uint8)
    for k in range(8):
        out[:, :, AWQ_ORDER[k]] = (w >> np.uint32(4 * k)) & np.uint32(0xF)
    return out.reshape(n, m * 8)


def _codes_4bit(q: QuantizedTensor) -> np.ndarray:
    """uint8 [out, in] codes of a grouped int4 tensor (LSB-first nibbles in lowbit's layout)."""
    packed = q.arrays["qweight"]
    out, inp = q.shape
    codes = np.empty((out, packed.shape[1] * 2), np.uint8)
    codes[:, 0::2] = packed & 0xF
    codes[:, 1::2] = packed >> 4
    return codes[:, :inp]


def _check_exportable(q: QuantizedTensor) -> None:
    out, inp = q.shape
    if not isinstance(q, QuantizedTensor) or q.layout.name != "grouped":
        raise ValueError(f"the AWQ layout stores grouped integer tensors, got {q!r}")
    if q.bits != 4:
        raise ValueError(f"the AWQ GEMM layout stores 4-bit codes only (AutoAWQ's packers), got {q.bits}-bit {q!r}")
    if q.per_tensor or "g_idx" in q.arrays:
        raise ValueError("the AWQ layout has contiguous per-group scales: no per-tensor scale, no act-order g_idx")
    if inp % q.group_size:
        raise ValueError(f"the AWQ layout needs in_features ({inp}) to be a multiple of group_size ({q.group_size})")
    if out % 8:
        raise ValueError(f"the AWQ GEMM layout packs 8 outputs per int32: out_features ({out}) must be a multiple of 8")


def to_awq(q: QuantizedTensor) -> dict[str, np.ndarray]:
    """Pack a grouped int4 QuantizedTensor into AWQ GEMM tensors ``{"qweight", "qzeros", "scales"}``.

    ValueError for anything the layout cannot hold (other widths, per-tensor or act-order
    tensors, ``in % group_size != 0``, ``out % 8 != 0``). A symmetric tensor is written with its
    explicit zero points (8), which every AWQ kernel reads.
    """
    _check_exportable(q)
    return {"qweight": _pack_int4_awq(np.ascontiguousarray(_codes_4bit(q).T)),
            "qzeros": _pack_int4_awq(np.ascontiguousarray(q.arrays["zeros"].T)),
            "scales": np.ascontiguousarray(q.arrays["scales"].T).astype(np.float16)}


def from_awq(tensors: Mapping[str, np.ndarray], *, group_size: int, bits: int = 4, config: Any = None) -> QuantizedTensor:
    """Read AWQ GEMM tensors (``qweight`` int32 [in, out/8], ``qzeros`` int32 [in/gs, out/8],
    ``scales`` float16 [in/gs, out]) into a grouped int4 QuantizedTensor (scales as float32).
    ``group_size`` is the checkpoint's (-1: one group)."""
    if bits != 4:
        raise ValueError(f"AWQ GEMM checkpoints hold 4-bit codes; got bits={bits}")
    for name in _PIECES:
        if name not in tensors:
            raise ValueError(f"AWQ tensors must include {name!r}; got {sorted(tensors)}")
    qweight, qzeros, scales = (np.asarray(tensors[k]) for k in _PIECES)
    if qweight.ndim != 2 or qweight.dtype != np.int32:
        raise ValueError(f"qweight must be int32 [in, out/8], got {qweight.dtype} {qweight.shape}")
    inp, out = qweight.shape[0], qweight.shape[1] * 8
    gs = inp if group_size == -1 else int(group_size)
    if gs <= 0 or inp % gs:
        raise ValueError(f"group_size must be -1 or divide in_features={inp}, got {group_size}")
    n_groups = inp // gs
    if qzeros.shape != (n_groups, out // 8) or qzeros.dtype != np.int32:
        raise ValueError(f"qzeros must be int32 ({n_groups}, {out // 8}), got {qzeros.dtype} {qzeros.shape}")
    if scales.shape != (n_groups, out):
        raise ValueError(f"scales must have shape ({n_groups}, {out}), got {scales.shape}")
    codes = np.ascontiguousarray(_unpack_int4_awq(qweight).T)  # [out, in]
    if inp % 2:
        codes = np.concatenate([codes, np.zeros((out, 1), np.uint8)], axis=1)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    zeros = np.ascontiguousarray(_unpack_int4_awq(qzeros).T)
    sym = bool(np.all(zeros == 8))
    return QuantizedTensor(format=grouped_int_format(4).name, shape=(out, inp),
                           arrays={"qweight": np.ascontiguousarray(packed),
                                   "scales": np.ascontiguousarray(scales.T, dtype=np.float32), "zeros": zeros},
                           group_size=gs, per_tensor=False, sym=sym, config=config)


# ------------------------------------------------------------------------------ model folders

def _quantization_config(model: Any) -> dict[str, Any]:
    qs = {n: w for n, w in model.weights.items() if isinstance(w, QuantizedTensor)}
    if not qs:
        raise ValueError("the model has no quantized weights: quantize it first (lowbit.quantize_model)")
    sizes = {q.group_size for q in qs.values()}
    if len(sizes) != 1:
        raise ValueError(f"an AWQ checkpoint has one group_size for all layers; the model mixes {sorted(sizes)}")
    dense = [n for n in model.linear_names()[:-1] if not isinstance(model.weights.get(n + ".weight"), QuantizedTensor)]
    return {"quant_method": "awq", "bits": 4, "group_size": sizes.pop(), "zero_point": True, "version": "gemm",
            "modules_to_not_convert": dense or None}


def save_awq(model: Any, path: str | os.PathLike[str], *, overwrite: bool = False,
             dense_dtype: str | None = None) -> Path:
    """Write a quantized :class:`~lowbit.models.LlamaModel` as an AutoAWQ GEMM folder.

    ``config.json`` (the model's Hugging Face config plus ``quantization_config``:
    ``quant_method "awq"``, ``bits 4``, ``group_size``, ``zero_point true``, ``version
    "gemm"``), ``model.safetensors`` (each quantized linear as ``qweight``/``qzeros``/
    ``scales``; every other tensor under its own name, in its own dtype or ``dense_dtype``
    such as ``"float16"``, AutoAWQ's choice) and the tokenizer. The quantized linears must be
    grouped int4 tensors with one group_size (see :func:`to_awq`); linears left dense are listed
    in ``modules_to_not_convert``. Written atomically.
    """
    from ..models.lowbit_format import _move_into_place, _write_json, _write_tokenizer

    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: parent folder {path.parent} does not exist")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")
    qc = _quantization_config(model)
    arrays: dict[str, np.ndarray] = {}
    for name, w in model.weights.items():
        if isinstance(w, QuantizedTensor):
            base = name[: -len(".weight")]
            try:
                packed = to_awq(w)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
            arrays.update({f"{base}.{k}": v for k, v in packed.items()})
        else:
            a = np.asarray(w)
            arrays[name] = np.ascontiguousarray(a if dense_dtype is None else a.astype(dense_dtype))
    config = dict(model.config.to_hf())
    config["quantization_config"] = qc
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        from safetensors.numpy import save_file

        tok = _write_tokenizer(model.tokenizer, tmp, model.config)
        if tok is not None:
            config["lowbit_tokenizer"] = tok  # how to rebuild a non-HF (llama2.c) tokenizer; ignored by others
        _write_json(tmp / "config.json", config)
        save_file(arrays, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _move_into_place(tmp, path, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def is_awq_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder whose config.json has ``quantization_config.quant_method == "awq"``."""
    p = Path(path) / "config.json"
    if not p.is_file():
        return False
    try:
        qc = json.loads(p.read_text(encoding="utf-8")).get("quantization_config")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False
    return isinstance(qc, dict) and qc.get("quant_method") == "awq"


def read_awq_folder(path: str | os.PathLike[str]) -> Any:
    """Read an AWQ GEMM folder into :class:`~lowbit.models.model_files.ModelFiles`: each
    ``P.qweight/qzeros/scales`` triple becomes ``P.weight``, a grouped int4 QuantizedTensor
    (so the model runs in lowbit's runtime); everything else as the Hugging Face reader does."""
    from ..models.hf_reader import (SUPPORTED_MODEL_TYPES, _normalize_config, _special_ids, _weight_files,
                                    read_json_object, read_safetensors)
    from ..models.lowbit_format import _read_tokenizer
    from ..models.model_files import ModelFiles
    from ..models.tokenizer import Tokenizer

    folder = Path(path)
    raw = read_json_object(folder / "config.json")
    qc = raw.get("quantization_config") or {}
    version = str(qc.get("version", "gemm")).lower()
    if version != "gemm":
        raise NotImplementedError(f"{folder}: AWQ version {version!r} is not supported (only 'gemm')")
    bits = int(qc.get("bits", qc.get("w_bit", 4)))
    group_size = int(qc.get("group_size", qc.get("q_group_size", 128)))
    if raw.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{folder}: model_type {raw.get('model_type')!r} is not supported; supported: "
                         f"{', '.join(SUPPORTED_MODEL_TYPES)}")
    cfg = _normalize_config(raw)
    tensors: dict[str, Any] = {}
    dtypes: dict[str, str] = {}
    for f in _weight_files(folder):
        arrays, dts, _ = read_safetensors(f)
        tensors.update(arrays)
        dtypes.update(dts)
    for base in sorted(k[: -len(".qweight")] for k in list(tensors) if k.endswith(".qweight")):
        parts = {k: tensors.pop(f"{base}.{k}", None) for k in _PIECES}
        missing = [k for k, v in parts.items() if v is None]
        if missing:
            raise ValueError(f"{folder}: {base} has qweight but no {', '.join(missing)}")
        try:
            tensors[base + ".weight"] = from_awq(parts, group_size=group_size, bits=bits)
        except ValueError as e:
            raise ValueError(f"{folder}: {base}: {e}") from None
        for k in _PIECES:
            dtypes.pop(f"{base}.{k}", None)
        dtypes[base + ".weight"] = "awq-int4"
    if cfg["tie_word_embeddings"]:
        tensors.pop("lm_head.weight", None)
    tok_desc = raw.get("lowbit_tokenizer")
    tokenizer = None
    if tok_desc is not None:
        tokenizer = _read_tokenizer(folder, tok_desc, cfg)
    elif (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer as HFTokenizer

        backend = HFTokenizer.from_file(str(folder / "tokenizer.json"))
        _special_ids(folder, cfg, backend)
        eos = cfg["eos_token_id"]
        tokenizer = Tokenizer.from_tokenizers(backend, bos_id=cfg["bos_token_id"],
                                              eos_id=eos[0] if isinstance(eos, list) and eos else eos)
    cfg.setdefault("bos_token_id", None)
    cfg.setdefault("eos_token_id", None)
    return ModelFiles(path=folder, format="awq", config=cfg, tensors=tensors, tokenizer=tokenizer,
                      metadata={"dtypes": dtypes, "quantization_config": qc})
