"""llama2.c's encoder exactly as run.c writes it: rescan all adjacent pairs after every merge
and merge the first pair with the highest score (quadratic; the oracle for the fast encoder)."""

from __future__ import annotations


def encode_ref(pieces: tuple[bytes, ...], scores: tuple[float, ...], text: str, bos: bool = True) -> list[int]:
    lookup = {p: i for i, p in enumerate(pieces)}
    toks = [1] if bos else []
    body = [lookup[b" "]] if text and b" " in lookup else []
    for ch in text:
        b = ch.encode("utf-8")
        body.extend([lookup[b]] if b in lookup else [x + 3 for x in b])
    while True:
        best, at, merged = -1e10, -1, -1
        for i in range(len(body) - 1):
            j = lookup.get(pieces[body[i]] + pieces[body[i + 1]])
            if j is not None and scores[j] > best:
                best, at, merged = scores[j], i, j
        if at < 0:
            return toks + body
        body[at:at + 2] = [merged]
