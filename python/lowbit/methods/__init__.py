"""Built-in quantization methods; each module registers one config class with
:func:`lowbit.quantize.register_method`."""

from . import gptq, rtn

__all__ = ["gptq", "rtn"]
