"""llama.cpp's ggml quantizers through ctypes: the oracle for lowbit's GGUF formats.

Uses the ``libggml-base`` shared library bundled with llama-cpp-python (``pip install
llama-cpp-python``); nothing is compiled here. Functions called:
``ggml_quantize_chunk`` (what llama.cpp's quantize tool writes), ``ggml_get_type_traits``
(``to_float`` and ``from_float_ref``), ``ggml_row_size``, ``ggml_quantize_requires_imatrix``,
``ggml_version``/``ggml_commit``. ctypes releases the GIL during each call, so Python threads
run these calls in parallel.

    >>> from lowbit.peers import ggml
    >>> data = ggml.quantize("q4_K", W)            # W: float32 [rows, n]
    >>> ggml.dequantize("q4_K", data, W.shape[1])  # float32 [rows, n]
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["GGML_TYPES", "PeerMissing", "available", "cpu_from_float", "cpu_lib", "cpu_mul_mat", "dequantize", "lib",
           "quantize", "quantize_chunk", "requires_imatrix", "row_size", "vec_dot_type", "version"]

# lowbit format name -> ggml type id (REFERENCE.md §6.2)
GGML_TYPES: dict[str, int] = {
    "f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "q8_1": 9,
    "q2_K": 10, "q3_K": 11, "q4_K": 12, "q5_K": 13, "q6_K": 14, "q8_K": 15, "iq4_nl": 20, "bf16": 30,
}
# Types ggml_quantize_chunk serves; the others (activation types) only have from_float_ref.
_CHUNK_TYPES = {"f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K",
                "q6_K", "iq4_nl"}

_row_fn_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class _TypeTraits(ctypes.Structure):
    # struct ggml_type_traits (ggml.h); checked against known block sizes in lib()
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


class PeerMissing(ImportError):
    """llama-cpp-python (and so llama.cpp's libggml-base) is not installed."""


def _library_path() -> str:
    try:
        import llama_cpp  # noqa: F401  (only to find its folder; loading libllama is not needed)
    except ImportError as e:
        raise PeerMissing("lowbit.peers.ggml needs llama-cpp-python (pip install llama-cpp-python): "
                          f"{e}") from e
    import importlib.util
    spec = importlib.util.find_spec("llama_cpp")
    assert spec is not None and spec.origin is not None
    folder = os.path.join(os.path.dirname(spec.origin), "lib")
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    found = sorted(glob.glob(os.path.join(folder, "*ggml-base*")))
    if found:
        return found[0]
    raise PeerMissing(f"llama-cpp-python is installed but has no libggml-base library in {folder}")


@functools.lru_cache(maxsize=1)
def lib() -> ctypes.CDLL:
    """The loaded libggml-base with its signatures declared. PeerMissing if unavailable."""
    h = ctypes.CDLL(_library_path())
    h.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                      ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    h.ggml_quantize_chunk.restype = ctypes.c_size_t
    h.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    h.ggml_row_size.restype = ctypes.c_size_t
    h.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    h.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    h.ggml_get_type_traits.argtypes = [ctypes.c_int]
    h.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
    for fn in ("ggml_version", "ggml_commit"):
        if hasattr(h, fn):
            getattr(h, fn).restype = ctypes.c_char_p
            getattr(h, fn).argtypes = []
    # the struct layout is not versioned: check it on types whose sizes are file-format facts
    for name, (blck, size) in {"q4_0": (32, 18), "q4_K": (256, 144), "q8_K": (256, 292)}.items():
        t = h.ggml_get_type_traits(GGML_TYPES[name]).contents
        if t.blck_size != blck or t.type_size != size:
            raise PeerMissing(f"libggml-base's ggml_type_traits layout is not the expected one "
                              f"({name}: block {t.blck_size}, size {t.type_size})")
    return h


def available() -> bool:
    """True when llama-cpp-python's libggml-base can be loaded."""
    try:
        lib()
    except (PeerMissing, OSError):
        return False
    return True


def version() -> dict[str, Any]:
    """``{"llama_cpp_python": "0.3.36", "ggml_version": "0.25.3", "ggml_commit": "0c1e570"}``."""
    import llama_cpp
    h = lib()
    out: dict[str, Any] = {"llama_cpp_python": getattr(llama_cpp, "__version__", "?")}
    for fn in ("ggml_version", "ggml_commit"):
        out[fn] = getattr(h, fn)().decode() if hasattr(h, fn) else None
    return out


def _type_id(fmt: str) -> int:
    if fmt not in GGML_TYPES:
        raise ValueError(f"format must be one of {sorted(GGML_TYPES)}, got {fmt!r}")
    return GGML_TYPES[fmt]


def row_size(fmt: str, n: int) -> int:
    """ggml_row_size: bytes of one row of n elements."""
    return int(lib().ggml_row_size(_type_id(fmt), n))


def requires_imatrix(fmt: str) -> bool:
    """ggml_quantize_requires_imatrix."""
    return bool(lib().ggml_quantize_requires_imatrix(_type_id(fmt)))


def _rows(W: npt.ArrayLike, name: str = "W") -> np.ndarray:
    a = np.ascontiguousarray(W, dtype=np.float32)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (rows, n), got shape {a.shape}")
    return a


def quantize_chunk(fmt: str, W: np.ndarray, out: np.ndarray, row0: int, nrows: int,
                   imatrix: np.ndarray | None = None) -> None:
    """One ggml_quantize_chunk call on rows [row0, row0+nrows) of W (float32 C-contiguous) into
    the matching rows of ``out`` (uint8 [rows, row_size]). For threads over row chunks."""
    n = W.shape[1]
    qw = None if imatrix is None else imatrix.ctypes.data
    # ggml offsets both pointers itself: src by `start` floats, dst by start/n rows
    lib().ggml_quantize_chunk(GGML_TYPES[fmt], W.ctypes.data, out.ctypes.data, row0 * n, nrows, n, qw)


def _row_function(symbol: str, address: int | None) -> Any:
    """A (src, dst, n) row function: the type-traits entry, else the exported symbol."""
    h = lib()
    if address:
        return _row_fn_t(address)
    if hasattr(h, symbol):
        fn = getattr(h, symbol)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
        return fn
    raise ValueError(f"this libggml-base has neither a type-traits entry nor {symbol}")


def quantize(fmt: str, W: npt.ArrayLike, imatrix: npt.ArrayLike | None = None) -> np.ndarray:
    """What llama.cpp writes for ``W`` (float32 [rows, n]) in ggml type ``fmt``: uint8
    [rows, row_size(n)]. ``imatrix`` (float32 [n]) is the per-column importance. Types that
    ggml_quantize_chunk does not serve (q8_1, q8_K) use the type's from_float_ref (no imatrix)."""
    a = _rows(W)
    rows, n = a.shape
    tid = _type_id(fmt)
    h = lib()
    blck = h.ggml_get_type_traits(tid).contents.blck_size
    if n % blck:
        raise ValueError(f"row length {n} is not a multiple of {fmt}'s block size {blck}")
    rb = row_size(fmt, n)
    out = np.zeros((rows, rb), np.uint8)
    qw = None
    if imatrix is not None:
        qw = np.ascontiguousarray(imatrix, dtype=np.float32)
        if qw.shape != (n,):
            raise ValueError(f"imatrix must have shape ({n},), got {qw.shape}")
    if fmt in _CHUNK_TYPES:
        if qw is None and requires_imatrix(fmt):
            raise ValueError(f"llama.cpp refuses to quantize {fmt} without an imatrix")
        quantize_chunk(fmt, a, out, 0, rows, qw)
    else:
        fn = _row_function(f"quantize_row_{fmt}_ref", h.ggml_get_type_traits(tid).contents.from_float_ref)
        for r in range(rows):
            fn(a[r].ctypes.data, out[r].ctypes.data, n)
    return out


def dequantize(fmt: str, data: npt.ArrayLike, n: int) -> np.ndarray:
    """ggml's to_float: uint8 [rows, row_size(n)] -> float32 [rows, n]."""
    tid = _type_id(fmt)
    t = lib().ggml_get_type_traits(tid).contents
    to_float = _row_function(f"dequantize_row_{fmt}", t.to_float)
    d = np.ascontiguousarray(data, dtype=np.uint8)
    rb = row_size(fmt, n)
    if d.ndim != 2 or d.shape[1] != rb:
        raise ValueError(f"data must have shape (rows, {rb}) for {fmt} rows of {n}, got {d.shape}")
    out = np.empty((d.shape[0], n), np.float32)
    to_float(d.ctypes.data, out.ctypes.data, d.shape[0] * n)
    return out


# ---- ggml-cpu: the CPU backend's activation quantizers and dot products --------------------
class _TypeTraitsCpu(ctypes.Structure):
    # struct ggml_type_traits_cpu (ggml-cpu.h)
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p), ("vec_dot_type", ctypes.c_int),
                ("nrows", ctypes.c_int64)]


