"""Model files and the Llama-family decoder runtime.

``load_model(path)`` reads a Hugging Face folder, a GGUF file, a llama2.c checkpoint or a
registry model name and returns a :class:`LlamaModel` (forward pass with a KV cache,
``generate``). ``llama_ref`` is the plain NumPy forward pass the runtime is tested against.
"""

from .llama import BLOCK_LINEARS, GenerationResult, KVCache, LlamaModel, model_from_files
from .llama2c import Llama2cConfig, Llama2cVocab, read_llama2c, read_llama2c_model, read_llama2c_vocab
from .llama_config import LlamaConfig, rope_frequencies
from .llama_ref import LlamaShape, forward_reference, greedy_reference
from .loader import load_model, read_model_files
from .model_files import ModelFiles
from .registry_models import DEFAULT_MODEL, REGISTRY_MODELS, fetch_model
from .tokenizer import Tokenizer

__all__ = ["BLOCK_LINEARS", "DEFAULT_MODEL", "GenerationResult", "KVCache", "Llama2cConfig", "Llama2cVocab",
           "LlamaConfig", "LlamaModel", "LlamaShape", "ModelFiles", "REGISTRY_MODELS", "Tokenizer", "fetch_model",
           "forward_reference", "greedy_reference", "load_model", "model_from_files", "read_llama2c",
           "read_llama2c_model", "read_llama2c_vocab", "read_model_files", "rope_frequencies"]
