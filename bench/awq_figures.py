"""AWQ next to RTN and GPTQ on SmolLM2-135M, WikiText-2 (the figures of issue 9).

Every method runs through lowbit.quantize_model on the same calibration windows (WikiText-2
validation text) and is evaluated on the first windows of the WikiText-2 test split (GPTQ-paper
protocol): perplexity and KL divergence against the unquantized model, plus quantize time.
RTN and GPTQ use the asymmetric grid (a zero point per group), the same storage as AWQ.

    OMP_WAIT_POLICY=passive PYTHONPATH=build/python nice .venv/bin/python bench/awq_figures.py \
        --n-samples 8 --seq-len 512 --max-windows 4 --search-samples 2 --json awq_figures.json

Measured so (2 shared CPU cores, 2026-11-23; reference ppl 23.746 on the first 4 windows; the
reference is SmolLM2-135M-Instruct's Q4_1 GGUF, dequantized; RTN/GPTQ asymmetric):

    method     bits  ppl      KLD     top-1 %  quantize s
    rtn         4     33.229  0.3934  65.02       0.7
    gptq        4     32.463  0.3220  70.70     233.0
    awq         4     29.168  0.2050  75.26     534.1
    rtn         3    141.778  1.8385  31.13       0.7
    gptq        3     92.629  1.3263  43.69     210.2
    awq         3     63.679  0.9214  50.50     404.6
    awq+gptq    3     81.768  1.1986  46.40     489.4   (--methods awq+gptq --bits 3)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import lowbit as lb
from lowbit.compare import COMPARE_COLUMNS, compare
from lowbit.data import read_eval_text, wikitext2_test_path, wikitext2_valid_path
from lowbit.tables import format_table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--bits", default="4,3")
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--methods", default="rtn,gptq,awq", help="any of rtn, gptq, awq, awq+gptq")
    ap.add_argument("--n-samples", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--search-samples", type=int, default=0, help="AWQConfig.n_search_samples (0 = all)")
    ap.add_argument("--max-windows", type=int, default=12)
    ap.add_argument("--eval-seq-len", type=int, default=2048)
    ap.add_argument("--json", help="write the rows here (rewritten after each row)")
    args = ap.parse_args()

    model = lb.load_model(args.model)
    calib = lb.data.calibration(model, [wikitext2_valid_path()], n_samples=args.n_samples, seq_len=args.seq_len,
                                seed=0)
    text = read_eval_text(wikitext2_test_path(), "gptq")
    gs = args.group_size
    configs = []
    for b in (int(x) for x in args.bits.split(",")):
        for m in args.methods.split(","):
            if m == "rtn":
                configs.append(lb.RTNConfig(bits=b, group_size=gs, sym=False))
            elif m == "gptq":
                configs.append(lb.GPTQConfig(bits=b, group_size=gs, sym=False))
            elif m in ("awq", "awq+gptq"):
                configs.append(lb.AWQConfig(bits=b, group_size=gs, n_search_samples=args.search_samples,
                                            quantizer="gptq" if m == "awq+gptq" else "rtn"))
            else:
                raise SystemExit(f"unknown method {m!r}")
    print(f"model {args.model}; calibration {calib.n_samples} x {calib.seq_len} tokens of WikiText-2 valid; "
          f"eval: first {args.max_windows} windows of {args.eval_seq_len} of WikiText-2 test", flush=True)
    rows = []
    t0 = time.perf_counter()

    def on_row(r):
        r = dict(r)
        if r["method"] == "awq" and r.get("config", {}).get("quantizer") == "gptq":
            r["method"] = "awq+gptq"
        rows.append(r)
        print(f"  {r['method']:9s} {r['bits'] or '-':>2}  ppl {r['ppl']:8.3f}  kld {r['kld_mean']:.4f}  "
              f"quantize {r['quantize_s']:6.1f}s  ({time.perf_counter() - t0:.0f}s)", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=2, default=str)

    compare(model, configs, text, calibration=calib, seq_len=args.eval_seq_len, max_windows=args.max_windows,
            measure_speed=False, progress=False, on_row=on_row)
    print(format_table(rows, [c for c in COMPARE_COLUMNS if c[0] != "decode_tok_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
