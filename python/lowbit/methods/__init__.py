"""Built-in quantization methods; each module registers one config class with
:func:`lowbit.quantize.register_method`."""

from . import bnb, gptq, rtn

__all__ = ["bnb", "gptq", "rtn"]
