"""Model quality and speed: perplexity (GPTQ-paper and llama.cpp protocols), KL divergence from a
reference model, per-layer error reports, tokens/s and peak memory.

Protocols (see :mod:`lowbit.data` for the text each one tokenizes):

* ``"gptq"``: the text is tokenized once and cut into non-overlapping windows of ``seq_len``
  tokens (the tail that does not fill a window is dropped); every window is evaluated from an
  empty context and all ``seq_len - 1`` next-token predictions count. ppl = exp(mean NLL).
* ``"llama.cpp"``: windows of ``seq_len`` (default 512); when the tokenizer adds BOS, each
  window's first token is replaced by BOS; only the second half is scored (the predictions
  of tokens ``seq_len/2 + 1 … seq_len - 1`` of each window), as llama-perplexity does.

Logits are produced in row chunks, so a 2048-token window of a 49k-vocabulary model never
holds more than ``chunk × vocab`` floats at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import _core
from .data import PROTOCOLS
from .models.llama import LlamaModel
from .system import proc_status_field

__all__ = ["PerplexityResult", "KLResult", "perplexity", "kl_divergence", "layer_errors", "speed",
           "peak_memory_mb", "reset_peak_memory", "windows"]

_HEAD_CHUNK = 256


def peak_memory_mb() -> float | None:
    """Peak resident memory of this process (MB) since it started or since the last
    :func:`reset_peak_memory` that took effect; None where the OS does not say."""
    hwm = proc_status_field("VmHWM")  # Linux: the high-water mark that reset_peak_memory can lower
    if hwm is not None:
        return int(hwm.split()[0]) / 1024  # "123456 kB"
    try:
        import resource
        import sys
    except ImportError:  # Windows
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)  # macOS reports bytes


def reset_peak_memory() -> bool:
    """Start a new peak-memory measurement at the current resident size (Linux >= 4.0: writes
    5 to /proc/self/clear_refs), so that :func:`peak_memory_mb` reports the peak of what runs
    next. Returns False where the OS has no such reset (the peak then counts from process start)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class Window:
    start: int          # index of the window's first token in the token stream
    tokens: np.ndarray  # the window's tokens (BOS-replaced for llama.cpp when the model uses BOS)
    first_scored: int   # logits rows first_scored … len-2 are scored (each predicts the next token)


def windows(tokens: Sequence[int], seq_len: int, protocol: str = "gptq", bos_id: int | None = None,
            max_windows: int | None = None) -> list[Window]:
    """The evaluation windows a protocol cuts from a token stream."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    toks = np.asarray(tokens, dtype=np.int64)
    n = len(toks) // seq_len
    if n == 0:
        raise ValueError(f"the text has {len(toks)} tokens, fewer than one window of seq_len={seq_len}")
    if max_windows is not None:
        n = min(n, max_windows)
    out = []
    for i in range(n):
        w = toks[i * seq_len:(i + 1) * seq_len].copy()
        if protocol == "llama.cpp":
            if bos_id is not None:
                w[0] = bos_id
            out.append(Window(i * seq_len, w, seq_len // 2))
        else:
            out.append(Window(i * seq_len, w, 0))
    return out


def _final_hidden(model: LlamaModel, tokens: np.ndarray) -> np.ndarray:
    x = model.embed(tokens)
    pos = np.arange(len(tokens), dtype=np.int64)
    for i in range(model.config.num_hidden_layers):
        x = model.block(i, x, pos)
    return x


def _cache_key(protocol: str, L: int, w: Window) -> tuple[Any, ...]:
    """Key of one window's final hidden states in a ref_cache / hidden_cache."""
    return (protocol, L, w.start, hash(w.tokens.tobytes()))


def _tokens_and_bos(model: LlamaModel, text: str | Sequence[int], protocol: str) -> tuple[np.ndarray, int | None]:
    tok = model.tokenizer
    if isinstance(text, str):
        if tok is None:
            raise ValueError("this model has no tokenizer: pass token ids instead of text")
        ids = tok.encode(text)
    else:
        ids = [int(t) for t in text]
    bos = None
    if protocol == "llama.cpp" and tok is not None and tok.bos_id is not None:
        # llama.cpp replaces each window's first token by BOS only for models that add BOS
        probe = tok.encode("a")
        bos = tok.bos_id if probe[:1] == [tok.bos_id] else None
    return np.asarray(ids, dtype=np.int64), bos


