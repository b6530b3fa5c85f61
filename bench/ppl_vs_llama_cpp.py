"""Cross-check of the perplexity protocol against llama.cpp itself: the same GGUF file, the same
text, llama-perplexity's protocol (windows of 512 tokens, BOS first when the model adds one,
the second half of each window scored), computed by lowbit and by llama.cpp (llama-cpp-python,
logits of every position) on the first --chunks windows.

    PYTHONPATH=build/python .venv/bin/python bench/ppl_vs_llama_cpp.py [--model F.gguf] [--chunks 40]

The two differ by llama.cpp's arithmetic: it multiplies Q4_1/Q8_0 weights with activations
quantized to 8 bits, where lowbit runs the dequantized float32 weights.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

import lowbit as lb
from lowbit.data import read_eval_text, wikitext2_test_path
from lowbit.evaluate import perplexity, windows


def llama_cpp_nll(path: str, wins: list, threads: int) -> tuple[float, int, float]:
    from llama_cpp import Llama

    L = len(wins[0].tokens)
    llm = Llama(model_path=path, n_ctx=L, n_batch=L, n_ubatch=L, n_threads=threads, n_threads_batch=threads,
                logits_all=True, verbose=False)
    total, count = 0.0, 0
    t0 = time.perf_counter()
    for w in wins:
        llm.reset()
        llm.eval(w.tokens.tolist())
        lg = np.asarray(llm.scores[:L], dtype=np.float64)
        for j in range(w.first_scored, L - 1):
            row = lg[j]
            m = row.max()
            total -= row[w.tokens[j + 1]] - m - math.log(np.exp(row - m).sum())
            count += 1
    return total / count, count, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--text")
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    path = args.model or str(lb.models.fetch_model())
    text_path = args.text or wikitext2_test_path()
    lb.set_num_threads(args.threads)
    model = lb.load_model(path)
    text = read_eval_text(text_path, "llama.cpp")
    t0 = time.perf_counter()
    r = perplexity(model, text, protocol="llama.cpp", seq_len=512, max_windows=args.chunks)
    lowbit_s = time.perf_counter() - t0
    toks = model.tokenizer.encode(text)
    probe = model.tokenizer.encode("a")
    bos = model.tokenizer.bos_id if probe[:1] == [model.tokenizer.bos_id] else None
    wins = windows(toks, 512, "llama.cpp", bos, args.chunks)
    nll, n, cpp_s = llama_cpp_nll(path, wins, args.threads)
    print(f"model {path}\ntext {text_path}: {len(toks)} tokens; llama.cpp protocol, first {len(wins)} windows of 512, "
          f"{n} scored tokens, {args.threads} threads")
    print(f"lowbit    ppl {r.ppl:.4f}  ({lowbit_s:.1f} s)")
    print(f"llama.cpp ppl {math.exp(nll):.4f}  ({cpp_s:.1f} s)")
    print(f"ratio lowbit/llama.cpp {r.ppl / math.exp(nll):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
