"""llama.cpp's CPU matrix multiply through ctypes: the in-run peer of lowbit's kernel benchmarks.

Runs ``ggml_mul_mat`` on ggml's CPU backend (``libggml-base`` + ``libggml-cpu`` bundled with
llama-cpp-python; nothing is compiled here). With ``repack=True`` (the default) the weight is
placed in the CPU backend's ``CPU_REPACK`` buffer type, as llama.cpp does when it loads a
model: Q4_0, Q4_K and IQ4_NL weights are then repacked into its interleaved layouts and its
repacked GEMM/GEMV kernels run. ``repack=False`` runs the plain op-level path
(``vec_dot`` per row pair), which is what its op test tool measures.

    >>> from lowbit.peers import ggml, ggml_matmul
    >>> data = ggml.quantize("q4_0", W)                          # uint8 [rows, row_size]
    >>> mm = ggml_matmul.MatMul("q4_0", [data], W.shape[1], M=1, threads=2)
    >>> y = mm.run(x, 0)                                        # float32 [1, rows]
    >>> mm.close()

Several weight copies can be registered so a benchmark can cycle through a working set that
caches cannot hold. Activations are float32; ggml quantizes them to the weight type's
``vec_dot_type`` inside the op.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from typing import Sequence

import numpy as np
import numpy.typing as npt

from . import ggml as _ggml

__all__ = ["MatMul", "cpu_lib", "repack_buffer_name", "repack_supported"]


class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


_P = ctypes.c_void_p


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level stderr: ggml's repack prints a line per tensor, past its log callback."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.lru_cache(maxsize=1)
def cpu_lib() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    """(libggml-base, libggml-cpu) with the signatures used here declared."""
    base, cpu = _ggml.lib(), _ggml.cpu_lib()
    sig = {
        (base, "ggml_init"): ([_InitParams], _P),
        (base, "ggml_free"): ([_P], None),
        (base, "ggml_tensor_overhead"): ([], ctypes.c_size_t),
        (base, "ggml_graph_overhead"): ([], ctypes.c_size_t),
        (base, "ggml_new_tensor_2d"): ([_P, ctypes.c_int, ctypes.c_int64, ctypes.c_int64], _P),
        (base, "ggml_mul_mat"): ([_P, _P, _P], _P),
        (base, "ggml_new_graph"): ([_P], _P),
        (base, "ggml_build_forward_expand"): ([_P, _P], None),
        (base, "ggml_backend_cpu_buffer_type"): ([], _P),
        (base, "ggml_backend_alloc_ctx_tensors_from_buft"): ([_P, _P], _P),
        (base, "ggml_backend_buffer_free"): ([_P], None),
        (base, "ggml_backend_tensor_set"): ([_P, _P, ctypes.c_size_t, ctypes.c_size_t], None),
        (base, "ggml_backend_tensor_get"): ([_P, _P, ctypes.c_size_t, ctypes.c_size_t], None),
        (base, "ggml_backend_graph_compute"): ([_P, _P], ctypes.c_int),
        (base, "ggml_backend_free"): ([_P], None),
        (base, "ggml_backend_reg_dev_get"): ([_P, ctypes.c_size_t], _P),
        (base, "ggml_backend_reg_get_proc_address"): ([_P, ctypes.c_char_p], _P),
        (base, "ggml_backend_buft_name"): ([_P], ctypes.c_char_p),
        (base, "ggml_backend_dev_supports_op"): ([_P, _P], ctypes.c_bool),
        (cpu, "ggml_cpu_init"): ([], None),
        (cpu, "ggml_backend_cpu_init"): ([], _P),
        (cpu, "ggml_backend_cpu_reg"): ([], _P),
        (cpu, "ggml_backend_cpu_set_n_threads"): ([_P, ctypes.c_int], None),
    }
    for (h, fn), (args, res) in sig.items():
        f = getattr(h, fn)
        f.argtypes, f.restype = args, res
    cpu.ggml_cpu_init()
    return base, cpu


def _extra_bufts() -> dict[str, int]:
    """The CPU device's extra buffer types by name (e.g. ``CPU_REPACK``)."""
    base, cpu = cpu_lib()
    reg = cpu.ggml_backend_cpu_reg()
    dev = base.ggml_backend_reg_dev_get(reg, 0)
    addr = base.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_dev_get_extra_bufts")
    if not addr:
        return {}
    fn = ctypes.CFUNCTYPE(ctypes.POINTER(_P), _P)(addr)
    arr = fn(dev)
    out, i = {}, 0
    while arr and arr[i]:
        out[base.ggml_backend_buft_name(arr[i]).decode()] = arr[i]
        i += 1
    return out


