"""Readers and writers for the checkpoint layouts other tools load."""

from .awq import from_awq, save_awq, to_awq
from .gptq import from_gptq, to_gptq

__all__ = ["from_awq", "from_gptq", "save_awq", "to_awq", "to_gptq"]
