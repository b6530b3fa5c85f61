#!/usr/bin/env bash
# Runs every test: the GoogleTest suite through ctest, then pytest (which also executes the
# notebooks). Builds first (scripts/setup.sh). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${LOWBIT_VENV:-.venv}
echo "== C++ tests (GoogleTest via ctest)"
"$VENV/bin/ctest" --test-dir build -E '^pytest$' --output-on-failure -j 2
echo "== Python tests (pytest)"
PYTHONPATH="$(pwd)/build/python" "$VENV/bin/python" -m pytest tests/python -q "$@"