@functools.lru_cache(maxsize=None)
def repack_supported(type_name: str, rows: int, K: int) -> bool:
    """Whether ggml's CPU_REPACK buffer takes a ``[rows, K]`` weight of this type for mul_mat
    on this CPU. Asked of ggml itself (the device's supports_op on a probe tensor): placing an
    unsupported weight in that buffer crashes ggml when its data is set."""
    bufts = _extra_bufts()
    if "CPU_REPACK" not in bufts:
        return False
    base, cpu = cpu_lib()
    ctx_w = base.ggml_init(_InitParams(base.ggml_tensor_overhead() * 2, None, True))
    ctx = base.ggml_init(_InitParams(base.ggml_tensor_overhead() * 4, None, True))
    buf = None
    try:
        w = base.ggml_new_tensor_2d(ctx_w, _ggml.GGML_TYPES[type_name], int(K), int(rows))
        x = base.ggml_new_tensor_2d(ctx, 0, int(K), 1)
        y = base.ggml_mul_mat(ctx, w, x)
        buf = base.ggml_backend_alloc_ctx_tensors_from_buft(ctx_w, bufts["CPU_REPACK"])
        if not buf:
            return False
        dev = base.ggml_backend_reg_dev_get(cpu.ggml_backend_cpu_reg(), 0)
        return bool(base.ggml_backend_dev_supports_op(dev, y))
    finally:
        if buf:
            base.ggml_backend_buffer_free(buf)
        base.ggml_free(ctx)
        base.ggml_free(ctx_w)


def repack_buffer_name() -> str | None:
    """``"CPU_REPACK"`` when this ggml build has the repacking buffer type, else None."""
    return "CPU_REPACK" if "CPU_REPACK" in _extra_bufts() else None


