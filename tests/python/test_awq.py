"""AWQ: the C++ inner loops against the NumPy reference written from the algorithm's description
(tests/python/reference/awq_ref.py), the block transform (folding keeps the float block's
function, the o/v group only without GQA, biases), quantize_model end to end (AWQ beats RTN,
AWQ+GPTQ, resume with folded norms), and the config."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit as lb
from lowbit import _core
from lowbit.methods import awq as A
from lowbit.models import LlamaModel, load_model
from lowbit.models.llama_config import LlamaConfig
from lowbit.pipeline import BlockContext

from reference import awq_ref as R


def heavy_tailed(rng, rows, cols, outliers=0.05):
    W = (rng.standard_t(5, size=(rows, cols)) * 0.02).astype(np.float32)
    X = rng.standard_normal((3 * cols // 2, cols)).astype(np.float32)
    X[:, rng.random(cols) < outliers] *= 8  # salient input channels
    return W, X


def synthetic_model(rng, *, kv_heads=4, attention_bias=False, layers=2, D=64, F=96, heads=4) -> LlamaModel:
    cfg = LlamaConfig(hidden_size=D, intermediate_size=F, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv_heads, vocab_size=64, head_dim=D // heads, attention_bias=attention_bias,
                      max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    w = {"model.embed_tokens.weight": rng.standard_normal((64, D)).astype(np.float32),
         "model.norm.weight": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32),
         "lm_head.weight": (0.1 * rng.standard_normal((64, D))).astype(np.float32)}
    for i in range(layers):
        p = f"model.layers.{i}."
        kv = cfg.kv_dim
        shapes = {"self_attn.q_proj": (D, D), "self_attn.k_proj": (kv, D), "self_attn.v_proj": (kv, D),
                  "self_attn.o_proj": (D, D), "mlp.gate_proj": (F, D), "mlp.up_proj": (F, D), "mlp.down_proj": (D, F)}
        for n, s in shapes.items():
            w[p + n + ".weight"] = (rng.standard_t(5, size=s) / np.sqrt(s[1])).astype(np.float32)
        w[p + "input_layernorm.weight"] = np.abs(1 + 0.3 * rng.standard_normal(D)).astype(np.float32)
        w[p + "post_attention_layernorm.weight"] = np.abs(1 + 0.3 * rng.standard_normal(D)).astype(np.float32)
        if attention_bias:
            for n, s in (("q_proj", D), ("k_proj", kv), ("v_proj", kv)):
                w[p + f"self_attn.{n}.bias"] = (0.1 * rng.standard_normal(s)).astype(np.float32)
    return LlamaModel(cfg, w)


@pytest.fixture(scope="module")
def text(tinystories_text):
    return tinystories_text


@pytest.fixture(scope="module")
def calib(stories, text):
    return lb.data.calibration(stories, strings=[text[:2500]], n_samples=8, seq_len=64, seed=1)


# ----------------------------------------------------------------------------- inner loops

@pytest.mark.parametrize("zero_point", [True, False])
@pytest.mark.parametrize("bits,group_size", [(4, 64), (3, 32), (4, -1), (2, 48), (8, 64)])
def test_pseudo_quantize_is_the_reference_grid(rng, zero_point, bits, group_size):
    W, X = heavy_tailed(rng, 24, 200)  # 200 columns: the last group is partial
    W[3, :64] = 0.0                    # an all-zero group (scale clamp 1e-5)
    W[5, 64:128] = 0.37                # a constant group
    got = _core.awq_pseudo_quantize(W, None, bits, group_size, zero_point)
    assert np.array_equal(got, R.pseudo_quantize(W, bits, group_size, zero_point))
    s = R.scales_for(np.abs(X).mean(0), R.weight_mean([W], group_size), 0.4)
    got = _core.awq_pseudo_quantize(W, s, bits, group_size, zero_point)
    assert np.array_equal(got, R.pseudo_quantize(W * s, bits, group_size, zero_point) / s)
    # the real quantizer stores exactly what the pseudo-quantizer computes
    q = lb.quantize(W, lb.AWQConfig(bits=bits, group_size=group_size, zero_point=zero_point))
    assert q.format == f"int{bits}" and q.sym == (not zero_point)
    assert np.array_equal(q.dequantize(), R.pseudo_quantize(W, bits, group_size, zero_point))


def test_statistics_and_scales_match_reference(rng):
    W, X = heavy_tailed(rng, 40, 160)
    W2 = W[:7] * 3
    assert np.array_equal(_core.awq_weight_mean([W, W2], 64), R.weight_mean([W, W2], 64))
    x_mean = np.abs(X.astype(np.float64)).mean(0)
    assert np.allclose(_core.awq_act_mean_abs(X), x_mean, rtol=1e-12)
    xm = x_mean.astype(np.float32)
    xm[7] = 0.0  # a dead channel: clamped to 1e-4 before normalization
    wm = R.weight_mean([W], 64)
    for alpha in (0.0, 0.05, 0.5, 0.95):
        for duo in (True, False):
            s = _core.awq_scales(xm, wm, alpha, duo)
            assert np.array_equal(s, R.scales_for(xm, wm, alpha, duo))
            assert np.isclose(np.sqrt(s.max() * s.min()), 1.0, rtol=1e-6)  # normalized


@pytest.mark.parametrize("seed", range(4))
def test_linear_search_picks_the_argmin(seed):
    """The Gram-matrix losses equal the reference's direct output MSE, so the C++ search picks
    the reference's argmin (up to float ties)."""
    rng = np.random.default_rng(seed)
    W, X = heavy_tailed(rng, 48, 128 + 64 * (seed % 2))
    cfg = lb.AWQConfig(bits=3 + seed % 2, group_size=64, duo_scaling=seed != 3)
    best, s, losses = A.search_scales_linear(X, W, cfg)
    rb, rs, rl = R.search_scales(X, [W], lambda ws: X @ ws[0].T, bits=cfg.bits, group_size=64,
                                 duo=cfg.duo_scaling)
    assert np.allclose(losses, rl, rtol=2e-5)
    assert rl[best] <= rl.min() * (1 + 1e-5)
    assert np.allclose(s, R.scales_for(np.abs(X.astype(np.float64)).mean(0).astype(np.float32),
                                       R.weight_mean([W], 64), best / 20, cfg.duo_scaling), rtol=1e-6)
    # samples given as pieces: the same search
    b2, s2, l2 = A.search_scales_linear([X[:50], X[50:]], W, cfg)
    assert b2 == best and np.allclose(l2, losses, rtol=1e-5)


