"""bitsandbytes checkpoints as transformers writes them (``quant_method: "bitsandbytes"``).

Per linear layer with module prefix ``P`` (REFERENCE.md §3.6):

* 4-bit: ``P.weight`` uint8 ``[ceil(n/2), 1]`` (packed codes of the flattened weight),
  ``P.weight.absmax`` (float32, or uint8 with double quantization), ``P.weight.quant_map``
  float32 [16], with double quantization ``P.weight.nested_absmax`` float32 and
  ``P.weight.nested_quant_map`` float32 [256], and
  ``P.weight.quant_state.bitsandbytes__nf4`` (or ``__fp4``): uint8 bytes of the JSON text of
  ``{quant_type, blocksize, dtype, shape[, nested_blocksize, nested_dtype, nested_offset]}``.
* 8-bit: ``P.weight`` int8 ``[out, in]``, ``P.SCB`` float32 ``[out]``, ``P.weight_format``
  uint8 scalar 0 ("row").

:func:`to_bnb` / :func:`from_bnb` convert one tensor (keys relative to ``P.``);
:func:`save_bnb` / :func:`load_bnb` write and read a folder with ``model.safetensors`` and a
``config.json`` holding ``quantization_config`` (:func:`quantization_config`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import bnb
from .._atomic import atomic_write
from ..config import BnbConfig
from ..tensor import QuantizedTensor

__all__ = ["config_from_quantization_config", "from_bnb", "load_bnb", "quantization_config", "save_bnb", "to_bnb"]

_DTYPES = ("float32", "float16", "bfloat16")
_QS_PREFIX = "weight.quant_state.bitsandbytes__"


def to_bnb(q: QuantizedTensor, *, dtype: str | None = None) -> dict[str, np.ndarray]:
    """bitsandbytes' tensors of one layer (names relative to the module prefix).

    ``dtype``: the weight dtype recorded in the 4-bit quant state (what bnb dequantizes to);
    default ``q.params["dtype"]`` if the tensor was imported, else "float32".
    """
    if q.format == "llm_int8":
        return {"weight": np.ascontiguousarray(q.arrays["CB"]), "SCB": np.ascontiguousarray(q.arrays["SCB"]),
                "weight_format": np.array(0, dtype=np.uint8)}
    if q.format not in ("nf4", "fp4"):
        raise ValueError(f"to_bnb exports nf4, fp4 and llm_int8 tensors, got format {q.format!r}")
    dtype = dtype or q.params.get("dtype", "float32")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    a, p = q.arrays, q.params
    out = {"weight": a["qweight"].reshape(-1, 1), "weight.absmax": a["absmax"],
           "weight.quant_map": bnb.code4(q.format).copy()}
    state: dict[str, Any] = {"quant_type": q.format, "blocksize": p["blocksize"], "dtype": dtype,
                             "shape": list(q.shape)}
    if p["double_quant"]:
        out["weight.nested_absmax"] = a["nested_absmax"]
        out["weight.nested_quant_map"] = a.get("nested_quant_map", bnb.DYNAMIC_MAP).copy()
        state.update(nested_blocksize=p["nested_blocksize"], nested_dtype="float32",
                     nested_offset=float(np.float32(p["nested_offset"])))
    out[_QS_PREFIX + q.format] = np.frombuffer(json.dumps(state).encode("utf-8"), dtype=np.uint8).copy()
    return out


def _array(tensors: Mapping[str, np.ndarray], key: str, dtype: Any) -> np.ndarray:
    if key not in tensors:
        raise ValueError(f"missing bitsandbytes tensor {key!r}; have {sorted(tensors)}")
    a = np.asarray(tensors[key])
    if a.dtype != dtype:
        raise ValueError(f"{key} must be {np.dtype(dtype).name}, got {a.dtype}")
    return a


def from_bnb(tensors: Mapping[str, np.ndarray], *, threshold: float = 6.0) -> QuantizedTensor:
    """Read one layer's bitsandbytes tensors (names relative to the module prefix) back.

    4-bit when a ``weight.quant_state.bitsandbytes__*`` entry is present, LLM.int8() when
    ``SCB`` is; ``threshold`` is the LLM.int8 outlier threshold to run it with. ValueError for
    a quant_map that is not bitsandbytes' table, inconsistent sizes or a non-row weight_format.
    """
    qs_keys = [k for k in tensors if k.startswith(_QS_PREFIX)]
    if not qs_keys:
        if "SCB" not in tensors:
            raise ValueError(f"neither a 4-bit quant_state ({_QS_PREFIX}nf4/fp4) nor an 8-bit SCB among "
                             f"{sorted(tensors)}")
        fmt = int(np.asarray(tensors.get("weight_format", np.uint8(0))).reshape(()))
        if fmt != 0:
            raise ValueError(f"weight_format must be 0 (row-major), got {fmt}")
        CB = np.ascontiguousarray(_array(tensors, "weight", np.int8))
        SCB = np.ascontiguousarray(_array(tensors, "SCB", np.float32))
        if CB.ndim != 2 or SCB.shape != (CB.shape[0],):
            raise ValueError(f"weight int8 [out, in] and SCB float32 [out] expected, got {CB.shape} and {SCB.shape}")
        return QuantizedTensor(format="llm_int8", shape=CB.shape, arrays={"CB": CB, "SCB": SCB},
                               group_size=CB.shape[1], params={"threshold": float(threshold)})
    if len(qs_keys) != 1:
        raise ValueError(f"expected one quant_state entry, got {qs_keys}")
    state = json.loads(np.asarray(tensors[qs_keys[0]], dtype=np.uint8).tobytes().decode("utf-8"))
    quant_type = state.get("quant_type")
    if quant_type not in ("nf4", "fp4") or qs_keys[0] != _QS_PREFIX + quant_type:
        raise ValueError(f"quant_state {qs_keys[0]!r} has quant_type {quant_type!r}; expected nf4 or fp4")
    code = _array(tensors, "weight.quant_map", np.float32)
    if code.shape != (16,) or not np.array_equal(code, bnb.code4(quant_type)):
        raise ValueError(f"weight.quant_map is not bitsandbytes' {quant_type} table")
    shape = state.get("shape")
    if not isinstance(shape, list) or len(shape) != 2:
        raise ValueError(f"lowbit reads 2-D weights; quant_state shape is {shape!r}")
    # bnb may store the packed bytes reinterpreted as another dtype (bnb_4bit_quant_storage)
    packed = np.ascontiguousarray(np.asarray(tensors["weight"])).reshape(-1).view(np.uint8)
    params: dict[str, Any] = {"blocksize": int(state["blocksize"]), "double_quant": "nested_absmax" in state
                              or "weight.nested_absmax" in tensors, "dtype": state.get("dtype", "float32")}
    arrays = {"qweight": packed[: (shape[0] * shape[1] + 1) // 2].copy()}
    if params["double_quant"]:
        nested_map = _array(tensors, "weight.nested_quant_map", np.float32)
        arrays.update(absmax=_array(tensors, "weight.absmax", np.uint8),
                      nested_absmax=_array(tensors, "weight.nested_absmax", np.float32))
        if not np.array_equal(nested_map, bnb.DYNAMIC_MAP):
            arrays["nested_quant_map"] = nested_map  # e.g. older bnb versions' map: kept as written
        params.update(nested_blocksize=int(state["nested_blocksize"]), nested_offset=float(state["nested_offset"]))
    else:
        arrays["absmax"] = _array(tensors, "weight.absmax", np.float32)
    return QuantizedTensor(format=quant_type, shape=tuple(shape), arrays=arrays,
                           group_size=min(params["blocksize"], int(shape[1])), params=params)


def quantization_config(config: BnbConfig) -> dict[str, Any]:
    """``quantization_config`` as transformers' ``BitsAndBytesConfig.to_dict()`` writes it.

    transformers has no block-size field (bnb reads it from each quant_state); a block size
    other than 64 is written as the extra key ``bnb_4bit_blocksize``.
    """
    d = {
        "_load_in_4bit": config.load_in_4bit,
        "_load_in_8bit": config.load_in_8bit,
        "bnb_4bit_compute_dtype": config.bnb_4bit_compute_dtype,
        "bnb_4bit_quant_storage": config.bnb_4bit_quant_storage,
        "bnb_4bit_quant_type": config.bnb_4bit_quant_type,
        "bnb_4bit_use_double_quant": config.bnb_4bit_use_double_quant,
        "llm_int8_enable_fp32_cpu_offload": False,
        "llm_int8_has_fp16_weight": config.llm_int8_has_fp16_weight,
        "llm_int8_skip_modules": list(config.llm_int8_skip_modules) or None,
        "llm_int8_threshold": config.llm_int8_threshold,
        "load_in_4bit": config.load_in_4bit,
        "load_in_8bit": config.load_in_8bit,
        "quant_method": "bitsandbytes",
    }
    if config.bnb_4bit_blocksize != 64:
        d["bnb_4bit_blocksize"] = config.bnb_4bit_blocksize
    return d


def config_from_quantization_config(d: Mapping[str, Any]) -> BnbConfig:
    """A :class:`BnbConfig` from transformers' ``quantization_config`` (its defaults where keys
    are absent: fp4, no double quantization, threshold 6.0)."""
    if d.get("quant_method", "bitsandbytes") != "bitsandbytes":
        raise ValueError(f"quant_method must be 'bitsandbytes', got {d.get('quant_method')!r}")
    load_in_8bit = bool(d.get("load_in_8bit", d.get("_load_in_8bit", False)))
    return BnbConfig(
        load_in_4bit=not load_in_8bit, load_in_8bit=load_in_8bit,
        bnb_4bit_quant_type=d.get("bnb_4bit_quant_type", "fp4"),
        bnb_4bit_use_double_quant=bool(d.get("bnb_4bit_use_double_quant", False)),
        bnb_4bit_blocksize=int(d.get("bnb_4bit_blocksize", 64)),
        bnb_4bit_compute_dtype=str(d.get("bnb_4bit_compute_dtype") or "float32").replace("torch.", ""),
        bnb_4bit_quant_storage=str(d.get("bnb_4bit_quant_storage") or "uint8").replace("torch.", ""),
        llm_int8_threshold=float(d.get("llm_int8_threshold", 6.0)),
        llm_int8_skip_modules=tuple(d.get("llm_int8_skip_modules") or ()),
        llm_int8_has_fp16_weight=bool(d.get("llm_int8_has_fp16_weight", False)))


def save_bnb(folder: str | os.PathLike[str], layers: Mapping[str, QuantizedTensor | np.ndarray],
             config: BnbConfig, *, model_config: Mapping[str, Any] | None = None, dtype: str | None = None) -> None:
    """Write ``folder/model.safetensors`` and ``folder/config.json`` in bitsandbytes' layout.

    layers: module prefix (``"model.layers.0.mlp.down_proj"``) -> QuantizedTensor (nf4, fp4,
    llm_int8), or a full tensor name -> plain array (norms, embeddings), written as is.
    model_config: the model's config.json entries, written with ``quantization_config`` added.
    """
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    for name, t in layers.items():
        if isinstance(t, QuantizedTensor):
            tensors.update({f"{name}.{k}": v for k, v in to_bnb(t, dtype=dtype).items()})
        else:
            tensors[name] = np.ascontiguousarray(t)
    atomic_write(folder / "model.safetensors",
                  lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    cfg = dict(model_config or {})
    cfg["quantization_config"] = quantization_config(config)
    atomic_write(folder / "config.json",
                  lambda p: Path(p).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n"))


def load_bnb(folder: str | os.PathLike[str]) -> tuple[dict[str, QuantizedTensor | np.ndarray], BnbConfig]:
    """Read a folder written by :func:`save_bnb` (or by transformers with bitsandbytes):
    ``(layers, config)`` with a QuantizedTensor per quantized module prefix and the other
    tensors as arrays."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    if "quantization_config" not in cfg:
        raise ValueError(f"{folder / 'config.json'} has no quantization_config")
    config = config_from_quantization_config(cfg["quantization_config"])
    tensors: dict[str, np.ndarray] = {}
    for f in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    prefixes = {k[: -len(".weight")] for k in tensors if k.endswith(".weight")
                and (f"{k[:-len('.weight')]}.SCB" in tensors
                     or any(j.startswith(f"{k}.quant_state.") for j in tensors))}
    layers: dict[str, QuantizedTensor | np.ndarray] = {}
    used: set[str] = set()
    for pre in sorted(prefixes):
        mine = {k[len(pre) + 1:]: v for k, v in tensors.items()
                if k.startswith(pre + ".") and (k[len(pre) + 1:].startswith("weight") or k[len(pre) + 1:] == "SCB")}
        layers[pre] = from_bnb(mine, threshold=config.llm_int8_threshold)
        used.update(f"{pre}.{k}" for k in mine)
    layers.update({k: v for k, v in tensors.items() if k not in used})
    return layers, config
