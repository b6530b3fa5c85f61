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
      {QType::Q4_0, "q4_0", 4, 32, 18, true, false, false, -1.0, "ggml Q4_0: 32-blocks, fp16 scale, 4-bit codes",
       formats::q4_0_from_float, formats::q4_0_to_float},
      {QType::Q4_1, "q4_1", 4, 32, 20, true, false, false, -1.0, "ggml Q4_1: 32-blocks, fp16 scale and min, 4-bit codes",
       formats::q4_1_from_float, formats::q4_1_to_float},
      {QType::Q5_0, "q5_0", 5, 32, 22, true, false, false, -1.0, "ggml Q5_0: 32-blocks, fp16 scale, 5-bit codes",
       formats::q5_0_from_float, formats::q5_0_to_float},
      {QType::Q5_1, "q5_1", 5, 32, 24, true, false, false, -1.0, "ggml Q5_1: 32-blocks, fp16 scale and min, 5-bit codes",
       formats::q5_1_from_float, formats::q5_1_to_float},
      {QType::Q8_0, "q8_0", 8, 32, 34, true, false, false, -1.0, "ggml Q8_0: 32-blocks, fp16 scale, int8 codes",
       formats::q8_0_from_float, formats::q8_0_to_float},
      {QType::Q8_1, "q8_1", 8, 32, 36, true, false, false, -1.0, "ggml Q8_1: Q8_0 plus d*sum(q) (activation type)",
       formats::q8_1_from_float, formats::q8_1_to_float},
      {QType::Q2_K, "q2_K", 2, 256, 84, true, false, false, -1.0, "ggml Q2_K: 256-superblocks of 16x16, 4-bit scales/mins, 2-bit codes",
       formats::q2_K_from_float, formats::q2_K_to_float},
      {QType::Q3_K, "q3_K", 3, 256, 110, true, false, false, -1.0, "ggml Q3_K: 256-superblocks of 16x16, 6-bit scales, 3-bit codes",
       formats::q3_K_from_float, formats::q3_K_to_float},
      {QType::Q4_K, "q4_K", 4, 256, 144, true, false, false, -1.0, "ggml Q4_K: 256-superblocks of 8x32, 6-bit scales/mins, 4-bit codes",
       formats::q4_K_from_float, formats::q4_K_to_float},
      {QType::Q5_K, "q5_K", 5, 256, 176, true, false, false, -1.0, "ggml Q5_K: 256-superblocks of 8x32, 6-bit scales/mins, 5-bit codes",
       formats::q5_K_from_float, formats::q5_K_to_float},
      {QType::Q6_K, "q6_K", 6, 256, 210, true, false, false, -1.0, "ggml Q6_K: 256-superblocks of 16x16, int8 scales, 6-bit codes",
       formats::q6_K_from_float, formats::q6_K_to_float},
      {QType::Q8_K, "q8_K", 8, 256, 292, true, false, false, -1.0, "ggml Q8_K: 256-blocks, fp32 scale, int8 codes, 16 block sums (activation type)",
       formats::q8_K_from_float, formats::q8_K_to_float},
      {QType::IQ4_NL, "iq4_nl", 4, 32, 18, true, false, false, -1.0, "ggml IQ4_NL: 32-blocks, fp16 scale, 4-bit indices into a non-linear table",
       formats::iq4_nl_from_float, formats::iq4_nl_to_float},
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
