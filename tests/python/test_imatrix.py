"""Importance matrices (lowbit.imatrix): llama.cpp's definition (per weight and input column, the
mean over tokens of x²), its two file formats, and the ``lowbit imatrix`` command.

References: a float64 NumPy forward pass of stories260K written here that records each linear's
inputs; the byte layout of llama.cpp's legacy .dat file built here with ``struct``; the GGUF
layout read back with the ``gguf`` package.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

import lowbit as lb  # noqa: E402
from lowbit.imatrix import (  # noqa: E402
    ImportanceMatrix,
    compute,
    load_imatrix,
    read_imatrix_dat,
    save_imatrix,
    write_imatrix_dat,
    write_imatrix_gguf,
)


@pytest.fixture(scope="module")
def windows():
    rng = np.random.default_rng(3)
    return rng.integers(3, 512, size=(3, 40))


def _rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def reference_linear_inputs(model, tokens) -> dict[str, list[np.ndarray]]:
    """{GGUF weight name: [float64 [T, in] per call]} from a plain float64 forward pass
    (stories260K: interleaved RoPE, tied output)."""
    c = model.config
    f = {k: np.asarray(v, dtype=np.float64) for k, v in model.weights.items()}
    T, hd, nh, nkv = len(tokens), c.head_dim, c.num_attention_heads, c.num_key_value_heads
    freq = c.rope_theta ** (-np.arange(0, hd, 2) / hd)
    ang = np.arange(T)[:, None] * freq[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x):
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
        return out

    seen: dict[str, list[np.ndarray]] = {}
    x = f["model.embed_tokens.weight"][np.asarray(tokens)]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(c.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        h = _rms(x, f[p + "input_layernorm.weight"], c.rms_norm_eps)
        for n in ("attn_q", "attn_k", "attn_v"):
            seen.setdefault(b + n + ".weight", []).append(h)
        q = rope((h @ f[p + "self_attn.q_proj.weight"].T).reshape(T, nh, hd))
        k = rope((h @ f[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, hd))
        v = (h @ f[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, hd)
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)
        s = np.einsum("thd,uhd->htu", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        o = np.einsum("htu,uhd->thd", s, v).reshape(T, nh * hd)
        seen.setdefault(b + "attn_output.weight", []).append(o)
        x = x + o @ f[p + "self_attn.o_proj.weight"].T
        h = _rms(x, f[p + "post_attention_layernorm.weight"], c.rms_norm_eps)
        for n in ("ffn_gate", "ffn_up"):
            seen.setdefault(b + n + ".weight", []).append(h)
        g, u = h @ f[p + "mlp.gate_proj.weight"].T, h @ f[p + "mlp.up_proj.weight"].T
        a = g / (1 + np.exp(-g)) * u
        seen.setdefault(b + "ffn_down.weight", []).append(a)
        x = x + a @ f[p + "mlp.down_proj.weight"].T
    seen["output.weight"] = [_rms(x, f["model.norm.weight"], c.rms_norm_eps)]
    return seen


def test_compute_equals_numpy_definition(stories, windows):
    im = compute(stories, windows)
    ref: dict[str, list[np.ndarray]] = {}
    for row in windows:
        for k, xs in reference_linear_inputs(stories, row).items():
            ref.setdefault(k, []).extend(xs)
    assert "output.weight" not in im.sums  # llama-imatrix skips it unless --process-output
    assert set(im.sums) == set(ref) - {"output.weight"}
    for name, xs in ref.items():
        if name == "output.weight":
            continue
        X = np.concatenate(xs)
        assert im.counts[name] == X.shape[0] == 3 * 40
        np.testing.assert_allclose(im.values[name], np.mean(X * X, axis=0), rtol=2e-4, atol=1e-7, err_msg=name)
    # stories260K ties its output to token_embd, which llama-imatrix never records
    assert set(compute(stories, windows, process_output=True).sums) == set(im.sums)
    assert im.chunk_size == 40 and im.chunk_count == 3


def test_compute_process_output_untied(stories, windows):
    from test_gguf_writer import synthetic_model

    model = synthetic_model(stories, layers=1)
    im = compute(model, windows[:1], process_output=True)
    h = []

    def obs(name, x, y):
        if name == "lm_head":
            h.append(x.astype(np.float64))
    model.forward(windows[0], observer=obs)
    np.testing.assert_allclose(im.values["output.weight"], np.mean(h[0] ** 2, axis=0), rtol=1e-6)
    assert "output.weight" not in compute(model, windows[:1]).sums


def test_compute_equals_pipeline_statistic(stories, windows):
    """The same numbers as the quantization pipeline's act_mean_sq (HessianAccumulator)."""
    im = compute(stories, windows)
    acc = lb.HessianAccumulator(stories.config.hidden_size)
    for row in windows:
        def obs(name, x, y):
            if name == "model.layers.2.mlp.gate_proj":
                acc.add(x)
        stories.forward(row, observer=obs)
    np.testing.assert_allclose(im.values["blk.2.ffn_up.weight"], acc.act_mean_sq(), rtol=1e-5)


