"""bitsandbytes formats on a real model: perplexity and size, next to float32.

    PYTHONPATH=build/python python bench/bnb_quality.py [--model smollm2-135m] [--windows 4]

Prints one row per format (NF4, FP4, NF4 + double quant, LLM.int8) with bits per weight of the
quantized linears, WikiText-2 perplexity (gptq protocol, first windows), and the seconds
spent quantizing. Also times lowbit's NF4 quantizer on a 4096x4096 matrix against
bitsandbytes' (its CPU reference kernel) when bitsandbytes is installed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lowbit as lb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=512)
    args = ap.parse_args()
    model = lb.load_model(args.model)
    path = lb.data.wikitext2_test_path()
    if path is None:
        raise SystemExit("WikiText-2 test split not found (../shared/data)")
    text = lb.data.read_eval_text(path)
    rows = []
    base = lb.evaluate.perplexity(model, text, seq_len=args.seq_len, max_windows=args.windows)
    rows.append(("as loaded (float32 after dequantizing)", 32.0, base.ppl, 0.0))
    for name, cfg in [("nf4 b64", lb.BnbConfig(bnb_4bit_quant_type="nf4")),
                      ("fp4 b64", lb.BnbConfig(bnb_4bit_quant_type="fp4")),
                      ("nf4 b64 + double quant", lb.BnbConfig(bnb_4bit_use_double_quant=True)),
                      ("LLM.int8 t=6.0", lb.BnbConfig(load_in_4bit=False, load_in_8bit=True))]:
        t0 = time.perf_counter()
        qm = lb.quantize_model(model, cfg, None, progress=False)
        secs = time.perf_counter() - t0
        qs = [w for w in qm.weights.values() if isinstance(w, lb.QuantizedTensor)]
        bpw = 8 * sum(q.nbytes for q in qs) / sum(q.shape[0] * q.shape[1] for q in qs)
        ppl = lb.evaluate.perplexity(qm, text, seq_len=args.seq_len, max_windows=args.windows).ppl
        rows.append((name, bpw, ppl, secs))
    print(f"{'format':40s} {'bits/w':>7s} {'ppl':>9s} {'quant s':>8s}")
    for name, bpw, ppl, secs in rows:
        print(f"{name:40s} {bpw:7.3f} {ppl:9.3f} {secs:8.2f}")

    W = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)
    ours = []
    for _ in range(5):
        t0 = time.perf_counter()
        lb.bnb.quantize_4bit(W, "nf4", 64)
        ours.append(time.perf_counter() - t0)
    print(f"lowbit nf4 quantize 4096x4096: median {statistics.median(ours) * 1e3:.1f} ms "
          f"({lb.get_num_threads()} threads)")
    try:
        import torch
        import bitsandbytes.functional as F
    except ImportError:
        return
    Wt = torch.from_numpy(W)
    theirs = []
    for _ in range(5):
        t0 = time.perf_counter()
        F.quantize_4bit(Wt, blocksize=64, quant_type="nf4")
        theirs.append(time.perf_counter() - t0)
    print(f"bitsandbytes nf4 quantize_4bit: median {statistics.median(theirs) * 1e3:.1f} ms "
          f"(torch {torch.get_num_threads()} threads); ratio bnb/lowbit = "
          f"{statistics.median(theirs) / statistics.median(ours):.2f}")


if __name__ == "__main__":
    main()
