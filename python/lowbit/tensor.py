"""QuantizedTensor: a packed weight matrix, its format, and what produced it.

The arrays follow lowbit's canonical grouped layout (see ``cpp/include/lowbit/grouped_int.hpp``):

=========  ==========================  ===================================================
name       dtype, shape                meaning
=========  ==========================  ===================================================
qweight    uint8 [out, ceil(in*b/8)]   codes of each row, LSB-first bit stream
scales     float32 [out or 1, G]       per-group scale (1 row when per-tensor)
zeros      uint8 [out or 1, G]         per-group integer zero point (sym: 2^(b-1))
g_idx      int32 [in] (optional)       group of each input column (act-order); absent means
                                       contiguous groups of ``group_size`` columns
=========  ==========================  ===================================================

``W_hat[r, c] = scales[r, g] * (code[r, c] - zeros[r, g])`` with ``g`` the group of column c.

Other format families store other arrays. Each family is a :class:`Layout` (the arrays it
expects, how to dequantize them), looked up by format name:

* ``"grouped"``: the grouped integer formats above (``int2`` ... ``int8``);
* ``"blocks"``: every self-contained format of the table (scales inside the blocks, GGUF
  style): one array ``qweight`` uint8 ``[out, row_size(in)]``;
* others (NF4 with its absmax, FP8 with its scales, ...) are registered by the module that
  implements them with :func:`register_layout`. Layout-specific settings live in ``params``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._atomic import atomic_write
from .config import QuantConfig, load_config
from .formats import FormatInfo, format_info

__all__ = ["Layout", "PackedKernel", "QuantizedTensor", "layout_of", "register_layout"]

_METADATA_KEY = "lowbit"
_FILE_VERSION = 1


@dataclass(eq=False)
class QuantizedTensor:
    """A quantized weight matrix ``W`` of shape ``(out_features, in_features)``.

    Behaves like the weight of a linear layer: ``x @ q`` computes ``x @ W_hat.T`` for x of
    shape ``(..., in_features)``.

    Attributes:
        format: format-table name (``"int4"``, ...).
        shape: ``(out_features, in_features)``.
        arrays: the packed arrays (see the module docstring for the layout).
        group_size: input columns per group (``in_features`` for per-channel / per-tensor).
        per_tensor: one scale for the whole matrix.
        sym: symmetric grid (zero point fixed at ``2^(bits-1)``).
        config: the config that produced it (None if built by hand or imported).
        stats: figures the quantizer recorded (seconds, objective, ...).
        params: settings of the format's layout that the arrays alone do not say (JSON
            types; e.g. a block size or a quantization axis). Empty for grouped and blocks.
    """

    format: str
    shape: tuple[int, int]
    arrays: dict[str, np.ndarray]
    group_size: int
    per_tensor: bool = False
    sym: bool = True
    config: QuantConfig | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    # numpy defers `x @ q` (and other binary ops) to our __rmatmul__ instead of converting q.
    __array_ufunc__ = None

    def __post_init__(self) -> None:
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        self._validate()

    # ---- facts ---------------------------------------------------------------------------
    @property
    def info(self) -> FormatInfo:
        """The format-table row of :attr:`format`."""
        return format_info(self.format)

    @property
    def bits(self) -> int:
        return self.info.bits

    @property
    def layout(self) -> "Layout":
        """How this tensor's arrays are stored (see :func:`register_layout`)."""
        return layout_of(self.format)

    @property
    def n_groups(self) -> int:
        """Groups per row (grouped layout); blocks per row otherwise."""
        if "scales" in self.arrays and self.arrays["scales"].ndim == 2:
            return int(self.arrays["scales"].shape[1])
        return -(-self.shape[1] // self.group_size)

    @property
    def nbytes(self) -> int:
        """Bytes of every stored array (codes, scales, zeros, g_idx)."""
        return int(sum(a.nbytes for a in self.arrays.values()))

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per weight, scales and zeros included."""
        return 8.0 * self.nbytes / (self.shape[0] * self.shape[1])

    def __repr__(self) -> str:
        g = "tensor" if self.per_tensor else ("channel" if self.group_size == self.shape[1] else self.group_size)
        return (f"QuantizedTensor(format={self.format!r}, shape={self.shape}, group_size={g}, "
                f"sym={self.sym}, bits_per_weight={self.bits_per_weight:.3f})")

    # ---- numerics ------------------------------------------------------------------------
    def dequantize(self) -> np.ndarray:
        """float32 ``(out_features, in_features)`` reconstruction ``W_hat``."""
        return self.layout.dequantize(self)

    def prepare(self) -> "QuantizedTensor":
        """Repack the arrays once into the kernel layout of :meth:`matmul` (cached; idempotent).

        Called by the first :meth:`matmul`; call it at load time to keep that cost out of the
        first product. Returns self. Formats whose layout has no kernel yet are left as they are.
        """
        if self.__dict__.get("_kernel") is None:
            prep = self.layout.prepare
            self.__dict__["_kernel"] = prep(self) if prep is not None else None
        return self

    def matmul(self, x: npt.ArrayLike, act: str = "int8") -> np.ndarray:
        """``x @ W_hat.T`` from the packed weights: x ``(..., in_features)`` -> float32 ``(..., out_features)``.

        x may be float32, float16 or ml_dtypes.bfloat16 (read as is) or any other numeric
        dtype (converted to float32). ``act`` chooses how activations enter the kernel:

        * ``"int8"`` (default): quantized per 32-column block to int8 (ggml's Q8_0), integer
          dot products. Error vs the float product of W_hat is at most
          ``sum_k |W_hat[r, k]| * d(k) / 2`` with ``d = max|x| / 127`` over k's block.
          GGUF block formats (q4_0 ... q6_K, iq4_nl) do what llama.cpp's CPU mul_mat does: x is
          quantized to the type's vec_dot_type (q8_0 / q8_1, or q8_K per 256 columns, whose
          ``d`` is fp16-rounded for q8_0/q8_1: add ``2^-11 |x_k|`` per term to the bound).
        * ``"float32"``: dequantized weight tiles times a float32 GEMM (float32-accurate).
        * ``"int8_token"``: W8A8 (SmoothQuant style): one int8 scale per row of x; 8-bit
          weights with one group per row only; exact int32 accumulation (not for GGUF formats).

        Table-lookup formats (nf4/fp4, hqq, int4_tinygemm, f8_*: :mod:`lowbit.lut`) take float
        activations only: ``"int8"`` runs their float path (float32-accurate, bound in
        ``lut_qmatmul.hpp``); ``"int8_token"`` raises NotImplementedError.

        Weights are repacked once (:meth:`prepare`); formats without a kernel yet fall back
        to dequantize-then-matmul (float32).
        """
        x = np.asarray(x)
        if x.dtype.kind not in "fiuV" or x.ndim == 0:
            raise TypeError(f"x must be a numeric array of shape (..., {self.shape[1]}), got dtype "
                            f"{x.dtype} ndim {x.ndim}")
        if x.shape[-1] != self.shape[1]:
            raise ValueError(f"x.shape[-1] must equal in_features={self.shape[1]}, got x.shape={x.shape}")
        if not (x.dtype in (np.float32, np.float16) or x.dtype.name == "bfloat16"):
            x = x.astype(np.float32)
        x2 = x.reshape(-1, self.shape[1])
        kernel = self.prepare().__dict__["_kernel"]
        if x2.shape[0] == 0:
            y = np.zeros((0, self.shape[0]), np.float32)
        elif kernel is not None:
            y = kernel(x2, act)
        else:
            if act not in ("int8", "float32", "int8_token"):
                raise ValueError(f"act must be 'int8', 'float32' or 'int8_token', got {act!r}")
            # lowbit's own GEMM (OpenMP), not NumPy's BLAS: two busy-waiting thread pools in one
            # process slow each other down badly on a small machine
            y = _core.linear(np.ascontiguousarray(x2, dtype=np.float32), self.dequantize(), None)
        return y.reshape(*x.shape[:-1], self.shape[0])

    def __rmatmul__(self, x: npt.ArrayLike) -> np.ndarray:
        return self.matmul(x)

    def __getstate__(self) -> dict[str, Any]:
        # the prepared kernel is a cache (rebuilt on demand) and not picklable
        return {k: v for k, v in self.__dict__.items() if k != "_kernel"}

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a safetensors file with the arrays and a JSON description in its metadata.

        The write is atomic: a temporary file in the same folder, then a rename, so a crash
        never leaves a half-written file at ``path``.
        """
        from safetensors.numpy import save_file

        path = Path(path)
        meta = {
            "file_version": _FILE_VERSION,
            "format": self.format,
            "format_id": self.info.id,
            "shape": list(self.shape),
            "group_size": self.group_size,
            "per_tensor": self.per_tensor,
            "sym": self.sym,
            "config": self.config.to_dict() if self.config is not None else None,
            "stats": _jsonable(self.stats),
            "params": _jsonable(self.params),
            "lowbit_version": _core.__version__,
        }
        atomic_write(path, lambda tmp: save_file({k: np.ascontiguousarray(v) for k, v in self.arrays.items()}, tmp,
                                                 metadata={_METADATA_KEY: json.dumps(meta, sort_keys=True)}))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "QuantizedTensor":
        """Read a file written by :meth:`save`; ValueError names the file and the problem."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        try:
            with safe_open(str(path), framework="numpy") as f:
                metadata = f.metadata() or {}
                arrays = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from e
        if _METADATA_KEY not in metadata:
            raise ValueError(f"{path}: safetensors file without lowbit metadata (not written by QuantizedTensor.save)")
        meta = json.loads(metadata[_METADATA_KEY])
        if meta.get("file_version") != _FILE_VERSION:
            raise ValueError(f"{path}: unsupported lowbit file_version {meta.get('file_version')!r}")
        try:
            return cls(format=meta["format"], shape=tuple(meta["shape"]), arrays=arrays,
                       group_size=meta["group_size"], per_tensor=meta["per_tensor"], sym=meta["sym"],
                       config=load_config(meta["config"]) if meta.get("config") else None,
                       stats=meta.get("stats") or {}, params=meta.get("params") or {})
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{path}: inconsistent lowbit tensor ({e})") from e

    # ---- checks --------------------------------------------------------------------------
    def _validate(self) -> None:
        out, inp = self.shape
        if out <= 0 or inp <= 0:
            raise ValueError(f"shape must be positive, got {self.shape}")
        gs = self.group_size
        if not (0 < gs <= inp):
            raise ValueError(f"group_size must be in 1..{inp} (in_features), got {gs}")
        layout = self.layout
        expect = layout.arrays(self)
        optional = layout.optional_arrays(self) if layout.optional_arrays else {}
        unknown = set(self.arrays) - set(expect) - set(optional)
        if unknown:
            raise ValueError(f"unexpected arrays {sorted(unknown)}; a {self.format} tensor has "
                             f"{sorted(expect)}" + (f" (optional: {sorted(optional)})" if optional else ""))
        for name, (dtype, shape) in {**expect, **optional}.items():
            a = self.arrays.get(name)
            if a is None:
                if name in optional:
                    continue
                raise ValueError(f"missing array {name!r} ({np.dtype(dtype).name} {shape})")
            if a.dtype != dtype or a.shape != shape:
                raise ValueError(f"{name} must be {np.dtype(dtype).name} of shape {shape}, got {a.dtype} {a.shape}")


# ------------------------------------------------------------------------------- layouts
_Spec = dict[str, tuple[Any, tuple[int, ...]]]


@dataclass(frozen=True)
class Layout:
    """How one family of formats stores a matrix in ``QuantizedTensor.arrays``.

    Attributes:
        name: the family's name (``"grouped"``, ``"blocks"``, ``"nf4"``, ...).
        arrays: ``fn(q) -> {array name: (dtype, shape)}`` of the required arrays.
        dequantize: ``fn(q) -> float32 (out, in)``.
        optional_arrays: like ``arrays``, for arrays that may be absent.
        prepare: ``fn(q) -> kernel`` repacking q once for the fast matmul, where ``kernel(x,
            act)`` maps float ``x [M, in]`` to float32 ``[M, out]`` (see
            :meth:`QuantizedTensor.matmul` for ``act``). None: matmul dequantizes.
    """

    name: str
    arrays: Callable[["QuantizedTensor"], _Spec]
    dequantize: Callable[["QuantizedTensor"], np.ndarray]
    optional_arrays: Callable[["QuantizedTensor"], _Spec] | None = None
    prepare: Callable[["QuantizedTensor"], Callable[[np.ndarray, str], np.ndarray]] | None = None


_LAYOUTS: dict[str, Layout] = {}


def register_layout(format_names: str | tuple[str, ...], layout: Layout) -> None:
    """Make ``layout`` the storage of the format(s) named (format-table names)."""
    names = (format_names,) if isinstance(format_names, str) else tuple(format_names)
    for n in names:
        format_info(n)  # ValueError for a name not in the table
        if n in _LAYOUTS and _LAYOUTS[n] is not layout:
            raise ValueError(f"format {n!r} already has layout {_LAYOUTS[n].name!r}")
        _LAYOUTS[n] = layout


def layout_of(fmt: str) -> Layout:
    """The layout of format ``fmt``: a registered one, else grouped or blocks by the table."""
    if fmt in _LAYOUTS:
        return _LAYOUTS[fmt]
    info = format_info(fmt)
    if info.needs_group_params:
        return GROUPED
    if info.is_quantized:
        return BLOCKS
    raise ValueError(f"format {fmt!r} is plain float storage, not a quantized format")


def _grouped_arrays(q: "QuantizedTensor") -> _Spec:
    out, inp = q.shape
    srows = 1 if q.per_tensor else out
    n_groups = -(-inp // q.group_size)
    return {"qweight": (np.uint8, (out, (inp * q.bits + 7) // 8)),
            "scales": (np.float32, (srows, n_groups)),
            "zeros": (np.uint8, (srows, n_groups))}


def _grouped_dequantize(q: "QuantizedTensor") -> np.ndarray:
    a = q.arrays
    return _core.dequantize_grouped(a["qweight"], a["scales"], a["zeros"], q.bits, q.shape[0], q.shape[1],
                                    q.group_size, q.per_tensor, a.get("g_idx"))


class PackedKernel:
    """A prepared weight's product ``kernel(x, act)`` = ``fn(x, packed, act)``.

    ``packed`` is the C++ object (``_core.PackedWeights``, ``_core.GgmlPackedWeights``) that
    the model's C++ layer loop (``_core.LlamaRuntime``) calls without going through Python.
    """

    __slots__ = ("packed", "_fn")

    def __init__(self, fn: Callable[[np.ndarray, Any, str], np.ndarray], packed: Any) -> None:
        self._fn = fn
        self.packed = packed

    def __call__(self, x: np.ndarray, act: str) -> np.ndarray:
        return self._fn(x, self.packed, act)


def _grouped_prepare(q: "QuantizedTensor") -> Callable[[np.ndarray, str], np.ndarray]:
    a = q.arrays
    packed = _core.prepare_grouped(a["qweight"], a["scales"], a["zeros"], q.bits, q.shape[0], q.shape[1],
                                   q.group_size, q.per_tensor, a.get("g_idx"))
    return PackedKernel(_core.qmatmul, packed)


GROUPED = Layout("grouped", _grouped_arrays, _grouped_dequantize,
                 optional_arrays=lambda q: {"g_idx": (np.int32, (q.shape[1],))}, prepare=_grouped_prepare)

# GGUF weight formats with a quantized-matmul kernel (lowbit/ggml_qmatmul.hpp).
_GGML_KERNEL_FORMATS = frozenset({"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "iq4_nl", "q2_K", "q3_K", "q4_K", "q5_K",
                                  "q6_K"})


def _blocks_prepare(q: "QuantizedTensor") -> Callable[[np.ndarray, str], np.ndarray] | None:
    """GGUF blocks kept as they are, for llama.cpp's mul_mat arithmetic: act="int8" quantizes x to the
    type's vec_dot_type (q8_0 / q8_1 / q8_K) as ggml-cpu does; "float32" multiplies dequantized tiles."""
    if q.format not in _GGML_KERNEL_FORMATS:
        return None
    packed = _core.prepare_ggml(q.format, q.arrays["qweight"], q.shape[0], q.shape[1])
    return PackedKernel(_core.ggml_qmatmul, packed)


BLOCKS = Layout(
    "blocks",
    lambda q: {"qweight": (np.uint8, (q.shape[0], _core.row_size(q.format, q.shape[1])))},
    lambda q: _core.dequantize_rows(q.format, q.arrays["qweight"], q.shape[1]),
    prepare=_blocks_prepare)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj
