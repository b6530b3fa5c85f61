"""Quantized matmul kernels: decode (M=1) and prefill (M=512) against in-run baselines.

One run, at 1 and 2 threads, prints:

* the machine's memory read bandwidth (STREAM-style read of a 1 GiB buffer, and triad) and
  its SGEMM rate (NumPy; threadpoolctl names the BLAS kernel) and its int8 dot-product
  instruction peak (``_core.int8_peak``: vpdpbusd with AVX-512 VNNI, else AVX2's
  vpmaddubsw+vpmaddwd), all measured here; W8A8 prefill rows print their share of that peak;
* for each format and weight shape (4096x4096 and 14336x4096, out x in): the time of
  ``_core.qmatmul`` cycling through enough distinct weight copies (>= --working-set MB) that
  caches cannot hold them; decode GB/s of weight bytes (codes + scales) and its share of the
  read bandwidth; prefill GOP/s (2*M*N*K);
* baselines: float32 NumPy matmul of the dequantized weights (decode cycles through float32
  copies), and prefill as dequantize-then-SGEMM (what QuantizedTensor.matmul did before);
* with --lut (or --lut-only): the table-lookup formats (NF4, HQQ 4-bit, tinygemm int4, FP8
  e4m3, lowbit.lut; NF4, HQQ and tinygemm on the grouped-int kernels) through QuantizedTensor.matmul,
  against the same float32 baselines;
* GGUF types (Q4_0, Q4_K, Q8_0, ... on the same bytes): lowbit next to llama.cpp's ggml
  ``mul_mat`` on its CPU backend (``lowbit.peers.ggml_matmul``, llama-cpp-python's bundled
  libggml), with the weights in ggml's ``CPU_REPACK`` buffer where ggml repacks that type on
  this CPU (the path llama.cpp runs when it loads a model; the "repack" column says which).

Timings on a shared machine are noisy: medians of --repeats, ratios within this run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=passive \
        PYTHONPATH=build/python .venv/bin/python bench/bench_kernels.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lowbit as lb
from lowbit import _core

# name, bits, group_size, sym, act
FORMATS = [
    ("int4 g128 asym", 4, 128, False, "int8"),
    ("int4 g32 sym", 4, 32, True, "int8"),
    ("int8 channel sym", 8, -1, True, "int8"),
    ("int8 W8A8", 8, -1, True, "int8_token"),
    ("int3 g128 (nibble path)", 3, 128, False, "int8"),
    ("int4 g128 float32-act", 4, 128, False, "float32"),
]
SHAPES = [(4096, 4096), (14336, 4096)]
# GGUF types, each next to llama.cpp's own mul_mat on the same bytes (ggml CPU backend, with
# its load-time repack where ggml has one for the type on this CPU)
GGUF_TYPES = ["q4_0", "q4_K", "q8_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q5_K", "q6_K", "iq4_nl"]
GGUF_QUICK = ["q4_0", "q4_K", "q8_0"]


def median_time(fn, repeats: int, inner: int = 1) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        ts.append((time.perf_counter() - t0) / inner)
    return statistics.median(ts)


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})"
                     for i in threadpool_info() if i["user_api"] == "blas")


def blas_threads(n: int):
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=n, user_api="blas")
    except ImportError:
        import contextlib
        return contextlib.nullcontext()


def random_grouped(bits: int, out: int, inp: int, group_size: int, sym: bool, seed: int = 0):
    """Random codes/scales/zeros in lowbit's grouped layout (the kernels' speed is data-independent)."""
    rng = np.random.default_rng(seed)
    gs = inp if group_size <= 0 else group_size
    G = -(-inp // gs)
    codes = rng.integers(0, 2**bits, size=(out, inp), dtype=np.uint8)
    qweight = _core.pack_codes(codes, bits)
    scales = (rng.random((out, G), dtype=np.float32) * 0.01 + 1e-3).astype(np.float32)
    zeros = (np.full((out, G), 2 ** (bits - 1), np.uint8) if sym
             else rng.integers(0, 2**bits, size=(out, G), dtype=np.uint8))
    return qweight, scales, zeros, gs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--working-set", type=int, default=512, help="MB of distinct weights to cycle through")
    ap.add_argument("--prefill-m", type=int, default=512)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true", help="first shape only, fewer formats")
    ap.add_argument("--no-gguf", action="store_true", help="skip the GGUF types (and the llama.cpp peer)")
    ap.add_argument("--gguf-only", action="store_true", help="only the GGUF types (and the machine figures)")
    ap.add_argument("--gguf-types", default=None, help="comma-separated GGUF types (default: all; --quick: 3)")
    ap.add_argument("--lut", action="store_true", help="add the table-lookup formats (nf4, hqq4, tinygemm, fp8)")
    ap.add_argument("--lut-only", action="store_true", help="only the table-lookup formats (and the baselines)")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    shapes = SHAPES[:1] if args.quick else SHAPES
    formats = [] if args.lut_only else FORMATS[:4] if args.quick else FORMATS
    if args.lut_only:
        args.no_gguf = True
    info = lb.cpu_info()
    print(f"lowbit {lb.__version__}, kernels {info['isa']}, NumPy {np.__version__}, BLAS: {blas_info()}")
    print(f"medians of {args.repeats}; weights cycled through >= {args.working_set} MB of distinct copies\n")

    # ---- machine: bandwidth and SGEMM --------------------------------------------------------
    buf = np.ones(1 << 30, np.uint8)
    n = 1 << 26
    a, b, c = np.zeros(n, np.float32), np.ones(n, np.float32), np.ones(n, np.float32)
    K0, M0 = 4096, args.prefill_m
    A = np.random.default_rng(1).standard_normal((M0, K0)).astype(np.float32)
    B = np.random.default_rng(2).standard_normal((K0, K0)).astype(np.float32)
    read_bw, sgemm, int8_peak = {}, {}, {}
    print(f"{'threads':>7s} {'read GB/s':>10s} {'triad GB/s':>11s} {'SGEMM GFLOP/s':>14s} {'int8 peak GOP/s':>16s}")
    for t in threads:
        lb.set_num_threads(t)
        tr = median_time(lambda: _core.stream_read(buf), args.repeats)
        tt = median_time(lambda: _core.stream_triad(a, b, c, 3.0), args.repeats)
        with blas_threads(t):
            ts = median_time(lambda: A @ B.T, args.repeats)
        read_bw[t] = buf.nbytes / tr / 1e9
        sgemm[t] = 2 * M0 * K0 * K0 / ts / 1e9
        peaks = [_core.int8_peak(0.2) for _ in range(args.repeats)]
        int8_peak[t] = statistics.median(p["gops"] for p in peaks)
        print(f"{t:7d} {read_bw[t]:10.1f} {3 * a.nbytes / tt / 1e9:11.1f} {sgemm[t]:14.1f} {int8_peak[t]:16.1f}")
    del buf, a, b, c
    print(f"int8 peak: {peaks[0]['instruction']} chains on registers (lowbit/int8_peak.hpp), 2 ops per "
          "multiply-add; W8A8 prefill rows print their share of it\n")

    # ---- kernels ---------------------------------------------------------------------------
    hdr = (f"{'format':24s} {'shape':>11s} {'thr':>3s} | {'decode us':>9s} {'GB/s':>6s} {'%read':>6s}"
           f" {'vs f32':>7s} | {'prefill ms':>10s} {'GOP/s':>7s} {'vs deq+SGEMM':>12s}")
    if not args.gguf_only:
        print(hdr)
        print("-" * len(hdr))
    for out, inp in ([] if args.gguf_only else shapes):
        # baselines: float32 weights (decode), dequantize + SGEMM (prefill)
        W = np.random.default_rng(3).standard_normal((out, inp)).astype(np.float32)
        n_f32 = max(1, -(-args.working_set * 10**6 // W.nbytes))
        Ws = [W.copy() for _ in range(n_f32)]
        x1 = np.random.default_rng(4).standard_normal((1, inp)).astype(np.float32)
        xp = np.random.default_rng(5).standard_normal((args.prefill_m, inp)).astype(np.float32)
        qw, sc, zs, gs = random_grouped(4, out, inp, 128, False)
        base = {}
        for t in threads:
            with blas_threads(t):
                it = iter(range(10**9))
                td = median_time(lambda: x1 @ Ws[next(it) % n_f32].T, args.repeats, inner=n_f32)
                lb.set_num_threads(t)
                tp = median_time(lambda: xp @ _core.dequantize_grouped(qw, sc, zs, 4, out, inp, gs).T,
                                 max(1, args.repeats // 2))
            base[t] = (td, tp)
            print(f"{'float32 (numpy)':24s} {f'{out}x{inp}':>11s} {t:3d} | {1e6 * td:9.0f} "
                  f"{W.nbytes / td / 1e9:6.1f} {100 * W.nbytes / td / 1e9 / read_bw[t]:5.0f}% {'1.00x':>7s} | "
                  f"{1e3 * tp:10.1f} {2 * args.prefill_m * out * inp / tp / 1e9:7.1f} {'1.00x':>12s}")
        del Ws
        for name, bits, group_size, sym, act in formats:
            qw, sc, zs, gs = random_grouped(bits, out, inp, group_size, sym)
            first = _core.prepare_grouped(qw, sc, zs, bits, out, inp, gs)
            n_copies = max(1, -(-args.working_set * 10**6 // first.nbytes))
            packs = [first] + [_core.prepare_grouped(qw, sc, zs, bits, out, inp, gs) for _ in range(n_copies - 1)]
            for t in threads:
                lb.set_num_threads(t)
                it = iter(range(10**9))
                td = median_time(lambda: _core.qmatmul(x1, packs[next(it) % n_copies], act), args.repeats,
                                 inner=n_copies)
                tp = median_time(lambda: _core.qmatmul(xp, packs[next(it) % n_copies], act), max(1, args.repeats // 2))
                gbs = first.nbytes / td / 1e9
                gops = 2 * args.prefill_m * out * inp / tp / 1e9
                peak = f"  {100 * gops / int8_peak[t]:.0f}% of int8 peak" if act == "int8_token" else ""
                print(f"{name:24s} {f'{out}x{inp}':>11s} {t:3d} | {1e6 * td:9.0f} {gbs:6.1f} "
                      f"{100 * gbs / read_bw[t]:5.0f}% {base[t][0] / td:6.2f}x | {1e3 * tp:10.1f} "
                      f"{gops:7.1f} {base[t][1] / tp:11.2f}x{peak}")
            del packs, first
        if args.lut or args.lut_only:
            lut_rows(args, threads, out, inp, read_bw, base)
        print()
    if not args.no_gguf:
        gguf_section(args, threads, shapes, read_bw)
    lb.set_num_threads(0)


# name, config: the table-lookup formats (lowbit.lut); HQQ without its solver (speed only).
# nf4, HQQ <= 4 bits and tinygemm prepare to the grouped-int kernels (lowbit.lut.bnb4_kernel,
# affine_kernel); fp8 stays on the table-lookup kernel.
LUT_FORMATS = [
    ("nf4 bs64 (table4)", lambda: lb.BnbConfig(bnb_4bit_quant_type="nf4", bnb_4bit_blocksize=64)),
    ("hqq4 g64 (affine)", lambda: lb.HQQConfig(nbits=4, group_size=64, optimize=False)),
    ("tinygemm g128 (affine)", lambda: lb.TorchAoConfig(quant_type="int4_weight_only", group_size=128)),
    ("fp8 e4m3 channel (lut)", lambda: lb.FP8Config(fmt="e4m3", strategy="channel")),
]


def lut_rows(args: argparse.Namespace, threads: list[int], out: int, inp: int, read_bw: dict[int, float],
             base: dict[int, tuple[float, float]]) -> None:
    """Table-lookup formats through QuantizedTensor.matmul (default act: float activations for
    the lookup kernels, int8 blocks for the affine ones), cycling through prepared copies; GB/s
    counts the bytes the kernel streams (LutWeights / PackedWeights .nbytes)."""
    import copy

    W = np.random.default_rng(7).standard_normal((out, inp)).astype(np.float32) * np.float32(0.02)
    x1 = np.random.default_rng(4).standard_normal((1, inp)).astype(np.float32)
    xp = np.random.default_rng(5).standard_normal((args.prefill_m, inp)).astype(np.float32)
    for name, cfg in LUT_FORMATS:
        q = lb.quantize(W, cfg())
        nbytes = q.prepare().__dict__["_kernel"].packed.nbytes
        n_copies = max(1, -(-args.working_set * 10**6 // nbytes))
        qs = [q]
        for _ in range(n_copies - 1):
            c = copy.copy(q)
            c.__dict__.pop("_kernel", None)
            qs.append(c.prepare())
        for t in threads:
            lb.set_num_threads(t)
            it = iter(range(10**9))
            td = median_time(lambda: qs[next(it) % n_copies].matmul(x1), args.repeats, inner=n_copies)
            tp = median_time(lambda: qs[next(it) % n_copies].matmul(xp), max(1, args.repeats // 2))
            gbs = nbytes / td / 1e9
            print(f"{name:24s} {f'{out}x{inp}':>11s} {t:3d} | {1e6 * td:9.0f} {gbs:6.1f} "
                  f"{100 * gbs / read_bw[t]:5.0f}% {base[t][0] / td:6.2f}x | {1e3 * tp:10.1f} "
                  f"{2 * args.prefill_m * out * inp / tp / 1e9:7.1f} {base[t][1] / tp:11.2f}x")
        del qs, q


def gguf_section(args: argparse.Namespace, threads: list[int], shapes: list[tuple[int, int]],
                 read_bw: dict[int, float]) -> None:
    """GGUF block formats: lowbit's QuantizedTensor.matmul (act="int8": llama.cpp's activation
    rounding) next to llama.cpp's ggml on the same bytes, both cycling through weight copies."""
    import copy

    try:
        from lowbit.peers import ggml_matmul
        ggml_matmul.cpu_lib()
        peer_ok, why = True, ""
    except Exception as e:  # llama-cpp-python missing or unusable
        peer_ok, why = False, str(e)
    print("GGUF types: lowbit vs llama.cpp's ggml (CPU backend, repacked where ggml repacks the type)"
          + ("" if peer_ok else f" -- peer unavailable: {why}"))
    hdr = (f"{'type':8s} {'shape':>11s} {'thr':>3s} | {'decode us':>9s} {'GB/s':>6s} {'%read':>6s} {'ggml us':>8s}"
           f" {'x ggml':>7s} | {'prefill ms':>10s} {'GOP/s':>7s} {'ggml GOP/s':>10s} {'x ggml':>7s} {'repack':>6s}")
    print(hdr)
    print("-" * len(hdr))
    types = args.gguf_types.split(",") if args.gguf_types else GGUF_QUICK if args.quick else GGUF_TYPES
    for out, inp in shapes:
        W = np.random.default_rng(6).standard_normal((out, inp)).astype(np.float32)
        x1 = np.random.default_rng(4).standard_normal((1, inp)).astype(np.float32)
        xp = np.random.default_rng(5).standard_normal((args.prefill_m, inp)).astype(np.float32)
        for t in types:
            q = lb.quantize(W, lb.GGUFConfig(type=t.upper() if t != "iq4_nl" else "IQ4_NL"))
            nbytes = q.nbytes
            n_copies = max(1, -(-args.working_set * 10**6 // nbytes))
            qs = []
            for _ in range(n_copies):
                c = copy.copy(q)
                c.__dict__.pop("_kernel", None)
                qs.append(c.prepare())
            peers = {}
            if peer_ok:
                data = [q.arrays["qweight"]] * n_copies  # ggml copies them into its own buffers
                peers = {m: ggml_matmul.MatMul(t, data, inp, M=m, threads=threads[0]) for m in (1, args.prefill_m)}
            for th in threads:
                lb.set_num_threads(th)
                it = iter(range(10**9))
                td = median_time(lambda: qs[next(it) % n_copies].matmul(x1), args.repeats, inner=n_copies)
                tp = median_time(lambda: qs[next(it) % n_copies].matmul(xp), max(1, args.repeats // 2))
                gd = gp = float("nan")
                if peers:
                    for m, mm in peers.items():
                        mm.set_threads(th)
                        mm.run(x1 if m == 1 else xp)
                    jt = iter(range(10**9))
                    gd = median_time(lambda: peers[1].compute(next(jt) % n_copies), args.repeats, inner=n_copies)
                    gp = median_time(lambda: peers[args.prefill_m].compute(next(jt) % n_copies),
                                     max(1, args.repeats // 2))
                gbs = nbytes / td / 1e9
                ops = 2 * args.prefill_m * out * inp
                print(f"{t:8s} {f'{out}x{inp}':>11s} {th:3d} | {1e6 * td:9.0f} {gbs:6.1f} {100 * gbs / read_bw[th]:5.0f}%"
                      f" {1e6 * gd:8.0f} {gd / td:6.2f}x | {1e3 * tp:10.1f} {ops / tp / 1e9:7.1f} {ops / gp / 1e9:10.1f}"
                      f" {gp / tp:6.2f}x {('yes' if peers and peers[1].repacked else 'no'):>6s}")
            for mm in peers.values():
                mm.close()
            del qs, peers
        print()


if __name__ == "__main__":
    main()