def _default_seq_len(model: LlamaModel, protocol: str, seq_len: int | None) -> int:
    if seq_len is not None:
        return seq_len
    return min(2048 if protocol == "gptq" else 512, model.config.max_position_embeddings)


def _progress(iterable: Any, enabled: bool, desc: str, total: int) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, unit="window", dynamic_ncols=True)


@dataclass(frozen=True)
class PerplexityResult:
    ppl: float
    nll: float               # mean negative log-likelihood per scored token (nats)
    n_scored: int            # predicted tokens that count
    n_windows: int
    seq_len: int
    protocol: str
    text_tokens: int         # tokens in the whole text
    seconds: float
    tokens_per_s: float      # forward tokens per second (all window tokens)
    peak_memory_mb: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def perplexity(model: LlamaModel, text: str | Sequence[int], *, seq_len: int | None = None,
               protocol: str = "gptq", max_windows: int | None = None, progress: bool = False,
               hidden_cache: dict[Any, np.ndarray] | None = None) -> PerplexityResult:
    """Perplexity of ``model`` on ``text`` (a string, tokenized once, or token ids).

    ``seq_len`` defaults to 2048 for ``"gptq"`` and 512 for ``"llama.cpp"`` (capped at the
    model's ``max_position_embeddings``); ``max_windows`` evaluates only the first windows.
    ``hidden_cache``: a dict to store the final hidden states per window in, keyed as
    :func:`kl_divergence`'s ``ref_cache``: pass the same dict there with this model as ``ref``
    and the reference's forward passes are not run again.
    """
    L = _default_seq_len(model, protocol, seq_len)
    if L > model.config.max_position_embeddings:
        raise ValueError(f"seq_len {L} exceeds the model's max_position_embeddings "
                         f"{model.config.max_position_embeddings}")
    toks, bos = _tokens_and_bos(model, text, protocol)
    wins = windows(toks, L, protocol, bos, max_windows)
    t0 = time.perf_counter()
    total, count = 0.0, 0
    for w in _progress(wins, progress, "perplexity", len(wins)):
        x = _final_hidden(model, w.tokens)
        if hidden_cache is not None:
            hidden_cache[_cache_key(protocol, L, w)] = x
        for s in range(w.first_scored, L - 1, _HEAD_CHUNK):
            e = min(s + _HEAD_CHUNK, L - 1)
            lp = _core.token_logprobs(model.head(x[s:e]), w.tokens[s + 1:e + 1])
            total -= float(lp.sum())
            count += e - s
    secs = time.perf_counter() - t0
    nll = total / count
    return PerplexityResult(math.exp(nll), nll, count, len(wins), L, protocol, len(toks), secs,
                            len(wins) * L / secs if secs > 0 else float("inf"), peak_memory_mb())


@dataclass(frozen=True)
class KLResult:
    kld_mean: float          # mean KL(P_ref || P) per scored token (nats)
    kld_median: float
    kld_p99: float
    kld_max: float
    top1_agreement: float    # fraction of positions where both models' argmax agree
    ppl: float
    ref_ppl: float
    delta_ppl: float
    n_scored: int
    n_windows: int
    seq_len: int
    protocol: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def kl_divergence(model: LlamaModel, ref: LlamaModel, text: str | Sequence[int], *, seq_len: int | None = None,
                  protocol: str = "gptq", max_windows: int | None = None, progress: bool = False,
                  ref_cache: dict[Any, np.ndarray] | None = None) -> KLResult:
    """How far ``model``'s next-token distributions are from ``ref``'s on the same windows.

    Both models see identical token windows (tokenized with ``ref``'s tokenizer). Reports the
    KL divergence KL(P_ref || P_model) per position (mean, median, 99th percentile, max), the
    top-1 agreement, both perplexities and Δppl = ppl − ref_ppl.

    ``ref_cache``: a dict kept between calls that compare several models with the same ``ref``
    and text: the reference's final hidden states per window are stored there (seq_len × hidden
    floats each), so later calls only run ref's head.
    """
    if model.config.vocab_size != ref.config.vocab_size:
        raise ValueError(f"vocabularies differ: model {model.config.vocab_size}, ref {ref.config.vocab_size}")
    L = _default_seq_len(ref, protocol, seq_len)
    toks, bos = _tokens_and_bos(ref, text, protocol)
    wins = windows(toks, L, protocol, bos, max_windows)
    t0 = time.perf_counter()
    klds, agree = [], 0
    nll, nll_ref = 0.0, 0.0
    for w in _progress(wins, progress, "kl-divergence", len(wins)):
        x = _final_hidden(model, w.tokens)
        key = _cache_key(protocol, L, w)
        if ref_cache is not None and key in ref_cache:
            xr = ref_cache[key]
        else:
            xr = _final_hidden(ref, w.tokens)
            if ref_cache is not None:
                ref_cache[key] = xr
        for s in range(w.first_scored, L - 1, _HEAD_CHUNK):
            e = min(s + _HEAD_CHUNK, L - 1)
            lg, lr = model.head(x[s:e]), ref.head(xr[s:e])
            # both models' target log-probabilities come with the divergence (one pass over the logits)
            kl, am_ref, am, lp_ref, lp = _core.kl_divergence(lr, lg, np.ascontiguousarray(w.tokens[s + 1:e + 1],
                                                                                            dtype=np.int64))
            klds.append(kl)
            agree += int(np.count_nonzero(am_ref == am))
            nll -= float(lp.sum())
            nll_ref -= float(lp_ref.sum())
    kl_all = np.concatenate(klds)
    n = kl_all.size
    ppl, ref_ppl = math.exp(nll / n), math.exp(nll_ref / n)
    return KLResult(float(kl_all.mean()), float(np.median(kl_all)), float(np.percentile(kl_all, 99)),
                    float(kl_all.max()), agree / n, ppl, ref_ppl, ppl - ref_ppl, n, len(wins), L, protocol,
                    time.perf_counter() - t0)


