"""Evaluation and calibration text.

Calibration (:func:`calibration`): ``n_samples`` windows of ``seq_len`` tokens at seeded random
offsets of a tokenized text (GPTQ's recipe), or, with no text, sequences sampled from the model
itself (:func:`sample_from_model`, seeded), so quantization works on a machine with no dataset.
The returned :class:`Calibration` records where its tokens came from, so a run can be repeated.

Perplexity protocols tokenize a whole test text once. Two conventions exist in the literature:

* ``"gptq"`` (GPTQ, AWQ, most quantization papers): the rows of the Hugging Face
  ``wikitext-2-raw-v1`` test split joined with ``"\\n\\n"``. The rows are the raw file's lines,
  each keeping its newline, so the text is ``"\\n\\n".join(raw.splitlines(keepends=True))``.
* ``"llama.cpp"`` (llama-perplexity): the raw file's bytes as they are.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._paths import shared_data_dir

__all__ = ["PROTOCOLS", "Calibration", "calibration", "eval_text", "read_eval_text", "sample_from_model",
           "wikitext2_test_path", "wikitext2_valid_path"]

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


def _shared_file(relative: str) -> Path | None:
    d = shared_data_dir()
    p = d / relative if d is not None else None
    return p if p is not None and p.is_file() else None


def wikitext2_test_path() -> Path | None:
    """WikiText-2 raw test split from the project's shared data, if present."""
    return _shared_file("wikitext-2-raw/wiki.test.raw")


def wikitext2_valid_path() -> Path | None:
    """WikiText-2 validation split (the calibration text; never calibrate on test)."""
    return _shared_file("wikitext-2/valid.txt")


@dataclass
class Calibration:
    """Calibration token windows ``int64 [n_samples, seq_len]`` and their provenance."""

    tokens: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[1])

    def __repr__(self) -> str:
        return f"Calibration({self.n_samples} x {self.seq_len} tokens, source={self.provenance.get('source')!r})"

    def tokens_id(self) -> str:
        """A short id of the token values and shape, computed from the tokens themselves (a
        Calibration cut from other tokens may still carry their provenance); microseconds at
        128 x 2048. What resume and ``compare(previous=)`` match calibrations by."""
        tokens = np.ascontiguousarray(self.tokens, dtype=np.int64)
        return _sha256(tokens.tobytes())[:12] + "-" + "x".join(map(str, tokens.shape))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def calibration(model: Any, files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None, *,
                strings: Sequence[str] | None = None, n_samples: int = 128, seq_len: int | None = None,
                seed: int = 0, progress: bool = False) -> Calibration:
    """Calibration windows for ``model`` (a LlamaModel, whose tokenizer is used; or just a
    :class:`~lowbit.models.Tokenizer`, which then cannot do the data-free fallback).

    ``files`` (one path or several) and/or ``strings`` (texts) are joined with ``"\n\n"``,
    tokenized once, and ``n_samples`` windows of ``seq_len`` tokens start at offsets drawn
    uniformly with ``numpy.random.default_rng(seed)``. ``seq_len`` defaults to 2048, or the
    model's maximum length if smaller. With neither: data-free, :func:`sample_from_model`.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples <= 0:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    tokenizer = getattr(model, "tokenizer", model) if hasattr(model, "config") else model
    max_len = model.config.max_position_embeddings if hasattr(model, "config") else 1 << 30
    L = seq_len or min(2048, max_len)
    if L < 2 or L > max_len:
        raise ValueError(f"seq_len must be in 2..{max_len} for this model, got {L}")
    paths = [] if files is None else [files] if isinstance(files, (str, os.PathLike)) else list(files)
    texts = [] if strings is None else [strings] if isinstance(strings, str) else list(strings)
    if not paths and not texts:
        if not hasattr(model, "config"):
            raise ValueError("no calibration text given: pass files/strings, or the model itself for data-free "
                             "samples")
        return sample_from_model(model, n_samples=n_samples, seq_len=L, seed=seed, progress=progress)
    if tokenizer is None:
        raise ValueError("the model has no tokenizer: build lowbit.data.Calibration from token ids instead")
    parts, sources = [], []
    for it in paths:
        p = Path(it)
        if not p.is_file():
            raise FileNotFoundError(f"no such calibration file: {p}")
        data = p.read_bytes()
        parts.append(data.decode("utf-8", errors="replace"))
        sources.append({"file": str(p), "bytes": len(data), "sha256": _sha256(data)})
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"strings must hold str, got {type(t).__name__}")
        parts.append(t)
        sources.append({"string_chars": len(t), "sha256": _sha256(t.encode())})
    ids = np.asarray(tokenizer.encode("\n\n".join(parts)), dtype=np.int64)
    if len(ids) < L:
        raise ValueError(f"the calibration text has {len(ids)} tokens, fewer than seq_len={L}")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - L + 1, size=n_samples)
    toks = np.stack([ids[s:s + L] for s in starts])
    return Calibration(toks, {"source": "text", "texts": sources, "text_tokens": int(len(ids)),
                              "n_samples": int(n_samples), "seq_len": int(L), "seed": int(seed),
                              "tokens_sha256": _sha256(toks.tobytes())})


def sample_from_model(model: Any, *, n_samples: int = 16, seq_len: int = 256, seed: int = 0,
                      temperature: float = 1.0, progress: bool = False) -> Calibration:
    """Data-free calibration: sequences the model writes itself, from BOS, sampled at
    ``temperature`` with ``numpy.random.default_rng(seed + i)`` for sample ``i``.

    Slow for long sequences (one decode step per token): keep ``n_samples * seq_len`` small.
    """
    bos = model.config.bos_token_id
    if model.tokenizer is not None and model.tokenizer.bos_id is not None:
        bos = model.tokenizer.bos_id
    start = [int(bos) if bos is not None else 0]
    rows = []
    it = range(n_samples)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="sampling calibration text from the model", unit="seq")
    for i in it:
        new = list(model.stream(start, seq_len - 1, temperature=temperature, seed=seed + i, stop_at_eos=False))
        rows.append(start + new)
    toks = np.asarray(rows, dtype=np.int64)
    return Calibration(toks, {"source": "model-samples", "n_samples": int(n_samples), "seq_len": int(seq_len),
                              "seed": int(seed), "temperature": float(temperature), "start_token": start[0],
                              "tokens_sha256": _sha256(toks.tobytes())})
