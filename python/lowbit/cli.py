"""The ``lowbit`` command.

    lowbit demo [--model PATH] [--json]   quantize a real model's weights with every method
    lowbit info [--json]                  version, CPU features, kernel path, threads
    lowbit formats [--json]               the format table
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

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
