"""llama.cpp (through llama-cpp-python) as the oracle for the GGUF writer tests.

``quantize_gguf`` runs llama.cpp's own quantizer (``llama_model_quantize``, what the
``llama-quantize`` tool calls) with an optional importance matrix passed in memory;
``llama_cpp_logits`` runs llama.cpp's forward pass on token ids. Import only after
``pytest.importorskip("llama_cpp")``.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

import llama_cpp

try:  # llama_cpp opens /dev/null twice at import and never closes it: close at exit, quietly
    import atexit

    from llama_cpp import _utils as _llama_utils
    atexit.register(lambda: [f.close() for f in (_llama_utils.outnull_file, _llama_utils.errnull_file)])
except (ImportError, AttributeError):  # pragma: no cover - other llama-cpp-python versions
    pass

FTYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_S": 11,
          "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18}

_QUIET = None


def quiet() -> None:
    """Silence llama.cpp's logging (it prints every tensor)."""
    global _QUIET
    if _QUIET is None:
        _QUIET = llama_cpp.llama_log_callback(lambda level, text, user: None)
        llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p())


def llama_cpp_version() -> str:
    return f"llama-cpp-python {llama_cpp.__version__}"


def quantize_gguf(src: str | os.PathLike[str], dst: str | os.PathLike[str], mixture: str, *,
                  imatrix: Mapping[str, np.ndarray] | None = None, nthread: int = 1,
                  allow_requantize: bool = False, output_type: str | None = None,
                  token_embedding_type: str | None = None) -> None:
    """``llama-quantize src dst MIXTURE`` with ``imatrix`` ({GGUF tensor name: float32 [n_in]})
    and optional ``--output-tensor-type`` / ``--token-embedding-type`` (ggml type names)."""
    import gguf

    quiet()
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = FTYPES[mixture.upper()]
    if output_type:
        p.output_tensor_type = int(gguf.GGMLQuantizationType[output_type.upper()])
    if token_embedding_type:
        p.token_embedding_type = int(gguf.GGMLQuantizationType[token_embedding_type.upper()])
    p.nthread = nthread
    p.allow_requantize = allow_requantize
    keep = []
    if imatrix:
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, v) in enumerate(sorted(imatrix.items())):
            arr = np.ascontiguousarray(v, dtype=np.float32)
            keep.append(arr)
            entries[i].name = name.encode()
            entries[i].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = arr.size
        entries[len(imatrix)].name = None
        keep.append(entries)
        p.imatrix = entries
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src}, {mixture}) failed with {rc}")


def llama_cpp_logits(path: str | os.PathLike[str], tokens: Sequence[int], *, n_threads: int = 2,
                     kv_type: int = 0) -> np.ndarray:
    """float32 ``[len(tokens), n_vocab]`` logits of llama.cpp's forward pass over ``tokens``.
    The KV cache is float32 (``kv_type=0``; llama.cpp's default F16 cache rounds keys and values
    to half precision, a ~1e-3 difference that is not the file's)."""
    quiet()
    llm = llama_cpp.Llama(model_path=str(Path(path)), logits_all=True, n_ctx=max(64, len(tokens)), n_batch=len(tokens),
                          n_threads=n_threads, verbose=False, seed=0, type_k=kv_type, type_v=kv_type)
    try:
        llm.eval(list(tokens))
        return np.array(llm.scores[: len(tokens)], dtype=np.float32)
    finally:
        llm.close()
