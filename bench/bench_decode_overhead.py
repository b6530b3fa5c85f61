"""Decode of a whole model: tokens/s with float32 weights vs int4 weights on the qmatmul
kernels, and the share of decode time spent in Python (outside lowbit._core calls).

The Python share is measured with cProfile: time inside _core functions (builtins) against the
whole decode loop (the profiler's own cost inflates both a little; the ratio is what counts).

    OMP_WAIT_POLICY=passive PYTHONPATH=build/python .venv/bin/python bench/bench_decode_overhead.py
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import numpy as np

import lowbit as lb


def quantized(model: lb.LlamaModel, bits: int, group_size: int) -> lb.LlamaModel:
    w = dict(model.weights)
    for name in model.linear_names()[:-1]:  # lm_head stays as loaded (tied embeddings)
        q = lb.quantize(np.asarray(w[name + ".weight"], dtype=np.float32),
                        lb.RTNConfig(bits=bits, group_size=group_size, sym=False))
        w[name + ".weight"] = q.prepare()
    return lb.LlamaModel(model.config, w, model.tokenizer)


def decode(model: lb.LlamaModel, prompt: list[int], new: int) -> float:
    cache = model.new_cache(len(prompt) + new + 1)
    logits = model.forward(prompt, cache)
    tok = int(np.argmax(logits[-1]))
    t0 = time.perf_counter()
    for _ in range(new):
        logits = model.forward([tok], cache)
        tok = int(np.argmax(logits[-1]))
    return time.perf_counter() - t0


def python_share(model: lb.LlamaModel, prompt: list[int], new: int) -> float:
    prof = cProfile.Profile()
    prof.enable()
    decode(model, prompt, new)
    prof.disable()
    st = pstats.Stats(prof)
    total = st.total_tt
    core = sum(v[2] for k, v in st.stats.items() if k[0] == "~" and "lowbit._core" in k[2])
    return 1.0 - core / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    lb.set_num_threads(args.threads)
    base = lb.load_model(args.model)
    dense = lb.LlamaModel(base.config, {k: np.ascontiguousarray(v, dtype=np.float32) if hasattr(v, "dtype") else v
                                        for k, v in base.weights.items()}, base.tokenizer)
    q4 = quantized(dense, 4, 128)
    prompt = list(range(1, 17))
    print(f"{args.model}, {args.threads} threads, {args.new} decode steps, kernels {lb.cpu_info()['isa']}")
    print(f"{'weights':28s} {'tok/s':>8s} {'python share':>13s}")
    for name, m in (("float32", dense), ("int4 g128 (qmatmul int8)", q4)):
        decode(m, prompt, 4)  # warm-up
        t = min(decode(m, prompt, args.new) for _ in range(3))
        share = python_share(m, prompt, args.new)
        print(f"{name:28s} {args.new / t:8.1f} {100 * share:12.1f}%")


if __name__ == "__main__":
    main()
