"""GPTQ speed: lowbit against the machine's SGEMM limit and against the same algorithm in
PyTorch, plus the Hessian accumulation rate. Everything is measured in this one run.

    make bench-gptq        (or)
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=build/python .venv/bin/python bench/bench_gptq.py

PyTorch is optional (pip install torch==2.13.0, the CPU wheel); without it that column is "-".
Columns:
  lowbit s     GPTQ solve (factorization + sweep), median of --repeats, objective stats excluded
  limit s      lowbit's FLOP count of the solve / SGEMM rate measured here (numpy 4096^3, same threads)
  x limit      lowbit s / limit s   (target <= 1.5)
  torch s      the same algorithm in PyTorch (bench/gptq_torch.py), same options and threads
  speedup      torch s / lowbit s   (target >= 2)
  obj ratio    lowbit objective / torch objective, tr((W-Q) H (W-Q)^T)  (<= 1 is equal or better)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import lowbit as lb

sys.path.insert(0, str(Path(__file__).parent))


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl missing"
    return "; ".join(f"{i['internal_api']} {i.get('version')} {i.get('architecture')}" for i in threadpool_info()
                     if i["user_api"] == "blas")


def sgemm_rate(threads: int, n: int = 4096, repeats: int = 3) -> float:
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n), dtype=np.float32)
    B = rng.standard_normal((n, n), dtype=np.float32)
    with threadpool_limits(threads, user_api="blas"):
        A @ B
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            A @ B
            times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times)


def solve_flops(rows: int, cols: int, block: int) -> float:
    """FLOPs of lowbit's GPTQ solve: one Cholesky factorization (n^3/3), the left-looking block
    GEMMs (each block gets all earlier columns' corrections) and the in-block rank-1 updates.
    (The reference code also inverts and re-factors: 2n^3/3 more, not counted here.)"""
    f = cols**3 / 3.0
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        f += 2.0 * rows * i1 * (i2 - i1)   # W1 += (W - Q)[:, :i1] @ Vs[:i1, i1:i2]
        f += rows * (i2 - i1) ** 2         # rank-1 updates inside the block
    return f


def hessian_for(rng, n: int, tokens: int = 4096) -> np.ndarray:
    X = rng.standard_normal((tokens, n), dtype=np.float32)
    X[:, : n // 64] *= 4  # a few strong channels, as real activations have
    acc = lb.HessianAccumulator(n)
    acc.add(X)
    return acc.hessian()


def objective(W, W_hat, H) -> float:
    D = (W - W_hat).astype(np.float32)
    return float(np.sum((D @ H).astype(np.float64) * D))


def main() -> None:
    ap = argparse.ArgumentParser(description="GPTQ speed vs SGEMM limit and PyTorch")
    ap.add_argument("--shapes", default="4096x4096,11008x4096,4096x11008",
                    help="comma-separated OUTxIN weight shapes")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hessian-batches", type=int, default=128, help="batches of 2048 tokens (in=4096)")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    try:
        if args.no_torch:
            raise ImportError
        import torch

        from gptq_torch import gptq_torch
    except ImportError:
        torch = None
    threads_list = [int(t) for t in args.threads.split(",")]
    print(f"lowbit {lb.__version__} ({lb.cpu_info()['isa']}); numpy BLAS: {blas_info()}; "
          f"torch: {torch.__version__ if torch else 'not installed'}")
    rates = {t: sgemm_rate(t) for t in threads_list}
    print("SGEMM rate (numpy 4096^3): " + ", ".join(f"{t} thread(s) {r / 1e9:.1f} GFLOP/s" for t, r in rates.items()))
    print()
    hdr = f"{'W (out x in)':>13} {'act':>4} {'thr':>3} {'lowbit s':>9} {'limit s':>8} {'x limit':>8} " \
          f"{'torch s':>8} {'speedup':>8} {'obj ratio':>9}"
    print(hdr)
    print("-" * len(hdr))
    rng = np.random.default_rng(0)
    for shape in args.shapes.split(","):
        rows, cols = (int(v) for v in shape.lower().split("x"))
        H = hessian_for(rng, cols)
        W = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)
        for desc_act in (False, True):
            cfg = lb.GPTQConfig(bits=4, group_size=128, desc_act=desc_act)
            for t in threads_list:
                lb.set_num_threads(t)
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    q = lb.quantize(W, cfg, hessian=H)
                    times.append(time.perf_counter() - t0 - q.stats["seconds_objective"])
                t_lb = statistics.median(times)
                limit = solve_flops(rows, cols, cfg.block_size) / rates[t]
                row = f"{shape:>13} {'yes' if desc_act else 'no':>4} {t:>3} {t_lb:9.2f} {limit:8.2f} {t_lb / limit:8.2f}"
                if torch is not None:
                    torch.set_num_threads(t)
                    Wt, Ht = torch.from_numpy(W), torch.from_numpy(H)
                    tt = []
                    for _ in range(max(1, args.repeats - 1)):
                        t0 = time.perf_counter()
                        Qt = gptq_torch(Wt, Ht, bits=4, group_size=128, desc_act=desc_act)
                        tt.append(time.perf_counter() - t0)
                    t_torch = statistics.median(tt)
                    ratio = q.stats["objective"] / objective(W, Qt.numpy(), H)
                    row += f" {t_torch:8.2f} {t_torch / t_lb:7.2f}x {ratio:9.4f}"
                else:
                    row += f" {'-':>8} {'-':>8} {'-':>9}"
                print(row, flush=True)
    lb.set_num_threads(0)

    # Hessian accumulation: 128 x 2048 tokens of width 4096, against the SGEMM rate.
    n, T = 4096, 2048
    batches = [rng.standard_normal((T, n), dtype=np.float32) for _ in range(4)]
    print(f"\nHessian accumulation, {args.hessian_batches} x {T} tokens, in_features={n} "
          "(useful FLOPs T*n^2: the lower triangle)")
    for t in threads_list:
        lb.set_num_threads(t)
        acc = lb.HessianAccumulator(n)
        t0 = time.perf_counter()
        for b in range(args.hessian_batches):
            acc.add(batches[b % len(batches)])
        dt = time.perf_counter() - t0
        rate = args.hessian_batches * T * n * n / dt
        print(f"  {t} thread(s): {dt:6.2f} s  {rate / 1e9:6.1f} GFLOP/s  = {rate / rates[t]:.2f} x SGEMM rate")
    lb.set_num_threads(0)


if __name__ == "__main__":
    main()
