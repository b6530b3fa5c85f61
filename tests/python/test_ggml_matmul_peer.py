"""lowbit.peers.ggml_matmul: llama.cpp's mul_mat through ctypes, the kernel benchmarks' peer.

Its results must be llama.cpp's product of the dequantized weights with activations rounded to
the type's 8-bit vec_dot_type: within that rounding's bound of the float product, identical
(up to float summation order) between the repacked and the plain path.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llama_cpp")
from lowbit.peers import ggml, ggml_matmul  # noqa: E402

pytestmark = pytest.mark.llama_cpp

TYPES = ["q4_0", "q4_1", "q5_0", "q8_0", "q4_K", "q6_K", "iq4_nl"]


@pytest.mark.parametrize("t", TYPES)
@pytest.mark.parametrize("M", [1, 3, 17])
def test_matches_dequantized_product(t: str, M: int) -> None:
    rng = np.random.default_rng(0)
    N, K = 64, 512
    W = rng.standard_normal((N, K)).astype(np.float32)
    x = rng.standard_normal((M, K)).astype(np.float32)
    data = ggml.quantize(t, W)
    Wd = ggml.dequantize(t, data, K)
    ref = x.astype(np.float64) @ Wd.T.astype(np.float64)
    # activation rounding: each x is off by at most half its 8-bit step, d = amax/127 per block
    # (32 columns for Q8_0/Q8_1, 256 for Q8_K); plus float32 summation
    blk = 256 if t.endswith("_K") else 32
    d = np.abs(x).reshape(M, K // blk, blk).max(axis=2) / 127.0
    bound = 0.5 * (np.abs(Wd).reshape(N, K // blk, blk).sum(axis=2)[None] * d[:, None]).sum(axis=2)
    bound = bound * 1.02 + 1e-3 * np.abs(ref) + 1e-4
    ys = {}
    for repack in (False, True):
        mm = ggml_matmul.MatMul(t, [data, data], K, M=M, threads=2, repack=repack)
        try:
            ys[repack] = (mm.run(x, 1).copy(), mm.repacked)
        finally:
            mm.close()
        assert np.all(np.abs(ys[repack][0] - ref) <= bound), t
    assert not ys[False][1]
    np.testing.assert_allclose(ys[True][0], ys[False][0], rtol=2e-3, atol=2e-3 * float(np.abs(ref).max()))


def test_repack_is_reported_for_q4_0() -> None:
    # ggml repacks Q4_0 on every CPU it has kernels for (AVX2, AVX-512, NEON)
    assert ggml_matmul.repack_supported("q4_0", 64, 512) == (ggml_matmul.repack_buffer_name() is not None)


def test_bad_arguments() -> None:
    W = np.zeros((8, 32), np.float32)
    with pytest.raises(ValueError, match="type_name"):
        ggml_matmul.MatMul("q9_9", [W], 32, M=1)
    mm = ggml_matmul.MatMul("f32", [W], 32, M=2, repack=False)
    try:
        with pytest.raises(ValueError, match="x must have shape"):
            mm.run(np.zeros((1, 32), np.float32))
    finally:
        mm.close()
