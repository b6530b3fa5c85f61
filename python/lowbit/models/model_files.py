"""What every model reader returns: one neutral description of a checkpoint on disk.

Readers (Hugging Face folder, GGUF, llama2.c) translate their file into this: a config dict
with Hugging Face ``config.json`` keys, tensors under Hugging Face Llama names in Hugging Face
layout (``[out, in]``; q/k rows in rotate-half order unless ``config["rope_interleaved"]``),
and a tokenizer. The runtime (``lowbit.models.llama``) never looks at a file format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .tokenizer import Tokenizer

__all__ = ["ModelFiles"]


@dataclass
class ModelFiles:
    path: Path
    format: str                              # "hf" | "gguf" | "llama2c" | "lowbit"
    config: dict[str, Any]                   # config.json keys (model_type, hidden_size, ...)
    tensors: Mapping[str, Any]               # HF name -> np.ndarray (f32/f16/bf16, maybe memory-mapped) or QuantizedTensor
    tokenizer: Tokenizer | None
    metadata: dict[str, Any] = field(default_factory=dict)   # source details (file types, GGUF keys, ...)

    def nbytes(self) -> int:
        return int(sum(getattr(t, "nbytes", 0) for t in self.tensors.values()))

    def describe(self) -> str:
        n = sum(int(np.prod(getattr(t, "shape", ()))) for t in self.tensors.values())
        return f"{self.path} ({self.format}, {len(self.tensors)} tensors, {n / 1e6:.1f}M parameters)"
