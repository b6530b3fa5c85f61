"""Readers and writers for the checkpoint layouts other tools load."""

from .bnb import from_bnb, load_bnb, save_bnb, to_bnb
from .gptq import from_gptq, to_gptq

__all__ = ["from_bnb", "from_gptq", "load_bnb", "save_bnb", "to_bnb", "to_gptq"]
from .awq import from_awq, save_awq, to_awq
from .gptq import from_gptq, to_gptq

__all__ = ["from_awq", "from_gptq", "save_awq", "to_awq", "to_gptq"]
