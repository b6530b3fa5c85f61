// The Llama layer loop in C++ (lowbit/llama_runtime.hpp), built from a model's prepared weights.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "array_utils.hpp"
#include "lowbit/ggml_qmatmul.hpp"
#include "lowbit/llama_runtime.hpp"
#include "lowbit/lut_qmatmul.hpp"
#include "lowbit/ops.hpp"
#include "lowbit/qmatmul.hpp"
#include "matmul_args.hpp"

namespace py = pybind11;
using namespace lowbit;
using namespace lowbit::py_utils;

namespace {

// The runtime and everything its ops point into (weight arrays, packed weights, norms): the
// Python objects are held here, so they outlive it.
struct PyLlamaRuntime {
  std::vector<py::object> keep;
  std::unique_ptr<LlamaRuntime> rt;
};

// A linear layer from its weight: PackedWeights (grouped int kernels), GgmlPackedWeights (GGUF
// kernels) or a 2-D float array (lowbit's dense GEMM), each called exactly as the Python path
// calls it (tensor.py's prepared kernels, or _core.linear).
LinearOp make_linear(const py::handle& w_o, const py::handle& b_o, const std::string& act, const std::string& name,
                     std::vector<py::object>& keep) {
  LinearOp op;
  if (py::isinstance<PackedWeights>(w_o)) {
    auto w = w_o.cast<std::shared_ptr<PackedWeights>>();
    const QActMode mode = parse_qact(act);
    op.rows = w->rows;
    op.cols = w->cols;
    op.apply = [w, mode](const float* x, i64 M, float* y) { qmatmul(x, ActDType::F32, M, w->cols, *w, mode, y); };
  } else if (py::isinstance<GgmlPackedWeights>(w_o)) {
    auto w = w_o.cast<std::shared_ptr<GgmlPackedWeights>>();
    const QActMode mode = parse_ggml_act(act, w->format);
    op.rows = w->rows;
    op.cols = w->cols;
    op.apply = [w, mode](const float* x, i64 M, float* y) { ggml_qmatmul(x, ActDType::F32, M, w->cols, *w, mode, y); };
  } else if (py::isinstance<LutWeights>(w_o)) {
    auto w = w_o.cast<std::shared_ptr<LutWeights>>();
    check_lut_act(act);
    op.rows = w->rows;
    op.cols = w->cols;
    op.apply = [w](const float* x, i64 M, float* y) { lut_qmatmul(x, ActDType::F32, M, w->cols, *w, y, lut_kernels()); };
  } else {
    const MatrixArg W = matrix_arg(w_o, name.c_str());
    keep.push_back(W.holder);
    op.rows = W.view.rows;
    op.cols = W.view.cols;
    const AnyMatrixView view = W.view;
    op.apply = [view](const float* x, i64 M, float* y) { linear(x, M, view.cols, view, nullptr, y); };
  }
  if (!b_o.is_none()) {
    auto b = exact_array<float>(b_o, (name + ".bias").c_str(), {op.rows});
    keep.push_back(b);
    op.bias = b.data();
  }
  return op;
}

const float* norm_arg(const py::handle& o, const std::string& name, i64 hidden, std::vector<py::object>& keep) {
  auto a = exact_array<float>(o, name.c_str(), {hidden});
  keep.push_back(a);
  return a.data();
}

}  // namespace

