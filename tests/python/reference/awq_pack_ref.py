"""The AWQ GEMM packing as REFERENCE.md §2.7 describes it, with explicit loops (shares no code
with lowbit's vectorised packer): word (i, c) holds outputs 8c..8c+7, nibble k (bits 4k..4k+3)
holding output 8c + ORDER[k]; unpacking reads logical output j from nibble REVERSE[j]."""

from __future__ import annotations

import numpy as np

ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
REVERSE = (0, 4, 1, 5, 2, 6, 3, 7)


def pack(values: np.ndarray) -> np.ndarray:
    """uint [n, out] -> int32 [n, out/8]."""
    n, out = values.shape
    words = np.zeros((n, out // 8), dtype=np.uint32)
    for i in range(n):
        for c in range(out // 8):
            w = 0
            for k in range(8):
                w |= int(values[i, 8 * c + ORDER[k]]) << (4 * k)
            words[i, c] = w
    return words.view(np.int32)


def unpack(words: np.ndarray) -> np.ndarray:
    """int32 [n, m] -> uint8 [n, 8m]."""
    w = words.view(np.uint32)
    n, m = w.shape
    out = np.zeros((n, 8 * m), dtype=np.uint8)
    for i in range(n):
        for c in range(m):
            for j in range(8):
                out[i, 8 * c + j] = (int(w[i, c]) >> (4 * REVERSE[j])) & 0xF
    return out


def dequantize(qweight: np.ndarray, qzeros: np.ndarray, scales: np.ndarray, group_size: int) -> np.ndarray:
    """W [out, in] = (q[i, o] - z[i // gs, o]) * s[i // gs, o], float32."""
    q = unpack(qweight).astype(np.float32)            # [in, out]
    z = unpack(qzeros).astype(np.float32)             # [G, out]
    g = np.arange(q.shape[0]) // group_size
    return ((q - z[g]) * scales.astype(np.float32)[g]).T
