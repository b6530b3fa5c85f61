"""The format table as Python sees it, and a table-driven round trip over every format."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core
from lowbit.formats import FORMATS, format_info

from reference.rtn_ref import grid


def test_python_mirrors_the_core_table():
    rows = _core.format_table()
    assert [r["name"] for r in rows] == list(FORMATS)
    for r in rows:
        info = FORMATS[r["name"]]
        assert info.id == r["id"] and info.type_size == r["type_size"] and info.block_size == r["block_size"]
        assert info.bits_per_weight == pytest.approx(8 * info.type_size / info.block_size)
        assert format_info(info.id) is info
        assert info.is_gguf_type == (info.id < 1000)
    assert format_info("f16").id == 1 and format_info("bf16").id == 30  # ggml ids
    assert {f"int{b}" for b in range(2, 9)} <= set(FORMATS)


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="known formats: .*int4"):
        format_info("q9_9")
    with pytest.raises(TypeError):
        format_info(4.0)
    with pytest.raises(ValueError, match="unknown format"):
        _core.row_size("nope", 32)


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("n", [1, 7, 32, 33, 100, 255, 1024])
def test_round_trip_every_format(name, n, rng):
    info = FORMATS[name]
    if not info.partial_block_ok and n % info.block_size:
        pytest.skip("row length must be a multiple of the block size")
    if info.roundtrip_rel_tol == -2.0:  # kRoundTripBoundOwnTests: side info is no grouped scale
        pytest.skip("error bound checked by the format family's own tests")
    x = rng.standard_normal(n).astype(np.float32) * 3
    assert _core.row_size(name, n) == -(-n * info.type_size // info.block_size)
    if not info.needs_group_params:
        data = _core.quantize_row_ref(name, x)
        assert data.nbytes == _core.row_size(name, n)
        y = _core.dequantize_row_ref(name, data, n)
        if info.is_quantized:  # ggml block formats: bounds in test_ggml_formats.py
            assert y.shape == x.shape and np.all(np.isfinite(y))
            return
        # below a float format's normal range the error is absolute: half its smallest subnormal
        floor_err = 0.0
        if info.block_size == 1:
            one = np.zeros(info.type_size, np.uint8)
            one[0] = 1  # little-endian bytes of the smallest positive subnormal
            floor_err = float(_core.dequantize_row_ref(name, one, 1)[0]) / 2
        assert np.all(np.abs(y - x) <= info.roundtrip_rel_tol * np.abs(x) + floor_err)
        return
    gs = 32
    groups = [x[i:i + gs] for i in range(0, n, gs)]
    scales, zeros = grid(np.array([g.min() for g in groups]), np.array([g.max() for g in groups]), info.bits, False)
    zeros = zeros.astype(np.uint8)
    data = _core.quantize_row_ref(name, x, scales, zeros, gs)
    assert data.nbytes == _core.row_size(name, n)
    y = _core.dequantize_row_ref(name, data, n, scales, zeros, gs)
    step = np.repeat(scales, gs)[:n]
    assert np.all(np.abs(y - x) <= step / 2 * (1 + 1e-6))


def test_grouped_row_needs_params():
    with pytest.raises(ValueError, match="group_size"):
        _core.quantize_row_ref("int4", np.ones(8, np.float32))
    with pytest.raises(ValueError, match="scales must have shape"):
        _core.quantize_row_ref("int4", np.ones(8, np.float32), np.ones(3, np.float32), np.zeros(1, np.uint8), 4)
