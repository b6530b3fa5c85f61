"""GGUF writer: a (quantized) Llama-family model as one ``.gguf`` file that llama.cpp loads.

``save_gguf(model, path)`` (also ``model.save(path, format="gguf")`` and ``lowbit quantize ...
--format gguf``) writes, through the ``gguf`` package's ``GGUFWriter``:

* **metadata**: ``general.*`` (architecture, name, file_type, quantization_version; the
  descriptive ``general.*`` keys of a GGUF source are kept), the ``llama.*`` (or ``qwen2.*``)
  hyper-parameters ``convert_hf_to_gguf.py`` writes, and the tokenizer: a GGUF source's
  ``tokenizer.*`` keys verbatim; a llama2.c vocabulary as a SentencePiece (``llama``) vocabulary
  the way llama.cpp's ``convert-llama2c-to-ggml`` does; a ``tokenizers`` byte-level BPE as a
  ``gpt2`` vocabulary with merges, its ``tokenizer.ggml.pre`` found by checking which of
  llama.cpp's pre-tokenizers gives the same ids on a probe text.
* **tensors** under llama.cpp's names (``token_embd.weight``, ``blk.N.attn_q.weight``, ...), in
  the order llama.cpp's quantizer writes them (global tensors first, then block by block, each
  group sorted by name), aligned to 32 bytes. ``attn_q``/``attn_k`` rows are permuted per head
  from Hugging Face's rotate-half order to llama.cpp's adjacent-pair order (REFERENCE.md §6.5;
  not for qwen2, nor for llama2.c models whose rows are already interleaved). Rows of a
  quantized tensor are independent, so the permutation moves whole rows of packed bytes.

What a tensor becomes:

* a QuantizedTensor of a ggml format (``q4_K``, ``q8_0``, ...): its bytes, unchanged;
* a dense weight, when a GGUF type or mixture is in force (``type=...``, or the GGUFConfig the
  model was quantized with): the type llama.cpp's quantizer would give it
  (:func:`lowbit.gguf_mixtures.tensor_type`), quantized here with lowbit's ggml quantizers and
  the importance matrix entry of that tensor (so the token embedding and output of a ``Q4_K_M``
  model are quantized as llama.cpp would);
* other dense tensors: 1-D (norms, biases) as F32; 2-D in their own dtype (F32, F16, BF16), or
  as ``dtype`` says;
* a QuantizedTensor of a format GGUF cannot hold (GPTQ int4, NF4, ...): an error naming it.

The write is atomic: a temporary file next to ``path``, renamed into place.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write
from ..gguf_mixtures import MIXTURES, PLAIN_TYPES, file_type_id, ggml_type_name, gguf_tensor_name, tensor_type
from ..tensor import QuantizedTensor

__all__ = ["GGUF_ALIGNMENT", "save_gguf", "gguf_tensor_plan", "tokenizer_metadata", "permute_qk_rows", "read_gguf_kv"]

GGUF_ALIGNMENT = 32
_QUANTIZATION_VERSION = 2  # GGML_QNT_VERSION
_BLK = re.compile(r"blk\.(\d+)\.")

# llama_token_type
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6

# descriptive keys of a GGUF source that stay true for the written file
_KEEP_GENERAL = ("general.name", "general.type", "general.organization", "general.finetune", "general.basename",
                 "general.size_label", "general.license", "general.license.name", "general.license.link",
                 "general.languages", "general.tags", "general.author", "general.version", "general.description",
                 "general.url", "general.repo_url", "general.source.url", "general.source.repo_url")


# ------------------------------------------------------------------------------------ names
def _arch(model: Any) -> str:
    return "qwen2" if model.config.model_type == "qwen2" else "llama"


def _order_key(gguf_name: str) -> tuple[int, str]:
    """llama.cpp's ``weight_name_comparer``: layer number (-1 outside blocks), then name."""
    m = _BLK.match(gguf_name)
    return (int(m.group(1)) if m else -1, gguf_name)


