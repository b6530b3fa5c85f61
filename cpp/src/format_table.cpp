// THE format table. One row per format, in id order; everything generic reads it.
#include "lowbit/format_table.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "lowbit/formats_impl.hpp"

namespace lowbit {

namespace {

// Grouped integer rows: a block is the smallest run of codes that fills whole bytes.
constexpr int gcd8(int b) { return b % 8 == 0 ? 8 : b % 4 == 0 ? 4 : b % 2 == 0 ? 2 : 1; }

QTypeTraits grouped_row(QType t, int bits, const char* name, const char* desc) {
  return QTypeTraits{t,
                     name,
                     bits,
                     8 / gcd8(bits),
                     bits / gcd8(bits),
                     true,
                     true,
                     true,
                     -1.0,
                     desc,
                     formats::grouped_from_float_ref_table[bits],
                     formats::grouped_to_float_ref_table[bits]};
}

// HQQ rows: the grouped bit stream, but float zero points (GroupParams::float_zeros).
QTypeTraits hqq_row(QType t, int bits, const char* name, const char* desc) {
  QTypeTraits r = grouped_row(t, bits, name, desc);
  r.from_float_ref = formats::hqq_from_float_ref_table[bits];
  r.to_float_ref = formats::hqq_to_float_ref_table[bits];
  return r;
}

std::vector<QTypeTraits> build_table() {
  std::vector<QTypeTraits> t = {
      {QType::F32, "f32", 32, 1, 4, false, false, true, 0.0, "IEEE float32",
       formats::f32_from_float, formats::f32_to_float},
      {QType::F16, "f16", 16, 1, 2, false, false, true, 1.0 / 2048.0,
       "IEEE float16, round to nearest even", formats::f16_from_float, formats::f16_to_float},
      {QType::BF16, "bf16", 16, 1, 2, false, false, true, 1.0 / 256.0,
       "bfloat16, round to nearest even", formats::bf16_from_float, formats::bf16_to_float},
      grouped_row(QType::INT2, 2, "int2", "2-bit codes, per-group float32 scale + integer zero"),
      grouped_row(QType::INT3, 3, "int3", "3-bit codes, per-group float32 scale + integer zero"),
      grouped_row(QType::INT4, 4, "int4", "4-bit codes, per-group float32 scale + integer zero"),
      grouped_row(QType::INT5, 5, "int5", "5-bit codes, per-group float32 scale + integer zero"),
      grouped_row(QType::INT6, 6, "int6", "6-bit codes, per-group float32 scale + integer zero"),
      grouped_row(QType::INT7, 7, "int7", "7-bit codes, per-group float32 scale + integer zero"),
      grouped_row(QType::INT8, 8, "int8", "8-bit codes, per-group float32 scale + integer zero"),
      {QType::NF4, "nf4", 4, 2, 1, true, true, true, kRoundTripBoundOwnTests,
       "bitsandbytes NF4: 4-bit normal-float codes (first element in the high nibble), float32 absmax per block",
       formats::nf4_from_float_ref, formats::nf4_to_float_ref},
      {QType::FP4, "fp4", 4, 2, 1, true, true, true, kRoundTripBoundOwnTests,
       "bitsandbytes FP4 (its own table, not E2M1): 4-bit codes, float32 absmax per block",
       formats::fp4_from_float_ref, formats::fp4_to_float_ref},
      {QType::LLM_INT8, "llm_int8", 8, 1, 1, true, true, true, kRoundTripBoundOwnTests,
       "LLM.int8(): int8 codes round(w*127/rowmax), float32 absmax per row; outlier columns in float16",
       formats::llm_int8_from_float_ref, formats::llm_int8_to_float_ref},
      {QType::F8_E4M3, "f8_e4m3", 8, 1, 1, false, false, true, 1.0 / 16.0,
       "FP8 E4M3 (OCP fn: max 448, no inf), round to nearest even, saturating",
       formats::f8_e4m3_from_float, formats::f8_e4m3_to_float},
      {QType::F8_E5M2, "f8_e5m2", 8, 1, 1, false, false, true, 1.0 / 8.0,
       "FP8 E5M2 (max 57344), round to nearest even, saturating", formats::f8_e5m2_from_float,
       formats::f8_e5m2_to_float},
      {QType::INT4_TINYGEMM, "int4_tinygemm", 4, 2, 1, true, true, true, -1.0,
       "4-bit codes, per-group bfloat16 scale + float zero: (q - 8) * s + z (torchao int4)",
       formats::tinygemm_from_float, formats::tinygemm_to_float},
      hqq_row(QType::HQQ1, 1, "hqq1", "HQQ 1-bit codes, per-group float32 scale + float zero"),
      hqq_row(QType::HQQ2, 2, "hqq2", "HQQ 2-bit codes, per-group float32 scale + float zero"),
      hqq_row(QType::HQQ3, 3, "hqq3", "HQQ 3-bit codes, per-group float32 scale + float zero"),
      hqq_row(QType::HQQ4, 4, "hqq4", "HQQ 4-bit codes, per-group float32 scale + float zero"),
      hqq_row(QType::HQQ5, 5, "hqq5", "HQQ 5-bit codes, per-group float32 scale + float zero"),
      hqq_row(QType::HQQ6, 6, "hqq6", "HQQ 6-bit codes, per-group float32 scale + float zero"),
      hqq_row(QType::HQQ8, 8, "hqq8", "HQQ 8-bit codes, per-group float32 scale + float zero"),
  };
  std::sort(t.begin(), t.end(), [](const QTypeTraits& a, const QTypeTraits& b) {
    return static_cast<int>(a.type) < static_cast<int>(b.type);
  });
  return t;
}

}  // namespace

const std::vector<QTypeTraits>& all_traits() {
  static const std::vector<QTypeTraits> table = build_table();
  return table;
}

const QTypeTraits& traits(QType t) {
  for (const QTypeTraits& row : all_traits())
    if (row.type == t) return row;
  throw Unsupported(str_cat("format id ", static_cast<int>(t), " is not in this build's format table"));
}

const QTypeTraits& traits_by_name(const char* name) {
  std::string known;
  for (const QTypeTraits& row : all_traits()) {
    if (std::strcmp(row.name, name) == 0) return row;
    known += known.empty() ? "" : ", ";
    known += row.name;
  }
  throw InvalidArgument(str_cat("unknown format '", name, "'; known formats: ", known));
}

i64 row_size(QType t, i64 n) {
  const QTypeTraits& tr = traits(t);
  LOWBIT_CHECK(n >= 0, "row length must be >= 0, got ", n);
  if (!tr.partial_block_ok)
    LOWBIT_CHECK(n % tr.block_size == 0, "row length ", n, " is not a multiple of ", tr.name,
                 "'s block size ", tr.block_size);
  return (n * tr.type_size + tr.block_size - 1) / tr.block_size;
}

}  // namespace lowbit
