"""A Hugging Face ``tokenizers.Tokenizer`` rebuilt from the tokenizer a GGUF file stores in its metadata.

A GGUF carries no ``tokenizer.json``: llama.cpp keeps the vocabulary (``tokenizer.ggml.tokens``),
the token kinds (``token_type``), BPE merges or SentencePiece scores, the special token ids, and
names the pre-tokenization rule (``tokenizer.ggml.pre``) that llama.cpp hard-codes per model family.
This module maps those onto ``tokenizers`` components so that ``encode`` gives the ids the model's
own tokenizer gives.

Supported ``tokenizer.ggml.model`` values:

``gpt2``  byte-level BPE. The pre-tokenizer follows llama.cpp's table for ``tokenizer.ggml.pre``
          (``llama-vocab.cpp``), written as the ``tokenizers`` pipeline the model's real
          ``tokenizer.json`` uses:

          - ``smollm``, ``starcoder``: every digit on its own (llama.cpp ``\\p{N}``; in
            ``tokenizers`` ``Digits(individual_digits=True)``), then the GPT-2 regex.
          - ``gpt-2``, ``phi-2``, ``mpt``, ``olmo``: the GPT-2 regex alone.
          - ``llama3``, ``llama-v3``, ``llama-bpe`` (Llama 3): the Llama 3 split regex, and a word
            that is itself in the vocabulary is taken whole (llama.cpp ``ignore_merges``).
          - ``qwen2``, ``deepseek-r1-qwen``: the Qwen2 split regex (single digits), after NFC
            normalization as Qwen2's ``tokenizer.json`` does.
          - ``tekken`` (Mistral Nemo): its split regex, ``ignore_merges``.

          Other values (and a file with no ``pre``, for which llama.cpp falls back to a generic
          regex and warns that quality degrades) raise ``NotImplementedError``: a silently
          different split gives plausible but wrong ids, which is worse than a clear error.
``llama`` SentencePiece (Llama 1/2, Mistral 7B, TinyLlama ...): BPE over the pieces with merges
          ranked by the score of the merged piece (what SentencePiece's and llama.cpp's encoders
          do), ``<0xXX>`` byte fallback, ``▁`` for spaces and a leading ``▁`` when
          ``add_space_prefix`` (default on).

Tokens marked CONTROL become special added tokens and USER_DEFINED ones plain added tokens, so both
are matched whole in text (``"<|im_start|>"`` is one id). BOS/EOS are added by a post-processor
only when the file sets ``add_bos_token``/``add_eos_token`` (if it does not say, llama.cpp's
default for that tokenizer applies: on for SentencePiece and Llama 3, off otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .tokenizer import Tokenizer

__all__ = ["SUPPORTED_PRE_TOKENIZERS", "build_gguf_tokenizer", "gguf_backend_tokenizer", "load_gguf_tokenizer"]

# llama_token_type in llama.cpp / gguf.TokenType
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6

# The split regexes of the models' own tokenizer.json files (llama.cpp's llama-vocab.cpp quotes
# them as "original regex from tokenizer.json" next to its own adapted versions).
_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_TEKKEN_REGEX = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
                 r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
                 r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass(frozen=True)
class _PreSpec:
    regex: str | None = None        # split (isolated) before byte-level mapping; None: GPT-2 regex
    digits: bool = False            # split every digit off first
    ignore_merges: bool = False     # a word found whole in the vocabulary is one token
    add_bos: bool = False           # llama.cpp's default when the file has no add_bos_token
    nfc: bool = False               # NFC-normalize first


_GPT2 = _PreSpec()
_SMOLLM = _PreSpec(digits=True)
_LLAMA3 = _PreSpec(regex=_LLAMA3_REGEX, ignore_merges=True, add_bos=True)
_QWEN2 = _PreSpec(regex=_QWEN2_REGEX, nfc=True)
_TEKKEN = _PreSpec(regex=_TEKKEN_REGEX, ignore_merges=True, add_bos=True)

_PRE_SPECS: dict[str, _PreSpec] = {
    "gpt-2": _GPT2, "phi-2": _GPT2, "mpt": _GPT2, "olmo": _GPT2,
    "smollm": _SMOLLM, "starcoder": _SMOLLM,
    "llama3": _LLAMA3, "llama-v3": _LLAMA3, "llama-bpe": _LLAMA3,
    "qwen2": _QWEN2, "deepseek-r1-qwen": _QWEN2,
    "tekken": _TEKKEN,
}
SUPPORTED_PRE_TOKENIZERS: tuple[str, ...] = tuple(sorted(_PRE_SPECS))
_SUPPORTED_MODELS = ("gpt2", "llama")


def _get(meta: Mapping[str, Any], key: str, default: Any = None) -> Any:
    return meta.get(f"tokenizer.ggml.{key}", default)


def _special_ids(meta: Mapping[str, Any], n_vocab: int, source: str) -> dict[str, int | None]:
    ids: dict[str, int | None] = {}
    for name, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"),
                      ("pad", "padding_token_id")):
        v = _get(meta, key)
        if v is not None and not 0 <= int(v) < n_vocab:
            raise ValueError(f"{source}: tokenizer.ggml.{key}={v} is outside the vocabulary of {n_vocab} tokens")
        ids[name] = None if v is None else int(v)
    return ids


def _post_processor(tokens: Sequence[str], ids: Mapping[str, int | None], add_bos: bool, add_eos: bool) -> Any:
    from tokenizers import processors

    bos = tokens[ids["bos"]] if add_bos and ids["bos"] is not None else None
    eos = tokens[ids["eos"]] if add_eos and ids["eos"] is not None else None
    if bos is None and eos is None:
        return None
    pre = [f"{bos}:0"] if bos else []
    post = [f"{eos}:0"] if eos else []
    pre_b = [f"{bos}:1"] if bos else []
    post_b = [f"{eos}:1"] if eos else []
    special = [(t, ids[k]) for t, k in ((bos, "bos"), (eos, "eos")) if t is not None]
    if bos is not None and eos is not None and bos == eos:
        special = special[:1]
    return processors.TemplateProcessing(single=[*pre, "$A:0", *post], pair=[*pre, "$A:0", *post, *pre_b, "$B:1", *post_b],
                                         special_tokens=special)


def _added_tokens(tokens: Sequence[str], types: Sequence[int], vocab: Mapping[str, int]) -> list[Any]:
    """CONTROL (and UNKNOWN) tokens as special added tokens, USER_DEFINED ones as plain added tokens,
    each under the content its id has in the model vocabulary (so no new ids appear)."""
    from tokenizers import AddedToken

    out = []
    for i, (tok, ty) in enumerate(zip(tokens, types)):
        if ty in (_CONTROL, _UNKNOWN, _USER_DEFINED) and tok and vocab.get(tok) == i:
            out.append(AddedToken(tok, special=ty != _USER_DEFINED, normalized=False))
    return out


def _bpe_vocab(tokens: Sequence[str]) -> dict[str, int]:
    """token -> id. A string listed twice keeps its first id for lookups (llama.cpp does the same);
    the later id gets a placeholder key no text can produce, so every id still exists."""
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab[t if t not in vocab else f"[lowbit: duplicate of token {vocab[t]} at id {i}]"] = i
    return vocab


def _parse_merges(merges: Sequence[str], vocab: Mapping[str, int], source: str) -> list[tuple[str, str]]:
    out = []
    for m in merges:
        parts = m.split(" ")
        if len(parts) == 2:
            out.append((parts[0], parts[1]))
            continue
        # a piece that itself contains a space: find the one split into two known pieces
        for k in range(1, len(m) - 1):
            if m[k] == " " and m[:k] in vocab and m[k + 1:] in vocab:
                out.append((m[:k], m[k + 1:]))
                break
        else:
            raise ValueError(f"{source}: cannot parse BPE merge {m!r}")
    return out


def _gpt2_backend(meta: Mapping[str, Any], tokens: Sequence[str], types: Sequence[int], source: str) -> Any:
    from tokenizers import Regex, Tokenizer as HFTokenizer, decoders, models, normalizers, pre_tokenizers

    pre = _get(meta, "pre")
    spec = _PRE_SPECS.get(pre) if pre else None
    if spec is None:
        what = f"pre-tokenizer {pre!r}" if pre else "no tokenizer.ggml.pre (llama.cpp would use its generic 'default' regex)"
        raise NotImplementedError(f"{source}: byte-level BPE tokenizer with {what} is not supported; "
                                  f"supported tokenizer.ggml.pre values: {', '.join(SUPPORTED_PRE_TOKENIZERS)}")
    merges = _get(meta, "merges")
    if merges is None:
        raise ValueError(f"{source}: byte-level BPE tokenizer without tokenizer.ggml.merges")
    vocab = _bpe_vocab(tokens)
    model = models.BPE(vocab=vocab, merges=_parse_merges(merges, vocab, source), ignore_merges=spec.ignore_merges,
                       fuse_unk=False, byte_fallback=False)
    tok = HFTokenizer(model)
    if spec.nfc:
        tok.normalizer = normalizers.NFC()
    byte_level_regex = spec.regex is None
    steps = []
    if spec.digits:
        steps.append(pre_tokenizers.Digits(individual_digits=True))
    if spec.regex is not None:
        steps.append(pre_tokenizers.Split(Regex(spec.regex), behavior="isolated", invert=False))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=byte_level_regex))
    tok.pre_tokenizer = steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    added = _added_tokens(tokens, types, vocab)
    tok.add_special_tokens([t for t in added if t.special])
    tok.add_tokens([t for t in added if not t.special])
    return tok, spec.add_bos


def _spm_merges(tokens: Sequence[str], types: Sequence[int], scores: Sequence[float]) -> list[tuple[str, str]]:
    """Merges implied by a SentencePiece vocabulary: every split of a normal piece into two normal
    pieces, ranked by the merged piece's score (highest first), ties by vocabulary order."""
    normal = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == _NORMAL}
    ranked = []
    for piece, i in normal.items():
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in normal and right in normal:
                ranked.append((-float(scores[i]), i, normal[left], normal[right], left, right))
    ranked.sort()
    return [(r[4], r[5]) for r in ranked]


