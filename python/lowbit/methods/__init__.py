"""Built-in quantization methods; each module registers one config class with
:func:`lowbit.quantize.register_method`."""

from . import gptq, rtn
from . import awq

__all__ = ["gptq", "rtn", "awq"]
