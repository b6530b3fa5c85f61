// Model ops of the Llama runtime (lowbit/ops.hpp): NumPy in, float32 NumPy out, GIL released
// around the work. Shapes are checked here so that every mismatch names the argument.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "array_utils.hpp"
#include "lowbit/ops.hpp"

namespace py = pybind11;
using namespace lowbit;
using namespace lowbit::py_utils;

namespace {

// A [S, n_kv_heads, head_dim] float32 array as a KvView (strides in elements).
KvView kv_view(const py::array& a) {
  KvView v;
  v.data = static_cast<const float*>(a.data());
  v.stride_s = a.strides(0) / static_cast<py::ssize_t>(sizeof(float));
  v.stride_h = a.strides(1) / static_cast<py::ssize_t>(sizeof(float));
  return v;
}

}  // namespace

void register_ops(py::module_& m) {
  m.def(
      "rms_norm",
      [](const py::handle& x_o, const py::handle& w_o, float eps) {
        auto x = exact_array<float>(x_o, "x", {-1, -1});
        const i64 M = x.shape(0), D = x.shape(1);
        if (D < 1) throw InvalidArgument(str_cat("x must have at least one column, got ", describe(x)));
        auto w = exact_array<float>(w_o, "weight", {D});
        py::array_t<float> y({M, D});
        const float* xp = x.data();
        const float* wp = w.data();
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release release;
          rms_norm(xp, M, D, wp, eps, yp);
        }
        return y;
      },
      py::arg("x"), py::arg("weight"), py::arg("eps"),
      R"doc(RMSNorm: y = x / sqrt(mean(x**2, axis=-1) + eps) * weight.

x: float32 [M, D]; weight: float32 [D]. Returns float32 [M, D]. Rounded as Hugging Face's
LlamaRMSNorm in float32 (the mean of squares accumulated in double, then rounded to float32).
NaN/inf in x propagate.)doc");

  m.def(
      "rope_",
      [](const py::handle& x_o, const py::handle& pos_o, const py::handle& inv_o, bool interleaved,
         float attention_scaling) {
        auto x = inplace_array<float>(x_o, "x", 3);
        const i64 T = x.shape(0), H = x.shape(1), hd = x.shape(2);
        if (hd < 2 || hd % 2 != 0)
          throw InvalidArgument(str_cat("x must be [T, n_heads, head_dim] with an even head_dim, got ", describe(x)));
        if (H < 1) throw InvalidArgument(str_cat("x must have at least one head, got ", describe(x)));
        auto pos = exact_array<std::int64_t>(pos_o, "positions", {T});
        auto inv = exact_array<float>(inv_o, "inv_freq", {hd / 2});
        float* xp = x.mutable_data();
        const std::int64_t* pp = pos.data();
        const float* ip = inv.data();
        py::gil_scoped_release release;
        rope_inplace(xp, T, H, hd, pp, ip, interleaved, attention_scaling);
      },
      py::arg("x"), py::arg("positions"), py::arg("inv_freq"), py::arg("interleaved"),
      py::arg("attention_scaling") = 1.0f,
      R"doc(Rotary position embedding, in place.

x: float32 [T, n_heads, head_dim], C-contiguous and writeable (modified in place);
positions: int64 [T]; inv_freq: float32 [head_dim / 2].
For pair i of row t: angle = float32(positions[t]) * inv_freq[i] (float32),
c = cos(angle) * attention_scaling, s = sin(angle) * attention_scaling, and (a, b) becomes
(a*c - b*s, b*c + a*s). interleaved=True pairs (x[2i], x[2i+1]) (llama2.c / GGUF / Meta);
False pairs (x[i], x[i + head_dim/2]) (Hugging Face rotate_half). Returns None.)doc");

  m.def(
      "attention",
      [](const py::handle& q_o, const py::handle& k_o, const py::handle& v_o, i64 q_offset, float scale) {
        auto q = exact_array<float>(q_o, "q", {-1, -1, -1});
        py::array k = last_axis_contiguous_array<float>(k_o, "k", 3);
        py::array v = last_axis_contiguous_array<float>(v_o, "v", 3);
        AttentionArgs a;
        a.q = q.data();
        a.T = q.shape(0);
        a.n_heads = q.shape(1);
        a.head_dim = q.shape(2);
        a.S = k.shape(0);
        a.n_kv_heads = k.shape(1);
        if (a.n_heads < 1 || a.head_dim < 1)
          throw InvalidArgument(str_cat("q must be [T, n_heads, head_dim] with n_heads, head_dim >= 1, got ",
                                        describe(q)));
        if (k.shape(2) != a.head_dim || a.n_kv_heads < 1 || a.n_heads % a.n_kv_heads != 0)
          throw InvalidArgument(str_cat("k must be [S, n_kv_heads, head_dim=", a.head_dim,
                                        "] with n_kv_heads dividing n_heads=", a.n_heads, ", got ", describe(k)));
        if (v.shape(0) != a.S || v.shape(1) != a.n_kv_heads || v.shape(2) != a.head_dim)
          throw InvalidArgument(str_cat("v must have the shape of k ", shape_str(k), ", got ", describe(v)));
        if (q_offset < 0 || q_offset + a.T > a.S)
          throw InvalidArgument(str_cat("q_offset=", q_offset, " with T=", a.T, " queries needs 0 <= q_offset and q_offset + T <= S=",
                                        a.S, " (k has ", describe(k), ")"));
        a.k = kv_view(k);
        a.v = kv_view(v);
        a.q_offset = q_offset;
        a.scale = scale;
        py::array_t<float> out({a.T, a.n_heads * a.head_dim});
        float* op = out.mutable_data();
        {
          py::gil_scoped_release release;
          attention(a, op);
        }
        return out;
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("q_offset"), py::arg("scale"),
      R"doc(Causal grouped-query attention.

q: float32 [T, n_heads, head_dim]; k, v: float32 [S, n_kv_heads, head_dim] (read in place when
the last axis is contiguous, e.g. cache[:S] of a preallocated KV cache; copied otherwise).
Query t is at position q_offset + t and attends to keys 0..q_offset+t; query head h uses kv
head h // (n_heads // n_kv_heads). Scores are scale * q.k, softmax with the max subtracted.
float32 GEMMs over tiles of queries and blocks of keys (online softmax): the same bits for any
thread count; one query decoded alone may differ from its row of a batched call in the last
bits. Requires 0 <= q_offset, q_offset + T <= S, n_heads % n_kv_heads == 0.
Returns float32 [T, n_heads * head_dim]. NaN/inf propagate (to the queries that see them).)doc");

  m.def(
      "silu_mul",
      [](const py::handle& g_o, const py::handle& u_o) {
        auto g = exact_array<float>(g_o, "gate", {-1, -1});
        auto u = exact_array<float>(u_o, "up", {g.shape(0), g.shape(1)});
        py::array_t<float> y({g.shape(0), g.shape(1)});
        const float* gp = g.data();
        const float* up = u.data();
        float* yp = y.mutable_data();
        const i64 n = g.size();
        {
          py::gil_scoped_release release;
          silu_mul(gp, up, n, yp);
        }
        return y;
      },
      py::arg("gate"), py::arg("up"),
      R"doc(SwiGLU's elementwise step: gate * sigmoid(gate) * up, as gate / (1 + exp(-gate)) * up.

gate, up: float32 [M, N] (same shape). Returns float32 [M, N]. Large |gate| never gives NaN:
silu(-inf) = -0, silu(+inf) = +inf (NaN only from NaN inputs or inf * 0).)doc");

  m.def(
      "linear",
      [](const py::handle& x_o, const py::handle& w_o, const py::object& b_o) {
        auto x = exact_array<float>(x_o, "x", {-1, -1});
        const MatrixArg W = matrix_arg(w_o, "weight");
        const i64 M = x.shape(0), K = x.shape(1), N = W.view.rows;
        if (W.view.cols != K)
          throw InvalidArgument(str_cat("weight must be [out_features, in_features=", K, "] to match x ",
                                        describe(x), ", got ", W.view.describe()));
        py::array_t<float, py::array::c_style> b;
        if (!b_o.is_none()) b = exact_array<float>(b_o, "bias", {N});
        py::array_t<float> y({M, N});
        const float* xp = x.data();
        const float* bp = b_o.is_none() ? nullptr : b.data();
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release release;
          linear(xp, M, K, W.view, bp, yp);
        }
        return y;
      },
      py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
      R"doc(Dense layer: y = x @ weight.T + bias.

x: float32 [M, K]; weight: float32 / float16 / bfloat16 (float64 is converted) [N, K], any
strides (read in place when float32 with contiguous rows, else widened block by block);
bias: float32 [N] or None. Returns float32 [M, N]. Blocks of outputs are single-threaded GEMMs
(Eigen, active ISA) spread over threads: the same bits for any thread count. NaN/inf propagate.)doc");

  m.def(
      "token_logprobs",
      [](const py::handle& l_o, const py::handle& t_o) {
        auto l = exact_array<float>(l_o, "logits", {-1, -1});
        const i64 T = l.shape(0), V = l.shape(1);
        auto t = exact_array<std::int64_t>(t_o, "targets", {T});
        if (V < 1) throw InvalidArgument(str_cat("logits must have at least one column, got ", describe(l)));
        py::array_t<double> out(T);
        const float* lp = l.data();
        const std::int64_t* tp = t.data();
        double* op = out.mutable_data();
        {
          py::gil_scoped_release release;
          token_logprobs(lp, T, V, tp, op);
        }
        return out;
      },
      py::arg("logits"), py::arg("targets"),
      R"doc(Log-probability of each target token: log_softmax(logits[t])[targets[t]].

logits: float32 [T, V]; targets: int64 [T] in [0, V) (ValueError naming the first bad index).
Returns float64 [T], computed in double with the row max subtracted. A row holding NaN or
+inf gives NaN; -inf logits are probability 0.)doc");

  m.def(
      "kl_divergence",
      [](const py::handle& r_o, const py::handle& l_o, const py::handle& t_o) -> py::tuple {
        auto r = exact_array<float>(r_o, "ref_logits", {-1, -1});
        const i64 T = r.shape(0), V = r.shape(1);
        auto l = exact_array<float>(l_o, "logits", {T, V});
        if (V < 1) throw InvalidArgument(str_cat("ref_logits must have at least one column, got ", describe(r)));
        py::array_t<double> kld(T), rlp(t_o.is_none() ? 0 : T), llp(t_o.is_none() ? 0 : T);
        py::array_t<std::int64_t> ra(T), la(T);
        const std::int64_t* tp = nullptr;
        py::array_t<std::int64_t> tg;
        if (!t_o.is_none()) {
          tg = exact_array<std::int64_t>(t_o, "targets", {T});
          tp = tg.data();
        }
        const float* rp = r.data();
        const float* lp = l.data();
        double* kp = kld.mutable_data();
        std::int64_t* rap = ra.mutable_data();
        std::int64_t* lap = la.mutable_data();
        double* rlpp = tp != nullptr ? rlp.mutable_data() : nullptr;
        double* llpp = tp != nullptr ? llp.mutable_data() : nullptr;
        {
          py::gil_scoped_release release;
          kl_divergence(rp, lp, T, V, kp, rap, lap, tp, rlpp, llpp);
        }
        if (tp == nullptr) return py::make_tuple(kld, ra, la);
        return py::make_tuple(kld, ra, la, rlp, llp);
      },
      py::arg("ref_logits"), py::arg("logits"), py::arg("targets") = py::none(),
      R"doc(Per-token KL(P_ref || P) and the top-1 tokens of both models.

ref_logits, logits: float32 [T, V]. Returns (kld float64 [T], ref_argmax int64 [T],
argmax int64 [T]) with kld[t] = sum_v p_ref (log p_ref - log p), computed in double from
max-subtracted logits (identical rows give exactly 0; terms with p_ref = 0 count 0).
argmax: the first largest logit (the first NaN if any, as numpy.argmax). A row holding NaN or
+inf gives kld NaN. With targets (int64 [T] in [0, V)) it also returns ref_logprobs and
logprobs (float64 [T]): token_logprobs of both, bit-identical, for the cost of the divergence
alone.)doc");
}