_vec_dot_t = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.c_void_p,
                              ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


@functools.lru_cache(maxsize=1)
def cpu_lib() -> ctypes.CDLL:
    """llama-cpp-python's libggml-cpu (initialised), beside libggml-base. PeerMissing if absent."""
    lib()  # libggml-cpu links against libggml-base: load (and check) it first
    folder = os.path.dirname(_library_path())
    found = [p for p in (os.path.join(folder, n) for n in ("libggml-cpu.so", "libggml-cpu.dylib", "ggml-cpu.dll"))
             if os.path.exists(p)]
    if not found:
        raise PeerMissing(f"llama-cpp-python has no libggml-cpu library in {folder}")
    h = ctypes.CDLL(found[0])
    h.ggml_cpu_init.argtypes = []
    h.ggml_cpu_init.restype = None
    h.ggml_cpu_init()
    h.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
    h.ggml_get_type_traits_cpu.restype = ctypes.POINTER(_TypeTraitsCpu)
    if h.ggml_get_type_traits_cpu(GGML_TYPES["q4_K"]).contents.vec_dot_type != GGML_TYPES["q8_K"]:
        raise PeerMissing("libggml-cpu's ggml_type_traits_cpu layout is not the expected one")
    return h


def _cpu_traits(fmt: str) -> _TypeTraitsCpu:
    return cpu_lib().ggml_get_type_traits_cpu(_type_id(fmt)).contents


