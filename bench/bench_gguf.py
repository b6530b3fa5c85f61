"""GGUF quantize throughput: lowbit vs llama.cpp's ggml_quantize_chunk, same data, same run.

For each ggml type (with and without an importance matrix) prints MB/s of float32 input on a
4096x4096 matrix at 1 and 2 threads, the ratio lowbit/llama.cpp, and whether the bytes are
identical. lowbit threads with OpenMP over rows; llama.cpp's ggml_quantize_chunk is
single-threaded, so its 2-thread figure runs two row halves in two Python threads (ctypes
releases the GIL). Medians of --repeats runs; numbers on a shared machine are noisy, the ratios
less so. Needs llama-cpp-python (its bundled libggml-base).

    OMP_WAIT_POLICY=passive PYTHONPATH=build/python .venv/bin/python bench/bench_gguf.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import lowbit as lb
from lowbit import _core

TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl")


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def llama_quantize(ggml, fmt: str, W: np.ndarray, qw: np.ndarray | None, threads: int) -> np.ndarray:
    out = np.empty((W.shape[0], ggml.row_size(fmt, W.shape[1])), np.uint8)
    bounds = np.linspace(0, W.shape[0], threads + 1).astype(int)
    if threads == 1:
        ggml.quantize_chunk(fmt, W, out, 0, W.shape[0], qw)
        return out
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: ggml.quantize_chunk(fmt, W, out, int(bounds[i]), int(bounds[i + 1] - bounds[i]), qw),
                      range(threads)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--imatrix", choices=("both", "no", "yes"), default="both")
    args = ap.parse_args()
    try:
        from lowbit.peers import ggml
        ggml.lib()
    except ImportError as e:
        print(f"bench_gguf needs llama-cpp-python: {e}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    n = args.size
    W = (rng.standard_t(5, (n, n)) * rng.uniform(0.005, 0.05, (n, 1))).astype(np.float32)
    imatrix = (rng.uniform(0, 2, n) ** 2).astype(np.float32)
    mb = W.nbytes / 1e6
    threads = [int(t) for t in args.threads.split(",")]
    modes = {"both": (False, True), "no": (False,), "yes": (True,)}[args.imatrix]
    print(f"# GGUF quantize, {n}x{n} float32 ({mb:.0f} MB), median of {args.repeats}; "
          f"llama.cpp {ggml.version()}; lowbit {lb.__version__} {lb.cpu_info().get('isa', '')}")
    head = f"{'type':7s} {'imatrix':7s}"
    for t in threads:
        head += f" | {'lowbit ' + str(t) + 'T':>10s} {'llama ' + str(t) + 'T':>10s} {'ratio':>6s}"
    print(head + " | bytes")
    all_same = True
    for fmt in args.types.split(","):
        for use_qw in modes:
            qw = imatrix if use_qw else None
            line = f"{fmt:7s} {'yes' if use_qw else 'no':7s}"
            same = True
            for t in threads:
                lb.set_num_threads(t)
                ours = _core.quantize_rows(fmt, W, qw)
                theirs = llama_quantize(ggml, fmt, W, qw, t)
                same &= bool(np.array_equal(ours, theirs))
                t_ours = median_seconds(lambda: _core.quantize_rows(fmt, W, qw), args.repeats)
                t_theirs = median_seconds(lambda: llama_quantize(ggml, fmt, W, qw, t), args.repeats)
                line += f" | {mb / t_ours:10.1f} {mb / t_theirs:10.1f} {t_theirs / t_ours:5.2f}x"
            all_same &= same
            print(line + f" | {'identical' if same else 'DIFFERENT'}", flush=True)
    lb.set_num_threads(0)
    print("all bytes identical" if all_same else "SOME BYTES DIFFER")
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