def permute_qk_rows(a: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face rotate-half rows -> llama.cpp's interleaved rows, per head: row
    ``h*d + s*d/2 + i`` moves to ``h*d + 2i + s``. ``a``: ``[rows, ...]`` (floats or packed bytes)."""
    rows = a.shape[0]
    if n_head <= 0 or rows % (2 * n_head):
        raise ValueError(f"{rows} rows cannot be split into {n_head} heads of even size")
    return np.ascontiguousarray(a.reshape(n_head, 2, rows // n_head // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape))


# ------------------------------------------------------------------------------- quantizer
def _quantize_ggml(w: np.ndarray, ggml_type: str, imatrix: np.ndarray | None) -> np.ndarray:
    """Quantize float32 ``w [out, in]`` to ggml type ``ggml_type`` with lowbit's quantizer;
    returns the packed rows, uint8 ``[out, row_bytes]``."""
    from ..config import GGUFConfig
    from ..formats import FORMATS
    from ..quantize import quantize

    if ggml_type not in FORMATS:
        raise NotImplementedError(f"ggml type {ggml_type} is not in this build's format table: cannot quantize to it")
    stats = {"act_mean_sq": np.asarray(imatrix, dtype=np.float64)} if imatrix is not None else {}
    q = quantize(np.ascontiguousarray(w, dtype=np.float32), GGUFConfig(type=ggml_type.upper()), **stats)
    if q.format != ggml_type or "qweight" not in q.arrays:
        raise RuntimeError(f"quantizing to {ggml_type} gave a {q.format} tensor with arrays {sorted(q.arrays)}")
    return q.arrays["qweight"]


# ------------------------------------------------------------------------------------- plan
@dataclass
class TensorPlan:
    """One tensor of the file: its GGUF name, ggml type, NumPy shape and how to make its data."""

    name: str
    ggml_type: str                       # "f32", "f16", "bf16", "q4_K", ...
    shape: tuple[int, ...]               # NumPy shape (out, in) / (n,)
    data: Callable[[], np.ndarray]       # float32/float16/uint16(bf16) values, or uint8 packed rows
    source: str                          # "copy" (QuantizedTensor bytes), "quantize", "float"


def _ggml_enum(ggml_type: str) -> Any:
    from gguf import GGMLQuantizationType

    try:
        return GGMLQuantizationType[ggml_type.upper()]
    except KeyError:
        raise ValueError(f"{ggml_type!r} is not a ggml type the gguf package knows") from None


def _is_bf16(a: np.ndarray) -> bool:
    return a.dtype.name == "bfloat16"


def _float_data(a: Any, ggml_type: str, permute: int | None) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        x = np.asarray(a)
        if ggml_type == "f32":
            x = np.asarray(x, dtype=np.float32)
        elif ggml_type == "f16":
            x = np.asarray(x.astype(np.float32) if _is_bf16(x) else x, dtype=np.float16)
        elif ggml_type == "bf16":
            if not _is_bf16(x):
                import ml_dtypes
                x = x.astype(np.float32).astype(ml_dtypes.bfloat16)
            x = x.view(np.uint16)
        if permute:
            x = permute_qk_rows(x, permute)
        return np.ascontiguousarray(x)
    return make


def _dense_type(a: Any, dtype: str) -> str:
    if dtype != "auto":
        return dtype
    name = np.dtype(a.dtype).name
    return {"float16": "f16", "bfloat16": "bf16"}.get(name, "f32")


def _resolve_type(model: Any, type: Any) -> tuple[str | None, Any]:
    """(mixture/type name or None, GGUFConfig or None) in force for dense tensors."""
    from ..config import GGUFConfig

    if isinstance(type, GGUFConfig):
        return type.type, type
    if type is not None:
        if not isinstance(type, str):
            raise TypeError(f"type must be a GGUF type/mixture name or a GGUFConfig, got {type!r}")
        name = type.upper()
        if name not in MIXTURES and name not in PLAIN_TYPES:
            known = [*MIXTURES, *(t for t in PLAIN_TYPES if t not in MIXTURES)]
            raise ValueError(f"type must be one of {', '.join(known)}"
                             f"; got {type!r}")
        return name, None
    cfg = (model.quantization or {}).get("config") if getattr(model, "quantization", None) else None
    if isinstance(cfg, Mapping) and cfg.get("quant_method") == "gguf" and cfg.get("type"):
        return str(cfg["type"]).upper(), None
    return None, None


def gguf_tensor_plan(model: Any, *, type: Any = None, imatrix: Mapping[str, np.ndarray] | None = None,
                     dtype: str = "auto", output_type: str | None = None,
                     token_embedding_type: str | None = None) -> list[TensorPlan]:
    """Every tensor :func:`save_gguf` writes, in file order, with its ggml type (nothing is
    computed until a plan's ``data()`` is called). Arguments as in :func:`save_gguf`."""
    from ..formats import format_info

    if dtype not in ("auto", "f32", "f16", "bf16"):
        raise ValueError(f"dtype must be 'auto', 'f32', 'f16' or 'bf16', got {dtype!r}")
    cfg = model.config
    arch = _arch(model)
    mixture, _ = _resolve_type(model, type)
    has_imatrix = bool(imatrix)
    n_gqa = cfg.num_attention_heads // cfg.num_key_value_heads
    tied = "lm_head.weight" not in model.weights
    facts = {"tied_embeddings": tied, "n_gqa": n_gqa, "has_imatrix": has_imatrix,
             "is_70b": arch == "llama" and cfg.num_hidden_layers == 80 and n_gqa > 1}
    permute_heads = {}
    if arch == "llama" and not cfg.rope_interleaved:
        permute_heads = {"attn_q": cfg.num_attention_heads, "attn_k": cfg.num_key_value_heads}

    plans: list[TensorPlan] = []
    for hf_name, w in model.weights.items():
        name = gguf_tensor_name(hf_name)
        role = name.split(".")[-2]
        heads = permute_heads.get(role)
        shape = tuple(int(d) for d in w.shape)
        if isinstance(w, QuantizedTensor):
            info = format_info(w.format)
            if not info.is_gguf_type or "qweight" not in w.arrays or set(w.arrays) != {"qweight"}:
                raise NotImplementedError(
                    f"{hf_name} is quantized as {w.format!r}, which GGUF cannot store; quantize with "
                    f"lowbit.GGUFConfig(...) for a GGUF file, or save with format='lowbit'")
            plans.append(TensorPlan(name, w.format, shape, _packed(w.arrays["qweight"], heads), "copy"))
            continue
        t = None
        if name == "output.weight" and output_type:
            t = ggml_type_name(output_type)
        elif name == "token_embd.weight" and token_embedding_type:
            t = ggml_type_name(token_embedding_type)
        elif mixture is not None:
            t = tensor_type(name, shape, cfg.num_hidden_layers, mixture, **facts)
        if t is None:
            t = "f32" if len(shape) == 1 else _dense_type(w, dtype)
        if t in ("f32", "f16", "bf16"):
            plans.append(TensorPlan(name, t, shape, _float_data(w, t, heads), "float"))
        else:
            imat = imatrix.get(name) if imatrix else None
            if imat is not None and np.asarray(imat).shape != (shape[-1],):
                raise ValueError(f"imatrix entry {name} has shape {np.asarray(imat).shape}, expected ({shape[-1]},)")
            plans.append(TensorPlan(name, t, shape, _quantized(w, t, imat, heads), "quantize"))
    rope_freqs = model.source.get("rope_freqs") if isinstance(model.source, Mapping) else None
    if rope_freqs is not None:
        rf = np.asarray(rope_freqs, dtype=np.float32).reshape(-1)
        plans.append(TensorPlan("rope_freqs.weight", "f32", rf.shape, lambda rf=rf: rf, "float"))
    plans.sort(key=lambda p: _order_key(p.name))
    return plans


def _packed(qweight: np.ndarray, heads: int | None) -> Callable[[], np.ndarray]:
    return lambda: permute_qk_rows(qweight, heads) if heads else np.ascontiguousarray(qweight)


def _quantized(w: Any, t: str, imat: np.ndarray | None, heads: int | None) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        x = np.asarray(w)
        x = x.astype(np.float32) if x.dtype != np.float32 else x
        packed = _quantize_ggml(x, t, imat)
        return permute_qk_rows(packed, heads) if heads else packed
    return make


# -------------------------------------------------------------------------------- metadata
def _hparams(model: Any, arch: str) -> list[tuple[str, Any, str]]:
    c = model.config
    kv: list[tuple[str, Any, str]] = [
        (f"{arch}.vocab_size", c.vocab_size, "u32"),
        (f"{arch}.context_length", c.max_position_embeddings, "u32"),
        (f"{arch}.embedding_length", c.hidden_size, "u32"),
        (f"{arch}.block_count", c.num_hidden_layers, "u32"),
        (f"{arch}.feed_forward_length", c.intermediate_size, "u32"),
        (f"{arch}.rope.dimension_count", c.head_dim, "u32"),
        (f"{arch}.attention.head_count", c.num_attention_heads, "u32"),
        (f"{arch}.attention.head_count_kv", c.num_key_value_heads, "u32"),
        (f"{arch}.rope.freq_base", float(c.rope_theta), "f32"),
        (f"{arch}.attention.layer_norm_rms_epsilon", float(c.rms_norm_eps), "f32"),
    ]
    if c.head_dim != c.hidden_size // c.num_attention_heads:
        kv += [(f"{arch}.attention.key_length", c.head_dim, "u32"), (f"{arch}.attention.value_length", c.head_dim, "u32")]
    s = c.rope_scaling
    if s:
        kind = s.get("rope_type", s.get("type"))
        if kind in ("linear", "yarn"):
            kv += [(f"{arch}.rope.scaling.type", kind, "str"), (f"{arch}.rope.scaling.factor", float(s["factor"]), "f32")]
            if s.get("original_max_position_embeddings"):
                kv.append((f"{arch}.rope.scaling.original_context_length",
                           int(s["original_max_position_embeddings"]), "u32"))
        elif kind == "llama3":
            if model.source.get("rope_freqs") is None:
                raise NotImplementedError("llama3 rope scaling is stored as a rope_freqs tensor; this model has none "
                                          "(only GGUF sources carry it)")
        else:
            raise NotImplementedError(f"rope_scaling {kind!r} cannot be written to GGUF yet")
    return kv


# GGUF value types: struct format of the scalars (8 string, 9 array)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NP = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8", 12: "<f8"}


def read_gguf_kv(path: str | os.PathLike[str]) -> list[tuple[str, int, int | None, Any]]:
    """The metadata key/values of a (little-endian, v2/v3) GGUF file in file order:
    ``(key, value type, array element type or None, value)``, strings decoded as UTF-8.

    Reads only the header (a vocabulary of 100k strings takes a fraction of a second, where
    ``gguf.GGUFReader`` builds a NumPy view per string). ValueError names the file when it is
    not GGUF or is truncated.
    """
    import mmap
    import struct

    path = Path(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        off = 0

        def take(fmt: str) -> Any:
            nonlocal off
            v = struct.unpack_from(fmt, buf, off)[0]
            off += struct.calcsize(fmt)
            return v

        def string() -> str:
            nonlocal off
            n = take("<Q")
            if off + n > len(buf):
                raise ValueError(f"{path}: truncated GGUF header")
            v = bytes(buf[off:off + n]).decode("utf-8")
            off += n
            return v

        def value(t: int) -> Any:
            if t in _SCALARS:
                v = take(_SCALARS[t])
                return bool(v) if t == 7 else v
            if t == 8:
                return string()
            raise ValueError(f"{path}: unexpected GGUF value type {t}")

        try:
            if bytes(buf[:4]) != b"GGUF":
                raise ValueError(f"{path}: not a GGUF file")
            off = 4
            version = take("<I")
            if version not in (2, 3):
                raise ValueError(f"{path}: GGUF version {version} is not supported")
            take("<Q")
            n_kv = take("<Q")
            out: list[tuple[str, int, int | None, Any]] = []
            for _ in range(n_kv):
                key = string()
                t = take("<I")
                if t != 9:
                    out.append((key, t, None, value(t)))
                    continue
                sub, n = take("<I"), take("<Q")
                if sub in _NP:
                    size = n * np.dtype(_NP[sub]).itemsize
                    if off + size > len(buf):
                        raise ValueError(f"{path}: truncated GGUF header")
                    arr = np.frombuffer(buf[off:off + size], _NP[sub])  # a copy: no view into the map
                    off += size
                    vals: Any = [bool(x) for x in arr] if sub == 7 else arr.tolist()
                elif sub == 8:
                    vals = [string() for _ in range(n)]
                else:
                    raise NotImplementedError(f"{path}: nested GGUF array {key!r} cannot be copied")
                out.append((key, t, sub, vals))
        except (struct.error, ValueError, UnicodeDecodeError) as e:
            if isinstance(e, ValueError) and str(e).startswith(str(path)):
                raise
            raise ValueError(f"{path}: corrupt or truncated GGUF header ({type(e).__name__}: {e})") from e
    return out


def _source_gguf_kv(model: Any) -> list[tuple[str, int, int | None, Any]] | None:
    """The metadata of the model's GGUF source file, if it has one on disk."""
    src = model.source if isinstance(model.source, Mapping) else {}
    if src.get("format") != "gguf" or not src.get("path") or not Path(src["path"]).is_file():
        return None
    return read_gguf_kv(src["path"])


def _copy_fields(kv: list[tuple[str, int, int | None, Any]],
                 keep: Callable[[str], bool]) -> list[tuple[str, Any, Any, Any]]:
    from gguf import GGUFValueType as V

    return [(k, v, V(t), V(sub) if sub is not None else None) for k, t, sub, v in kv if keep(k)]


def _llama2c_vocab_kv(tok: Any, vocab_size: int) -> dict[str, Any]:
    """convert-llama2c-to-ggml's vocabulary: ids 0/1/2 are <unk>/<s>/</s>, ``<0xXX>`` pieces are
    bytes, spaces are written as U+2581 (SentencePiece's convention)."""
    v = tok.backend
    tokens, types = [], []
    for i, piece in enumerate(v.pieces):
        text = piece.decode("utf-8", errors="replace")
        ty = _NORMAL
        if i == 0:
            text, ty = "<unk>", _UNKNOWN
        elif i in (1, 2):
            text, ty = ("<s>", "</s>")[i - 1], _CONTROL
        elif not text:
            ty = _CONTROL
        elif re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            ty = _BYTE
        tokens.append(text.replace(" ", "\u2581"))
        types.append(ty)
    if len(tokens) != vocab_size:
        raise ValueError(f"llama2.c vocabulary has {len(tokens)} pieces, the model {vocab_size} rows")
    return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.scores": [float(s) for s in v.scores], "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
            "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_eos_token": False}


# A probe of the cases llama.cpp's pre-tokenizers disagree on (digits, contractions, spaces,
# newlines, punctuation runs, non-Latin scripts), in the spirit of convert_hf_to_gguf's chktxt.
_PROBE = ("\n \n\n \t\t \t\n  \n   x    y\n Hello World! I've been 'told he's there, 'RE you sure? We'Ve a'lL "
          "3 33 333 3333 33333 3.14 1,000,000 ------======= ''''''```````\"\"\"\"......!!!!!!?????? "
          "нещо на Български 我想在apple工作1314151天～ 🚀 (normal) 😶‍🌫️ ✅ 🦙🦙 ÀÉÎÕÜ café naïve  trailing   ")


def _bpe_vocab_kv(model: Any) -> dict[str, Any]:
    """A ``tokenizers`` byte-level BPE as llama.cpp's ``gpt2`` vocabulary (convert_hf_to_gguf's
    ``_set_vocab_gpt2``): tokens by id (holes and rows beyond the tokenizer as ``[PADn]``,
    unused), added special tokens CONTROL, other added tokens USER_DEFINED, merges, special ids;
    ``tokenizer.ggml.pre`` is the llama.cpp pre-tokenizer whose ids match the model's tokenizer."""
    from ..models.gguf_tokenizer import SUPPORTED_PRE_TOKENIZERS, gguf_backend_tokenizer

    tok = model.tokenizer
    spec = json.loads(tok.backend.to_str())
    m = spec.get("model") or {}
    if m.get("type") != "BPE" or m.get("byte_fallback") or "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")):
        raise NotImplementedError("only byte-level BPE tokenizers (GPT-2 style) can be written to GGUF from a "
                                  "tokenizer.json; SentencePiece-style ones are not supported yet")
    by_id: dict[int, tuple[str, int]] = {int(i): (t, _NORMAL) for t, i in m["vocab"].items()}
    for a in spec.get("added_tokens") or []:
        by_id[int(a["id"])] = (a["content"], _CONTROL if a.get("special") else _USER_DEFINED)
    n = max(model.config.vocab_size, max(by_id) + 1)
    tokens, types = [], []
    for i in range(n):
        t, ty = by_id.get(i, (f"[PAD{i}]", _UNUSED))
        tokens.append(t)
        types.append(ty)
    merges = [" ".join(x) if isinstance(x, list) else x for x in m.get("merges") or []]
    kv: dict[str, Any] = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": tokens,
                          "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": merges}
    if tok.bos_id is not None:
        kv["tokenizer.ggml.bos_token_id"] = int(tok.bos_id)
    if tok.eos_id is not None:
        kv["tokenizer.ggml.eos_token_id"] = int(tok.eos_id)
    probe = tok.encode("a")
    kv["tokenizer.ggml.add_bos_token"] = bool(tok.bos_id is not None and probe[:1] == [tok.bos_id]
                                              and tokens[tok.bos_id] != "a")
    want = tok.backend.encode(_PROBE, add_special_tokens=False).ids
    for pre in ("smollm", "gpt-2", "llama-bpe", "qwen2", "tekken", *SUPPORTED_PRE_TOKENIZERS):
        cand, _ = gguf_backend_tokenizer({**kv, "tokenizer.ggml.pre": pre}, source="probe")
        if cand.encode(_PROBE, add_special_tokens=False).ids == want:
            kv["tokenizer.ggml.pre"] = pre
            return kv
    raise NotImplementedError("the model's tokenizer splits text unlike every llama.cpp pre-tokenizer lowbit knows "
                              f"({', '.join(SUPPORTED_PRE_TOKENIZERS)}): cannot name its tokenizer.ggml.pre")