def test_module_search_matches_reference(stories, calib):
    """The search of a group scored through a nonlinear sub-module (the MLP of a real block)."""
    feats, outs = A._capture_block(stories, 1, [stories.embed(t) for t in calib.tokens[:4]], np.arange(64))
    p = "model.layers.1.mlp."
    Wg, Wu, Wd = (np.asarray(stories.weights[p + n + ".weight"], np.float32) for n in ("gate_proj", "up_proj",
                                                                                     "down_proj"))
    H = np.concatenate(feats["mlp_in"])

    def mlp(ws):
        g, u = H @ ws[0].T, H @ ws[1].T
        return (g / (1 + np.exp(-g)) * u) @ Wd.T

    cfg = lb.AWQConfig(bits=3, group_size=32)
    fwd = A._forward_fn(stories, 1, "mlp", [p + "gate_proj", p + "up_proj"], feats["mlp_in"], np.arange(64))
    best, s, losses = A.search_scales(feats["mlp_in"], [Wg, Wu], fwd, outs["mlp"], cfg)
    rb, rs, rl = R.search_scales(H, [Wg, Wu], mlp, bits=3, group_size=32)
    assert np.allclose(losses, rl, rtol=1e-4)
    assert rl[best] <= rl.min() * (1 + 1e-4)