class MatMul:
    """``y[M, rows] = x[M, K] . W^T`` by ggml for each registered weight copy.

    Args:
        type_name: lowbit/ggml type name (``"q4_0"``, ``"q4_K"``, ``"q8_0"``, ``"f32"``...).
        weights: one or more uint8 arrays ``[rows, row_size]`` in GGUF bytes (same shape), e.g.
            from :func:`lowbit.peers.ggml.quantize`, or float32 ``[rows, K]`` for ``"f32"``.
        K: the row length (in_features).
        M: rows of x per call.
        threads: ggml CPU backend threads.
        repack: place weights in the ``CPU_REPACK`` buffer (llama.cpp's load-time path) when
            ggml supports that type and shape there (``self.repacked`` says whether it did).
    """

    def __init__(self, type_name: str, weights: Sequence[npt.NDArray], K: int, M: int, threads: int = 1,
                 repack: bool = True) -> None:
        if type_name not in _ggml.GGML_TYPES:
            raise ValueError(f"type_name must be one of {sorted(_ggml.GGML_TYPES)}, got {type_name!r}")
        if not weights:
            raise ValueError("weights must hold at least one array")
        base, cpu = cpu_lib()
        self._base, self._cpu = base, cpu
        t = _ggml.GGML_TYPES[type_name]
        rows = int(weights[0].shape[0])
        self.rows, self.K, self.M = rows, int(K), int(M)
        self._keep = [np.ascontiguousarray(w) for w in weights]
        nbytes = self._keep[0].nbytes
        if any(w.shape != self._keep[0].shape for w in self._keep):
            raise ValueError("all weight copies must have the same shape")
        n = len(self._keep)
        self._ctx_w = base.ggml_init(_InitParams(base.ggml_tensor_overhead() * (n + 1), None, True))
        self._ctx = base.ggml_init(_InitParams(base.ggml_tensor_overhead() * (2 * n + 4)
                                               + base.ggml_graph_overhead() * n, None, True))
        self._w = [base.ggml_new_tensor_2d(self._ctx_w, t, self.K, rows) for _ in range(n)]
        self._x = base.ggml_new_tensor_2d(self._ctx, 0, self.K, self.M)
        self._y, self._g = [], []
        for w in self._w:
            y = base.ggml_mul_mat(self._ctx, w, self._x)
            g = base.ggml_new_graph(self._ctx)
            base.ggml_build_forward_expand(g, y)
            self._y.append(y)
            self._g.append(g)
        bufts = _extra_bufts()
        self.repacked = bool(repack and repack_supported(type_name, rows, self.K))
        buft_w = bufts["CPU_REPACK"] if self.repacked else base.ggml_backend_cpu_buffer_type()
        self._buf_w = base.ggml_backend_alloc_ctx_tensors_from_buft(self._ctx_w, buft_w)
        self._buf = base.ggml_backend_alloc_ctx_tensors_from_buft(self._ctx, base.ggml_backend_cpu_buffer_type())
        if not self._buf_w or not self._buf:
            self.close()
            raise MemoryError("ggml could not allocate the benchmark tensors")
        with _quiet_stderr():
            for w, data in zip(self._w, self._keep):
                base.ggml_backend_tensor_set(w, data.ctypes.data, 0, nbytes)  # the repack happens here
        self._keep = []  # ggml holds its own copy now
        self._backend = cpu.ggml_backend_cpu_init()
        cpu.ggml_backend_cpu_set_n_threads(self._backend, int(threads))
        self._out = np.empty((self.M, rows), np.float32)

    def set_threads(self, threads: int) -> None:
        self._cpu.ggml_backend_cpu_set_n_threads(self._backend, int(threads))

    def run(self, x: npt.NDArray[np.float32], i: int = 0) -> np.ndarray:
        """x float32 ``[M, K]`` times weight copy ``i``; returns float32 ``[M, rows]`` (a view
        of an internal buffer, overwritten by the next call)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != (self.M, self.K):
            raise ValueError(f"x must have shape {(self.M, self.K)}, got {x.shape}")
        b = self._base
        b.ggml_backend_tensor_set(self._x, x.ctypes.data, 0, x.nbytes)
        status = b.ggml_backend_graph_compute(self._backend, self._g[i])
        if status != 0:
            raise RuntimeError(f"ggml_backend_graph_compute failed with status {status}")
        b.ggml_backend_tensor_get(self._y[i], self._out.ctypes.data, 0, self._out.nbytes)
        return self._out

    def compute(self, i: int = 0) -> None:
        """Run the product for copy ``i`` on the activations already set (timing loops)."""
        status = self._base.ggml_backend_graph_compute(self._backend, self._g[i])
        if status != 0:
            raise RuntimeError(f"ggml_backend_graph_compute failed with status {status}")

    def close(self) -> None:
        b = self._base
        for attr, fn in (("_backend", b.ggml_backend_free), ("_buf", b.ggml_backend_buffer_free),
                         ("_buf_w", b.ggml_backend_buffer_free), ("_ctx", b.ggml_free), ("_ctx_w", b.ggml_free)):
            h = getattr(self, attr, None)
            if h:
                fn(h)
            setattr(self, attr, None)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
