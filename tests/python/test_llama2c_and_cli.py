"""The llama2.c reader on the real stories260K model, and the `lowbit` command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lowbit.cli import main
from lowbit.models import read_llama2c


@pytest.fixture
def stories(shared_data):
    return shared_data / "models" / "stories260K" / "stories260K.bin"


def test_reads_stories260k(stories):
    cfg, t = read_llama2c(stories)
    assert (cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size) == (64, 172, 5, 8, 4, 512)
    assert t["model.layers.0.self_attn.q_proj.weight"].shape == (64, 64)
    assert t["model.layers.4.self_attn.k_proj.weight"].shape == (32, 64)
    assert t["model.layers.2.mlp.gate_proj.weight"].shape == (172, 64)
    assert t["model.layers.2.mlp.down_proj.weight"].shape == (64, 172)
    assert t["lm_head.weight"] is t["model.embed_tokens.weight"]
    # RMSNorm weights of a trained model are positive-ish and near 1; projections are not
    assert 0.2 < float(np.mean(t["model.norm.weight"])) < 5
    assert all(np.isfinite(v).all() for v in t.values())


def test_truncated_or_foreign_files_are_clear_errors(stories, tmp_path):
    cut = tmp_path / "cut.bin"
    cut.write_bytes(stories.read_bytes()[:50000])
    with pytest.raises(ValueError, match="cut.bin.*truncated"):
        read_llama2c(cut)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\xff" * 100)
    with pytest.raises(ValueError, match="junk.bin: not a llama2.c checkpoint"):
        read_llama2c(junk)
    with pytest.raises(FileNotFoundError):
        read_llama2c(tmp_path / "nope.bin")


def test_demo_json(stories, capsys):
    assert main(["demo", "--model", str(stories), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {(r["method"], r["config"]): r for r in out["results"]}
    rtn = {c: r for (m, c), r in rows.items() if m == "rtn"}
    gptq = {c: r for (m, c), r in rows.items() if m == "gptq"}
    # more bits, smaller error; int8 per-channel is near-lossless on a real model
    assert rtn["int2 g32 asym"]["sqnr_db"] < rtn["int3 g32 asym"]["sqnr_db"] < rtn["int4 g32 asym"]["sqnr_db"]
    assert rtn["int8 channel sym"]["sqnr_db"] > 40
    # GPTQ, calibrated on other tokens, lowers the output error on held-out inputs
    for c in ("int4 g32 asym", "int3 g32 asym", "int2 g32 asym", "int4 channel sym"):
        assert gptq[c]["output_rel_err"] < rtn[c]["output_rel_err"], c
    assert all(r["bits_per_weight"] > 2 for r in rows.values())


def test_cli_commands_run_as_a_program(stories):
    r = subprocess.run([sys.executable, "-m", "lowbit", "demo", "--model", str(stories)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "SQNR dB" in r.stdout and "int4 g32 asym" in r.stdout and "gptq" in r.stdout
    r = subprocess.run([sys.executable, "-m", "lowbit", "formats"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "int4" in r.stdout and "bf16" in r.stdout
    r = subprocess.run([sys.executable, "-m", "lowbit", "info", "--json"], capture_output=True, text=True, timeout=60)
    assert json.loads(r.stdout)["isa"]
    r = subprocess.run([sys.executable, "-m", "lowbit", "demo", "--model", "/nonexistent.bin"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "no such file" in r.stderr