def layer_errors(model: LlamaModel, ref: LlamaModel, tokens: Sequence[int]) -> list[dict[str, Any]]:
    """Which layers lose most: one row per linear layer, in execution order.

    ``local_rel_err``: ‖x·Ŵᵀ − x·Wᵀ‖/‖x·Wᵀ‖ with ``x`` the reference model's own input to that
    layer (the layer's error alone); ``block_rel_err``: relative error of the hidden state after
    the layer's block when both models run on their own (the accumulated error).
    """
    toks = np.asarray(tokens, dtype=np.int64)
    x, xr = model.embed(toks), ref.embed(toks)
    pos = np.arange(len(toks), dtype=np.int64)
    rows: list[dict[str, Any]] = []
    for i in range(ref.config.num_hidden_layers):
        seen: list[tuple[str, float]] = []

        def observe(name: str, xin: np.ndarray, y_ref: np.ndarray) -> None:
            y = model.linear(name, xin)
            den = float(np.linalg.norm(y_ref))
            seen.append((name, float(np.linalg.norm(y - y_ref)) / den if den > 0 else 0.0))

        xr = ref.block(i, xr, pos, observer=observe)
        x = model.block(i, x, pos)
        block_err = float(np.linalg.norm(x - xr) / max(float(np.linalg.norm(xr)), 1e-30))
        w = model.weights
        for name, err in seen:
            q = w[name + ".weight"]
            rows.append({"layer": name, "block": i, "local_rel_err": err, "block_rel_err": block_err,
                         "format": getattr(q, "format", str(getattr(q, "dtype", "")))})
    return rows


def speed(model: LlamaModel, *, prompt_tokens: int = 128, new_tokens: int = 32, repeats: int = 3,
          seed: int = 0) -> dict[str, Any]:
    """Prefill and decode tokens/s (medians of ``repeats`` runs) on seeded random token ids,
    with a KV cache, greedy decoding, and the process's peak memory."""
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, model.config.vocab_size, prompt_tokens)
    pre, dec = [], []
    for _ in range(repeats):
        cache = model.new_cache(prompt_tokens + new_tokens)
        t0 = time.perf_counter()
        logits = model.forward(prompt, cache, last_only=True)
        t1 = time.perf_counter()
        nxt = int(np.argmax(logits[-1]))
        for _ in range(new_tokens):
            nxt = int(np.argmax(model.forward([nxt], cache, last_only=True)[-1]))
        t2 = time.perf_counter()
        pre.append(prompt_tokens / (t1 - t0))
        dec.append(new_tokens / (t2 - t1))
    return {"prefill_tokens_per_s": float(np.median(pre)), "decode_tokens_per_s": float(np.median(dec)),
            "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "repeats": repeats,
            "threads": _core.get_num_threads(), "peak_memory_mb": peak_memory_mb()}