def _sample_imatrix() -> ImportanceMatrix:
    rng = np.random.default_rng(0)
    sums = {"blk.0.attn_q.weight": rng.uniform(0, 50, 64), "blk.1.ffn_down.weight": rng.uniform(0, 5, 172)}
    return ImportanceMatrix({k: v.astype(np.float32).astype(np.float64) for k, v in sums.items()},
                            {"blk.0.attn_q.weight": 1536, "blk.1.ffn_down.weight": 1536}, ["wiki.valid.raw"], 512, 3)


def test_gguf_file_round_trip_and_layout(tmp_path):
    im = _sample_imatrix()
    im.activation_sums = {"blk.0.attn_q.weight": np.linspace(-1, 1, 64)}
    path = write_imatrix_gguf(im, tmp_path / "imatrix.gguf")
    r = gguf.GGUFReader(path)
    fields = {k: f.contents() for k, f in r.fields.items()}
    assert fields["general.type"] == "imatrix" and fields["imatrix.datasets"] == ["wiki.valid.raw"]
    assert fields["imatrix.chunk_count"] == 3 and fields["imatrix.chunk_size"] == 512
    tensors = {t.name: t for t in r.tensors}
    assert sorted(tensors) == ["blk.0.attn_q.weight.counts", "blk.0.attn_q.weight.in_sum",
                               "blk.0.attn_q.weight.in_sum2", "blk.1.ffn_down.weight.counts",
                               "blk.1.ffn_down.weight.in_sum2"]
    assert tensors["blk.1.ffn_down.weight.in_sum2"].shape.tolist() == [172, 1]  # ggml ne = [n, nmat]
    assert tensors["blk.1.ffn_down.weight.counts"].shape.tolist() == [1, 1]
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in r.tensors)
    back = load_imatrix(path)
    assert back.counts == im.counts and back.datasets == im.datasets
    assert (back.chunk_size, back.chunk_count) == (512, 3)
    for k in im.sums:
        np.testing.assert_array_equal(back.sums[k], im.sums[k])
        # llama.cpp's quantize: float(in_sum2) / float(count)
        np.testing.assert_array_equal(back.values[k], im.sums[k].astype(np.float32) / np.float32(1536))
    np.testing.assert_allclose(back.activation_sums["blk.0.attn_q.weight"], np.linspace(-1, 1, 64), rtol=1e-7)


def test_dat_file_layout_and_round_trip(tmp_path):
    im = _sample_imatrix()
    path = write_imatrix_dat(im, tmp_path / "imatrix.dat")
    # llama.cpp's save_imatrix_legacy, built by hand: ncall = ceil(count / chunk_size) = 3
    expect = struct.pack("<i", 2)
    for name in sorted(im.sums):
        vals = (im.sums[name].astype(np.float32) / np.float32(1536)) * np.float32(3)
        expect += struct.pack("<i", len(name)) + name.encode() + struct.pack("<ii", 3, vals.size)
        expect += vals.astype("<f4").tobytes()
    expect += struct.pack("<ii", 3, len("wiki.valid.raw")) + b"wiki.valid.raw"
    assert path.read_bytes() == expect
    back = load_imatrix(path)
    assert back.datasets == ["wiki.valid.raw"] and back.chunk_count == 3
    for k in im.sums:
        stored = (im.sums[k].astype(np.float32) / np.float32(1536)) * np.float32(3)
        np.testing.assert_array_equal(back.values[k], stored / np.float32(3))  # quantize: values / ncall
        np.testing.assert_allclose(back.values[k], im.values[k], rtol=1e-6)
        assert back.counts[k] == 3 * 512


