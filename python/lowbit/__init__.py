"""lowbit: quantize the weights of large language models and run them fast on the CPU.

    >>> import numpy as np, lowbit as lb
    >>> W = np.random.default_rng(0).standard_normal((256, 512), dtype=np.float32)
    >>> q = lb.quantize(W, lb.RTNConfig(bits=4, group_size=128))
    >>> round(q.bits_per_weight, 3), lb.metrics.sqnr(W, q) > 15
    (4.312, True)

The numeric work happens in the compiled module ``lowbit._core`` (C++17, OpenMP, run-time
dispatched SIMD); this package holds configs, the QuantizedTensor container, metrics,
exporters and the ``lowbit`` command.
"""

from __future__ import annotations

from . import _core
from . import data, evaluate, metrics, models
from .config import (
    AWQConfig,
    BnbConfig,
    FP8Config,
    GGUFConfig,
    GPTQConfig,
    HQQConfig,
    QuantConfig,
    RTNConfig,
    load_config,
    EetqConfig,
    TorchAoConfig,
    registered_configs,
)
from .formats import FORMATS, FormatInfo, format_info
from .models import LlamaModel, load_model
from .numerics import bf16_bits, fp16_bits, from_bf16_bits, from_fp16_bits
from .quantize import available_methods, quantize
from .pipeline import quantize_model
from . import compare, tables  # noqa: E402  (compare needs quantize_model)
from .statistics import HessianAccumulator
from .system import cpu_info, force_isa, get_num_threads, set_num_threads
from .tensor import QuantizedTensor
from . import bnb  # noqa: E402  (bitsandbytes formats: lowbit.bnb.int8_linear, ...)

__version__: str = _core.__version__

__all__ = [
    "__version__",
    "AWQConfig",
    "BnbConfig",
    "FORMATS",
    "FP8Config",
    "FormatInfo",
    "GGUFConfig",
    "GPTQConfig",
    "HQQConfig",
    "HessianAccumulator",
    "LlamaModel",
    "QuantConfig",
    "QuantizedTensor",
    "RTNConfig",
    "available_methods",
    "bf16_bits",
    "bnb",
    "cpu_info",
    "force_isa",
    "format_info",
    "fp16_bits",
    "from_bf16_bits",
    "from_fp16_bits",
    "get_num_threads",
    "compare",
    "data",
    "evaluate",
    "load_config",
    "load_model",
    "models",
    "metrics",
    "quantize",
    "quantize_model",
    "registered_configs",
    "set_num_threads",
    "tables",
    "EetqConfig",
    "TorchAoConfig",
]
