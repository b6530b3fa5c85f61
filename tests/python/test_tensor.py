"""QuantizedTensor: matmul, sizes, save/load (atomic), and load errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

import lowbit as lb
from conftest import correlated_weights


@pytest.fixture
def q(rng):
    W = correlated_weights(rng, 48, 200)
    return lb.quantize(W, lb.RTNConfig(bits=4, group_size=64, sym=False))


def test_matmul_is_x_times_dequantized_transpose(q, rng):
    x = rng.standard_normal((5, 200)).astype(np.float32)
    want = x.astype(np.float64) @ q.dequantize().T.astype(np.float64)
    got = q.matmul(x, act="float32")
    assert got.shape == (5, 48) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # default: int8 activation blocks; each x_k moves by at most max|x| / 254
    bound = np.abs(x).max(axis=1, keepdims=True) / 254 * np.abs(q.dequantize()).sum(axis=1) * 1.001 + 1e-5
    for got in (x @ q, q.matmul(x)):
        assert got.shape == (5, 48) and got.dtype == np.float32
        assert np.all(np.abs(got - want) <= bound)
    x3 = rng.standard_normal((2, 3, 200)).astype(np.float32)
    assert (x3 @ q).shape == (2, 3, 48)
    with pytest.raises(ValueError, match="in_features=200"):
        np.ones((2, 7), np.float32) @ q


def test_sizes_and_bits_per_weight(q):
    n_groups = 4  # ceil(200 / 64): the last group is partial
    assert q.shape == (48, 200) and q.n_groups == n_groups
    assert q.nbytes == 48 * 100 + 48 * n_groups * 4 + 48 * n_groups
    assert q.bits_per_weight == pytest.approx(8 * q.nbytes / (48 * 200))
    assert "int4" in repr(q) and "group_size=64" in repr(q)


def test_save_load_round_trip(q, tmp_path):
    p = tmp_path / "w.safetensors"
    q.save(p)
    r = lb.QuantizedTensor.load(p)
    assert r.shape == q.shape and r.format == q.format and r.group_size == q.group_size and r.sym == q.sym
    assert r.config == q.config
    for k in q.arrays:
        assert np.array_equal(r.arrays[k], q.arrays[k])
    assert np.array_equal(r.dequantize(), q.dequantize())
    assert [f.name for f in tmp_path.iterdir()] == ["w.safetensors"]


def test_save_is_atomic(q, tmp_path, monkeypatch):
    import safetensors.numpy

    p = tmp_path / "w.safetensors"
    q.save(p)
    before = p.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        q.save(p)
    assert p.read_bytes() == before, "a failed save must leave the old file untouched"
    assert os.listdir(tmp_path) == ["w.safetensors"], "no temporary file left behind"


def test_load_errors_name_the_file(tmp_path, q):
    with pytest.raises(FileNotFoundError):
        lb.QuantizedTensor.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ValueError, match="garbage.safetensors"):
        lb.QuantizedTensor.load(bad)
    p = tmp_path / "w.safetensors"
    q.save(p)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(ValueError, match="cut.safetensors"):
        lb.QuantizedTensor.load(truncated)
    from safetensors.numpy import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": np.zeros(3, np.float32)}, str(foreign))
    with pytest.raises(ValueError, match="without lowbit metadata"):
        lb.QuantizedTensor.load(foreign)


def test_layout_lookup():
    from lowbit.tensor import GROUPED, layout_of, register_layout
    assert layout_of("int4") is GROUPED
    with pytest.raises(ValueError, match="plain float"):
        layout_of("f16")
    with pytest.raises(ValueError, match="unknown format"):
        register_layout("no_such_format", GROUPED)


def test_unexpected_array_named():
    W = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    q = lb.quantize(W, lb.RTNConfig(bits=4, group_size=16))
    arrays = dict(q.arrays, extra=np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="unexpected arrays.*extra"):
        lb.QuantizedTensor(format=q.format, shape=q.shape, arrays=arrays, group_size=16)
