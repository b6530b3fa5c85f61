#!/usr/bin/env bash
# Cross-builds lowbit's C++ library and GoogleTest suite for aarch64 (build-arm/, no Python
# module) and runs the quantized-matmul tests under qemu user-mode emulation, once on a CPU
# model without the dot-product extension (cortex-a72: the baseline NEON kernels) and once
# with it (neoverse-n1: SDOT). Installs g++-aarch64-linux-gnu and qemu-user-static when root.
#
#   bash scripts/check_arm.sh                   # qmatmul tests (the default filter)
#   GTEST_FILTER='*' bash scripts/check_arm.sh  # the whole C++ suite (slow under emulation)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LOWBIT_VENV:-.venv}
BUILD=${LOWBIT_ARM_BUILD:-build-arm}
FILTER=${GTEST_FILTER:-'*QMatmul*'}
CPUS=${LOWBIT_ARM_CPUS:-"cortex-a72 neoverse-n1"}
SYSROOT=/usr/aarch64-linux-gnu
start=$(date +%s)

# 1. Tools: the cross compiler (with its libstdc++/libgomp in $SYSROOT), qemu, googletest sources.
need=()
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null 2>&1 || command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user-static)
[ -f /usr/src/googletest/CMakeLists.txt ] || need+=(googletest)
[ -f /usr/include/eigen3/Eigen/Core ] || need+=(libeigen3-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "check_arm: apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "check_arm: missing packages: ${need[*]} (run as root, or install them first)" >&2
    exit 1
  fi
fi
QEMU=$(command -v qemu-aarch64-static || command -v qemu-aarch64)
CMAKE=cmake
[ -x "$VENV/bin/cmake" ] && CMAKE="$VENV/bin/cmake"
GEN=()
if [ -x "$VENV/bin/ninja" ]; then GEN=(-G Ninja -DCMAKE_MAKE_PROGRAM="$(pwd)/$VENV/bin/ninja")
elif command -v ninja >/dev/null 2>&1; then GEN=(-G Ninja); fi

# 2. Configure (once) and build the test binary only.
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  "$CMAKE" -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_TOOLCHAIN_FILE="$(pwd)/cmake/aarch64-linux-gnu.cmake" \
    -DCMAKE_BUILD_TYPE=Release -DLOWBIT_WERROR=ON -DLOWBIT_BUILD_PYTHON=OFF -DLOWBIT_BUILD_BENCH=OFF \
    -DLOWBIT_BUILD_TESTS=ON -DLOWBIT_GTEST_SOURCE_DIR=/usr/src/googletest \
    -DEigen3_DIR=/usr/share/eigen3/cmake -Wno-dev >/dev/null
fi
"$CMAKE" --build "$BUILD" --target lowbit_tests -j "$(nproc 2>/dev/null || echo 2)"
file "$BUILD/tests/cpp/lowbit_tests" 2>/dev/null | sed 's/^/check_arm: /' || true
built=$(date +%s)

# 3. Run under qemu on each CPU model; the test log prints which NEON table is in use.
status=0
for cpu in $CPUS; do
  echo "check_arm: ---- qemu-aarch64 -cpu $cpu, --gtest_filter='$FILTER'"
  t0=$(date +%s)
  if ! OMP_WAIT_POLICY=passive "$QEMU" -cpu "$cpu" -L "$SYSROOT" "$BUILD/tests/cpp/lowbit_tests" \
      --gtest_filter="$FILTER" --gtest_brief=1 > "$BUILD/qemu-$cpu.log" 2>&1; then
    status=1
  fi
  grep -E "^\[( NEON     |  PASSED  |  SKIPPED |  FAILED  )\]|FAILED|tests? ran" "$BUILD/qemu-$cpu.log" | sed "s/^/check_arm: [$cpu] /" || true
  echo "check_arm: [$cpu] $(( $(date +%s) - t0 )) s"
done
echo "check_arm: build $(( built - start )) s, total $(( $(date +%s) - start )) s; logs in $BUILD/qemu-*.log"
exit $status
