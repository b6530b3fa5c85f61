"""The interleaved (repacked) GGUF kernel layouts (lowbit/ggml_repack.hpp) against the scalar
vec_dot definition.

q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_K, q3_K, q4_K, q5_K, q8_0 and q6_K weights (every type with a
kernel) are stored as groups of 8 interleaved rows on x86 builds; the AVX2 kernels on that
layout compute each output with the scalar definition's operations in its order, so they must
match the scalar kernels bit for bit (NaN where it is NaN), on every shape: rows not a multiple
of 8 (padded group), any number of activation rows (steps of 4, then 1; prefill pairs of
groups), any thread count.
"""
from __future__ import annotations

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core
from conftest import matmul_acts as acts


TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "q2_K", "q3_K", "q4_K", "q5_K", "q8_0", "q6_K")
BLOCK = {"q4_0": 32, "q4_1": 32, "q5_0": 32, "q5_1": 32, "iq4_nl": 32, "q2_K": 256, "q3_K": 256, "q4_K": 256,
         "q5_K": 256, "q8_0": 32, "q6_K": 256}
# per block of 8 interleaved rows: the bytes of 8 native blocks, except q3_K / q4_K / q5_K (unpacked scales)
GROUP_BYTES = {"q4_0": 144, "q4_1": 160, "q5_0": 176, "q5_1": 192, "iq4_nl": 144, "q2_K": 672, "q3_K": 912,
               "q4_K": 1184, "q5_K": 1440, "q8_0": 272, "q6_K": 1680}
D_OFFSET = {"q2_K": 80, "q3_K": 108, "q6_K": 208}  # where the fp16 (super-)block scale d sits in a block; else 0
MIN_OFFSET = {"q4_1": 2, "q5_1": 2, "q2_K": 82, "q4_K": 2, "q5_K": 2}  # an fp16 m (k-quants: dmin)
# the bytes of a block that hold its 5-bit codes (qh then qs)
FIVE_BIT_CODES = {"q5_0": slice(2, 22), "q5_1": slice(4, 24), "q5_K": slice(16, 176)}


