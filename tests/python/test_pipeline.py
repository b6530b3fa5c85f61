"""quantize_model on the real stories260K model: equal to quantizing each layer by hand with the
statistics it should have seen, GPTQ better than RTN, shared solves, overrides, save, resume."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit as lb
from lowbit.evaluate import perplexity
from lowbit.models import load_model
from lowbit.tensor import QuantizedTensor


@pytest.fixture(scope="module")
def text(tinystories_text):
    return tinystories_text


@pytest.fixture(scope="module")
def calib(stories, text):
    return lb.data.calibration(stories, strings=[text[:2500]], n_samples=8, seq_len=64, seed=1)


def same(a: QuantizedTensor, b: QuantizedTensor) -> bool:
    return a.arrays.keys() == b.arrays.keys() and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)


def test_calibration_windows_are_seeded_slices(stories, text):
    c = lb.data.calibration(stories, strings=[text], n_samples=5, seq_len=32, seed=3)
    ids = stories.tokenizer.encode(text)
    starts = np.random.default_rng(3).integers(0, len(ids) - 32 + 1, size=5)
    assert np.array_equal(c.tokens, np.stack([ids[s:s + 32] for s in starts]))
    assert c.provenance["seed"] == 3 and c.provenance["text_tokens"] == len(ids)
    assert lb.data.calibration(stories, strings=[text], n_samples=5, seq_len=32, seed=3).provenance == c.provenance
    with pytest.raises(ValueError, match="fewer than seq_len"):
        lb.data.calibration(stories, strings=["tiny"], n_samples=1, seq_len=64)
    with pytest.raises(FileNotFoundError, match="nope"):
        lb.data.calibration(stories, "nope.txt")
    by_tok = lb.data.calibration(stories.tokenizer, strings=[text], n_samples=5, seq_len=32, seed=3)
    assert np.array_equal(by_tok.tokens, c.tokens)  # the design's spelling: a tokenizer is enough
    with pytest.raises(ValueError, match="data-free"):
        lb.data.calibration(stories.tokenizer, n_samples=1, seq_len=16)
    free = lb.data.calibration(stories, n_samples=2, seq_len=16, seed=0)
    assert free.tokens.shape == (2, 16) and free.provenance["source"] == "model-samples"
    assert np.array_equal(free.tokens, lb.data.calibration(stories, n_samples=2, seq_len=16, seed=0).tokens)


def test_rtn_model_equals_layer_by_layer_rtn(stories):
    cfg = lb.RTNConfig(bits=4, group_size=32)
    q = lb.quantize_model(stories, cfg, progress=False)
    names = stories.linear_names()[:-1]
    assert all(same(q.weights[n + ".weight"], lb.quantize(np.asarray(stories.weights[n + ".weight"]), cfg))
               for n in names)
    assert not any(isinstance(w, QuantizedTensor) for w in stories.weights.values())  # input untouched
    assert isinstance(q.weights["model.embed_tokens.weight"], np.ndarray)  # tied head: embedding left alone
    assert q.quantization["config"] == cfg.to_dict() and len(q.quantization["layers"]) == len(names)


def test_gptq_first_block_sees_the_normed_embeddings(stories, calib):
    """Block 0's q/k/v (solved together, stacked rows) equal a hand-made GPTQ of each with the
    Hessian of rms_norm(embedding) over the calibration windows (the paper's Hessian:
    sink_weight=1; the weighted one is test_sink_weighting_and_hessian_dtype_reach_the_hessian)."""
    cfg = lb.GPTQConfig(bits=4, group_size=32, sink_weight=1.0)
    q = lb.quantize_model(stories, cfg, calib, progress=False)
    acc = lb.HessianAccumulator(stories.config.hidden_size)
    w = stories.weights["model.layers.0.input_layernorm.weight"]
    for t in calib.tokens:
        acc.add(lb._core.rms_norm(stories.embed(t), np.asarray(w), stories.config.rms_norm_eps))
    for n in ("q_proj", "k_proj", "v_proj"):
        name = f"model.layers.0.self_attn.{n}"
        want = lb.quantize(np.asarray(stories.weights[name + ".weight"]), cfg, hessian=acc)
        got = q.weights[name + ".weight"]
        assert same(got, want), name
        assert got.stats["shared_solve"] == [f"model.layers.0.self_attn.{m}" for m in ("q_proj", "k_proj", "v_proj")]


@pytest.mark.parametrize("sink_tokens,sink_weight,dtype", [(1, 4.0, "float32"), (3, 16.0, "float64")])
def test_sink_weighting_and_hessian_dtype_reach_the_hessian(stories, calib, sink_tokens, sink_weight, dtype):
    """GPTQConfig's sink_weight/sink_tokens and hessian_dtype shape the pipeline's Hessian: block
    0's q/k/v equal a hand-made GPTQ with each window's first sink_tokens rows counted
    sink_weight times (rows scaled by sqrt(w)), accumulated in that dtype."""
    cfg = lb.GPTQConfig(bits=4, group_size=32, sink_weight=sink_weight, sink_tokens=sink_tokens, hessian_dtype=dtype)
    q = lb.quantize_model(stories, cfg, calib, progress=False, per_layer={r"layers\.[1-9]": None})
    acc = lb.HessianAccumulator(stories.config.hidden_size, dtype)
    w = stories.weights["model.layers.0.input_layernorm.weight"]
    for t in calib.tokens:
        x = lb._core.rms_norm(stories.embed(t), np.asarray(w), stories.config.rms_norm_eps)
        x[:sink_tokens] *= np.float32(np.sqrt(sink_weight))
        acc.add(x)
    plain = lb.quantize_model(stories, lb.GPTQConfig(bits=4, group_size=32, sink_weight=1.0), calib, progress=False,
                              per_layer={r"layers\.[1-9]": None})
    for n in ("q_proj", "k_proj", "v_proj"):
        name = f"model.layers.0.self_attn.{n}.weight"
        assert same(q.weights[name], lb.quantize(np.asarray(stories.weights[name]), cfg, hessian=acc)), name
    assert not all(same(q.weights[f"model.layers.0.self_attn.{n}.weight"],
                        plain.weights[f"model.layers.0.self_attn.{n}.weight"]) for n in ("q_proj", "k_proj", "v_proj"))


def test_linears_sharing_an_input_must_agree_on_its_statistics(stories, calib):
    with pytest.raises(ValueError, match="share one Hessian"):
        lb.quantize_model(stories, lb.GPTQConfig(bits=4, group_size=32, sink_weight=1.0), calib, progress=False,
                          per_layer={r"self_attn\.k_proj": lb.GPTQConfig(bits=4, group_size=32, sink_weight=2.0)})
    # a member that needs no statistics (RTN) has no say in the shared Hessian
    q = lb.quantize_model(stories, lb.GPTQConfig(bits=4, group_size=32), calib, progress=False,
                          per_layer={r"self_attn\.k_proj": lb.RTNConfig(bits=4, group_size=32)})
    assert q.weights["model.layers.0.self_attn.k_proj.weight"].config == lb.RTNConfig(bits=4, group_size=32)


def test_gptq_beats_rtn_and_sequential_modes_differ(stories, calib, text):
    base = perplexity(stories, text, seq_len=256).ppl
    r = {}
    for name, cfg in [("rtn", lb.RTNConfig(bits=3, group_size=32)), ("gptq", lb.GPTQConfig(bits=3, group_size=32)),
                      ("gptq-par", lb.GPTQConfig(bits=3, group_size=32, true_sequential=False))]:
        qm = lb.quantize_model(stories, cfg, calib, progress=False)
        r[name] = (qm, perplexity(qm, text, seq_len=256).ppl)
    assert base < r["gptq"][1] < r["rtn"][1] and r["gptq-par"][1] < r["rtn"][1]
    o = "model.layers.2.self_attn.o_proj.weight"
    assert not same(r["gptq"][0].weights[o], r["gptq-par"][0].weights[o])  # different captured inputs
    stats = r["gptq"][0].quantization["layers"]
    assert all(s["objective"] <= s["objective_rtn"] * 1.0001 for s in stats)


def test_staged_true_sequential_equals_one_partial_pass_per_step(stories, calib, monkeypatch):
    # the staged pass (each step's inputs from the previous step's cached outputs) must give
    # the very weights of the reference: a partial forward pass from the block input per step
    import sys
    pipeline = sys.modules["lowbit.pipeline"]
    cfg = lb.GPTQConfig(bits=3, group_size=32)
    staged = lb.quantize_model(stories, cfg, calib, progress=False,
                               per_layer={r"layers\.1\.mlp\.up": None})  # a step with a dense member
    monkeypatch.setattr(pipeline, "_STAGED_TRUE_SEQUENTIAL", False)
    ref = lb.quantize_model(stories, cfg, calib, progress=False, per_layer={r"layers\.1\.mlp\.up": None})
    for k, w in ref.weights.items():
        if isinstance(w, QuantizedTensor):
            assert same(staged.weights[k], w), k
        else:
            assert np.array_equal(np.asarray(staged.weights[k]), np.asarray(w)), k


def test_per_layer_overrides_and_skip(stories, calib):
    q = lb.quantize_model(stories, lb.RTNConfig(bits=4, group_size=32), calib, progress=False,
                          per_layer={r"layers\.0\.": None, r"mlp\.down": lb.GPTQConfig(bits=3, group_size=32)},
                          skip=("lm_head", "embed", "v_proj"))
    w = q.weights
    assert isinstance(w["model.layers.0.mlp.up_proj.weight"], np.ndarray)
    assert isinstance(w["model.layers.1.self_attn.v_proj.weight"], np.ndarray)
    assert w["model.layers.1.mlp.up_proj.weight"].format == "int4"
    assert w["model.layers.1.mlp.down_proj.weight"].config == lb.GPTQConfig(bits=3, group_size=32)
    assert "model.layers.1.mlp.down_proj" in q.quantization["per_layer"]


def test_bad_input(stories, calib, monkeypatch):
    with pytest.raises(ValueError, match="calibration"):
        lb.quantize_model(stories, lb.GPTQConfig(), None, progress=False)
    with pytest.raises(ValueError, match="calibration"):  # a block transform needs the block's inputs
        lb.quantize_model(stories, lb.AWQConfig(), None, progress=False)
    import sys
    qz = sys.modules["lowbit.quantize"]  # the module (lowbit.quantize is also the function)
    monkeypatch.delitem(qz._METHODS, lb.RTNConfig)  # a method without a quantizer
    with pytest.raises(NotImplementedError, match="rtn"):
        lb.quantize_model(stories, lb.RTNConfig(), calib, progress=False)
    monkeypatch.undo()
    with pytest.raises(TypeError, match="QuantConfig"):
        lb.quantize_model(stories, {"bits": 4}, calib, progress=False)
    with pytest.raises(ValueError, match="regular expression"):
        lb.quantize_model(stories, lb.RTNConfig(), per_layer={"(": None}, progress=False)
    with pytest.raises(ValueError, match="resume"):
        lb.quantize_model(stories, lb.RTNConfig(), resume=True, progress=False)


def test_float16_activations_stay_close(stories, calib, text):
    a = lb.quantize_model(stories, lb.GPTQConfig(bits=4, group_size=32), calib, progress=False)
    b = lb.quantize_model(stories, lb.GPTQConfig(bits=4, group_size=32), calib, progress=False,
                          activation_dtype="float16")
    pa, pb = perplexity(a, text, seq_len=256).ppl, perplexity(b, text, seq_len=256).ppl
    # fp16 rounding of the inputs perturbs the Hessian a little; with 512 calibration tokens
    # GPTQ's result moves by ~1% (4-bit RTN is 5% above these)
    assert abs(pa - pb) / pa < 0.03


def test_save_and_resume_after_interrupt(stories, calib, tmp_path, monkeypatch):
    cfg = lb.GPTQConfig(bits=4, group_size=32)
    out = tmp_path / "q"
    full = lb.quantize_model(stories, cfg, calib, progress=False, out=out)
    loaded = load_model(out)
    toks = calib.tokens[0][:20]
    assert np.array_equal(loaded.forward(toks), full.forward(toks))
    assert loaded.quantization["calibration"]["tokens_sha256"] == calib.provenance["tokens_sha256"]
    assert not (tmp_path / "q.partial").exists()

    import lowbit.pipeline as pl
    real = pl.quantize
    calls = {"n": 0}

    def flaky(W, config, **stats):
        calls["n"] += 1
        if calls["n"] == 9:  # inside block 2 (q/k/v, o, gate/up, down = 4 solves per block)
            raise KeyboardInterrupt
        return real(W, config, **stats)

    out2 = tmp_path / "r"
    monkeypatch.setattr(pl, "quantize", flaky)
    with pytest.raises(KeyboardInterrupt):
        lb.quantize_model(stories, cfg, calib, progress=False, out=out2)
    assert not out2.exists() and (tmp_path / "r.partial" / "block-0001").is_dir()
    monkeypatch.setattr(pl, "quantize", real)
    resumed = lb.quantize_model(stories, cfg, calib, progress=False, out=out2, resume=True)
    for n in stories.linear_names()[:-1]:
        assert same(resumed.weights[n + ".weight"], full.weights[n + ".weight"]), n
    assert out2.is_dir() and not (tmp_path / "r.partial").exists()
    # the per-layer figures still cover every layer: blocks 0-1 from their checkpoints
    figures = resumed.quantization["layers"]
    assert [r["layer"] for r in figures] == [r["layer"] for r in full.quantization["layers"]]
    assert [bool(r.get("resumed")) for r in figures] == [r["block"] < 2 for r in figures]
    assert resumed.quantization["resumed_blocks"] == 2
    for r, f in zip(figures, full.quantization["layers"]):
        assert r["objective"] == pytest.approx(f["objective"], rel=1e-12), r["layer"]
    other = lb.data.calibration(stories, n_samples=1, seq_len=16)
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(pl, "quantize", flaky)
        calls["n"] = 0
        lb.quantize_model(stories, cfg, calib, progress=False, out=f"{tmp_path / 's'}/")
    assert (tmp_path / "s.partial" / "block-0001").is_dir()  # beside "s/", not inside it
    monkeypatch.setattr(pl, "quantize", real)
    with pytest.raises(ValueError, match="different run"):
        lb.quantize_model(stories, cfg, other, progress=False, out=tmp_path / "s", resume=True)
    # the same token bytes in another shape, or the same run with other options, is another run too
    reshaped = lb.data.Calibration(calib.tokens.reshape(16, 32), calib.provenance)
    with pytest.raises(ValueError, match="different run"):
        lb.quantize_model(stories, cfg, reshaped, progress=False, out=tmp_path / "s", resume=True)
    with pytest.raises(ValueError, match="different run"):
        lb.quantize_model(stories, cfg, calib, progress=False, out=tmp_path / "s", resume=True,
                          true_sequential=False)


def test_quantize_model_rejects_empty_calibration(stories, calib):
    for tokens in (calib.tokens[:0], calib.tokens[:, :0]):
        with pytest.raises(ValueError, match=r"n_samples >= 1, 1 <= seq_len"):
            lb.quantize_model(stories, lb.GPTQConfig(bits=4, group_size=32),
                              lb.data.Calibration(tokens, calib.provenance), progress=False)


def test_compare_runs_the_reference_forward_once_per_window(shared_data_module, monkeypatch):
    """The reference's perplexity pass fills the cache that every config's KL divergence reads;
    the figures equal those of a plain kl_divergence call."""
    import lowbit.evaluate as ev
    from lowbit.compare import compare

    model = load_model(shared_data_module / "models" / "stories260K" / "stories260K.bin")
    text = (shared_data_module / "tinystories" / "TinyStoriesV2-GPT4-valid.head.txt").read_text()
    real, seen = ev._final_hidden, []
    monkeypatch.setattr(ev, "_final_hidden", lambda m, t: seen.append(m is model) or real(m, t))
    cfgs = [lb.RTNConfig(bits=4, group_size=32), lb.RTNConfig(bits=3, group_size=32)]
    rows = compare(model, cfgs, text, seq_len=128, max_windows=3, measure_speed=False, progress=False)
    assert seen.count(True) == 3 and seen.count(False) == 2 * 3
    q = lb.quantize_model(model, cfgs[1], None, progress=False)
    k = ev.kl_divergence(q, model, text, seq_len=128, max_windows=3)
    assert (rows[2]["kld_mean"], rows[2]["ppl"]) == (k.kld_mean, k.ppl)
    assert rows[0]["ppl"] == pytest.approx(k.ref_ppl, rel=1e-12)


def test_cli_compare_keeps_finished_rows_when_a_later_one_fails(shared_data_module, tmp_path, monkeypatch, capsys):
    """--markdown / --csv are rewritten as each row lands: a run stopped at its third row still
    has the reference and the first configuration on disk, and no temporary file."""
    import lowbit.compare
    from lowbit.cli import main

    model = str(shared_data_module / "models" / "stories260K" / "stories260K.bin")
    story = str(shared_data_module / "tinystories" / "TinyStoriesV2-GPT4-valid.head.txt")
    real, calls = lowbit.compare.quantize_model, []

    def failing_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(lowbit.compare, "quantize_model", failing_second)
    md, csv = tmp_path / "t.md", tmp_path / "t.csv"
    with pytest.raises(KeyboardInterrupt):
        main(["compare", model, "--methods", "rtn", "--bits", "4,3", "--group-size", "32", "--text", story,
              "--eval-seq-len", "128", "--max-windows", "1", "--no-speed", "--markdown", str(md), "--csv", str(csv)])
    lines = md.read_text().splitlines()
    assert len(lines) == 4 and lines[2].startswith("| reference |") and lines[3].startswith("| rtn | 4 |")
    assert len(csv.read_text().splitlines()) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.md"]


def test_cli_quantize_and_compare(shared_data_module, tmp_path, capsys):
    import json

    from lowbit.cli import main

    model = str(shared_data_module / "models" / "stories260K" / "stories260K.bin")
    story = str(shared_data_module / "tinystories" / "TinyStoriesV2-GPT4-valid.head.txt")
    out = tmp_path / "q"
    assert main(["quantize", model, "--method", "gptq", "--bits", "4", "--group-size", "32", "--calib", story,
                 "--n-samples", "4", "--seq-len", "64", "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["layers"]) == 35 and info["calibration"]["n_samples"] == 4
    assert load_model(out).weights["model.layers.0.mlp.up_proj.weight"].format == "int4"
    md = tmp_path / "t.md"
    assert main(["compare", model, "--methods", "rtn,gptq", "--bits", "4", "--group-size", "32", "--text", story,
                 "--calib", story, "--n-samples", "4", "--seq-len", "64", "--eval-seq-len", "128",
                 "--max-windows", "2", "--no-speed", "--markdown", str(md), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in rows] == ["reference", "rtn", "gptq"]
    assert rows[0]["kld_mean"] == 0 and all(r["kld_mean"] > 0 for r in rows[1:])
    assert all(r["peak_memory_mb"] is None or r["peak_memory_mb"] > 0 for r in rows[1:])
    assert md.read_text().startswith("| method | bits |") and "quant peak MB" in md.read_text()
    assert main(["compare", model, "--methods", "nosuch", "--bits", "4", "--text", story]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["compare", model, "--methods", "rtn", "--bits", "4", "--text", story,
                 "--csv", str(tmp_path / "nope" / "t.csv")]) == 2
    assert "--csv" in capsys.readouterr().err


def test_cli_method_names_map_to_configs():
    from lowbit.cli import _method_config

    assert _method_config("gptq", 4, 128, False, True, None) == lb.GPTQConfig(bits=4, group_size=128)
    assert _method_config("gptq-desc-act", 3, 64, False, True, None) == lb.GPTQConfig(bits=3, group_size=64,
                                                                                     desc_act=True)
    assert _method_config("gptq-gar", 4, 128, False, True, None) == lb.GPTQConfig(bits=4, group_size=128,
                                                                                 act_group_aware=True)
    assert _method_config("rtn", 4, 128, True, False, None) == lb.RTNConfig(bits=4, group_size=128, sym=False)
    assert _method_config("gptq", 4, 128, False, True, None, sink_weight=8.0) == lb.GPTQConfig(bits=4, group_size=128,
                                                                                              sink_weight=8.0)
    assert _method_config("gptq-paper", 4, 128, False, True, None, sink_weight=8.0) == lb.GPTQConfig(
        bits=4, group_size=128, sink_weight=1.0)
    with pytest.raises(ValueError, match="unknown method"):
        _method_config("nope", 4, 128, False, True, None)


def test_compare_resumes_only_rows_of_the_same_evaluation_and_calibration(shared_data_module, monkeypatch):
    """previous= keeps the rows an interrupted run finished (same model, windows, config and
    calibration tokens) and runs the rest; the reference is not evaluated when nothing is left."""
    import lowbit.compare
    import lowbit.evaluate as ev
    from lowbit.compare import compare
    from lowbit.data import calibration

    model = load_model(shared_data_module / "models" / "stories260K" / "stories260K.bin")
    text = (shared_data_module / "tinystories" / "TinyStoriesV2-GPT4-valid.head.txt").read_text()
    calib = calibration(model, strings=[text], n_samples=2, seq_len=32, seed=0)
    cfgs = [lb.RTNConfig(bits=4, group_size=32), lb.GPTQConfig(bits=3, group_size=32)]
    kw = dict(seq_len=128, max_windows=2, measure_speed=False, progress=False)
    first = compare(model, cfgs, text, calibration=calib, **kw)

    real_q, real_h, quantized, passes = lowbit.compare.quantize_model, ev._final_hidden, [], []
    monkeypatch.setattr(lowbit.compare, "quantize_model", lambda m, c, *a, **k: quantized.append(c) or real_q(m, c, *a, **k))
    monkeypatch.setattr(ev, "_final_hidden", lambda m, t: passes.append(m is model) or real_h(m, t))

    # interrupted after the RTN row: only GPTQ runs, and its figures are those of a full run
    rows = compare(model, cfgs, text, calibration=calib, previous=first[:2], **kw)
    assert quantized == [cfgs[1]] and passes.count(True) == 2
    assert rows[1] == {**first[1], "resumed": True} and not rows[2].get("resumed")
    for k in ("ppl", "kld_mean", "top1_agreement", "bits_per_weight"):
        assert rows[2][k] == first[2][k]

    # everything finished: nothing runs, not even the reference
    quantized.clear(), passes.clear()
    rows = compare(model, cfgs, text, calibration=calib, previous=first, **kw)
    assert quantized == [] and passes == [] and all(r["resumed"] for r in rows)

    # other windows, or other calibration tokens for the method that uses them: rerun
    rows = compare(model, cfgs, text, calibration=calib, previous=first, **{**kw, "max_windows": 1})
    assert quantized == cfgs and not any(r.get("resumed") for r in rows)
    quantized.clear()
    other = calibration(model, strings=[text], n_samples=2, seq_len=32, seed=1)
    rows = compare(model, cfgs, text, calibration=other, previous=first, **kw)
    assert quantized == [cfgs[1]] and rows[1]["resumed"] and not rows[2].get("resumed")


def test_compare_csv_round_trips_the_rows(shared_data_module, tmp_path):
    from lowbit.compare import compare, read_csv, to_csv

    model = load_model(shared_data_module / "models" / "stories260K" / "stories260K.bin")
    text = (shared_data_module / "tinystories" / "TinyStoriesV2-GPT4-valid.head.txt").read_text()
    rows = compare(model, [lb.RTNConfig(bits=4, group_size=32)], text, seq_len=128, max_windows=1,
                   measure_speed=False, progress=False)
    p = tmp_path / "t.csv"
    p.write_text(to_csv(rows))
    back = read_csv(p)
    assert len(back) == 2
    for r, b in zip(rows, back):
        for k, v in b.items():
            assert v == r.get(k), k  # floats are written with repr: exact
    assert back[1]["config"] == lb.RTNConfig(bits=4, group_size=32).to_dict()
    p.write_text(to_csv(rows).replace(",0.0,", ",zero,", 1))
    with pytest.raises(ValueError, match="not a number"):
        read_csv(p)


def test_cli_compare_resume_runs_only_the_missing_rows(shared_data_module, tmp_path, monkeypatch, capsys):
    import lowbit.compare
    from lowbit.cli import main

    model = str(shared_data_module / "models" / "stories260K" / "stories260K.bin")
    story = str(shared_data_module / "tinystories" / "TinyStoriesV2-GPT4-valid.head.txt")
    real, calls = lowbit.compare.quantize_model, []

    def interrupted_second(m, cfg, *a, **k):
        calls.append(cfg.bits)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(m, cfg, *a, **k)

    monkeypatch.setattr(lowbit.compare, "quantize_model", interrupted_second)
    csv = tmp_path / "t.csv"
    argv = ["compare", model, "--methods", "rtn", "--bits", "4,3", "--group-size", "32", "--text", story,
            "--eval-seq-len", "128", "--max-windows", "1", "--no-speed", "--csv", str(csv)]
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    calls.clear()
    # a resumed run with one more config first, stopped again while that one runs: the rows of
    # the first run must still be in the file
    argv2 = [*argv[:5], "2,4,3", *argv[6:], "--resume"]
    monkeypatch.setattr(lowbit.compare, "quantize_model", interrupted_second)
    with pytest.raises(KeyboardInterrupt):
        main(argv2[:5] + ["3,2,4"] + argv2[6:])  # 3 runs (missing), 2 is stopped
    assert sorted(r["bits"] or 0 for r in lowbit.compare.read_csv(csv)) == [0, 3, 4]
    calls.clear()
    monkeypatch.setattr(lowbit.compare, "quantize_model", lambda m, cfg, *a, **k: calls.append(cfg.bits) or real(m, cfg, *a, **k))
    assert main(argv2) == 0
    assert calls == [2]
    assert "kept from the earlier run" in capsys.readouterr().err
    assert [r["bits"] for r in lowbit.compare.read_csv(csv)] == [None, 2, 4, 3]
    assert main(argv[:-2] + ["--resume"]) == 2  # --resume without --csv
    assert "give --csv" in capsys.readouterr().err
