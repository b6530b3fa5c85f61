"""Readers and writers for the checkpoint layouts other tools load."""

from .bnb import from_bnb, load_bnb, save_bnb, to_bnb
from .gptq import from_gptq, to_gptq

__all__ = ["from_bnb", "from_gptq", "load_bnb", "save_bnb", "to_bnb", "to_gptq"]
