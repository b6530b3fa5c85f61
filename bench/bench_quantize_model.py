"""End-to-end GPTQ (or AWQ) of a whole model: lowbit.quantize_model next to llm-compressor (PyTorch CPU),
same model, same calibration tokens, same threads, same evaluation, in one run.

    make bench-quantize                      (or)
    PYTHONPATH=build/python .venv/bin/python bench/bench_quantize_model.py \
        [--model smollm2-135m] [--n-samples 128] [--seq-len 2048] [--bits 4] [--group-size 64] [--threads 2] \
        [--eval-windows N] [--method gptq|awq] [--peer-python .venv-llmc/bin/python]

Steps:
  1. load the model in lowbit and write it once as a dense Hugging Face folder (the peer's input);
  2. draw the calibration windows (WikiText-2 train/valid text from ../shared/data, seed 0) and
     save the token ids, so both tools see exactly the same tokens;
  3. lowbit: quantize_model(model, GPTQConfig(bits, group_size, sink_weight, true_sequential)) — wall
     time, peak RSS (--sink-weight: 1 = the paper's Hessian, as the peer computes it, by default;
     16 = lowbit's default attention-sink weighting, same work, better ppl). --true-sequential 0,1
     (the default) gives two lowbit rows: 0 = the peer's algorithm (each decoder layer's linears
     calibrated in one pass on that layer's inputs, then a second pass to propagate), 1 = lowbit's
     default (each sub-layer calibrated on the outputs of the already-quantized ones, which in
     lowbit's staged pass also makes the propagation pass unnecessary) (or
     AWQConfig(bits, group_size, apply_clip=False), asymmetric, with --method awq: llm-compressor's
     AWQ has no clipping search);
  4. the peer: bench/peer_llmcompressor_gptq.py in its own venv (llm-compressor pins an older
     transformers) with the same settings — wall time of oneshot(), peak RSS — returning its
     quantize-dequantized weights;
  5. both weight sets evaluated by lowbit's runtime on the same WikiText-2 test windows
     (GPTQ protocol, --seq-len-eval tokens), next to the unquantized model. The like-for-like ppl
     runs both with float32 activations (the peer returns dense weights); lowbit's row also gives
     the ppl of its default runtime (activations rounded to int8 blocks, integer dots).
Printed: wall seconds and CPU seconds (user+system, all threads), each with x peer (peer / lowbit:
> 1 means lowbit is faster), peak RSS, ppl.
The peer venv is made by `make bench-quantize` (torch==2.13.0 CPU, llmcompressor,
transformers<=5.17); without it the bench prints lowbit's figures alone and says why.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lowbit as lb
from lowbit import data as lbdata


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def hf_folder(model: lb.LlamaModel, name: str) -> Path:
    """A dense Hugging Face folder of ``model`` (written once, cached)."""
    root = Path(os.environ.get("LOWBIT_CACHE", Path.home() / ".cache" / "lowbit")) / "hf" / name
    if not (root / "config.json").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        dense = lb.LlamaModel(config=model.config,
                              weights={k: np.asarray(v, dtype=np.float32) for k, v in model.weights.items()},
                              tokenizer=model.tokenizer, source=dict(model.source))
        dense.save(root)
    return root


def with_weights(model: lb.LlamaModel, new: dict[str, np.ndarray]) -> lb.LlamaModel:
    missing = [k for k in new if k not in model.weights]
    if missing:
        raise ValueError(f"the peer returned weights the model does not have: {missing[:3]}")
    return lb.LlamaModel(config=model.config, weights={**model.weights, **new}, tokenizer=model.tokenizer,
                         source=dict(model.source))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", choices=("gptq", "awq"), default="gptq")
    ap.add_argument("--n-samples", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=2048, help="calibration window length")
    ap.add_argument("--bits", type=int, default=4)
    # 64, not the usual 128: llm-compressor refuses a group size that does not divide the row
    # length, and SmolLM2's rows are 576 = 4.5 x 128 wide (lowbit ends such rows with a short group)
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--sink-weight", type=float, default=1.0,
                    help="GPTQ: Hessian weight of each window's first token (1 = the paper's, as the peer; "
                         "lowbit's default is 16)")
    ap.add_argument("--true-sequential", default="0,1",
                    help="GPTQ, comma-separated, one lowbit row each: 0 = one calibration pass per decoder layer, "
                         "as the peer; 1 = lowbit's default (later sub-layers calibrated on quantized inputs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-windows", type=int, default=None, help="first N test windows (default: all)")
    ap.add_argument("--seq-len-eval", type=int, default=2048)
    ap.add_argument("--peer-python", default=os.environ.get("LOWBIT_PEER_PYTHON", ".venv-llmc/bin/python"))
    ap.add_argument("--keep-peer-weights", default=None, metavar="NPZ",
                    help="also keep the peer's quantize-dequantized weights here (to evaluate them again later)")
    args = ap.parse_args()

    lb.set_num_threads(args.threads)
    model = lb.load_model(args.model)
    name = Path(str(model.source.get("path", args.model))).stem
    calib_path = lbdata.wikitext2_valid_path()
    test_path = lbdata.wikitext2_test_path()
    if calib_path is None or test_path is None:
        print("needs WikiText-2 in ../shared/data", file=sys.stderr)
        return 2
    peer_py = Path(args.peer_python)
    # llm-compressor refuses a group size that does not divide every row: fail now, not after
    # lowbit's half of an hours-long run
    rows_in = {model.config.hidden_size, model.config.intermediate_size}
    if peer_py.is_file() and args.group_size > 0 and any(k % args.group_size for k in sorted(rows_in)):
        print(f"--group-size {args.group_size} does not divide the row lengths {sorted(rows_in)}: llm-compressor "
              f"refuses such groups (lowbit ends each row with a short group); pick a divisor, e.g. 64 or 32",
              file=sys.stderr)
        return 2
    calib = lbdata.calibration(model, calib_path, n_samples=args.n_samples, seq_len=args.seq_len, seed=0)
    test = lbdata.read_eval_text(test_path)
    if args.method == "gptq":
        try:
            seq_flags = [bool(int(v)) for v in args.true_sequential.split(",")]
        except ValueError:
            ap.error(f"--true-sequential: expected 0, 1 or 0,1, got {args.true_sequential!r}")
        cfgs = [lb.GPTQConfig(bits=args.bits, group_size=args.group_size, sink_weight=args.sink_weight,
                              true_sequential=t) for t in seq_flags]
        cfg = cfgs[0]
        what = (f"GPTQ {cfg.bits}-bit g{cfg.group_size} sym, damp {cfg.damp_percent}, no act-order, "
                f"sink weight {cfg.sink_weight:g} (lowbit)")
    else:
        cfgs = [lb.AWQConfig(bits=args.bits, group_size=args.group_size, apply_clip=False)]
        cfg = cfgs[0]
        what = f"AWQ {cfg.bits}-bit g{cfg.group_size} asym, duo scaling, n_grid {cfg.n_grid}, no clipping search"
    print(f"model {args.model}: {model.num_parameters() / 1e6:.1f} M parameters; calibration {calib.n_samples} x "
          f"{calib.seq_len} tokens of {calib_path.name} (seed 0); {args.threads} threads; {what}", flush=True)

    def ppl(m: lb.LlamaModel) -> float:
        return lb.evaluate.perplexity(m, test, seq_len=args.seq_len_eval, max_windows=args.eval_windows).ppl

    rows, ppl_runtime = [], {}
    for c in cfgs:
        tool = f"lowbit {lb.__version__}" + (f", true_sequential={int(c.true_sequential)}" if args.method == "gptq" else "")
        lb.evaluate.reset_peak_memory()  # each row's own peak (ru_maxrss where the OS has no reset)
        t0, c0 = time.perf_counter(), time.process_time()
        qm = lb.quantize_model(model, c, calib, progress=sys.stderr.isatty())
        t_lowbit, cpu_lowbit = time.perf_counter() - t0, time.process_time() - c0
        rss_lowbit = lb.evaluate.peak_memory_mb() or peak_rss_mb()
        quantized = {k.removesuffix(".weight") for k, w in qm.weights.items() if isinstance(w, lb.QuantizedTensor)}
        ppl_runtime[tool] = ppl(qm)      # lowbit's default runtime: int8-block activations
        qm.matmul_act = "float32"        # like-for-like with the peer's dense weights
        rows.append((tool, t_lowbit, cpu_lowbit, rss_lowbit, ppl(qm)))
        del qm
        # a long run shows each tool's figures as they land (the table below repeats them)
        print(f"{tool}: {t_lowbit:.1f} s wall, {cpu_lowbit:.1f} s CPU, peak RSS {rss_lowbit:.0f} MB, "
              f"ppl {rows[-1][4]:.3f} (float32 activations), {ppl_runtime[tool]:.3f} (int8 activations, "
              f"lowbit's default runtime)", flush=True)

    peer_note = ""
    if not peer_py.is_file():
        peer_note = (f"peer skipped: no {peer_py} (make bench-quantize creates it: torch==2.13.0, llmcompressor, "
                     f"transformers<=5.17)")
    else:
        folder = hf_folder(model, name)
        with tempfile.TemporaryDirectory() as tmp:
            ids = Path(tmp) / "calib.npy"
            out = Path(tmp) / "peer.npz"
            np.save(ids, calib.tokens.astype(np.int64))
            # CPU only, as lowbit: the peer must not find an accelerator
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH="", CUDA_VISIBLE_DEVICES="")
            cmd = [str(peer_py), str(Path(__file__).with_name("peer_llmcompressor_gptq.py")), "--model", str(folder),
                   "--calib", str(ids), "--out", str(out), "--method", args.method, "--bits", str(args.bits), "--group-size",
                   str(args.group_size), "--threads", str(args.threads)]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                peer_note = f"peer failed (exit {r.returncode}):\n{r.stderr[-3000:]}"
            else:
                z = np.load(out)
                meta = json.loads(bytes(z["__meta__"]).decode())
                weights = {k: z[k] for k in z.files if k != "__meta__"}
                if args.keep_peer_weights:
                    np.savez(args.keep_peer_weights, **z)
                # a peer that left some linear in float would flatter its ppl
                peer_linears = {k.removesuffix(".weight") for k in weights if "norm" not in k}
                if peer_linears != quantized:
                    raise RuntimeError(f"the peer quantized other linears than lowbit: only peer "
                                       f"{sorted(peer_linears - quantized)[:3]}, only lowbit "
                                       f"{sorted(quantized - peer_linears)[:3]}")
                rows.append((meta["tool"], meta["seconds"], meta.get("cpu_seconds", float("nan")), meta["peak_rss_mb"],
                             ppl(with_weights(model, weights))))
                print(f"peer: {rows[-1][1]:.1f} s wall, {rows[-1][2]:.1f} s CPU, peak RSS {rows[-1][3]:.0f} MB, "
                      f"ppl {rows[-1][4]:.3f}", flush=True)
    base = ppl(model)

    print()
    print(f"{'tool':<48} {'quantize s':>10} {'x peer':>7} {'CPU s':>8} {'x peer':>7} {'peak RSS MB':>11} {'ppl':>8}")
    t_peer, c_peer = (rows[-1][1], rows[-1][2]) if len(rows) > len(cfgs) else (None, None)
    for tool, secs, cpu, rss, p in rows:
        ratio = f"{t_peer / secs:7.2f}" if t_peer else "      -"
        cratio = f"{c_peer / cpu:7.2f}" if c_peer else "      -"
        print(f"{tool:<48} {secs:10.1f} {ratio} {cpu:8.1f} {cratio} {rss:11.0f} {p:8.3f}")
    print(f"{'unquantized':<48} {'':>10} {'':>7} {'':>8} {'':>7} {'':>11} {base:8.3f}")
    print("(CPU s: user+system seconds of all threads; on a shared machine it is the steadier measure of work)")
    print(f"(ppl: WikiText-2 test, {args.seq_len_eval}-token windows"
          f"{'' if args.eval_windows is None else f', first {args.eval_windows}'}; both weight sets run in lowbit "
          f"with float32 activations; in lowbit's default int8-activation runtime: "
          f"{', '.join(f'{p:.3f}' for p in ppl_runtime.values())})")
    if peer_note:
        print(peer_note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