def vec_dot_type(fmt: str) -> str:
    """The activation type ggml-cpu quantizes x to in mul_mat with weights of type ``fmt``."""
    tid = _cpu_traits(fmt).vec_dot_type
    return next(k for k, v in GGML_TYPES.items() if v == tid)


def cpu_from_float(fmt: str, X: npt.ArrayLike) -> np.ndarray:
    """ggml-cpu's from_float of type ``fmt`` (what mul_mat applies to activations) on each row of X
    (float32 [M, n]): uint8 [M, row_size(fmt, n)]."""
    a = _rows(X, "X")
    rb = row_size(fmt, a.shape[1])
    out = np.zeros((a.shape[0], rb), np.uint8)
    fn = _row_fn_t(_cpu_traits(fmt).from_float)
    for m in range(a.shape[0]):
        fn(a[m].ctypes.data, out[m].ctypes.data, a.shape[1])
    return out


def cpu_mul_mat(fmt: str, W: npt.ArrayLike, X: npt.ArrayLike) -> np.ndarray:
    """y = X @ W_hat.T as ggml-cpu's mul_mat computes it for weights W (uint8 [rows, row_size(fmt, n)]):
    X (float32 [M, n]) quantized with the vec_dot_type's from_float, then the type's vec_dot per
    output (one row at a time). float32 [M, rows]."""
    a = _rows(X, "X")
    n = a.shape[1]
    w = np.ascontiguousarray(W, dtype=np.uint8)
    if w.ndim != 2 or w.shape[1] != row_size(fmt, n):
        raise ValueError(f"W must have shape (rows, {row_size(fmt, n)}) for {fmt} rows of {n}, got {w.shape}")
    t = _cpu_traits(fmt)
    xq = cpu_from_float(vec_dot_type(fmt), a)
    dot = _vec_dot_t(t.vec_dot)
    y = np.zeros((a.shape[0], w.shape[0]), np.float32)
    s = ctypes.c_float()
    for m in range(a.shape[0]):
        for r in range(w.shape[0]):
            dot(n, ctypes.byref(s), 0, w[r].ctypes.data, 0, xq[m].ctypes.data, 0, 1)
            y[m, r] = s.value
    return y
