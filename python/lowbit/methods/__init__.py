"""Built-in quantization methods; each module registers one config class with
:func:`lowbit.quantize.register_method`."""

from . import awq, bnb, eetq, fp8, gguf, gptq, hqq, rtn, torchao

__all__ = ["awq", "bnb", "eetq", "fp8", "gguf", "gptq", "hqq", "rtn", "torchao"]