def tokenizer_metadata(model: Any, source_kv: list[tuple[str, int, int | None, Any]] | None = None
                       ) -> list[tuple[str, Any, Any, Any]]:
    """The ``tokenizer.*`` key/values for the model: ``(key, value, GGUFValueType, array
    element type or None)``. Raises NotImplementedError for a tokenizer GGUF cannot describe
    here, ValueError when the model has none."""
    from gguf import GGUFValueType as V

    source_kv = _source_gguf_kv(model) if source_kv is None else source_kv
    if source_kv and any(k.startswith("tokenizer.") for k, _, _, _ in source_kv):
        return _copy_fields(source_kv, lambda k: k.startswith("tokenizer."))
    tok = model.tokenizer
    if tok is None:
        raise ValueError("the model has no tokenizer; llama.cpp needs one in the GGUF file")
    kv = _llama2c_vocab_kv(tok, model.config.vocab_size) if tok.kind == "llama2c" else _bpe_vocab_kv(model)
    chat = _chat_template(model)
    if chat:
        kv["tokenizer.chat_template"] = chat
    out = []
    for k, v in kv.items():
        if isinstance(v, bool):
            out.append((k, v, V.BOOL, None))
        elif isinstance(v, int):
            out.append((k, v, V.UINT32, None))
        elif isinstance(v, str):
            out.append((k, v, V.STRING, None))
        else:
            sub = V.STRING if isinstance(v[0], str) else (V.FLOAT32 if isinstance(v[0], float) else V.INT32)
            out.append((k, list(v), V.ARRAY, sub))
    return out


