"""Built-in quantization methods; each module registers one config class with
:func:`lowbit.quantize.register_method`."""

from . import gguf, gptq, rtn

__all__ = ["gguf", "gptq", "rtn"]