void register_llama_runtime(py::module_& m) {
  py::class_<PyLlamaRuntime>(m, "LlamaRuntime", R"doc(
The Llama decoder's layer loop in C++ (lowbit/llama_runtime.hpp): embedded tokens in, logits
out, no Python call per op. Built by LlamaModel from its prepared weights; bit-identical to
LlamaModel's Python forward, which stays the reference.)doc")
      .def(py::init([](i64 hidden, i64 n_heads, i64 n_kv_heads, i64 head_dim, float rms_eps, const py::handle& inv_freq_o,
                       bool rope_interleaved, float attention_scaling, const py::list& blocks,
                       const py::handle& final_norm_o, const py::tuple& head, const std::string& act) {
             auto self = std::make_unique<PyLlamaRuntime>();
             LlamaShape s;
             s.hidden = hidden;
             s.n_heads = n_heads;
             s.n_kv_heads = n_kv_heads;
             s.head_dim = head_dim;
             s.rms_eps = rms_eps;
             auto inv = exact_array<float>(inv_freq_o, "inv_freq", {-1});
             s.inv_freq.assign(inv.data(), inv.data() + inv.size());
             s.rope_interleaved = rope_interleaved;
             s.attention_scaling = attention_scaling;
             static const char* kNames[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
             std::vector<LlamaBlock> bs;
             for (std::size_t i = 0; i < blocks.size(); ++i) {
               const py::tuple t = blocks[i].cast<py::tuple>();
               if (t.size() != 3) throw InvalidArgument(str_cat("blocks[", i, "] must be (input_norm, post_norm, linears)"));
               const std::string p = str_cat("model.layers.", i, ".");
               LlamaBlock b;
               b.input_norm = norm_arg(t[0], p + "input_layernorm.weight", hidden, self->keep);
               b.post_norm = norm_arg(t[1], p + "post_attention_layernorm.weight", hidden, self->keep);
               const py::list lin = t[2].cast<py::list>();
               if (lin.size() != 7) throw InvalidArgument(str_cat("blocks[", i, "] must list 7 (weight, bias) linears"));
               LinearOp* ops[7] = {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down};
               for (int j = 0; j < 7; ++j) {
                 const py::tuple wb = lin[static_cast<std::size_t>(j)].cast<py::tuple>();
                 self->keep.push_back(py::reinterpret_borrow<py::object>(wb[0]));
                 *ops[j] = make_linear(wb[0], wb[1], act, p + kNames[j], self->keep);
               }
               bs.push_back(std::move(b));
             }
             const float* fn = norm_arg(final_norm_o, "model.norm.weight", hidden, self->keep);
             if (head.size() != 2) throw InvalidArgument("head must be (weight, bias)");
             self->keep.push_back(py::reinterpret_borrow<py::object>(head[0]));
             LinearOp h = make_linear(head[0], head[1], act, "lm_head", self->keep);
             self->rt = std::make_unique<LlamaRuntime>(std::move(s), std::move(bs), fn, std::move(h));
             return self;
           }),
           py::arg("hidden"), py::arg("n_heads"), py::arg("n_kv_heads"), py::arg("head_dim"), py::arg("rms_eps"),
           py::arg("inv_freq"), py::arg("rope_interleaved"), py::arg("attention_scaling"), py::arg("blocks"),
           py::arg("final_norm"), py::arg("head"), py::arg("act"),
           "blocks: per layer (input_norm [hidden], post_norm [hidden], [(weight, bias or None)] x 7 in the order "
           "q, k, v, o, gate, up, down); weight: PackedWeights, GgmlPackedWeights, LutWeights or a 2-D float array. head: "
           "(weight, bias or None). act: the matmul_act of the quantized layers.")
      .def_property_readonly("n_layers", [](const PyLlamaRuntime& r) { return r.rt->n_layers(); })
      .def_property_readonly("vocab", [](const PyLlamaRuntime& r) { return r.rt->vocab(); })
      .def(
          "forward",
          [](const PyLlamaRuntime& r, const py::handle& x_o, i64 start, const py::object& k_o, const py::object& v_o,
             bool last_only) {
            const LlamaShape& s = r.rt->shape();
            auto x = inplace_array<float>(x_o, "x", 2);
            if (x.shape(1) != s.hidden) throw InvalidArgument(str_cat("x must be [T, hidden=", s.hidden, "], got ", describe(x)));
            const i64 T = x.shape(0);
            KvCacheRef cache;
            py::array_t<float> kc, vc;
            const bool cached = !k_o.is_none();
            if (cached) {
              kc = inplace_array<float>(k_o, "cache_k", 4);
              vc = inplace_array<float>(v_o, "cache_v", 4);
              const i64 L = r.rt->n_layers();
              if (kc.shape(0) != L || kc.shape(2) != s.n_kv_heads || kc.shape(3) != s.head_dim)
                throw InvalidArgument(str_cat("cache_k must be [n_layers=", L, ", max_len, n_kv_heads=", s.n_kv_heads,
                                              ", head_dim=", s.head_dim, "], got ", describe(kc)));
              if (shape_str(vc) != shape_str(kc))
                throw InvalidArgument(str_cat("cache_v must have the shape of cache_k ", shape_str(kc), ", got ", describe(vc)));
              cache = KvCacheRef{kc.mutable_data(), vc.mutable_data(), kc.shape(1)};
            }
            py::array_t<float> logits({last_only ? i64{1} : T, r.rt->vocab()});
            float* xp = x.mutable_data();
            float* lp = logits.mutable_data();
            {
              py::gil_scoped_release release;
              r.rt->forward(xp, T, start, cached ? &cache : nullptr, last_only, lp);
            }
            return logits;
          },
          py::arg("x"), py::arg("start"), py::arg("cache_k") = py::none(), py::arg("cache_v") = py::none(),
          py::arg("last_only") = false,
          R"doc(Logits float32 [T or 1, vocab] of embedded tokens x float32 [T, hidden] (C-contiguous;
overwritten) at positions start.., writing keys/values into cache_k/cache_v float32 [n_layers,
max_len, n_kv_heads, head_dim] (C-contiguous) when given. The GIL is released.)doc");
}
