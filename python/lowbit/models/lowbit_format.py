"""lowbit's own checkpoint format: a (quantized) Llama-family model in one folder.

``save_model(model, path)`` writes it, ``read_lowbit_folder(path)`` reads it back into
:class:`~lowbit.models.model_files.ModelFiles`, and ``lowbit.load_model(path)`` recognises it.

Layout (format_version 1)::

    path/
      config.json                        model.config.to_hf()
                                         + "lowbit": {format_version, lowbit_version, tokenizer, source}
                                         + "quantization_config" (only when a weight is quantized)
      model.safetensors                  one shard, or
      model-00001-of-0000N.safetensors   N shards (each at most max_shard_bytes unless one
      model.safetensors.index.json         tensor alone is larger) + an index with "weight_map"
      tokenizer.json, tokenizer_config.json    a ``tokenizers`` tokenizer, or
      tokenizer.bin                            a llama2.c vocabulary (llama2.c's tokenizer.bin format)

**config.json.** Hugging Face keys (``LlamaConfig.to_hf()``). The ``"lowbit"`` entry marks the
folder as lowbit's (``is_lowbit_folder``) even when nothing is quantized, and records how to
rebuild the tokenizer (kind, file, bos/eos ids, vocab size). When any weight is quantized,
``"quantization_config"`` holds ``quant_method: "lowbit"``, ``lowbit_version``,
``format_version: 1``, ``"config"`` (the config dict most tensors share, ``config.to_dict()``),
``"per_layer"`` (``{layer name: config dict or null}`` for the tensors that differ) and then,
verbatim, every key of the caller's ``quantization`` dict (calibration provenance ...; numpy
scalars/arrays become JSON numbers/lists, paths become strings). transformers will not load a
quantized lowbit folder (it does not know ``quant_method: "lowbit"``); a dense one is a plain
Hugging Face folder that transformers can read as long as ``rope_interleaved`` is absent
(llama2.c models keep their interleaved q/k rows; transformers knows no such key).

**Weights.** Dense tensors are stored under their Hugging Face names in their own dtype
(float32, float16, bfloat16 as safetensors ``BF16`` — NumPy arrays of ``ml_dtypes.bfloat16``
are written natively by safetensors, and read back as ``ml_dtypes.bfloat16`` views when
``ml_dtypes`` is installed, float32 copies otherwise). A quantized weight ``<name>.weight``
(``<name>`` e.g. ``model.layers.0.self_attn.q_proj``) is stored as ``<name>.qweight``,
``<name>.scales``, ``<name>.zeros`` and, for act-order tensors, ``<name>.g_idx`` (the layout of
:mod:`lowbit.tensor`), all in the same shard. Each shard's safetensors metadata has
``"format": "pt"`` and ``"lowbit"``: a JSON object ``{"format_version": 1, "tensors": {<name>.weight:
{"format", "shape", "group_size", "per_tensor", "sym", "arrays", "params", "config", "stats"}}}`` describing
the quantized tensors of that shard — the shard is self-contained (the per-tensor ``config`` is
what the tensor is rebuilt with; ``quantization_config`` is the model-level summary).
The per-frequency RoPE divisors of Llama 3.1 GGUF models (``model.source["rope_freqs"]``) are
stored as the float32 tensor ``rope_freqs`` and come back in ``metadata["rope_freqs"]``.

**Reading.** Shards are memory-mapped (read-only views through
:func:`lowbit.models.hf_reader.read_safetensors`; the ``safetensors`` package's NumPy loader
would copy every tensor), so loading costs no memory until weights are touched.

**Atomicity.** Everything is written into a temporary sibling folder ``.<name>.tmp-XXXX`` and
renamed into place. An existing ``path`` is refused unless ``overwrite=True``; then the old
folder is renamed aside (``.<name>.old-XXXX``), the new one renamed in, the old one deleted.
Any exception, KeyboardInterrupt included, removes the temporary folder and leaves ``path`` as
it was.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from ..config import load_config
from ..tensor import QuantizedTensor
from .hf_reader import read_json_object
from .model_files import ModelFiles
from .tokenizer import Tokenizer

__all__ = ["FORMAT_VERSION", "QUANT_METHOD", "is_lowbit_folder", "read_lowbit_folder", "save_model"]

FORMAT_VERSION = 1
QUANT_METHOD = "lowbit"

_CONFIG = "config.json"
_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"
_TOKENIZER_JSON = "tokenizer.json"
_TOKENIZER_CONFIG = "tokenizer_config.json"
_TOKENIZER_BIN = "tokenizer.bin"
_MARKER = "lowbit"                       # config.json key and shard metadata key
_PIECES = ("qweight", "scales", "zeros", "g_idx")
_ROPE_FREQS = "rope_freqs"
_RESERVED_QC = ("quant_method", "lowbit_version", "format_version")


# ---------------------------------------------------------------------------------- writing

def save_model(model: Any, path: str | os.PathLike[str], *, max_shard_bytes: int = 2**31,
               quantization: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write ``model`` (a :class:`~lowbit.models.llama.LlamaModel`) as a lowbit folder at ``path``.

    Args:
        model: the model; weights may be dense arrays or QuantizedTensors.
        path: the folder to create (its parent must exist).
        max_shard_bytes: split the weights into shards of at most this many bytes (a tensor
            larger than that gets a shard of its own; a quantized tensor's pieces stay together).
        quantization: extra JSON-serializable keys for ``quantization_config`` (calibration
            provenance, per-layer stats ...), stored verbatim; ignored for a dense model.
        overwrite: replace an existing ``path`` (atomically as far as the OS allows).

    Returns the path. Raises FileExistsError when ``path`` exists and not ``overwrite``;
    FileNotFoundError for a missing parent folder; ValueError/TypeError for content that cannot
    be stored (a quantized weight whose name does not end in ``.weight``, a name clash, a
    ``quantization`` key that is reserved or not JSON-serializable, an unknown tokenizer kind).
    Nothing is left behind on any error (see the module docstring).
    """
    path = Path(path)
    if not isinstance(max_shard_bytes, int) or isinstance(max_shard_bytes, bool) or max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be a positive int, got {max_shard_bytes!r}")
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: parent folder {parent} does not exist")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")

    # Everything that can fail on bad input is prepared before the first byte is written.
    entries, quantized = _collect_entries(model.weights)
    rope = _rope_entry(model)
    if rope is not None:
        entries.append(rope)
    config = _config_json(model, quantized, quantization)
    shards = _plan_shards(entries, max_shard_bytes)
    _check_tokenizer(model.tokenizer)

    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    try:
        config[_MARKER]["tokenizer"] = _write_tokenizer(model.tokenizer, tmp, model.config)
        _write_json(tmp / _CONFIG, config)
        names = _shard_names(len(shards))
        weight_map: dict[str, str] = {}
        total = 0
        for fname, shard in zip(names, shards):
            arrays: dict[str, np.ndarray] = {}
            described: dict[str, Any] = {}
            for e in shard:
                arrays.update(e["arrays"])
                if e["desc"] is not None:
                    described[e["name"]] = e["desc"]
                total += e["nbytes"]
            meta = {"format": "pt",
                    _MARKER: json.dumps({"format_version": FORMAT_VERSION, "tensors": described}, sort_keys=True)}
            _write_shard(tmp / fname, arrays, meta)
            weight_map.update(dict.fromkeys(arrays, fname))
        if len(shards) > 1:
            _write_json(tmp / _INDEX, {"metadata": {"total_size": total, "format": _MARKER},
                                       "weight_map": weight_map})
        _move_into_place(tmp, path, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_shard(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """One safetensors file (separate so tests can interrupt a save between shards)."""
    from safetensors.numpy import save_file

    save_file(arrays, str(path), metadata=metadata)


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    if not (path.exists() or path.is_symlink()):
        try:
            os.rename(tmp, path)   # fails (ENOTEMPTY/EEXIST) if a non-empty folder appeared meanwhile
        except OSError as e:
            if path.exists():
                raise FileExistsError(f"{path} appeared while saving (pass overwrite=True to replace it)") from e
            raise
        return
    if not overwrite:
        raise FileExistsError(f"{path} appeared while saving (pass overwrite=True to replace it)")
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    old.rmdir()                    # only the unique name is wanted
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)       # put the old one back
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def _collect_entries(weights: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, QuantizedTensor]]:
    """One storage entry per weight: its stored arrays and (quantized) its description."""
    entries: list[dict[str, Any]] = []
    quantized: dict[str, QuantizedTensor] = {}
    stored: dict[str, str] = {}

    def claim(key: str, owner: str) -> None:
        if key in stored:
            raise ValueError(f"cannot save: stored name {key!r} of {owner!r} clashes with {stored[key]!r}")
        stored[key] = owner

    for name, w in weights.items():
        if name == _ROPE_FREQS:
            raise ValueError(f"cannot save: weight name {name!r} is reserved by the lowbit format")
        if isinstance(w, QuantizedTensor):
            if not name.endswith(".weight"):
                raise ValueError(f"cannot save quantized tensor {name!r}: quantized weights must be named "
                                 f"'<layer>.weight'")
            base = name[: -len(".weight")]
            pieces = sorted(w.arrays, key=lambda k: (_PIECES.index(k) if k in _PIECES else len(_PIECES), k))
            arrays = {f"{base}.{k}": np.ascontiguousarray(w.arrays[k]) for k in pieces}
            for k in arrays:
                claim(k, name)
            desc = {"format": w.format, "shape": list(w.shape), "group_size": int(w.group_size),
                    "per_tensor": bool(w.per_tensor), "sym": bool(w.sym),
                    "arrays": pieces, "params": _to_json(w.params, f"params of {name}"),
                    "config": w.config.to_dict() if w.config is not None else None,
                    "stats": _to_json(w.stats, f"stats of {name}")}
            quantized[name] = w
            entries.append({"name": name, "arrays": arrays, "desc": desc,
                            "nbytes": sum(a.nbytes for a in arrays.values())})
        else:
            a = np.asarray(w)
            if a.dtype.kind not in "fiub" and a.dtype.name != "bfloat16":
                raise TypeError(f"cannot save weight {name!r}: dtype {a.dtype} is not a numeric array")
            claim(name, name)
            entries.append({"name": name, "arrays": {name: np.ascontiguousarray(a)}, "desc": None,
                            "nbytes": a.nbytes})
    return entries, quantized


