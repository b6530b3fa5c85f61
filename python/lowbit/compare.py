"""Compare quantization configurations on one model: quality (ppl, Δppl, KL divergence, top-1
agreement against the unquantized model), size, quantization time and peak memory, and speed,
as one table.

The reference model is evaluated once; its final hidden states per window are kept from that
pass, so each configuration costs one forward pass of the quantized model plus the reference's
head (memory: windows x seq_len x hidden floats, 0.7 GB for SmolLM2 on all of WikiText-2 test).

A comparison of many configurations on a whole test set runs for hours. Every row carries the
identity of its evaluation (model, text, window length, protocol, windows) and of its
calibration tokens, so ``compare(..., previous=rows)`` (``lowbit compare --csv F --resume``)
reuses the rows an interrupted run finished and runs only the rest.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import QuantConfig
from .data import Calibration
from .evaluate import kl_divergence, perplexity, reset_peak_memory, speed
from .models.llama import LlamaModel
from .pipeline import needs_calibration, quantize_model
from .tensor import QuantizedTensor

__all__ = ["COMPARE_COLUMNS", "compare", "row_key", "to_markdown", "to_csv", "read_csv", "plot"]

COMPARE_COLUMNS = [
    ("method", "method", None), ("bits", "bits", None), ("group_size", "group", None),
    ("bits_per_weight", "bits/w", ".3f"), ("size_mb", "size MB", ".1f"), ("ppl", "ppl", ".3f"),
    ("delta_ppl", "Δppl", "+.3f"), ("kld_mean", "KLD", ".4f"), ("top1_agreement", "top-1 %", ".2f"),
    ("quantize_s", "quant s", ".1f"), ("peak_memory_mb", "quant peak MB", ".0f"),
    ("decode_tok_s", "decode tok/s", ".1f"),
]


def _label(cfg: QuantConfig) -> str:
    extra = []
    if getattr(cfg, "desc_act", False):
        extra.append("act-order")
    elif getattr(cfg, "act_group_aware", False):
        extra.append("group-aware")
    w = getattr(cfg, "sink_weight", None)
    if w is not None and w != type(cfg)().sink_weight:  # GPTQ off its default sink weighting
        extra.append("paper Hessian" if w == 1.0 else f"sink x{w:g}")
    if getattr(cfg, "sym", True) is False:
        extra.append("asym")
    return cfg.quant_method + (f" ({', '.join(extra)})" if extra else "")


def _linear_bits(model: LlamaModel) -> float:
    qs = [w for w in model.weights.values() if isinstance(w, QuantizedTensor)]
    if not qs:
        return 32.0
    return 8.0 * sum(q.nbytes for q in qs) / sum(q.shape[0] * q.shape[1] for q in qs)


def _eval_id(model: LlamaModel, text: str | Sequence[int], seq_len: int | None, protocol: str,
             max_windows: int | None) -> str:
    """Identity of an evaluation: rows with equal ids were measured on the same model, windows
    and protocol."""
    h = hashlib.sha256()
    h.update(json.dumps({"source": model.source, "config": repr(model.config), "seq_len": seq_len,
                         "protocol": protocol, "max_windows": max_windows}, sort_keys=True, default=str).encode())
    h.update(text.encode() if isinstance(text, str) else np.asarray(text, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def _calibration_id(calibration: Calibration | None) -> str | None:
    if calibration is None:
        return None
    return calibration.tokens_id()


def row_key(row: dict[str, Any]) -> str:
    """What makes two rows the same measurement: the evaluation, the config (or "reference")
    and the calibration tokens. ``compare(previous=)`` reuses rows by it."""
    what = row.get("config") if row.get("config") is not None else row.get("method")
    return json.dumps([row.get("eval_id"), what, row.get("calibration_id")], sort_keys=True, default=str)


def compare(model: LlamaModel, configs: Sequence[QuantConfig], text: str | Sequence[int], *,
            calibration: Calibration | None = None, seq_len: int | None = None, max_windows: int | None = None,
            protocol: str = "gptq", measure_speed: bool = True, progress: bool = True,
            on_row: Any = None, previous: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row for the unquantized model, then one per config (quantized with
    :func:`~lowbit.quantize_model`, evaluated on the same windows). ``on_row(row)`` is called as
    each row is ready (for live printing).

    A row's ``peak_memory_mb`` is the process's peak resident memory while that config was
    quantized: the reference model and its cached hidden states are resident for every config.
    On Linux the high-water mark is reset before each config (so this changes what
    ``getrusage`` reports afterwards); elsewhere it is the process's peak so far.

    ``previous``: rows of an earlier, interrupted run (e.g. :func:`read_csv`). A config whose
    row is there, with the same evaluation and calibration tokens, is not run again: its row is
    returned as it was, with ``"resumed": True``. The reference is evaluated again only when a
    config still has to run (its hidden states are what the new rows' KL divergence needs)."""
    eval_id = _eval_id(model, text, seq_len, protocol, max_windows)
    calib_id = _calibration_id(calibration)

    def calib_of(cfg: QuantConfig) -> Calibration | None:
        return calibration if needs_calibration(cfg) else None

    def new_row_key(cfg: QuantConfig | None) -> str:
        if cfg is None:
            return row_key({"eval_id": eval_id, "method": "reference"})
        return row_key({"eval_id": eval_id, "config": cfg.to_dict(),
                        "calibration_id": calib_id if calib_of(cfg) is not None else None})

    old = {row_key(r): r for r in previous or ()}
    old_ref = old.get(new_row_key(None))
    reused = {i: old[k] for i, c in enumerate(configs) if (k := new_row_key(c)) in old}
    todo = len(reused) < len(configs)

    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_row:
            on_row(row)

    if not todo and old_ref is not None:
        emit({**old_ref, "resumed": True})
    else:
        ref_cache: dict[Any, np.ndarray] = {}
        t0 = time.perf_counter()
        # the reference's hidden states are cached by its own perplexity pass: every config's KL
        # divergence then runs only the reference's head, and each config quantizes beside the
        # same resident cache (so their peak-memory figures compare)
        base = perplexity(model, text, seq_len=seq_len, protocol=protocol, max_windows=max_windows,
                          progress=progress, hidden_cache=ref_cache if todo else None)
        row = {"method": "reference", "bits": None, "group_size": None, "bits_per_weight": _linear_bits(model),
               "size_mb": model.nbytes / 1e6, "ppl": base.ppl, "delta_ppl": 0.0, "kld_mean": 0.0, "kld_p99": 0.0,
               "top1_agreement": 100.0, "quantize_s": 0.0, "eval_s": time.perf_counter() - t0,
               "n_scored": base.n_scored, "seq_len": base.seq_len, "eval_id": eval_id}
        if measure_speed:
            row["decode_tok_s"] = speed(model, prompt_tokens=32, new_tokens=16, repeats=1)["decode_tokens_per_s"]
        emit(row)
    for i, cfg in enumerate(configs):
        if i in reused:
            emit({**reused[i], "resumed": True})
            continue
        calib = calib_of(cfg)
        cid = calib_id if calib is not None else None
        reset_peak_memory()  # this config's peak (Linux; elsewhere the process's so far)
        t0 = time.perf_counter()
        q = quantize_model(model, cfg, calib, progress=progress)
        qs = time.perf_counter() - t0
        t0 = time.perf_counter()
        k = kl_divergence(q, model, text, seq_len=base.seq_len, protocol=protocol, max_windows=max_windows,
                          progress=progress, ref_cache=ref_cache)
        row = {"method": _label(cfg), "bits": getattr(cfg, "bits", getattr(cfg, "nbits", None)), "group_size": getattr(cfg, "group_size", None),
               "bits_per_weight": _linear_bits(q), "size_mb": q.nbytes / 1e6, "ppl": k.ppl, "delta_ppl": k.ppl - base.ppl,
               "kld_mean": k.kld_mean, "kld_p99": k.kld_p99, "top1_agreement": 100 * k.top1_agreement,
               "quantize_s": qs, "eval_s": time.perf_counter() - t0, "n_scored": k.n_scored, "seq_len": k.seq_len,
               "peak_memory_mb": q.quantization.get("peak_memory_mb"), "config": cfg.to_dict(),
               "calibration_id": cid, "eval_id": eval_id}
        if measure_speed:
            row["decode_tok_s"] = speed(q, prompt_tokens=32, new_tokens=16, repeats=1)["decode_tokens_per_s"]
        del q
        emit(row)
    return rows


