#!/usr/bin/env bash
# `pip install .` into a fresh virtual environment, then use the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q .
cd "$tmp"
"$tmp/venv/bin/python" - <<'PY'
import numpy as np, lowbit as lb
W = np.random.default_rng(0).standard_normal((64, 96), dtype=np.float32)
q = lb.quantize(W, lb.RTNConfig(bits=4, group_size=32))
assert lb.metrics.sqnr(W, q) > 15, lb.metrics.sqnr(W, q)
print("wheel ok:", lb.__version__, lb.cpu_info()["isa"], q)
PY
"$tmp/venv/bin/lowbit" info