def _spm_backend(meta: Mapping[str, Any], tokens: Sequence[str], types: Sequence[int], source: str) -> Any:
    from tokenizers import Tokenizer as HFTokenizer, decoders, models, normalizers

    scores = _get(meta, "scores")
    if scores is None or len(scores) != len(tokens):
        raise ValueError(f"{source}: SentencePiece tokenizer needs tokenizer.ggml.scores for all {len(tokens)} tokens")
    vocab = _bpe_vocab(tokens)
    unk_id = _get(meta, "unknown_token_id")
    unk = tokens[int(unk_id)] if unk_id is not None and 0 <= int(unk_id) < len(tokens) else None
    model = models.BPE(vocab=vocab, merges=_spm_merges(tokens, types, scores), unk_token=unk, fuse_unk=True,
                       byte_fallback=True)
    tok = HFTokenizer(model)
    # Spaces become U+2581 and, with add_space_prefix, one is put in front of the text (and after
    # each special token), as SentencePiece, llama.cpp and Llama 2's tokenizer.json do; a
    # Metaspace pre-tokenizer would skip the prefix on text that already starts with a space.
    prefix = bool(_get(meta, "add_space_prefix", True))
    replace = normalizers.Replace(" ", "\u2581")
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), replace]) if prefix else replace
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    if prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    tok.decoder = decoders.Sequence(steps)
    added = _added_tokens(tokens, types, vocab)
    tok.add_special_tokens([t for t in added if t.special])
    tok.add_tokens([t for t in added if not t.special])
    return tok, True