def _fmt(v: Any, spec: str | None) -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str | None]] = COMPARE_COLUMNS) -> str:
    cols = [c for c in columns if any(c[0] in r for r in rows)]
    out = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(k), f) for k, _, f in cols) + " |")
    return "\n".join(out) + "\n"


_CSV_KEYS = [k for k, _, _ in COMPARE_COLUMNS if k != "peak_memory_mb"] + [
    "kld_p99", "eval_s", "n_scored", "seq_len", "peak_memory_mb", "config", "calibration_id", "eval_id"]
_CSV_INTS = {"bits", "group_size", "n_scored", "seq_len"}
_CSV_TEXT = {"method", "calibration_id", "eval_id"}


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV; ``config`` is a JSON object, so :func:`read_csv` gives the rows back."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_KEYS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "config": json.dumps(r["config"], sort_keys=True) if r.get("config") else None})
    return buf.getvalue()


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows written by :func:`to_csv` (numbers as numbers, ``config`` as a dict; empty cells
    are None), e.g. as ``compare(..., previous=)``."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if k is None:
                    raise ValueError(f"{path}: a row has more cells than the header")
                if v in (None, ""):
                    row[k] = None
                elif k == "config":
                    row[k] = json.loads(v)
                elif k in _CSV_TEXT:
                    row[k] = v
                else:
                    try:
                        row[k] = int(v) if k in _CSV_INTS else float(v)
                    except ValueError:
                        raise ValueError(f"{path}: column {k!r} holds {v!r}, not a number") from None
            rows.append(row)
    return rows


def plot(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """ppl against bits/weight per method (needs matplotlib: pip install 'lowbit[notebooks]')."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from e
    fig, ax = plt.subplots(figsize=(6, 4))
    ref = [r for r in rows if r["method"] == "reference"]
    for m in sorted({r["method"] for r in rows} - {"reference"}):
        pts = sorted((r["bits_per_weight"], r["ppl"]) for r in rows if r["method"] == m)
        ax.plot(*zip(*pts), marker="o", label=m)
    if ref:
        ax.axhline(ref[0]["ppl"], color="gray", linestyle="--", label="reference")
    ax.set_xlabel("bits per weight (incl. scales and zeros)")
    ax.set_ylabel("perplexity")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
