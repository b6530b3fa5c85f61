"""Model files and the Llama-family decoder.

Today: the llama2.c checkpoint and tokenizer readers, and a NumPy reference forward pass
(``llama_ref``) that the C++ runtime will be tested against.
"""

from .llama2c import Llama2cConfig, Llama2cVocab, read_llama2c, read_llama2c_vocab
from .llama_ref import LlamaShape, forward_reference, greedy_reference

__all__ = ["Llama2cConfig", "Llama2cVocab", "LlamaShape", "forward_reference", "greedy_reference", "read_llama2c",
           "read_llama2c_vocab"]