@pytest.mark.parametrize("zero_point,bits,group_size", [(True, 4, 64), (True, 3, 32), (False, 4, -1)])
def test_clip_search_matches_reference(rng, zero_point, bits, group_size):
    W, X = heavy_tailed(rng, 40, 160)
    cfg = lb.AWQConfig(bits=bits, group_size=group_size, zero_point=zero_point)
    max_val, err = A.clip_search(W, X, cfg)
    rmv, rerr = R.clip_search(W, X, bits=bits, group_size=group_size, zero_point=zero_point)
    assert np.allclose(err, rerr, rtol=1e-4, atol=1e-12)
    same = max_val == rmv
    assert same.mean() > 0.97  # the rest are float ties between shrink factors
    # where they differ, ours is optimal under the reference's own objective
    gs = 160 if group_size < 0 else group_size
    for r, g in zip(*np.nonzero(~same)):
        w, x = W[r:r + 1, g * gs:(g + 1) * gs], X[:, g * gs:(g + 1) * gs].astype(np.float64)
        m = max_val[r, g]
        q = R.pseudo_quantize(np.clip(w, -m, m), bits, gs, zero_point)
        mine = np.mean((x @ (q - w).astype(np.float64).T) ** 2)
        assert mine <= rerr[r, g] * (1 + 1e-4)
    assert np.all(max_val <= np.maximum.reduceat(np.abs(W), np.arange(0, 160, gs), axis=1))
    assert np.array_equal(A.apply_clip(W, max_val, group_size), R.apply_clip(W, max_val, group_size))


def test_results_do_not_depend_on_thread_count(rng):
    W, X = heavy_tailed(rng, 96, 256)
    cfg = lb.AWQConfig(group_size=64)
    runs = []
    for t in (1, 2, 3):
        lb.set_num_threads(t)
        runs.append((A.search_scales_linear(X, W, cfg), A.clip_search(W, X, cfg), _core.awq_gram(X),
                     _core.awq_weight_mean([W], 64)))
    for other in runs[1:]:
        assert other[0][0] == runs[0][0][0] and np.array_equal(other[0][2], runs[0][0][2])
        assert all(np.array_equal(a, b) for a, b in zip(other[1], runs[0][1]))
        assert np.array_equal(other[2], runs[0][2]) and np.array_equal(other[3], runs[0][3])


def test_bad_input_names_the_argument(rng):
    W, X = heavy_tailed(rng, 8, 64)
    with pytest.raises(ValueError, match=r"W\[2, 5\]"):
        bad = W.copy()
        bad[2, 5] = np.nan
        _core.awq_pseudo_quantize(bad, None, 4, 32, True)
    with pytest.raises(ValueError, match="scales must be finite and > 0"):
        _core.awq_pseudo_quantize(W, np.zeros(64, np.float32), 4, 32, True)
    with pytest.raises(ValueError, match=r"scales must have shape \(64,\)"):
        _core.awq_pseudo_quantize(W, np.ones(63, np.float32), 4, 32, True)
    with pytest.raises(ValueError, match="bits must be in 2..8"):
        _core.awq_pseudo_quantize(W, None, 9, 32, True)
    with pytest.raises(ValueError, match="X.shape"):
        _core.awq_clip_search(W, X[:, :32])
    with pytest.raises(ValueError, match="G must have shape"):
        _core.awq_search_linear(W, np.eye(63, dtype=np.float32), 10, np.ones(64, np.float32), np.ones(64, np.float32))
    with pytest.raises(TypeError, match="W must be a floating-point array"):
        _core.awq_quantize(W.astype(np.int32))
    with pytest.raises(ValueError, match=r"X \[tokens, in\]"):
        A.awq_linear(W, X[:, :10])


# ------------------------------------------------------------------------ block transform

def block_outputs(model, i, xs, pos):
    return [model.block(i, x, pos) for x in xs]


@pytest.mark.parametrize("kv_heads,bias", [(4, False), (2, True)])
def test_folding_keeps_the_float_block_function(kv_heads, bias):
    """With every scale folded and no clipping, the block still computes the same function in
    float (scale then unscale: equal up to float rounding)."""
    rng = np.random.default_rng(7)
    m = synthetic_model(rng, kv_heads=kv_heads, attention_bias=bias)
    xs = [m.embed(rng.integers(0, 64, 32)) * 3 for _ in range(3)]
    pos = np.arange(32)
    ref = block_outputs(m, 0, xs, pos)
    work = LlamaModel(m.config, dict(m.weights))
    cfg = lb.AWQConfig(bits=3, group_size=32, apply_clip=False)
    cfgs = {f"model.layers.0.{s}": cfg for s in lb.models.BLOCK_LINEARS}
    res = A.awq_block_transform(BlockContext(work, 0, xs, pos, cfgs))
    p = "model.layers.0."
    changed = {k for k in m.weights if work.weights[k] is not m.weights[k]}
    expect = {p + "input_layernorm.weight", p + "post_attention_layernorm.weight"} | \
        {p + n + ".weight" for n in lb.models.BLOCK_LINEARS}
    if bias:
        assert "awq_alpha" not in res.stats[p + "self_attn.o_proj"]  # GQA: v rows != o columns
        expect.discard(p + "self_attn.o_proj.weight")
    else:
        assert "awq_alpha" in res.stats[p + "self_attn.o_proj"]
    assert changed == expect
    assert any(not np.allclose(work.weights[k], m.weights[k]) for k in changed)
    for a, b in zip(block_outputs(work, 0, xs, pos), ref):
        assert np.allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())
    assert all(c == cfg for c in res.configs.values())


