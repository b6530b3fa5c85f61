"""Evaluation and calibration text.

Perplexity protocols tokenize a whole test text once. Two conventions exist in the literature:

* ``"gptq"`` (GPTQ, AWQ, most quantization papers): the rows of the Hugging Face
  ``wikitext-2-raw-v1`` test split joined with ``"\\n\\n"``. The rows are the raw file's lines,
  each keeping its newline, so the text is ``"\\n\\n".join(raw.splitlines(keepends=True))``.
* ``"llama.cpp"`` (llama-perplexity): the raw file's bytes as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._paths import shared_data_dir

__all__ = ["PROTOCOLS", "eval_text", "read_eval_text", "wikitext2_test_path"]

PROTOCOLS = ("gptq", "llama.cpp")


def eval_text(raw: str, protocol: str = "gptq") -> str:
    """The text a perplexity protocol tokenizes, from a test file's contents."""
    if protocol == "gptq":
        return "\n\n".join(raw.splitlines(keepends=True))
    if protocol == "llama.cpp":
        return raw
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def read_eval_text(path: str | os.PathLike[str], protocol: str = "gptq") -> str:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such text file: {p}")
    try:
        raw = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not UTF-8 text ({e})") from None
    if not raw.strip():
        raise ValueError(f"{p}: the text file is empty")
    return eval_text(raw, protocol)


def wikitext2_test_path() -> Path | None:
    """WikiText-2 raw test split from the project's shared data, if present."""
    d = shared_data_dir()
    if d is None:
        return None
    p = d / "wikitext-2-raw" / "wiki.test.raw"
    return p if p.is_file() else None
