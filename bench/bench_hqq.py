"""HQQ quantize time: lowbit vs the hqq package on the same 4096x4096 float32 matrix.

Both run hqq's usual settings (``BaseQuantizeConfig(nbits=4, group_size=64)``: axis 1,
round_zero, the default solver with lp_norm 0.7, beta 10, 20 iterations, early stop) on the
CPU in float32, at 1 and 2 threads (``lb.set_num_threads`` / ``torch.set_num_threads``), in the
same process; medians of --repeats runs after one warm-up. hqq's time includes its bit packing,
lowbit's its own (both produce packed codes + float scale/zero). The two results are compared
(codes, zeros) so the timing is of the same computation.

    PYTHONPATH=build/python:build/peers .venv/bin/python bench/bench_hqq.py     (or: make bench-hqq,
    which installs hqq into build/peers)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lowbit as lb


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def weights(size: int, dist: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    if dist == "normal":
        return (rng.standard_normal((size, size)) * 0.02).astype(np.float32)
    W = (rng.standard_t(5, (size, size)) * 0.02).astype(np.float32)  # heavy tails + outlier inputs, as LLMs
    W[:, rng.choice(size, size // 50, replace=False)] *= 8
    return W


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--nbits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--axis", type=int, default=1)
    ap.add_argument("--dist", choices=("llm", "normal"), default="llm")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per case (hqq takes seconds per run)")
    args = ap.parse_args()
    try:
        import torch
        from hqq.core.quantize import Quantizer
    except ImportError as e:
        raise SystemExit(f"needs torch and hqq ({e}); `make bench-hqq` installs them") from e
    import hqq

    W = weights(args.size, args.dist)
    Wt = torch.from_numpy(W)
    round_zero = args.nbits == 4  # BaseQuantizeConfig's rule
    cfg = lb.HQQConfig(nbits=args.nbits, group_size=args.group_size, axis=args.axis, round_zero=round_zero)

    def run_hqq():
        return Quantizer.quantize(Wt, nbits=args.nbits, group_size=args.group_size, axis=args.axis,
                                  round_zero=round_zero, optimize=True, device="cpu")

    print(f"lowbit {lb.__version__}, kernels {lb.cpu_info()['isa']}; hqq {getattr(hqq, '__version__', '?')}, "
          f"torch {torch.__version__}")
    print(f"HQQ {args.nbits}-bit g{args.group_size} axis {args.axis} on {args.size}x{args.size} float32 "
          f"({args.dist} weights), median of {args.repeats}\n")

    # Same computation? Codes and zeros of both (hqq's unpacked codes; lowbit's bit stream).
    lb.set_num_threads(0)
    q = lb.quantize(W, cfg)
    Wq, meta = Quantizer.quantize(Wt, nbits=args.nbits, group_size=args.group_size, axis=args.axis,
                                  round_zero=round_zero, optimize=True, bitpack=False, device="cpu")
    meta["compute_dtype"] = torch.float32
    W_hqq = Quantizer.dequantize(Wq, meta).numpy()
    W_lb = q.dequantize()
    codes = lb._core.unpack_codes(q.arrays["qweight"], args.nbits, args.size)
    same_codes = np.mean(codes == Wq.numpy().reshape(W.shape))
    dz = np.abs(q.arrays["zero"] - meta["zero"].numpy())
    # float32 sums in another order move a zero by ulps; a few groups amplify that (see tests)
    print(f"solver steps {q.stats['steps']}; codes equal {same_codes * 100:.4f}%; zeros within 1e-4: "
          f"{np.mean(dz <= 1e-4) * 100:.4f}% of {dz.size} groups")
    for name, W_hat in (("lowbit", W_lb), ("hqq", W_hqq)):
        err = W.astype(np.float64) - W_hat
        print(f"  {name:6s} mean |W - W_hat| {np.abs(err).mean():.8g}   mean |.|^0.7 {np.mean(np.abs(err) ** 0.7):.8g}"
              f"   MSE {np.mean(err ** 2):.8g}")
    print()

    print(f"{'threads':>7s} {'lowbit s':>10s} {'hqq s':>10s} {'speed-up':>9s}")
    for threads in (1, 2):
        lb.set_num_threads(threads)
        torch.set_num_threads(threads)
        t_lb = median_seconds(lambda: lb.quantize(W, cfg), args.repeats)
        t_hqq = median_seconds(run_hqq, args.repeats)
        print(f"{threads:7d} {t_lb:10.3f} {t_hqq:10.3f} {t_hqq / t_lb:8.1f}x")
    lb.set_num_threads(0)


if __name__ == "__main__":
    main()