def test_bad_files(tmp_path):
    (tmp_path / "short.dat").write_bytes(struct.pack("<i", 2) + struct.pack("<i", 5) + b"ab")
    with pytest.raises(ValueError, match="bad name length|truncated"):
        read_imatrix_dat(tmp_path / "short.dat")
    (tmp_path / "empty.dat").write_bytes(struct.pack("<i", 0))
    with pytest.raises(ValueError, match="no data"):
        load_imatrix(tmp_path / "empty.dat")
    nan = struct.pack("<i", 1) + struct.pack("<i", 1) + b"w" + struct.pack("<ii", 1, 2) + struct.pack("<ff", 1, np.nan)
    (tmp_path / "nan.dat").write_bytes(nan)
    with pytest.raises(ValueError, match="non-finite"):
        load_imatrix(tmp_path / "nan.dat")
    with pytest.raises(FileNotFoundError):
        load_imatrix(tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="format"):
        save_imatrix(_sample_imatrix(), tmp_path / "x", format="txt")


def test_cli_imatrix(tmp_path, shared_data, capsys):
    from lowbit.cli import main

    model = shared_data / "models" / "stories260K" / "stories260K.bin"
    text = shared_data / "tinystories" / "TinyStoriesV2-GPT4-valid.head.txt"
    out = tmp_path / "im.gguf"
    assert main(["imatrix", str(model), "--calib", str(text), "--n-samples", "2", "--seq-len", "32", "-o", str(out),
                 "--json"]) == 0
    im = load_imatrix(out)
    assert len(im) == 5 * 7 and im.chunk_count == 2 and im.chunk_size == 32
    assert im.datasets == [str(text)]
    assert all(c == 64 for c in im.counts.values())
    dat = tmp_path / "im.dat"
    assert main(["imatrix", str(model), "--calib", str(text), "--n-samples", "2", "--seq-len", "32", "-o", str(dat),
                 "--json"]) == 0
    d = load_imatrix(dat)
    for k in im.sums:
        np.testing.assert_allclose(d.values[k], im.values[k], rtol=1e-6)


def test_pipeline_passes_the_imatrix_file_to_gguf_layers(stories, windows, tmp_path, monkeypatch):
    """quantize_model(model, GGUFConfig(type=..., imatrix=FILE)) hands each layer its entry of
    the file as act_mean_sq (what llama-quantize --imatrix does)."""
    import importlib

    from lowbit.imatrix import layer_statistics

    qmod = importlib.import_module("lowbit.quantize")
    path = save_imatrix(compute(stories, windows), tmp_path / "im.gguf")
    want = load_imatrix(path).values
    seen = {}

    def recorder(W, cfg, **stats):
        seen[len(seen)] = (W.shape, cfg.type, stats.get("act_mean_sq"))
        return lb.quantize(W, lb.RTNConfig(bits=8, group_size=-1))

    monkeypatch.setitem(qmod._METHODS, lb.GGUFConfig, recorder)
    monkeypatch.setitem(qmod._NEEDS, lb.GGUFConfig, ())
    cfg = lb.GGUFConfig(type="Q8_0", imatrix=str(path))
    q = lb.quantize_model(stories, cfg, None, progress=False, per_layer={r"mlp\.down_proj": None})
    assert len(seen) == 5 * 6
    order = [n for n in q.linear_names()[:-1] if "down_proj" not in n]
    for i, name in enumerate(order):
        shape, t, v = seen[i]
        assert t == "Q8_0"
        from lowbit.gguf_mixtures import gguf_tensor_name
        np.testing.assert_array_equal(v, want[gguf_tensor_name(name)].astype(np.float64))
    assert layer_statistics(lb.RTNConfig(bits=4), "model.layers.0.mlp.up_proj") == {}
    assert layer_statistics(lb.GGUFConfig(type="Q8_0"), "model.layers.0.mlp.up_proj") == {}