def weights(t: str, out: int, inp: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = (rng.standard_t(5, (out, inp)) * rng.uniform(0.01, 1.0, (out, 1)) * scale).astype(np.float32)
    if out > 2:
        W[1, : inp // 2] = 0.0  # zero blocks (d = 0)
    return _core.quantize_rows(t, W)




def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def simd_isas() -> list[str]:
    return [i for i in _core.supported_isas() if i != "scalar"]


@pytest.mark.parametrize("t", TYPES)
def test_layout_size_is_the_interleaved_groups(t):
    # q4_0: 8 rows x 32 columns take one block of 8 fp16 scales + 128 nibble bytes (the bytes of 8
    # native rows); q4_K adds 32 bytes of unpacked 6-bit scales/mins per 8 rows x 256 columns.
    # 9 rows take a second (padded) group
    b = BLOCK[t]
    for out, inp in ((8, b), (9, 2 * b), (1, b)):
        w = _core.prepare_ggml(t, weights(t, out, inp), out, inp)
        interleaved = -(-out // 8) * (inp // b) * GROUP_BYTES[t]
        if "avx2" in _core.supported_isas():
            assert w.nbytes == interleaved, (out, inp)
        else:  # interleaved on any x86 build, native rows elsewhere
            assert w.nbytes in (interleaved, out * _core.row_size(t, inp)), (out, inp)


@pytest.mark.parametrize("t", TYPES)
@pytest.mark.parametrize("out,nblk", [(1, 1), (7, 1), (8, 2), (9, 3), (17, 1), (33, 5)])
def test_repacked_bit_identical_to_scalar(t, out, nblk):
    inp = nblk * BLOCK[t]
    qw = weights(t, out, inp, seed=out)
    w = _core.prepare_ggml(t, qw, out, inp)
    for M in (1, 2, 3, 4, 5, 7, 8, 9, 33):
        x = acts(M, inp, seed=M)
        ref = _core.ggml_qmatmul(x, w, "int8", "scalar")
        for isa in simd_isas():
            got = _core.ggml_qmatmul(x, w, "int8", isa)
            assert same(got, ref), f"{t} out={out} in={inp} M={M} {isa}: max diff {np.nanmax(np.abs(got - ref))}"
        # the float32 path reads the rows back from the interleaved layout: W_hat exactly
        f32 = _core.ggml_qmatmul(x, w, "float32", "scalar")
        What = _core.dequantize_rows(t, qw, inp).astype(np.float64)
        want = x.astype(np.float64) @ What.T
        scale = np.abs(x.astype(np.float64)) @ np.abs(What).T
        assert (np.abs(f32 - want) <= (inp + 8) * 2.0**-24 * scale).all(), (t, out, inp, M)


@pytest.mark.parametrize("t", TYPES)
def test_prefill_512_rows_bit_identical_to_scalar(t):
    inp = 2 * BLOCK[t]
    w = _core.prepare_ggml(t, weights(t, 21, inp, seed=5), 21, inp)
    x = acts(512, inp, seed=6)
    ref = _core.ggml_qmatmul(x, w, "int8", "scalar")
    for isa in simd_isas():
        assert same(_core.ggml_qmatmul(x, w, "int8", isa), ref), isa


@pytest.mark.parametrize("t", TYPES)
def test_zeros_huge_inf_and_nan_match_scalar(t):
    out, inp = 11, 2 * BLOCK[t]
    qw = weights(t, out, inp, scale=3e4)  # block scales near fp16's top
    bb = _core.row_size(t, BLOCK[t])
    d = D_OFFSET.get(t, 0)
    qw[4, d:d + 2] = np.frombuffer(np.float16(np.inf).tobytes(), np.uint8)  # a block scale of +inf
    qw[6, bb + d:bb + d + 2] = np.frombuffer(np.float16(np.nan).tobytes(), np.uint8)  # a NaN scale
    if t == "q8_0":
        qw[7, 2:34] = 0x80  # codes of -128 (never written by the quantizer, legal in a file)
    if t in MIN_OFFSET:
        m = MIN_OFFSET[t]
        qw[8, m:m + 2] = np.frombuffer(np.float16(-np.inf).tobytes(), np.uint8)  # a min of -inf
        qw[9, bb + m:bb + m + 2] = np.frombuffer(np.float16(np.nan).tobytes(), np.uint8)  # a NaN min
    if t in FIVE_BIT_CODES:
        qw[10, FIVE_BIT_CODES[t]] = 0xff  # all codes 31 in the first block: the largest int16 sums
    w = _core.prepare_ggml(t, qw, out, inp)
    x = acts(6, inp)
    x[0] = 0.0
    x[3] *= 5e6 / np.abs(x[3]).max()
    x[4, : BLOCK[t]] = 1.0  # every activation code at its maximum: the int16 sums at their bounds
    x[5, 7] = np.nan
    ref = _core.ggml_qmatmul(x, w, "int8", "scalar")
    assert np.isnan(ref[5]).all() and not np.isfinite(ref[2:5, 6]).any()
    for isa in simd_isas():
        assert same(_core.ggml_qmatmul(x, w, "int8", isa), ref), isa
        for m in range(6):  # a row's result never depends on the rows beside it
            assert same(_core.ggml_qmatmul(x[m:m + 1], w, "int8", isa), ref[m:m + 1]), (isa, m)


@pytest.mark.parametrize("t", TYPES)
def test_bit_identical_for_1_and_2_threads(t):
    w = _core.prepare_ggml(t, weights(t, 300, 512), 300, 512)
    for M in (1, 9, 130):
        x = acts(M, 512)
        for act in ("int8", "float32"):
            lb.set_num_threads(1)
            one = _core.ggml_qmatmul(x, w, act)
            lb.set_num_threads(2)
            two = _core.ggml_qmatmul(x, w, act)
            assert one.tobytes() == two.tobytes(), (t, act, M)


@pytest.mark.parametrize("at", ["q8_0", "q8_1", "q8_K"])
def test_simd_activation_quantizer_writes_the_scalar_bytes(at):
    # ggml_qmatmul quantizes activations with the ISA's quantizer: the bytes of the scalar
    # definition (itself checked against llama.cpp's in test_ggml_qmatmul.py), ties included
    x = acts(9, 256, seed=3) * np.float32(3.0)
    x[3, :32] = np.arange(32, dtype=np.float32) - 16.5  # amax 16.5: id = 127/16.5, ordinary rounding
    x[4, :32] = (np.arange(32, dtype=np.float32) - 15.0) / 2.0  # with x[4, 31] = 127 below: halves
    x[4, 31] = 127.0  # amax 127, id = 1: codes k + 0.5 round to even
    x[5, 32:64] = -0.0  # an all-zero block (signed zeros): d = 0, codes 0
    x[6, 64:96] = 6.0e4  # fp16's top: d = 472.4, s overflows to inf for q8_1 as in ggml
    x[7, 96:128] = 1e-30  # tiny: d flushes to fp16 0 but the codes are 127
    x[8, 10], x[8, 200] = -9.0, 9.0  # q8_K: two elements of the largest |x|, the first (negative) sets d
    ref = _core.ggml_quantize_act(at, x)
    for isa in simd_isas():
        got = _core.ggml_quantize_act(at, x, isa)
        assert np.array_equal(got, ref), (at, isa, np.argwhere(got != ref)[:5])
