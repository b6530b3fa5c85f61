#!/usr/bin/env bash
# Cycles per 32 int8-activation MACs (one weight row x one activation row x one 32-column
# block) of the qmatmul AVX2 tiles, by llvm-mca's model of a CPU (default znver3):
#   bash bench/mca/qmatmul_tiles.sh [mcpu]
set -eu
cd "$(dirname "$0")"
MCPU=${1:-znver3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf "%-6s %-7s %-9s %s\n" tile weights layout "cycles/32 MACs"
for tile in "4 2" "4 1" "2 2"; do
  set -- $tile
  for variant in "Nibble true unpacked" "Nibble false packed" "Byte false int8"; do
    set -- $tile $variant
    g++ -std=c++17 -O3 -I../../cpp/include -mavx2 -mfma -mf16c -ffp-contract=off -w \
      -DLOWBIT_Q8_NR=$1 -DLOWBIT_Q8_MR=$2 -DLOWBIT_S8_NR=$1 -DLOWBIT_S8_MR=$2 \
      -DMCA_CONTAINER=$3 -DMCA_UNPACKED=$4 -S qmatmul_tiles.cpp -o "$tmp/t.s"
    llvm-mca -mcpu="$MCPU" "$tmp/t.s" > "$tmp/mca.txt" 2>/dev/null
    awk -v t="$1x$2" -v c="$3" -v l="$5" -v p=$(($1 * $2)) '/Code Region - q8/{f=1}
      f && /Block RThroughput/{printf "%-6s %-7s %-9s %.2f\n", t, c, l, $3 / p; exit}' "$tmp/mca.txt"
  done
done