def test_transform_leaves_non_awq_groups_alone(rng):
    m = synthetic_model(rng)
    xs = [m.embed(rng.integers(0, 64, 16))]
    cfg = lb.AWQConfig(group_size=32)
    p = "model.layers.0."
    cfgs = {p + s: cfg for s in lb.models.BLOCK_LINEARS}
    cfgs[p + "mlp.up_proj"] = lb.RTNConfig(group_size=32)  # breaks the gate/up group only
    work = LlamaModel(m.config, dict(m.weights))
    res = A.awq_block_transform(BlockContext(work, 0, xs, np.arange(16), cfgs))
    assert work.weights[p + "post_attention_layernorm.weight"] is m.weights[p + "post_attention_layernorm.weight"]
    assert p + "mlp.up_proj" not in res.configs and "awq_alpha" not in res.stats.get(p + "mlp.gate_proj", {})
    assert work.weights[p + "input_layernorm.weight"] is not m.weights[p + "input_layernorm.weight"]


# ----------------------------------------------------------------------------- end to end

def test_awq_beats_rtn_on_a_real_layer(stories, calib):
    """awq_linear on a real layer and its real inputs: smaller output error than AWQ's grid
    without the search (RTN), at 3 bits."""
    feats, _ = A._capture_block(stories, 2, [stories.embed(t) for t in calib.tokens], np.arange(64))
    X = np.concatenate(feats["down_in"])
    W = np.asarray(stories.weights["model.layers.2.mlp.down_proj.weight"], np.float32)
    cfg = lb.AWQConfig(bits=3, group_size=32)
    q, s = A.awq_linear(W, X, cfg)
    ref = X @ W.T
    err_awq = np.linalg.norm((X / s) @ q.dequantize().T - ref)
    err_rtn = np.linalg.norm(X @ lb.quantize(W, cfg).dequantize().T - ref)
    assert err_awq < 0.97 * err_rtn
    assert q.stats["awq_alpha"] >= 0 and q.stats["awq_objective"] > 0


def test_quantize_model_awq_beats_rtn(stories, calib, text):
    from lowbit.evaluate import kl_divergence

    held_out = text[2500:]
    out = {}
    for name, cfg in {"rtn": lb.RTNConfig(bits=3, group_size=32, sym=False),
                      "awq": lb.AWQConfig(bits=3, group_size=32),
                      "awq+gptq": lb.AWQConfig(bits=3, group_size=32, quantizer="gptq")}.items():
        q = lb.quantize_model(stories, cfg, calib, progress=False)
        out[name] = (q, kl_divergence(q, stories, held_out, seq_len=256).kld_mean)
    assert out["awq"][1] < 0.85 * out["rtn"][1]
    assert out["awq+gptq"][1] < out["rtn"][1]
    awq = out["awq"][0]
    rows = {r["layer"]: r for r in awq.quantization["layers"]}
    assert len(rows) == 5 * 7 and all(r["method"] == "awq" for r in rows.values())
    assert "awq_alpha" in rows["model.layers.0.mlp.down_proj"]
    assert "awq_alpha" not in rows["model.layers.0.self_attn.o_proj"]  # stories260K has GQA
    assert rows["model.layers.0.mlp.gate_proj"]["awq_objective"] <= \
        rows["model.layers.0.mlp.gate_proj"]["awq_objective_rtn"] * (1 + 1e-6)
    # the norms carry the folded scales; the input model is untouched
    n = "model.layers.0.input_layernorm.weight"
    assert not np.array_equal(awq.weights[n], stories.weights[n])
    assert isinstance(stories.weights["model.layers.0.mlp.up_proj.weight"], np.ndarray)
    gq = out["awq+gptq"][0].weights["model.layers.0.mlp.up_proj.weight"]
    assert gq.config == lb.GPTQConfig(bits=3, group_size=32, sym=False, true_sequential=False)
    assert "awq_alpha" in gq.stats and gq.stats.get("objective") is not None  # GPTQ's own figures kept