def _rope_entry(model: Any) -> dict[str, Any] | None:
    rf = (getattr(model, "source", None) or {}).get(_ROPE_FREQS)
    if rf is None:
        return None
    a = np.ascontiguousarray(np.asarray(rf, dtype=np.float32).reshape(-1))
    return {"name": _ROPE_FREQS, "arrays": {_ROPE_FREQS: a}, "desc": None, "nbytes": a.nbytes}


def _plan_shards(entries: list[dict[str, Any]], max_bytes: int) -> list[list[dict[str, Any]]]:
    shards: list[list[dict[str, Any]]] = [[]]
    size = 0
    for e in entries:
        if shards[-1] and size + e["nbytes"] > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(e)
        size += e["nbytes"]
    return shards


def _shard_names(n: int) -> list[str]:
    if n == 1:
        return [_SINGLE]
    return [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


def _config_json(model: Any, quantized: Mapping[str, QuantizedTensor],
                 quantization: Mapping[str, Any] | None) -> dict[str, Any]:
    cfg = dict(model.config.to_hf())
    src = getattr(model, "source", None) or {}
    cfg[_MARKER] = {"format_version": FORMAT_VERSION, "lowbit_version": _core.__version__,
                    "source": {k: str(src[k]) for k in ("path", "format") if src.get(k) is not None},
                    "tokenizer": None}
    if quantization is not None and not isinstance(quantization, Mapping):
        raise TypeError(f"quantization must be a dict, got {type(quantization).__name__}")
    if not quantized:
        return cfg
    dicts = {n[: -len(".weight")]: (q.config.to_dict() if q.config is not None else None)
             for n, q in quantized.items()}
    keyed = {n: json.dumps(d, sort_keys=True) for n, d in dicts.items()}
    common_key = Counter(keyed.values()).most_common(1)[0][0]
    qc: dict[str, Any] = {"quant_method": QUANT_METHOD, "lowbit_version": _core.__version__,
                          "format_version": FORMAT_VERSION, "config": json.loads(common_key)}
    per_layer = {n: dicts[n] for n, k in keyed.items() if k != common_key}
    if per_layer:
        qc["per_layer"] = per_layer
    for k, v in (quantization or {}).items():
        if not isinstance(k, str):
            raise TypeError(f"quantization keys must be str, got {k!r}")
        if k in _RESERVED_QC:
            raise ValueError(f"quantization key {k!r} is reserved (set by save_model)")
        qc[k] = _to_json(v, f"quantization[{k!r}]")
    cfg["quantization_config"] = qc
    return cfg


def _to_json(obj: Any, where: str) -> Any:
    """``obj`` with numpy scalars/arrays, tuples and paths turned into JSON types; TypeError
    naming ``where`` for anything else that json cannot store."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)):
        return obj
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if isinstance(k, (np.integer, int)) and not isinstance(k, bool):
                k = str(int(k))
            if not isinstance(k, str):
                raise TypeError(f"{where}: dict key {k!r} is not a str")
            out[k] = _to_json(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_to_json(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return _to_json(obj.tolist(), where)
    if isinstance(obj, np.generic):
        return _to_json(obj.item(), where)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{where}: {type(obj).__name__} is not JSON-serializable")


# ------------------------------------------------------------------------------- tokenizer

def _check_tokenizer(tok: Tokenizer | None) -> None:
    if tok is not None and tok.kind not in ("tokenizers", "llama2c"):
        raise ValueError(f"cannot save a tokenizer of kind {tok.kind!r} (known: 'tokenizers', 'llama2c')")


def _write_tokenizer(tok: Tokenizer | None, folder: Path, mcfg: Any) -> dict[str, Any] | None:
    if tok is None:
        return None
    desc = {"kind": tok.kind, "bos_id": tok.bos_id, "eos_id": tok.eos_id, "vocab_size": int(tok.vocab_size),
            "add_bos_default": bool(tok.add_bos_default)}
    if tok.kind == "tokenizers":
        tok.backend.save(str(folder / _TOKENIZER_JSON))
        tc: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast",
                              "model_max_length": int(mcfg.max_position_embeddings),
                              "clean_up_tokenization_spaces": False}
        for key, i in (("bos_token", tok.bos_id), ("eos_token", tok.eos_id)):
            token = tok.backend.id_to_token(i) if i is not None else None
            if token is not None:
                tc[key] = token
        _write_json(folder / _TOKENIZER_CONFIG, tc)
        desc["file"] = _TOKENIZER_JSON
    else:
        v = tok.backend
        parts = [struct.pack("<i", int(v.max_token_length))]
        for piece, score in zip(v.pieces, v.scores):
            parts.append(struct.pack("<fi", score, len(piece)) + bytes(piece))
        (folder / _TOKENIZER_BIN).write_bytes(b"".join(parts))
        desc["file"] = _TOKENIZER_BIN
        desc["vocab_size"] = len(v.pieces)
    return desc


def _read_tokenizer(folder: Path, desc: Mapping[str, Any] | None, cfg: Mapping[str, Any]) -> Tokenizer | None:
    if desc is None:
        return None
    kind, fname = desc.get("kind"), desc.get("file")
    if not isinstance(fname, str) or kind not in ("tokenizers", "llama2c"):
        raise ValueError(f"{folder / _CONFIG}: bad tokenizer entry {dict(desc)!r}")
    p = folder / fname
    if not p.is_file():
        raise FileNotFoundError(f"{folder / _CONFIG} names tokenizer file {fname!r}, but {p} does not exist")
    if kind == "llama2c":
        from .llama2c import read_llama2c_vocab

        vocab = read_llama2c_vocab(p, int(desc.get("vocab_size") or cfg["vocab_size"]))
        tok = Tokenizer.from_llama2c(vocab)
    else:
        from tokenizers import Tokenizer as HFTokenizer

        try:
            backend = HFTokenizer.from_file(str(p))
        except Exception as e:  # tokenizers raises a plain Exception for malformed files
            raise ValueError(f"{p}: cannot load tokenizer ({e})") from e
        tok = Tokenizer.from_tokenizers(backend)
    tok.bos_id, tok.eos_id = desc.get("bos_id"), desc.get("eos_id")
    tok.add_bos_default = bool(desc.get("add_bos_default", tok.add_bos_default))
    return tok


# ---------------------------------------------------------------------------------- reading

def _is_lowbit_config(cfg: Mapping[str, Any]) -> bool:
    qc = cfg.get("quantization_config")
    return (isinstance(qc, Mapping) and qc.get("quant_method") == QUANT_METHOD) or isinstance(cfg.get(_MARKER), Mapping)


def is_lowbit_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder whose config.json marks it as written by :func:`save_model`
    (``quantization_config.quant_method == "lowbit"`` or a ``"lowbit"`` entry)."""
    p = Path(path) / _CONFIG
    if not p.is_file():
        return False
    try:
        return _is_lowbit_config(read_json_object(p))
    except ValueError:
        return False


def _shard_files(folder: Path) -> list[Path]:
    index = folder / _INDEX
    if index.is_file():
        wm = read_json_object(index).get("weight_map")
        if not isinstance(wm, dict) or not wm:
            raise ValueError(f"{index}: no 'weight_map'")
        names = list(dict.fromkeys(wm.values()))
    elif (folder / _SINGLE).is_file():
        names = [_SINGLE]
    else:
        raise FileNotFoundError(f"{folder}: no {_SINGLE} or {_INDEX} (shard missing)")
    files = []
    for n in names:
        p = folder / n
        if not p.is_file():
            raise FileNotFoundError(f"{folder}: weight shard {n!r} is missing ({p} does not exist)")
        files.append(p)
    return files


def _shard_metadata(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:   # reads the header only
        meta = f.metadata() or {}
    raw = meta.get(_MARKER)
    if raw is None:
        return {}
    try:
        d = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: lowbit metadata is not valid JSON ({e})") from e
    if d.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported lowbit format_version {d.get('format_version')!r} "
                         f"(this lowbit reads {FORMAT_VERSION})")
    tensors = d.get("tensors")
    if not isinstance(tensors, dict):
        raise ValueError(f"{path}: lowbit metadata without a 'tensors' object")
    return tensors


def read_lowbit_folder(path: str | os.PathLike[str]) -> ModelFiles:
    """Read a folder written by :func:`save_model` into ModelFiles (``format="lowbit"``).

    Dense weights are read-only memory-mapped views; quantized ones are rebuilt as
    QuantizedTensors (configs via :func:`lowbit.load_config`) over memory-mapped arrays.
    ``metadata`` holds ``quantization_config`` (None for a dense model), the ``lowbit`` entry of
    config.json, the shard files, stored dtypes and, where saved, ``rope_freqs``.

    Raises FileNotFoundError for a missing folder, config.json, shard (named) or tokenizer file;
    ValueError for an unknown ``format_version``, a quantized tensor missing a piece (tensor
    and piece named), a stored piece without its description, malformed files.
    """
    from .hf_reader import read_safetensors

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    cfg_path = folder / _CONFIG
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: a lowbit model folder needs a config.json")
    cfg = read_json_object(cfg_path)
    if not _is_lowbit_config(cfg):
        raise ValueError(f"{cfg_path}: not a lowbit folder (no quantization_config with quant_method "
                         f"'lowbit' and no 'lowbit' entry)")
    qc = cfg.get("quantization_config")
    qc = qc if isinstance(qc, Mapping) and qc.get("quant_method") == QUANT_METHOD else None
    marker = cfg.get(_MARKER) if isinstance(cfg.get(_MARKER), Mapping) else {}
    for where, d in (("quantization_config", qc), ("lowbit", marker)):
        if d and d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{cfg_path}: unsupported {where}.format_version {d.get('format_version')!r} "
                             f"(this lowbit reads {FORMAT_VERSION})")

    files = _shard_files(folder)
    arrays: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    origin: dict[str, str] = {}
    described: dict[str, Any] = {}
    for f in files:
        described.update(_shard_metadata(f))
        got, dts, _ = read_safetensors(f)
        for name, a in got.items():
            if name in arrays:
                raise ValueError(f"{f}: tensor {name!r} is also in {origin[name]}")
            arrays[name], dtypes[name], origin[name] = a, dts[name], f.name

    tensors: dict[str, Any] = {}
    used: set[str] = set()
    for name, d in described.items():
        base = name[: -len(".weight")] if name.endswith(".weight") else name
        pieces = d.get("arrays") or ["qweight", "scales", "zeros"]
        got_pieces = {}
        for piece in pieces:
            key = f"{base}.{piece}"
            if key not in arrays:
                raise ValueError(f"{folder}: quantized tensor {name!r} is missing its {piece!r} array "
                                 f"({key!r} is in no shard)")
            got_pieces[piece] = arrays[key]
            used.add(key)
        try:
            tensors[name] = QuantizedTensor(
                format=d["format"], shape=tuple(d["shape"]), arrays=got_pieces, group_size=d["group_size"],
                per_tensor=d["per_tensor"], sym=d["sym"],
                config=load_config(d["config"]) if d.get("config") else None, stats=d.get("stats") or {},
                params=d.get("params") or {})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{folder}: quantized tensor {name!r} is inconsistent ({e})") from e
        dtypes[name] = d["format"]
    metadata: dict[str, Any] = {"files": [f.name for f in files], "dtypes": {}, "quantization_config": qc,
                                "lowbit": dict(marker)}
    for key, a in arrays.items():
        if key in used:
            continue
        if key == _ROPE_FREQS:
            metadata[_ROPE_FREQS] = np.asarray(a, dtype=np.float32)
            continue
        if key.rsplit(".", 1)[-1] in _PIECES:
            raise ValueError(f"{folder}: {key!r} looks like a piece of a quantized tensor, but no shard "
                             f"describes {key.rsplit('.', 1)[0] + '.weight'!r}")
        tensors[key] = a
    metadata["dtypes"] = {k: dtypes[k] for k in tensors}
    tok_desc = marker.get("tokenizer")
    tokenizer = _read_tokenizer(folder, tok_desc, cfg)
    metadata["tokenizer_file"] = tok_desc.get("file") if isinstance(tok_desc, Mapping) else None
    return ModelFiles(path=folder, format="lowbit", config=cfg, tensors=tensors, tokenizer=tokenizer,
                      metadata=metadata)
