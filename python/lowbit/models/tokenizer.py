"""One tokenizer interface over the backends lowbit reads: Hugging Face ``tokenizers`` objects
(from tokenizer.json or rebuilt from GGUF metadata) and llama2.c's ``tokenizer.bin``.

``encode(text)`` adds the special tokens the model's own tokenizer adds (what
``transformers.AutoTokenizer(...)(text)`` gives); ``add_bos=True`` forces a BOS in front when
the backend would not add one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["Tokenizer"]


class Tokenizer:
    def __init__(self, backend: Any, *, bos_id: int | None, eos_id: int | None, vocab_size: int,
                 kind: str, add_bos_default: bool = False) -> None:
        self.backend = backend
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.vocab_size = vocab_size
        self.kind = kind                       # "tokenizers" | "llama2c"
        self.add_bos_default = add_bos_default  # llama2.c always prepends BOS

    @classmethod
    def from_tokenizers(cls, tok: Any, *, bos_id: int | None = None, eos_id: int | None = None) -> "Tokenizer":
        return cls(tok, bos_id=bos_id, eos_id=eos_id, vocab_size=tok.get_vocab_size(with_added_tokens=True),
                   kind="tokenizers")

    @classmethod
    def from_llama2c(cls, vocab: Any) -> "Tokenizer":
        # llama2.c's sentencepiece ids: 0 <unk>, 1 <s>, 2 </s>
        return cls(vocab, bos_id=1, eos_id=2, vocab_size=len(vocab.pieces), kind="llama2c", add_bos_default=True)

    def encode(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if self.kind == "tokenizers":
            ids = list(self.backend.encode(text).ids)
            if add_bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
                ids.insert(0, self.bos_id)
            return ids
        bos = self.add_bos_default if add_bos is None else add_bos
        return list(self.backend.encode(text, bos=bos))

    def decode(self, ids: Sequence[int]) -> str:
        if self.kind == "tokenizers":
            return self.backend.decode(list(ids), skip_special_tokens=False)
        ids = list(ids)
        # llama2.c decodes each token after its predecessor (a leading space is dropped after BOS);
        # a sequence that does not start with BOS is decoded as a continuation.
        return self.backend.decode(ids if ids[:1] == [1] else [0] + ids)

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, bos_id={self.bos_id}, eos_id={self.eos_id})"