def test_awq_resume_restores_folded_norms(stories, calib, tmp_path, monkeypatch):
    cfg = lb.AWQConfig(bits=4, group_size=32, n_search_samples=3)
    full = lb.quantize_model(stories, cfg, calib, progress=False, out=tmp_path / "q")
    toks = calib.tokens[0][:20]
    assert np.array_equal(load_model(tmp_path / "q").forward(toks), full.forward(toks))

    import lowbit.pipeline as pl
    real = pl.quantize
    calls = {"n": 0}

    def flaky(W, config, **stats):
        calls["n"] += 1
        if calls["n"] == 17:  # inside block 2 (7 layers per block)
            raise KeyboardInterrupt
        return real(W, config, **stats)

    monkeypatch.setattr(pl, "quantize", flaky)
    with pytest.raises(KeyboardInterrupt):
        lb.quantize_model(stories, cfg, calib, progress=False, out=tmp_path / "r")
    assert (tmp_path / "r.partial" / "block-0001" / "float-weights.safetensors").is_file()
    monkeypatch.setattr(pl, "quantize", real)
    resumed = lb.quantize_model(stories, cfg, calib, progress=False, out=tmp_path / "r", resume=True)
    for k, v in full.weights.items():
        w = resumed.weights[k]
        if isinstance(v, lb.QuantizedTensor):
            assert all(np.array_equal(v.arrays[a], w.arrays[a]) for a in v.arrays), k
        else:
            assert np.array_equal(np.asarray(v), np.asarray(w)), k
    assert np.array_equal(resumed.forward(toks), full.forward(toks))


def test_search_subset():
    assert A._search_subset(8, 0) == list(range(8))
    assert A._search_subset(8, 3) == [0, 4, 7]
    assert A._search_subset(8, 1) == [0]
    assert A._search_subset(2, 5) == [0, 1]


# --------------------------------------------------------------------------------- config

def test_config_round_trip_and_validation():
    cfg = lb.AWQConfig(bits=3, group_size=64, max_shrink=0.3, n_clip_grid=10, n_samples=16, seq_len=256,
                       quantizer="gptq", damp_percent=0.05, n_search_samples=4)
    assert lb.load_config(cfg.to_json()) == cfg and lb.AWQConfig.from_dict(cfg.to_dict()) == cfg
    d = lb.AWQConfig().to_dict()
    assert d["quant_method"] == "awq" and d["zero_point"] is True and d["version"] == "gemm"
    assert d["n_grid"] == 20 and d["duo_scaling"] is True and d["apply_clip"] is True and d["max_shrink"] == 0.5
    for bad, exc in [({"quantizer": "hqq"}, ValueError), ({"bits": 5, "quantizer": "gptq"}, ValueError),
                     ({"max_shrink": 1.0}, ValueError), ({"n_clip_grid": 0}, ValueError),
                     ({"n_search_samples": -1}, ValueError), ({"seq_len": 1}, ValueError),
                     ({"damp_percent": 0}, ValueError), ({"apply_clip": 1}, TypeError)]:
        with pytest.raises(exc, match=next(iter(bad))):
            lb.AWQConfig(**bad)


def test_cli_quantize_awq(shared_data_module, tmp_path, capsys):
    import json

    from lowbit.cli import main

    model = str(shared_data_module / "models" / "stories260K" / "stories260K.bin")
    story = str(shared_data_module / "tinystories" / "TinyStoriesV2-GPT4-valid.head.txt")
    assert main(["quantize", model, "--method", "awq", "--bits", "4", "--group-size", "32", "--calib", story,
                 "--n-samples", "4", "--seq-len", "64", "--out", str(tmp_path / "q"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["layers"]) == 35 and info["config"]["quant_method"] == "awq"
    assert info["calibration"]["n_samples"] == 4 and info["calibration"]["seq_len"] == 64
    q = load_model(tmp_path / "q").weights["model.layers.3.mlp.gate_proj.weight"]
    assert q.config == lb.AWQConfig(bits=4, group_size=32) and "awq_alpha" in q.stats
