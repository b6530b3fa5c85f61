// CPU features, ISA dispatch and thread control.
#include <pybind11/pybind11.h>

#include "lowbit/cpu_features.hpp"
#include "lowbit/kernels.hpp"
#include "lowbit/parallel.hpp"

namespace py = pybind11;
using namespace lowbit;

void register_system(py::module_& m) {
  m.def(
      "cpu_features",
      [] {
        const CpuFeatures& f = cpu_features();
        py::dict d;
        d["sse4_2"] = f.sse42;
        d["avx"] = f.avx;
        d["avx2"] = f.avx2;
        d["fma"] = f.fma;
        d["f16c"] = f.f16c;
        d["avx512f"] = f.avx512f;
        d["avx512bw"] = f.avx512bw;
        d["avx512vl"] = f.avx512vl;
        d["avx512dq"] = f.avx512dq;
        d["avx512_vnni"] = f.avx512vnni;
        d["avx512_bf16"] = f.avx512bf16;
        d["avx_vnni"] = f.avxvnni;
        d["os_saves_ymm"] = f.os_avx;
        d["os_saves_zmm"] = f.os_avx512;
        d["neon"] = f.neon;
        d["dotprod"] = f.dotprod;
        return d;
      },
      "CPU features found by CPUID/XGETBV on x86, AT_HWCAP on aarch64 Linux (a feature the OS does not\n"
      "enable reads False).");
  m.def(
      "supported_isas",
      [] {
        py::list l;
        for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon})
          if (isa_supported(i)) l.append(isa_name(i));
        return l;
      },
      "Kernel ISA paths this build can run on this CPU, worst to best.");
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); },
        "The ISA path in use (LOWBIT_ISA overrides the best supported one).");
  m.def("force_isa", [](const std::string& name) { force_isa(parse_isa(name)); }, py::arg("isa"),
        "Switch the kernel path: 'scalar', 'avx2', 'avx512' or 'neon'. NotImplementedError if unsupported.");
  m.def("get_num_threads", &get_num_threads, "Threads lowbit's parallel regions use.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the threads lowbit uses; n <= 0 restores the default (OMP_NUM_THREADS / all cores).");
}
