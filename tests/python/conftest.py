from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core

SHARED_DATA = Path(os.environ.get("LOWBIT_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def shared_data_module() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def stories(shared_data_module):
    """The real stories260K model (llama2.c checkpoint), loaded once per test module."""
    return lb.load_model(shared_data_module / "models" / "stories260K" / "stories260K.bin")


@pytest.fixture(scope="module")
def tinystories_text(shared_data_module) -> str:
    """TinyStories valid text (the head shipped in ../shared/data), documents run together."""
    return (shared_data_module / "tinystories" / "TinyStoriesV2-GPT4-valid.head.txt").read_text(
        encoding="utf-8").replace("<|endoftext|>\n", "")


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Every test starts and ends with the default ISA and thread count."""
    isa = _core.active_isa()
    yield
    lb.force_isa(isa)
    lb.set_num_threads(0)


ALL_ISAS = ["scalar", "avx2", "avx512", "neon"]


@pytest.fixture(params=ALL_ISAS)
def isa(request) -> str:
    """Each kernel path; skipped (not passed) where this CPU/build cannot run it."""
    if request.param not in _core.supported_isas():
        pytest.skip(f"{request.param} not supported on this CPU/build")
    lb.force_isa(request.param)
    return request.param


def correlated_weights(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Weights with realistic structure: heavy tails and a few outlier input channels."""
    W = rng.standard_t(df=5, size=(rows, cols)).astype(np.float32) * 0.02
    W[:, rng.choice(cols, size=max(1, cols // 50), replace=False)] *= 8
    return W


def matmul_acts(M: int, inp: int, seed: int = 1) -> np.ndarray:
    """Activations for the matmul tests: Gaussian rows, with an all-zero row and one with outliers."""
    x = np.random.default_rng(seed).standard_normal((M, inp)).astype(np.float32)
    if M > 2:
        x[1] = 0.0          # an all-zero row
        x[2, ::7] *= 50.0   # outliers
    return x
