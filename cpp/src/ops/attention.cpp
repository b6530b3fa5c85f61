// Causal grouped-query attention over a (prefix of a) KV cache: fixed tiles of (kv head,
// block of queries), each computed by one thread with the active ISA's kernel
// (kernels/<isa>/attention.cpp).
#include <algorithm>

#include "lowbit/kernels.hpp"
#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

namespace {

// Tile and block sizes depend on the shapes only (never on the thread count), so every output
// is computed by the same operations however many threads share the tiles.
// Rows of a tile: queries x the query heads of one kv head, ~kTileRows of them, so that the
// GEMMs have enough rows to run at full speed while a tile's scores (rows x kKeyBlock floats)
// and the key and value blocks stay in L2.
constexpr i64 kTileRows = 192;
constexpr i64 kKeyBlock = 256;

}  // namespace

void attention(const AttentionArgs& a, float* out) {
  LOWBIT_CHECK(a.T >= 0 && a.n_heads >= 1 && a.head_dim >= 1,
               "attention: q must be [T, n_heads, head_dim] with n_heads, head_dim >= 1, got T=", a.T,
               " n_heads=", a.n_heads, " head_dim=", a.head_dim);
  LOWBIT_CHECK(a.n_kv_heads >= 1 && a.n_heads % a.n_kv_heads == 0, "attention: n_heads=", a.n_heads,
               " must be a multiple of n_kv_heads=", a.n_kv_heads);
  LOWBIT_CHECK(a.q_offset >= 0 && a.q_offset + a.T <= a.S, "attention: the ", a.T, " queries at positions ",
               a.q_offset, "..", a.q_offset + a.T - 1, " need keys up to there, but S=", a.S,
               " (require 0 <= q_offset and q_offset + T <= S)");
  if (a.T == 0) return;
  const AttentionKernels& k = attention_kernels();
  const i64 group = a.n_heads / a.n_kv_heads;
  const i64 q_block = std::max<i64>(1, kTileRows / group);  // queries per tile
  const i64 n_qb = (a.T + q_block - 1) / q_block;
  // Later query blocks see more keys: the tiles are handed out dynamically, the most
  // expensive first, so that the last ones to finish are short.
  parallel_for_dynamic(n_qb * a.n_kv_heads, [&](i64 item) {
    const i64 qb = n_qb - 1 - item / a.n_kv_heads, g = item % a.n_kv_heads;
    const i64 t0 = qb * q_block;
    k.tile(a, g, t0, std::min(q_block, a.T - t0), kKeyBlock, out);
  });
}

}  // namespace lowbit
