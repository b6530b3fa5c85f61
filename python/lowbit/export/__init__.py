"""Readers and writers for the checkpoint layouts other tools load."""

from .gptq import from_gptq, to_gptq

__all__ = ["from_gptq", "to_gptq"]
