// The format table: one row of traits per packed weight format ("formats are data").
//
// Generic code (row sizes, quantize/dequantize by type, the Python `formats` listing and
// every table-driven test) reads only this table. Adding a format = a block struct or
// layout, its reference quantize/dequantize, one row in format_table.cpp, and its tests.
//
// Ids: GGUF/ggml types keep ggml's numeric ids (they are written into .gguf files);
// lowbit's own formats live in a separate range starting at 1000 so they never collide.
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/common.hpp"

namespace lowbit {

enum class QType : std::int32_t {
  // ggml ids (see REFERENCE.md §6.2)
  F32 = 0,
  F16 = 1,
  BF16 = 30,
  // ggml block formats (self-contained: scales inside the blocks; see ggml_blocks.hpp)
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ4_NL = 20,
  // lowbit's own: grouped integer codes with per-group scale and integer zero point
  // (RTN / GPTQ / AWQ). Canonical layout: see grouped_int.hpp.
  INT2 = 1002,
  INT3 = 1003,
  INT4 = 1004,
  INT5 = 1005,
  INT6 = 1006,
  INT7 = 1007,
  INT8 = 1008,
  // bitsandbytes (bnb.hpp): 4-bit codes with a float32 absmax per block stored beside them,
  // and LLM.int8() row-wise int8 with a float32 absmax per row
  NF4 = 1040,
  FP4 = 1041,
  LLM_INT8 = 1042,
  // FP8 elements (OCP E4M3 "fn" / E5M2), saturating RNE; scales beside them (fp8.hpp)
  F8_E4M3 = 1050,
  F8_E5M2 = 1051,
  // torchao's int4 weight-only format with a float zero point ("tinygemm", tinygemm.hpp)
  INT4_TINYGEMM = 1052,
  // lowbit's own: HQQ codes with a per-group float32 scale and FLOAT zero point (hqq.hpp)
  HQQ1 = 1301,
  HQQ2 = 1302,
  HQQ3 = 1303,
  HQQ4 = 1304,
  HQQ5 = 1305,
  HQQ6 = 1306,
  HQQ8 = 1308,
};

constexpr std::int32_t kLowbitTypeIdBase = 1000;

// roundtrip_rel_tol of formats whose GroupParams.scales mean something else than a grouped
// min-max scale (NF4/FP4 absmax per block, LLM.int8 absmax per row): the generic round-trip
// tests skip them and the family's own tests check its error bound.
constexpr double kRoundTripBoundOwnTests = -2.0;

// Per-row side information: the scales of formats that store them outside the packed codes,
// and (for any format whose quantizer can use it) an importance weight per column.
struct GroupParams {
  const float* scales = nullptr;         // [n_groups] scale of each group of this row
  const std::uint8_t* zeros = nullptr;   // [n_groups] integer zero point of each group
  i64 group_size = 0;                    // columns per group (> 0); the last may be partial
  const float* quant_weights = nullptr;  // [n] per-column importance (GGUF imatrix); optional
  const float* float_zeros = nullptr;    // [n_groups] float zero point of each group, for the
                                         // formats that have one (hqq*, int4_tinygemm); each
                                         // format's row functions say how it enters
};

// Reference row conversions: deterministic scalar code, the definition of the format.
// `p` may be nullptr for self-contained formats (block scales inside the bytes); when given to
// one of them, only `quant_weights` is read (and only by quantizers that use an imatrix).
using FromFloatFn = void (*)(const float* x, void* dst, i64 n, const GroupParams* p);
using ToFloatFn = void (*)(const void* src, float* y, i64 n, const GroupParams* p);

struct QTypeTraits {
  QType type;
  const char* name;          // "f16", "int4", later "q4_K" (ggml spelling)
  int bits;                  // bits of one code (16 for f16, 4 for int4, ...)
  int block_size;            // elements per block
  int type_size;             // bytes per block
  bool is_quantized;         // false for the plain float storage types
  bool needs_group_params;   // scales/zeros stored beside the codes (GroupParams)
  bool partial_block_ok;     // a row may end inside a block (bit-stream formats)
  double roundtrip_rel_tol;  // |x - deq(q(x))| <= tol*|x| for float formats; -1: bound is scale/2;
                             // kRoundTripBoundOwnTests: side info is no grouped scale/zero (see below)
  const char* description;
  FromFloatFn from_float_ref;
  ToFloatFn to_float_ref;

  // Bits per stored weight for the codes alone (excludes group scales/zeros).
  double bits_per_weight() const { return 8.0 * type_size / block_size; }
};

// The row for `t`; throws Unsupported for an id that is not in this build's table.
const QTypeTraits& traits(QType t);
// Look a format up by name ("int4", "f16"); throws InvalidArgument listing the names.
const QTypeTraits& traits_by_name(const char* name);
// Every row, in id order.
const std::vector<QTypeTraits>& all_traits();

// Bytes of one row of n elements; throws InvalidArgument if n does not fit the blocks.
i64 row_size(QType t, i64 n);


}  // namespace lowbit