def _chat_template(model: Any) -> str | None:
    src = model.source if isinstance(model.source, Mapping) else {}
    p = src.get("path")
    if not p or not Path(p).is_dir() or not (Path(p) / "tokenizer_config.json").is_file():
        return None
    try:
        ct = json.loads((Path(p) / "tokenizer_config.json").read_text()).get("chat_template")
    except (OSError, ValueError):
        return None
    return ct if isinstance(ct, str) else None


def _file_type(mixture: str | None, plans: list[TensorPlan]) -> int | None:
    if mixture is not None:
        return file_type_id(mixture)
    kinds = [p.ggml_type for p in plans if len(p.shape) == 2]
    most = max(set(kinds), key=kinds.count) if kinds else "f32"
    return {"f32": 0, "f16": 1, "bf16": 32}.get(most, PLAIN_TYPES.get(most.upper()))


# ----------------------------------------------------------------------------------- write
def save_gguf(model: Any, path: str | os.PathLike[str], *, type: Any = None,
              imatrix: Mapping[str, np.ndarray] | str | os.PathLike[str] | None = None, dtype: str = "auto",
              output_type: str | None = None, token_embedding_type: str | None = None,
              name: str | None = None, overwrite: bool = True) -> Path:
    """Write ``model`` (a :class:`~lowbit.models.llama.LlamaModel`) as a GGUF file; returns the path.

    Args:
        type: a ggml type or llama.cpp mixture (``"Q4_K_M"``, ``"Q8_0"``, ``"F16"``, a GGUFConfig)
            for the tensors that are still dense: each gets the type llama.cpp's quantizer would
            choose. Default: the GGUF mixture the model was quantized with, if any, else none.
        imatrix: importance matrix for those quantizations: ``{GGUF tensor name: float32 [in]}``
            or the path of a llama.cpp imatrix file (``.gguf`` or legacy ``.dat``). Default:
            the imatrix file of the GGUFConfig the model was quantized with, if any.
        dtype: storage of dense 2-D tensors no type applies to: ``"auto"`` (their own dtype),
            ``"f32"``, ``"f16"`` or ``"bf16"``. 1-D tensors are always F32.
        output_type, token_embedding_type: ggml type for ``output.weight`` / ``token_embd.weight``
            when they are dense, overriding the mixture (llama-quantize's ``--output-tensor-type``
            and ``--token-embedding-type``).
        name: ``general.name`` (default: the source's, else the file name).
        overwrite: replace an existing file (else FileExistsError).

    Raises NotImplementedError for weights GGUF cannot store (non-ggml quantized formats), a
    tokenizer it cannot describe, or a ggml type this build cannot quantize to.
    """
    from gguf import GGUFWriter

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; a GGUF model is one file")
    mixture, _ = _resolve_type(model, type)
    if imatrix is None and type is None:  # the importance matrix the model was quantized with, if any
        cfg = (getattr(model, "quantization", None) or {}).get("config")
        if isinstance(cfg, Mapping) and cfg.get("quant_method") == "gguf" and cfg.get("imatrix"):
            imatrix = cfg["imatrix"]
    if isinstance(imatrix, (str, os.PathLike)):
        from ..imatrix import load_imatrix
        imatrix = load_imatrix(imatrix).values
    plans = gguf_tensor_plan(model, type=type, imatrix=imatrix, dtype=dtype, output_type=output_type,
                             token_embedding_type=token_embedding_type)
    arch = _arch(model)
    source_kv = _source_gguf_kv(model) or []

    def write(tmp: str) -> None:
        w = GGUFWriter(tmp, arch)
        try:
            w.add_type("model")
            general = _copy_fields(source_kv, lambda k: k in _KEEP_GENERAL and k != "general.type")
            given_name = name or next((v for k, v, _, _ in general if k == "general.name"), None) or path.stem
            w.add_name(str(given_name))
            for k, v, vt, sub in general:
                if k != "general.name":
                    w.add_key_value(k, v, vt, sub)
            for k, v, kind in _hparams(model, arch):
                {"u32": w.add_uint32, "f32": w.add_float32, "str": w.add_string}[kind](k, v)
            ft = _file_type(mixture, plans)
            if ft is not None:
                w.add_file_type(ft)
            if any(p.ggml_type not in ("f32", "f16", "bf16") for p in plans):
                w.add_quantization_version(_QUANTIZATION_VERSION)
            for k, v, vt, sub in tokenizer_metadata(model, source_kv):
                w.add_key_value(k, v, vt, sub)
            for p in plans:
                _add_info(w, p)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for p in plans:
                a = p.data()
                _check_data(p, a)
                w.write_tensor_data(a)
            w.close()
        except BaseException:
            w.close()
            raise

    return atomic_write(path, write)


