"""The GPTQ checkpoint packing as AutoGPTQ's QuantLinear.pack describes it (REFERENCE.md §1.8),
written here with explicit per-bit-width loops (including the 3-bit cross-word scheme) so it
shares no code with lowbit's generic bit-stream packer."""

from __future__ import annotations

import numpy as np


def pack_columns(intweight: np.ndarray, bits: int) -> np.ndarray:
    """intweight uint32 [n, cols] -> uint32 [n*bits/32, cols], packed along axis 0."""
    n = intweight.shape[0]
    iw = intweight.astype(np.uint32)
    out = np.zeros((n * bits // 32, iw.shape[1]), dtype=np.uint32)
    if bits in (2, 4, 8):
        per = 32 // bits
        for row in range(out.shape[0]):
            for j in range(per):
                out[row] |= iw[row * per + j] << np.uint32(bits * j)
        return out
    assert bits == 3
    i = row = 0
    while row < out.shape[0]:
        for j in range(i, i + 10):
            out[row] |= iw[j] << np.uint32(3 * (j - i))
        i += 10
        out[row] |= iw[i] << np.uint32(30)
        row += 1
        out[row] |= (iw[i] >> np.uint32(2)) & np.uint32(1)
        i += 1
        for j in range(i, i + 10):
            out[row] |= iw[j] << np.uint32(3 * (j - i) + 1)
        i += 10
        out[row] |= iw[i] << np.uint32(31)
        row += 1
        out[row] |= (iw[i] >> np.uint32(1)) & np.uint32(3)
        i += 1
        for j in range(i, i + 10):
            out[row] |= iw[j] << np.uint32(3 * (j - i) + 2)
        i += 10
        row += 1
    return out


def gptq_pack_ref(codes: np.ndarray, zeros: np.ndarray, bits: int, version: int):
    """codes uint8 [out, in], zeros uint8 [out, G] -> (qweight int32, qzeros int32)."""
    qweight = pack_columns(codes.T.astype(np.uint32), bits).view(np.int32)
    z = zeros.astype(np.int64)
    if version == 1:
        z = (z - 1) & (2**bits - 1)
    qzeros = pack_columns(z.astype(np.uint32), bits).T.copy().view(np.int32)  # [G, out*bits/32]
    return qweight, qzeros
