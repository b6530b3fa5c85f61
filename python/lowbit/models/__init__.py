"""Model files: readers for the checkpoint formats lowbit loads."""

from .llama2c import Llama2cConfig, read_llama2c

__all__ = ["Llama2cConfig", "read_llama2c"]
