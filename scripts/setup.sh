#!/usr/bin/env bash
# Installs what lowbit's build and tests need (Debian packages when root, a venv with pip),
# then builds the C++ core, the GoogleTest suite, the benchmarks and the Python module into
# build/. Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LOWBIT_VENV:-.venv}
PY=${PYTHON:-python3}

# 1. System packages (C++ libraries and the compiler).
need=()
[ -f /usr/include/eigen3/Eigen/Core ] || need+=(libeigen3-dev)
[ -f /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)
[ -f /usr/include/benchmark/benchmark.h ] || need+=(libbenchmark-dev)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${need[*]} (run as root, or install them first)" >&2
    exit 1
  fi
fi

# 2. Python virtual environment with the build and test tools.
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$PY" -m venv "$VENV"
    else
      echo "setup: '$PY -m venv' failed; install python3-venv" >&2
      exit 1
    fi
  fi
fi
stamp="$VENV/.lowbit-requirements"
if [ ! -f "$stamp" ] || ! cmp -s requirements-dev.txt "$stamp"; then
  echo "setup: pip install -r requirements-dev.txt"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements-dev.txt
  cp requirements-dev.txt "$stamp"
fi

# 3. Configure and build (incremental after the first time).
if [ ! -f build/CMakeCache.txt ]; then
  "$VENV/bin/cmake" -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOWBIT_WERROR=ON \
    -DCMAKE_MAKE_PROGRAM="$(pwd)/$VENV/bin/ninja" -DPython_EXECUTABLE="$(pwd)/$VENV/bin/python" >/dev/null
fi
"$VENV/bin/cmake" --build build -j "$(nproc 2>/dev/null || echo 2)"
