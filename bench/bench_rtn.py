"""RTN quantize throughput: lowbit vs NumPy on the same 4096x4096 float32 matrix.

Prints MB/s of float32 input (median of --repeats runs) for lowbit at 1 and 2 threads and for
two in-run baselines: NumPy doing the same group-wise RTN with vectorised array operations,
and a plain NumPy copy of the matrix (one read + one write of a freshly allocated array:
a memory-traffic reference point, not a hard ceiling, since it includes first-touch page faults).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=build/python .venv/bin/python bench/bench_rtn.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lowbit as lb


def numpy_rtn(W: np.ndarray, bits: int, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric group-wise RTN in vectorised NumPy (same grid as lowbit)."""
    rows, cols = W.shape
    g = W.reshape(rows, cols // group_size, group_size)
    amax = np.maximum(np.abs(g.min(axis=2)), np.abs(g.max(axis=2)))
    amax = np.where(amax == 0, np.float32(1), amax)
    scale = (2 * amax / np.float32(2**bits - 1)).astype(np.float32)
    q = np.clip(np.round(g / scale[..., None]) + 2 ** (bits - 1), 0, 2**bits - 1).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).reshape(rows, cols // 2)
    return packed, scale


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    try:
        from threadpoolctl import threadpool_info

        blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')}, {i['num_threads']} threads)"
                for i in threadpool_info() if i["user_api"] == "blas"]
    except ImportError:
        blas = ["threadpoolctl not installed"]
    W = np.random.default_rng(0).standard_normal((args.size, args.size)).astype(np.float32)
    mb = W.nbytes / 1e6
    cfg = lb.RTNConfig(bits=4, group_size=args.group_size, sym=True)
    print(f"lowbit {lb.__version__}, kernels {lb.cpu_info()['isa']}; NumPy {np.__version__}, BLAS: {'; '.join(blas)}")
    print(f"RTN int4 g{args.group_size} sym on {args.size}x{args.size} float32 ({mb:.0f} MB), median of {args.repeats}\n")

    rows = []
    t_np = median_seconds(lambda: numpy_rtn(W, 4, args.group_size), args.repeats)
    t_copy = median_seconds(lambda: W.copy(), args.repeats)
    for threads in (1, 2):
        lb.set_num_threads(threads)
        t = median_seconds(lambda: lb.quantize(W, cfg), args.repeats)
        rows.append((f"lowbit RTN, {threads} thread{'s' if threads > 1 else ''}", t))
    lb.set_num_threads(0)
    rows += [("NumPy RTN (vectorised)", t_np), ("NumPy copy (fresh array)", t_copy)]
    print(f"{'what':34s} {'ms':>9s} {'MB/s':>9s} {'vs NumPy RTN':>13s}")
    for name, t in rows:
        print(f"{name:34s} {1e3 * t:9.1f} {mb / t:9.0f} {t_np / t:12.2f}x")


if __name__ == "__main__":
    main()
