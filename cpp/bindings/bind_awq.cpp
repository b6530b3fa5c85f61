// AWQ's inner loops (lowbit/awq.hpp): NumPy in, NumPy out, GIL released around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "array_utils.hpp"
#include "lowbit/awq.hpp"

namespace py = pybind11;
using namespace lowbit;
using namespace lowbit::py_utils;

namespace {

// A float vector of length n (any float dtype, converted to float32 C-contiguous).
py::array_t<float, py::array::c_style> float_vector(const py::handle& obj, const char* name, i64 n) {
  py::array a = as_array(obj, name);
  if (a.dtype().kind() != 'f')
    throw TypeMismatch(str_cat(name, " must be a float array of shape (", n, ",), got ", describe(a)));
  if (a.ndim() != 1 || a.shape(0) != n)
    throw InvalidArgument(str_cat(name, " must have shape (", n, ",), got ", describe(a)));
  return py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
}

AwqGridParams grid_params(int bits, i64 group_size, bool zero_point) {
  AwqGridParams p{bits, group_size, zero_point};
  awq_group_size(p, 1);  // validates bits and group_size
  return p;
}

}  // namespace

void register_awq(py::module_& m) {
  m.def(
      "awq_pseudo_quantize",
      [](const py::handle& W_o, const py::object& s_o, int bits, i64 group_size, bool zero_point) {
        const MatrixArg W = matrix_arg(W_o, "W");
        const AwqGridParams p = grid_params(bits, group_size, zero_point);
        py::array_t<float, py::array::c_style> s;
        if (!s_o.is_none()) s = float_vector(s_o, "scales", W.view.cols);
        py::array_t<float> out({W.view.rows, W.view.cols});
        float* o = out.mutable_data();
        const float* sp = s_o.is_none() ? nullptr : s.data();
        {
          py::gil_scoped_release release;
          awq_pseudo_quantize(W.view, sp, p, o);
        }
        return out;
      },
      py::arg("W"), py::arg("scales") = py::none(), py::arg("bits") = 4, py::arg("group_size") = 128,
      py::arg("zero_point") = true,
      R"doc(Q(W * s) / s on AWQ's grid: float32 [out, in].

W: float [out, in]; scales: float [in] (> 0) or None (no scaling). group_size -1 = one group per row.)doc");

  m.def(
      "awq_quantize",
      [](const py::handle& W_o, int bits, i64 group_size, bool zero_point) {
        const MatrixArg W = matrix_arg(W_o, "W");
        const AwqGridParams p = grid_params(bits, group_size, zero_point);
        const GroupedIntShape s = awq_output_shape(W.view.rows, W.view.cols, p);
        py::array_t<std::uint8_t> qweight({s.rows, s.row_bytes()});
        py::array_t<float> scales({s.rows, s.n_groups()});
        py::array_t<std::uint8_t> zeros({s.rows, s.n_groups()});
        GroupedIntMutView out{s, qweight.mutable_data(), scales.mutable_data(), zeros.mutable_data()};
        {
          py::gil_scoped_release release;
          awq_quantize(W.view, p, out);
        }
        return py::make_tuple(qweight, scales, zeros, s.group_size);
      },
      py::arg("W"), py::arg("bits") = 4, py::arg("group_size") = 128, py::arg("zero_point") = true,
      R"doc(Quantize W [out, in] onto AWQ's grid in lowbit's grouped layout.

Returns (qweight uint8 [out, ceil(in*bits/8)], scales float32 [out, G], zeros uint8 [out, G],
effective group_size).)doc");

  m.def(
      "awq_weight_mean",
      [](const py::list& Ws_o, i64 group_size) {
        if (Ws_o.empty()) throw InvalidArgument("weights must hold at least one matrix");
        std::vector<MatrixArg> args;
        std::vector<AnyMatrixView> views;
        for (const py::handle& w : Ws_o) {
          args.push_back(matrix_arg(w, "weights[i]"));
          views.push_back(args.back().view);
        }
        py::array_t<float> out(views[0].cols);
        float* o = out.mutable_data();
        {
          py::gil_scoped_release release;
          awq_weight_mean(views, group_size, o);
        }
        return out;
      },
      py::arg("weights"), py::arg("group_size"),
      "Per input column: mean over all rows of |w| / (max |w| of its group + 1e-6): float32 [in].");

  m.def(
      "awq_act_mean_abs",
      [](const py::handle& X_o) {
        const MatrixArg X = matrix_arg(X_o, "X");
        py::array_t<double> out(X.view.cols);
        double* o = out.mutable_data();
        {
          py::gil_scoped_release release;
          awq_act_mean_abs(X.view, o);
        }
        return out;
      },
      py::arg("X"), "Mean |x| per column of X [tokens, in]: float64 [in].");

  m.def(
      "awq_scales",
      [](const py::handle& x_mean_o, const py::object& w_mean_o, float alpha, bool duo_scaling) {
        py::array x0 = as_array(x_mean_o, "x_mean");
        if (x0.ndim() != 1 || x0.shape(0) == 0)
          throw InvalidArgument(str_cat("x_mean must be a non-empty 1-D array, got ", describe(x0)));
        const i64 n = x0.shape(0);
        auto x = float_vector(x0, "x_mean", n);
        py::array_t<float, py::array::c_style> w;
        if (duo_scaling) {
          if (w_mean_o.is_none()) throw InvalidArgument("w_mean is required with duo_scaling=True");
          w = float_vector(w_mean_o, "w_mean", n);
        }
        py::array_t<float> s(n);
        awq_scales(x.data(), duo_scaling ? w.data() : nullptr, n, alpha, duo_scaling, s.mutable_data());
        return s;
      },
      py::arg("x_mean"), py::arg("w_mean"), py::arg("alpha"), py::arg("duo_scaling") = true,
      "Candidate AWQ scales for exponent alpha (normalized by sqrt(max*min)): float32 [in].");

  m.def(
      "awq_sum_sq_diff",
      [](const py::handle& a_o, const py::handle& b_o) {
        auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(as_array(a_o, "a"));
        auto b = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(as_array(b_o, "b"));
        if (!a || !b) throw TypeMismatch("a and b must be numeric arrays");
        if (a.ndim() != b.ndim() || a.size() != b.size())
          throw InvalidArgument(str_cat("a and b must have the same shape, got ", describe(a), " and ", describe(b)));
        for (py::ssize_t i = 0; i < a.ndim(); ++i)
          if (a.shape(i) != b.shape(i))
            throw InvalidArgument(str_cat("a and b must have the same shape, got ", describe(a), " and ", describe(b)));
        const float* pa = a.data();
        const float* pb = b.data();
        const i64 n = a.size();
        py::gil_scoped_release release;
        return awq_sum_sq_diff(pa, pb, n);
      },
      py::arg("a"), py::arg("b"), "sum((a - b)^2) in double (float32 inputs).");

  m.def(
      "awq_gram",
      [](const py::handle& X_o) {
        const MatrixArg X = matrix_arg(X_o, "X");
        py::array_t<float> G({X.view.cols, X.view.cols});
        float* g = G.mutable_data();
        {
          py::gil_scoped_release release;
          awq_gram(X.view, g);
        }
        return G;
      },
      py::arg("X"), "X^T X of X [tokens, n]: float32 [n, n].");

  m.def(
      "awq_search_linear",
      [](const py::handle& W_o, const py::handle& G_o, i64 n_tokens, const py::handle& x_mean_o,
         const py::object& w_mean_o, int n_grid, bool duo_scaling, int bits, i64 group_size, bool zero_point) {
        const MatrixArg W = matrix_arg(W_o, "W");
        const i64 n = W.view.cols;
        auto G = exact_array<float>(G_o, "G", {n, n});
        auto x = float_vector(x_mean_o, "x_mean", n);
        py::array_t<float, py::array::c_style> w;
        if (duo_scaling) {
          if (w_mean_o.is_none()) throw InvalidArgument("w_mean is required with duo_scaling=True");
          w = float_vector(w_mean_o, "w_mean", n);
        }
        AwqScaleSearch p;
        p.n_grid = n_grid;
        p.duo_scaling = duo_scaling;
        p.grid = grid_params(bits, group_size, zero_point);
        const float* g = G.data();
        const float* xp = x.data();
        const float* wp = duo_scaling ? w.data() : nullptr;
        AwqScaleResult r;
        {
          py::gil_scoped_release release;
          r = awq_search_linear(W.view, g, n_tokens, xp, wp, p);
        }
        py::array_t<float> scales(n);
        std::copy(r.scales.begin(), r.scales.end(), scales.mutable_data());
        py::array_t<double> losses(static_cast<py::ssize_t>(r.losses.size()));
        std::copy(r.losses.begin(), r.losses.end(), losses.mutable_data());
        return py::make_tuple(r.best, scales, losses);
      },
      py::arg("W"), py::arg("G"), py::arg("n_tokens"), py::arg("x_mean"), py::arg("w_mean"), py::arg("n_grid") = 20,
      py::arg("duo_scaling") = true, py::arg("bits") = 4, py::arg("group_size") = 128, py::arg("zero_point") = true,
      R"doc(AWQ's alpha search for a linear scaled on its own, from the Gram G = X^T X of its n_tokens inputs.

Returns (best index k (alpha = k / n_grid), scales float32 [in], losses float64 [n_grid]: mean squared
output error of each candidate).)doc");

  m.def(
      "awq_clip_search",
      [](const py::handle& W_o, const py::handle& X_o, int bits, i64 group_size, bool zero_point, int n_grid,
         double max_shrink) {
        const MatrixArg W = matrix_arg(W_o, "W");
        const MatrixArg X = matrix_arg(X_o, "X");
        AwqClipSearch p;
        p.n_grid = n_grid;
        p.max_shrink = max_shrink;
        p.grid = grid_params(bits, group_size, zero_point);
        const i64 gs = awq_group_size(p.grid, W.view.cols);
        const i64 G = (W.view.cols + gs - 1) / gs;
        py::array_t<float> max_val({W.view.rows, G});
        py::array_t<double> err({W.view.rows, G});
        float* mv = max_val.mutable_data();
        double* e = err.mutable_data();
        {
          py::gil_scoped_release release;
          awq_clip_search(W.view, X.view, p, mv, e);
        }
        return py::make_tuple(max_val, err);
      },
      py::arg("W"), py::arg("X"), py::arg("bits") = 4, py::arg("group_size") = 128, py::arg("zero_point") = true,
      py::arg("n_grid") = 20, py::arg("max_shrink") = 0.5,
      R"doc(AWQ's clipping search for W [out, in] with inputs X [tokens, in] (subsample them first).

Returns (max_val float32 [out, G]: the clamp bound chosen per group, err float64 [out, G]: its objective
mean_t (x_g . (q_g - w_g))^2).)doc");
}