def _nbytes(p: TensorPlan) -> int:
    from gguf import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[_ggml_enum(p.ggml_type)]
    n_in = p.shape[-1]
    if n_in % block:
        raise ValueError(f"{p.name}: row length {n_in} is not a multiple of {p.ggml_type}'s block size {block}")
    return int(np.prod(p.shape[:-1], dtype=np.int64)) * (n_in // block) * size


def _add_info(w: Any, p: TensorPlan) -> None:
    from gguf import GGMLQuantizationType as T

    t = _ggml_enum(p.ggml_type)
    np_dtype = {T.F32: np.float32, T.F16: np.float16}.get(t)
    if np_dtype is not None:
        w.add_tensor_info(p.name, p.shape, np.dtype(np_dtype), _nbytes(p))
    else:  # shape given in elements (not bytes): pass a non-uint8 dtype so gguf keeps it
        w.add_tensor_info(p.name, p.shape, np.dtype(np.uint16 if t == T.BF16 else np.float32), _nbytes(p), raw_dtype=t)


def _check_data(p: TensorPlan, a: np.ndarray) -> None:
    if a.nbytes != _nbytes(p):
        raise RuntimeError(f"{p.name}: {a.nbytes} bytes of data for a {p.ggml_type} tensor of shape {p.shape} "
                           f"({_nbytes(p)} expected)")
