"""GGUF formats byte-exact with llama.cpp.

Three oracles: (a) golden bytes produced by llama.cpp (committed, always run), (b) the ``gguf``
package's NumPy quantize/dequantize where it has them, (c) llama.cpp itself through
llama-cpp-python's libggml-base (marker ``llama_cpp``; skipped when it is not installed).
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core

from reference import ggml_golden as golden

TYPES = golden.TYPES
K_TYPES = ("q2_K", "q3_K", "q4_K", "q5_K", "q6_K")


@pytest.fixture(scope="module")
def fixture():
    z = np.load(golden.GOLDEN)
    meta = json.loads(bytes(z["meta"]).decode())
    return z, meta


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


# ------------------------------------------------------------------ (a) golden bytes
@pytest.mark.parametrize("imx", ["plain", "imatrix"])
@pytest.mark.parametrize("t", TYPES)
def test_golden_bytes_adversarial_rows(fixture, t, imx, isa):
    z, meta = fixture
    W = z["W"]
    np.testing.assert_array_equal(W, golden.adversarial_rows())  # the inputs are what the generator says
    qw = z["imatrix"] if imx == "imatrix" else None
    ours = _core.quantize_rows(t, W, qw)
    want = z[f"{t}/{imx}"]
    bad = [r for r in range(W.shape[0]) if not np.array_equal(ours[r], want[r])]
    assert not bad, f"{t} ({imx}): rows {bad} differ from llama.cpp {meta['peer']}"
    h = meta["hashes"][f"{t}/{imx}"]
    if h["dequant"] is not None:
        assert golden.sha(_core.dequantize_rows(t, want, W.shape[1])) == h["dequant"], f"{t}: to_float differs"


@pytest.mark.parametrize("imx", ["plain", "imatrix"])
@pytest.mark.parametrize("t", TYPES)
def test_golden_hash_realistic_rows(fixture, t, imx):
    _, meta = fixture
    R = golden.random_rows()
    if golden.sha(R) != meta["random_rows_sha"]:
        pytest.skip("this NumPy draws different PCG64 normals than the fixture's")
    qw = golden.imatrix(R.shape[1]) if imx == "imatrix" else None
    assert golden.sha(_core.quantize_rows(t, R, qw)) == meta["hashes"][f"{t}/{imx}"]["random"]


@pytest.mark.parametrize("t", TYPES)
def test_simd_search_matches_scalar_reference(t, rng):
    """The 8-lane searches (AVX2) give the scalar reference's bytes: odd block counts (lane
    tails), zero/constant blocks, huge and tiny values, with and without an imatrix."""
    if "avx2" not in _core.supported_isas():
        pytest.skip("no AVX2 on this CPU/build")
    n = 256 * 3 if t.endswith("_K") else 32 * 13
    W = (rng.standard_t(3, (10, n)) * rng.uniform(1e-3, 1e3, (10, 1))).astype(np.float32)
    W[1, : n // 2] = 0
    W[2, 32:96] = -1.25
    W[3] *= 1e-38
    W[4, ::7] = 1e20
    W[5, 64:80] = 1e-16
    qw = (rng.uniform(0, 2, n) ** 4).astype(np.float32)
    qw[:20] = 0
    for q in (None, qw):
        lb.force_isa("scalar")
        ref = _core.quantize_rows(t, W, q)
        lb.force_isa("avx2")
        np.testing.assert_array_equal(_core.quantize_rows(t, W, q), ref)


# ------------------------------------------------------------------ (b) the gguf package
gguf = pytest.importorskip("gguf")
_GQ = {"q4_0": "Q4_0", "q4_1": "Q4_1", "q5_0": "Q5_0", "q5_1": "Q5_1", "q8_0": "Q8_0", "q2_K": "Q2_K",
       "q3_K": "Q3_K", "q4_K": "Q4_K", "q5_K": "Q5_K", "q6_K": "Q6_K", "iq4_nl": "IQ4_NL"}


@pytest.mark.parametrize("t", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"])
def test_gguf_numpy_quantize_matches(t, rng):
    W = (rng.standard_normal((16, 256)) * rng.uniform(0.01, 2, (16, 1))).astype(np.float32)
    W[1] = 0
    W[2, :32] = 0.5
    want = gguf.quants.quantize(W, gguf.GGMLQuantizationType[_GQ[t]])
    np.testing.assert_array_equal(_core.quantize_rows(t, W), want)


@pytest.mark.parametrize("t", list(_GQ))
def test_gguf_numpy_dequantize_matches(t, rng):
    W = (rng.standard_normal((8, 512)) * 0.1).astype(np.float32)
    data = _core.quantize_rows(t, W)
    want = gguf.quants.dequantize(data, gguf.GGMLQuantizationType[_GQ[t]]).reshape(W.shape)
    np.testing.assert_allclose(_core.dequantize_rows(t, data, 512), want, rtol=2e-7, atol=1e-12)


# ------------------------------------------------------------------ quantizer entry point
def test_quantize_entry_point_is_the_format(rng):
    W = rng.standard_normal((4, 512)).astype(np.float32)
    qw = rng.uniform(0.1, 2, 512).astype(np.float32)
    q = lb.quantize(W, lb.GGUFConfig(type="Q4_K"), act_mean_sq=qw)
    assert q.format == "q4_K" and q.bits_per_weight == 4.5 and q.layout.name == "blocks"
    np.testing.assert_array_equal(q.arrays["qweight"], _core.quantize_rows("q4_K", W, qw))
    assert not np.array_equal(q.arrays["qweight"], lb.quantize(W, lb.GGUFConfig(type="Q4_K")).arrays["qweight"])
    np.testing.assert_array_equal(q.dequantize(), _core.dequantize_rows("q4_K", q.arrays["qweight"], 512))
    assert lb.quantize(W, lb.GGUFConfig(type="iq4_nl")).format == "iq4_nl"


def test_quantize_rejects_bad_input(rng):
    W = rng.standard_normal((4, 320)).astype(np.float32)
    with pytest.raises(ValueError, match="multiple"):
        lb.quantize(W, lb.GGUFConfig(type="Q4_K"))
    with pytest.raises(ValueError, match="mixture"):
        lb.quantize(W[:, :256], lb.GGUFConfig(type="Q4_K_M"))
    with pytest.raises(ValueError, match="imatrix"):
        lb.quantize(W, lb.GGUFConfig(type="Q4_0"), act_mean_sq=np.ones(3, np.float32))
    W[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        lb.quantize(W, lb.GGUFConfig(type="Q4_0"))


def test_thread_count_does_not_change_bytes(rng):
    W = rng.standard_normal((64, 512)).astype(np.float32)
    lb.set_num_threads(1)
    one = _core.quantize_rows("q4_K", W)
    lb.set_num_threads(2)
    np.testing.assert_array_equal(_core.quantize_rows("q4_K", W), one)


# ------------------------------------------------------------------ (c) llama.cpp itself
@pytest.fixture(scope="module")
def peer():
    pytest.importorskip("llama_cpp")
    from lowbit.peers import ggml
    if not ggml.available():
        pytest.skip("llama-cpp-python has no usable libggml-base")
    return ggml


@pytest.mark.llama_cpp
@pytest.mark.parametrize("imx", [False, True])
@pytest.mark.parametrize("t", TYPES)
def test_live_llama_cpp_fresh_random_data(peer, t, imx):
    rng = np.random.default_rng(zlib.crc32(f"{t}/{imx}".encode()))  # (hash() of str is salted)
    for n in (256, 768):
        W = (rng.standard_t(4, (9, n)) * rng.uniform(1e-3, 10, (9, 1))).astype(np.float32)
        W[3, : n // 2] = 0
        W[4, 7] = 1e4
        qw = (rng.uniform(0, 3, n) ** 2).astype(np.float32) if imx else None
        want = peer.quantize(t, W, qw)
        ours = _core.quantize_rows(t, W, qw)
        bad = [r for r in range(W.shape[0]) if not np.array_equal(ours[r], want[r])]
        assert not bad, f"{t} n={n} imatrix={imx}: rows {bad} differ from llama.cpp {peer.version()}"
        assert _core.row_size(t, n) == peer.row_size(t, n)
        if t != "q8_1":
            np.testing.assert_array_equal(_bits(_core.dequantize_rows(t, want, n)), _bits(peer.dequantize(t, want, n)))


@pytest.mark.llama_cpp
def test_live_requires_imatrix_agrees(peer):
    for t in TYPES:
        if t in ("q8_1", "q8_K"):
            continue
        assert not peer.requires_imatrix(t), f"{t} needs an imatrix in llama.cpp but lowbit quantizes without"