def gguf_backend_tokenizer(metadata: Mapping[str, Any], *, source: str = "GGUF metadata") -> tuple[Any, dict[str, Any]]:
    """The ``tokenizers.Tokenizer`` a GGUF's metadata describes, and a summary
    ``{"model", "pre", "bos_id", "eos_id", "unk_id", "pad_id", "add_bos", "add_eos"}``.

    ``metadata`` maps GGUF keys (``"tokenizer.ggml.tokens"`` ...) to plain Python values.
    Raises NotImplementedError for tokenizer kinds or pre-tokenizers not supported here and
    ValueError (naming ``source``) for inconsistent metadata.
    """
    kind = _get(metadata, "model")
    if kind is None:
        raise ValueError(f"{source}: no tokenizer.ggml.model in the metadata (the file has no tokenizer)")
    if kind not in _SUPPORTED_MODELS:
        raise NotImplementedError(f"{source}: tokenizer.ggml.model={kind!r} is not supported; "
                                  f"supported: {', '.join(_SUPPORTED_MODELS)}")
    tokens = _get(metadata, "tokens")
    if not tokens:
        raise ValueError(f"{source}: no tokenizer.ggml.tokens in the metadata")
    tokens = list(tokens)
    types = _get(metadata, "token_type")
    types = [int(t) for t in types] if types is not None else [_NORMAL] * len(tokens)
    if len(types) != len(tokens):
        raise ValueError(f"{source}: {len(types)} token types for {len(tokens)} tokens")
    ids = _special_ids(metadata, len(tokens), source)
    if kind == "gpt2":
        tok, bos_default = _gpt2_backend(metadata, tokens, types, source)
    else:
        tok, bos_default = _spm_backend(metadata, tokens, types, source)
    add_bos = bool(_get(metadata, "add_bos_token", bos_default))
    add_eos = bool(_get(metadata, "add_eos_token", False))
    post = _post_processor(tokens, ids, add_bos, add_eos)
    if post is not None:
        tok.post_processor = post
    if tok.get_vocab_size(with_added_tokens=True) != len(tokens):  # every id maps back to the file's token
        raise ValueError(f"{source}: rebuilt tokenizer has {tok.get_vocab_size(with_added_tokens=True)} ids, "
                         f"the file lists {len(tokens)} tokens")
    info = {"model": kind, "pre": _get(metadata, "pre"), "bos_id": ids["bos"], "eos_id": ids["eos"],
            "unk_id": ids["unk"], "pad_id": ids["pad"], "add_bos": add_bos, "add_eos": add_eos}
    return tok, info


def build_gguf_tokenizer(metadata: Mapping[str, Any], *, source: str = "GGUF metadata") -> Tokenizer:
    """lowbit's ``Tokenizer`` over :func:`gguf_backend_tokenizer`'s ``tokenizers.Tokenizer``."""
    tok, info = gguf_backend_tokenizer(metadata, source=source)
    return Tokenizer.from_tokenizers(tok, bos_id=info["bos_id"], eos_id=info["eos_id"])


def load_gguf_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Read only the metadata of a GGUF file and build its tokenizer."""
    from .gguf_reader import read_gguf_metadata

    return build_gguf_tokenizer(read_gguf_metadata(path), source=str(path))
