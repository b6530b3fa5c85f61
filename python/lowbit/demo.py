"""The README's main job (for now): quantize every linear weight of a real model with each
available method and report bits/weight, error and time.

Inputs for the output-error column are real activations: the RMS-normalised embedding of every
vocabulary token, i.e. what layer 0's q/k/v projections see for a one-token prompt.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from ._paths import shared_data_dir
from .config import QuantConfig, RTNConfig
from .models.llama2c import read_llama2c
from .quantize import quantize

__all__ = ["DEFAULT_CONFIGS", "default_model_path", "run_demo"]

DEFAULT_CONFIGS: tuple[QuantConfig, ...] = (
    RTNConfig(bits=8, group_size=0, sym=True),
    RTNConfig(bits=8, group_size=-1, sym=True),
    RTNConfig(bits=4, group_size=-1, sym=True),
    RTNConfig(bits=4, group_size=32, sym=True),
    RTNConfig(bits=4, group_size=32, sym=False),
    RTNConfig(bits=3, group_size=32, sym=False),
    RTNConfig(bits=2, group_size=32, sym=False),
)


def default_model_path() -> Path:
    base = shared_data_dir()
    if base is None:
        raise FileNotFoundError("no default model: pass --model PATH or set LOWBIT_SHARED_DATA to the shared data folder")
    return base / "models" / "stories260K" / "stories260K.bin"


def _describe(cfg: QuantConfig) -> str:
    if isinstance(cfg, RTNConfig):
        g = {0: "tensor", -1: "channel"}.get(cfg.group_size, f"g{cfg.group_size}")
        return f"int{cfg.bits} {g} {'sym' if cfg.sym else 'asym'}"
    return cfg.to_json(indent=None)


def run_demo(model_path: str | Path | None = None, configs: Sequence[QuantConfig] = DEFAULT_CONFIGS) -> list[dict[str, Any]]:
    """Quantize every linear weight of a llama2.c model with each config; one result row per config."""
    path = Path(model_path) if model_path is not None else default_model_path()
    cfg, tensors = read_llama2c(path)
    linears = {k: np.asarray(v) for k, v in tensors.items() if k.startswith("model.layers.") and k.endswith("proj.weight")}
    emb = np.asarray(tensors["model.embed_tokens.weight"], dtype=np.float64)
    g0 = np.asarray(tensors["model.layers.0.input_layernorm.weight"], dtype=np.float64)
    X = emb / np.sqrt(np.mean(emb * emb, axis=1, keepdims=True) + 1e-5) * g0
    first_block = [f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkv"]
    n_weights = sum(w.size for w in linears.values())

    rows = []
    for qc in configs:
        seconds = 0.0
        noise = signal = 0.0
        nbytes = 0
        out_err = []
        for name, W in linears.items():
            t0 = time.perf_counter()
            q = quantize(W, qc)
            seconds += time.perf_counter() - t0
            W_hat = q.dequantize().astype(np.float64)
            noise += float(np.sum((W - W_hat) ** 2))
            signal += float(np.sum(W.astype(np.float64) ** 2))
            nbytes += q.nbytes
            if name in first_block:
                out_err.append(metrics.relative_output_error(X, W, W_hat))
        rows.append({
            "method": qc.quant_method,
            "config": _describe(qc),
            "bits_per_weight": 8.0 * nbytes / n_weights,
            "sqnr_db": 10.0 * np.log10(signal / noise) if noise > 0 else float("inf"),
            "weight_rel_err": float(np.sqrt(noise / signal)),
            "output_rel_err": float(np.mean(out_err)),
            "ms": 1e3 * seconds,
        })
    return rows


DEMO_COLUMNS = [
    ("method", "method", None),
    ("config", "config", None),
    ("bits_per_weight", "bits/w", ".3f"),
    ("sqnr_db", "SQNR dB", ".2f"),
    ("weight_rel_err", "|W-Q|/|W|", ".4f"),
    ("output_rel_err", "out err (L0 qkv)", ".4f"),
    ("ms", "time ms", ".2f"),
]
