"""Golden bytes from llama.cpp for lowbit's GGUF formats: the inputs and how they were made.

``adversarial_rows()`` builds rows that hit every special case of ggml's quantizers (all-zero
and constant blocks, denormals, huge values, exact rounding ties, one-signed blocks, sparse
rows); ``make()`` runs llama.cpp on them through :mod:`lowbit.peers.ggml` and writes
``tests/python/fixtures/ggml_golden.npz``. Regenerate (needs llama-cpp-python) with

    PYTHONPATH=build/python .venv/bin/python -m tests.python.reference.ggml_golden
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "ggml_golden.npz"
TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K", "iq4_nl")
N = 256  # one k-quant super-block, eight 32-blocks per row


def adversarial_rows(n: int = N) -> np.ndarray:
    """float32 [12, n]: one special case per row (fixed, no RNG state beyond seed 7)."""
    rng = np.random.default_rng(7)
    rows = [
        rng.standard_normal(n),                                    # plain
        np.zeros(n),                                               # all zero
        np.full(n, 0.7),                                           # constant positive
        np.full(n, -2.5),                                          # constant negative
        rng.standard_normal(n) * 1e-39,                            # denormals
        rng.standard_normal(n) * 1e30,                             # huge (x^2 overflows)
        np.r_[np.zeros(32), np.full(32, 1e-16), rng.standard_normal(n - 64) * 0.01],  # zero/below-eps blocks
        (np.arange(n) % 32 - 16) * 0.5,                            # exact half-way ties
        rng.standard_t(2, n) * 0.05,                               # heavy tails
        rng.uniform(0.5, 1.0, n),                                  # positive only
        -rng.uniform(0.0, 3.0, n),                                 # negative only
        np.where(rng.uniform(size=n) < 0.9, 0.0, rng.standard_normal(n)),  # sparse
    ]
    W = np.stack(rows).astype(np.float32)
    W[0, 17] = 8.0   # a single spike
    W[8, 100] = 3e38  # near FLT_MAX
    return W


def imatrix(n: int = N) -> np.ndarray:
    """A per-column importance with exact zeros (dead columns) and a wide range."""
    rng = np.random.default_rng(8)
    qw = rng.uniform(0, 2, n) ** 3
    qw[:16] = 0
    qw[40] = 1e6
    return qw.astype(np.float32)


def random_rows(rows: int = 24, n: int = 512) -> np.ndarray:
    """Realistic weights for the hashed part of the fixture (PCG64 seed 9)."""
    rng = np.random.default_rng(9)
    return (rng.standard_t(5, (rows, n)) * rng.uniform(0.005, 0.1, (rows, 1))).astype(np.float32)


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def make(path: Path = GOLDEN) -> None:
    from lowbit.peers import ggml

    W, qw, R = adversarial_rows(), imatrix(), random_rows()
    qr = imatrix(R.shape[1])
    out: dict[str, np.ndarray] = {"W": W, "imatrix": qw}
    meta = {"peer": ggml.version(), "random_rows_sha": sha(R), "hashes": {}}
    for t in TYPES:
        for tag, q, qR in (("plain", None, None), ("imatrix", qw, qr)):
            data = ggml.quantize(t, W, q)
            out[f"{t}/{tag}"] = data
            dq = ggml.dequantize(t, data, W.shape[1]) if t != "q8_1" else None
            dataR = ggml.quantize(t, R, qR)
            meta["hashes"][f"{t}/{tag}"] = {
                "dequant": None if dq is None else sha(dq),
                "random": sha(dataR),
            }
    out["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **out)
    os.replace(tmp, path)


if __name__ == "__main__":
    make()
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")
