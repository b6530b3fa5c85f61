"""The README's main job (for now): quantize real weights with every available method and
report bits/weight, error and time.

The weights are the three attention projections (q, k, v) of layer 0 of a real model. Their
real inputs are the RMS-normalised token embeddings: the even token ids calibrate GPTQ (its
Hessian), the odd ones measure the output error, so the GPTQ figures are out of sample.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from ._paths import shared_data_dir
from .config import GPTQConfig, QuantConfig, RTNConfig
from .models.llama2c import read_llama2c
from .quantize import quantize
from .statistics import HessianAccumulator

__all__ = ["DEFAULT_CONFIGS", "default_model_path", "run_demo"]

DEFAULT_CONFIGS: tuple[QuantConfig, ...] = (
    RTNConfig(bits=8, group_size=-1),
    RTNConfig(bits=4, group_size=-1),
    GPTQConfig(bits=4, group_size=-1),
    RTNConfig(bits=4, group_size=32, sym=False),
    GPTQConfig(bits=4, group_size=32, sym=False),
    GPTQConfig(bits=4, group_size=32, sym=False, desc_act=True),
    RTNConfig(bits=3, group_size=32, sym=False),
    GPTQConfig(bits=3, group_size=32, sym=False),
    RTNConfig(bits=2, group_size=32, sym=False),
    GPTQConfig(bits=2, group_size=32, sym=False),
)


def default_model_path() -> Path:
    base = shared_data_dir()
    if base is None:
        raise FileNotFoundError("no default model: pass --model PATH or set LOWBIT_SHARED_DATA to the shared data folder")
    return base / "models" / "stories260K" / "stories260K.bin"


def _describe(cfg: QuantConfig) -> str:
    if isinstance(cfg, (RTNConfig, GPTQConfig)):
        g = {0: "tensor", -1: "channel"}.get(cfg.group_size, f"g{cfg.group_size}")
        extra = " act-order" if getattr(cfg, "desc_act", False) else ""
        return f"int{cfg.bits} {g} {'sym' if cfg.sym else 'asym'}{extra}"
    return cfg.to_json(indent=None)


def run_demo(model_path: str | Path | None = None, configs: Sequence[QuantConfig] = DEFAULT_CONFIGS) -> list[dict[str, Any]]:
    """Quantize layer 0's q/k/v projections of a llama2.c model with each config; one row per config."""
    path = Path(model_path) if model_path is not None else default_model_path()
    _, tensors = read_llama2c(path)
    emb = np.asarray(tensors["model.embed_tokens.weight"], dtype=np.float64)
    g0 = np.asarray(tensors["model.layers.0.input_layernorm.weight"], dtype=np.float64)
    X = (emb / np.sqrt(np.mean(emb * emb, axis=1, keepdims=True) + 1e-5) * g0).astype(np.float32)
    X_calib, X_eval = X[0::2], X[1::2]
    acc = HessianAccumulator(X.shape[1])
    acc.add(X_calib)
    names = [f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkv"]
    weights = [np.asarray(tensors[n]) for n in names]

    rows = []
    for qc in configs:
        seconds = noise = signal = 0.0
        nbytes = n_weights = 0
        out_err = []
        for W in weights:
            t0 = time.perf_counter()
            q = quantize(W, qc, hessian=acc)
            seconds += time.perf_counter() - t0
            W_hat = q.dequantize().astype(np.float64)
            noise += float(np.sum((W - W_hat) ** 2))
            signal += float(np.sum(W.astype(np.float64) ** 2))
            nbytes += q.nbytes
            n_weights += W.size
            out_err.append(metrics.relative_output_error(X_eval, W, W_hat))
        rows.append({
            "method": qc.quant_method,
            "config": _describe(qc),
            "bits_per_weight": 8.0 * nbytes / n_weights,
            "sqnr_db": 10.0 * np.log10(signal / noise) if noise > 0 else float("inf"),
            "output_rel_err": float(np.mean(out_err)),
            "ms": 1e3 * seconds,
        })
    return rows


DEMO_COLUMNS = [
    ("method", "method", None),
    ("config", "config", None),
    ("bits_per_weight", "bits/w", ".3f"),
    ("sqnr_db", "weight SQNR dB", ".2f"),
    ("output_rel_err", "output err", ".4f"),
    ("ms", "time ms", ".2f"),
]
