"""lowbit's own model folder format: save_model / read_lowbit_folder / load_model round trips."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

import lowbit as lb
from lowbit.models import lowbit_format as lf
from lowbit.models.llama import LlamaModel
from lowbit.models.llama_config import LlamaConfig
from lowbit.models.loader import read_model_files
from lowbit.models.tokenizer import Tokenizer

PROMPTS = ["Once upon a time, there was a little girl", "The cat sat on the mat. Lily smiled!", "zq 123 \u00e9"]
TOKENS = [1, 403, 407, 261, 378, 324, 269, 300, 49, 50, 51, 2, 5]
GPTQ_LAYER = "model.layers.1.mlp.down_proj"


# ------------------------------------------------------------------------------ fixtures

def _quantized(model: LlamaModel) -> LlamaModel:
    weights = dict(model.weights)
    rng = np.random.default_rng(7)
    for name in model.linear_names():
        key = name + ".weight"
        if key not in weights:        # tied lm_head
            continue
        W = np.asarray(weights[key], dtype=np.float32)
        if name == GPTQ_LAYER:
            acc = lb.HessianAccumulator(W.shape[1])
            acc.add(rng.standard_normal((256, W.shape[1])).astype(np.float32))
            weights[key] = lb.quantize(W, lb.GPTQConfig(bits=3, group_size=16, desc_act=True), hessian=acc.hessian())
        else:
            weights[key] = lb.quantize(W, lb.RTNConfig(bits=4, group_size=32))
    return LlamaModel(model.config, weights, model.tokenizer, dict(model.source))


@pytest.fixture(scope="module")
def qmodel(stories: LlamaModel) -> LlamaModel:
    return _quantized(stories)


PROVENANCE = {
    "calibration": {"files": [Path("/data/tinystories/valid.txt")], "n_samples": np.int64(16), "seq_len": 128,
                    "seed": 0, "token_hash": "sha256:abc123"},
    "layer_stats": {GPTQ_LAYER: {"rel_error": np.float32(0.125), "hist": np.arange(3, dtype=np.int32)}},
    "note": None,
}


@pytest.fixture(scope="module")
def qsaved(qmodel: LlamaModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("q") / "stories-q"
    assert qmodel.save(path, quantization=PROVENANCE) == path
    return path


def _tiny_tokenizers_backend():
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>", "<|im_start|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(PROMPTS * 20 + ["the quick brown fox jumps over the lazy dog"] * 10, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)])
    return tok


def _random_model(vocab: int, dtype, tokenizer: Tokenizer | None = None, **cfg_kw) -> LlamaModel:
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=vocab, head_dim=8, bos_token_id=1, eos_token_id=0, **cfg_kw)
    shapes = LlamaModel._expected_shapes(types.SimpleNamespace(config=cfg))
    rng = np.random.default_rng(3)
    weights = {}
    for k, s in shapes.items():
        w = (1.0 + 0.1 * rng.standard_normal(s)) if k.endswith("norm.weight") else 0.2 * rng.standard_normal(s)
        weights[k] = w.astype(np.float32).astype(dtype)
    return LlamaModel(cfg, weights, tokenizer)


def _same_weights(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k, w in a.items():
        v = b[k]
        if isinstance(w, lb.QuantizedTensor):
            assert isinstance(v, lb.QuantizedTensor), k
            assert (v.format, v.shape, v.group_size, v.per_tensor, v.sym) == (w.format, w.shape, w.group_size,
                                                                             w.per_tensor, w.sym), k
            assert set(v.arrays) == set(w.arrays), k
            for p, arr in w.arrays.items():
                assert v.arrays[p].dtype == arr.dtype and np.array_equal(v.arrays[p], arr), (k, p)
            assert v.config == w.config, k
            assert v.stats == w.stats, k
        else:
            w, v = np.asarray(w), np.asarray(v)
            assert v.dtype == w.dtype and v.shape == w.shape, k
            assert np.array_equal(v.view(np.uint8), w.view(np.uint8)), k


# ------------------------------------------------------------------------ quantized round trip

def test_quantized_round_trip_logits_and_tokenizer(qmodel: LlamaModel, qsaved: Path) -> None:
    files = sorted(p.name for p in qsaved.iterdir())
    assert files == ["config.json", "model.safetensors", "tokenizer.bin"]
    loaded = lb.load_model(qsaved)
    assert loaded.source["format"] == "lowbit"
    _same_weights(qmodel.weights, loaded.weights)
    g = loaded.weights[GPTQ_LAYER + ".weight"]
    assert "g_idx" in g.arrays and g.config == lb.GPTQConfig(bits=3, group_size=16, desc_act=True)
    assert np.array_equal(loaded.forward(TOKENS), qmodel.forward(TOKENS))
    assert (loaded.tokenizer.kind, loaded.tokenizer.bos_id, loaded.tokenizer.eos_id) == ("llama2c", 1, 2)
    for text in PROMPTS:
        assert loaded.tokenizer.encode(text) == qmodel.tokenizer.encode(text)
    assert loaded.tokenizer.decode(TOKENS) == qmodel.tokenizer.decode(TOKENS)
    assert loaded.generate("Once upon", 8).tokens == qmodel.generate("Once upon", 8).tokens


def test_quantization_config_round_trip(qmodel: LlamaModel, qsaved: Path) -> None:
    cfg = json.loads((qsaved / "config.json").read_text())
    qc = cfg["quantization_config"]
    assert qc["quant_method"] == "lowbit" and qc["format_version"] == 1
    assert qc["lowbit_version"] == lb._core.__version__
    assert qc["config"] == lb.RTNConfig(bits=4, group_size=32).to_dict()
    assert qc["per_layer"] == {GPTQ_LAYER: lb.GPTQConfig(bits=3, group_size=16, desc_act=True).to_dict()}
    assert lb.load_config(qc["per_layer"][GPTQ_LAYER]) == qmodel.weights[GPTQ_LAYER + ".weight"].config
    assert qc["calibration"] == {"files": ["/data/tinystories/valid.txt"], "n_samples": 16, "seq_len": 128,
                                 "seed": 0, "token_hash": "sha256:abc123"}
    assert qc["layer_stats"] == {GPTQ_LAYER: {"rel_error": 0.125, "hist": [0, 1, 2]}}
    assert qc["note"] is None
    assert cfg["lowbit"]["tokenizer"]["kind"] == "llama2c"
    files = read_model_files(qsaved)
    assert files.format == "lowbit" and files.metadata["quantization_config"] == qc
    assert LlamaConfig.from_hf(files.config) == qmodel.config


def test_quantized_save_is_self_describing_per_shard(qsaved: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(qsaved / "model.safetensors"), framework="numpy") as f:
        meta = json.loads(f.metadata()["lowbit"])
        keys = set(f.keys())
    d = meta["tensors"][GPTQ_LAYER + ".weight"]
    assert meta["format_version"] == 1
    assert d["arrays"] == ["qweight", "scales", "zeros", "g_idx"] and d["format"] == "int3"
    assert {GPTQ_LAYER + p for p in (".qweight", ".scales", ".zeros", ".g_idx")} <= keys
    assert "model.layers.0.self_attn.q_proj.weight" not in keys and "model.norm.weight" in keys


# ---------------------------------------------------------------------------- dense models

def test_dense_round_trip_is_bit_exact(stories: LlamaModel, tmp_path: Path) -> None:
    path = stories.save(tmp_path / "dense")
    cfg = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["lowbit"]["format_version"] == 1
    loaded = lb.load_model(path)
    assert loaded.source["format"] == "lowbit" and loaded.source["quantization_config"] is None
    _same_weights(stories.weights, loaded.weights)
    assert np.array_equal(loaded.forward(TOKENS), stories.forward(TOKENS))
    assert loaded.tokenizer.encode(PROMPTS[0]) == stories.tokenizer.encode(PROMPTS[0])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_dense_round_trip_keeps_dtype(dtype: str, tmp_path: Path) -> None:
    if dtype == "bfloat16":
        np_dtype = pytest.importorskip("ml_dtypes").bfloat16
    else:
        np_dtype = np.float16
    model = _random_model(64, np_dtype)
    loaded = lb.load_model(model.save(tmp_path / dtype))
    _same_weights(model.weights, loaded.weights)
    assert loaded.weights["model.layers.0.mlp.up_proj.weight"].dtype == np.dtype(np_dtype)
    assert np.array_equal(loaded.forward([1, 5, 9]), model.forward([1, 5, 9]))


def test_sharded_save_loads(qmodel: LlamaModel, tmp_path: Path) -> None:
    path = qmodel.save(tmp_path / "sharded", max_shard_bytes=20_000)
    shards = sorted(path.glob("*.safetensors"))
    assert len(shards) > 2 and not (path / "model.safetensors").exists()
    assert shards[0].name == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((path / "model.safetensors.index.json").read_text())
    wm = index["weight_map"]
    assert set(wm.values()) == {p.name for p in shards}
    assert index["metadata"]["total_size"] == qmodel.nbytes
    for piece in ("qweight", "scales", "zeros", "g_idx"):      # a quantized tensor's pieces stay together
        assert wm[f"{GPTQ_LAYER}.{piece}"] == wm[f"{GPTQ_LAYER}.qweight"]
    loaded = lb.load_model(path)
    _same_weights(qmodel.weights, loaded.weights)
    assert np.array_equal(loaded.forward(TOKENS), qmodel.forward(TOKENS))


def test_tokenizers_backend_round_trip(tmp_path: Path) -> None:
    backend = _tiny_tokenizers_backend()
    tok = Tokenizer.from_tokenizers(backend, bos_id=1, eos_id=0)
    model = _random_model(tok.vocab_size, np.float32, tok)
    path = model.save(tmp_path / "bpe")
    assert (path / "tokenizer.json").is_file()
    tc = json.loads((path / "tokenizer_config.json").read_text())
    assert tc["bos_token"] == "<|im_start|>" and tc["eos_token"] == "<|endoftext|>"
    loaded = lb.load_model(path)
    t2 = loaded.tokenizer
    assert (t2.kind, t2.bos_id, t2.eos_id, t2.vocab_size) == ("tokenizers", 1, 0, tok.vocab_size)
    for text in [*PROMPTS, "the lazy fox", ""]:
        assert t2.encode(text) == tok.encode(text)
        assert t2.decode(tok.encode(text)) == tok.decode(tok.encode(text))
    assert np.array_equal(loaded.forward([1, 5, 9]), model.forward([1, 5, 9]))


def test_rope_freqs_round_trip(tmp_path: Path) -> None:
    model = _random_model(64, np.float32)
    freqs = np.linspace(1.0, 8.0, model.config.head_dim // 2, dtype=np.float32)
    model = LlamaModel(model.config, model.weights, None, {"rope_freqs": freqs})
    loaded = lb.load_model(model.save(tmp_path / "rope"))
    assert np.array_equal(loaded.source["rope_freqs"], freqs)
    assert np.array_equal(loaded.inv_freq, model.inv_freq)
    assert "rope_freqs" not in loaded.weights


def test_plain_hf_folder_stays_on_hf_reader(stories: LlamaModel, tmp_path: Path) -> None:
    path = stories.save(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    del cfg["lowbit"]
    (path / "config.json").write_text(json.dumps(cfg))
    assert not lf.is_lowbit_folder(path)
    files = read_model_files(path)
    assert files.format == "hf"
    assert np.array_equal(files.tensors["model.layers.0.mlp.up_proj.weight"],
                          stories.weights["model.layers.0.mlp.up_proj.weight"])


# ----------------------------------------------------------------------------- atomicity

def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_interrupted_save_leaves_nothing(qmodel: LlamaModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = lf._write_shard
    calls = []

    def flaky(path, arrays, metadata):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, arrays, metadata)

    monkeypatch.setattr(lf, "_write_shard", flaky)
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        qmodel.save(target, max_shard_bytes=20_000)
    assert len(calls) == 2
    assert not target.exists() and _leftovers(tmp_path, "out") == []

    # an interrupted overwrite keeps the old folder as it was
    monkeypatch.setattr(lf, "_write_shard", real)
    qmodel.save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    calls.clear()
    monkeypatch.setattr(lf, "_write_shard", flaky)
    with pytest.raises(KeyboardInterrupt):
        qmodel.save(target, max_shard_bytes=20_000, overwrite=True)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert _leftovers(tmp_path, "out") == []


def test_existing_path_needs_overwrite(stories: LlamaModel, qmodel: LlamaModel, tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        stories.save(target)
    assert (target / "keep.txt").read_text() == "mine" and _leftovers(tmp_path, "m") == []
    stories.save(target, overwrite=True)
    assert not (target / "keep.txt").exists() and lb.load_model(target).source["quantization_config"] is None
    qmodel.save(target, overwrite=True)
    assert isinstance(lb.load_model(target).weights[GPTQ_LAYER + ".weight"], lb.QuantizedTensor)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# ----------------------------------------------------------------------------- errors

def test_missing_shard(qmodel: LlamaModel, tmp_path: Path) -> None:
    path = qmodel.save(tmp_path / "s", max_shard_bytes=20_000)
    n = len(list(path.glob("*.safetensors")))
    shard = path / f"model-00002-of-{n:05d}.safetensors"
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=shard.name):
        lb.load_model(path)


def test_missing_piece(qsaved: Path, tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    path = tmp_path / "piece"
    shutil.copytree(qsaved, path)
    with safe_open(str(path / "model.safetensors"), framework="numpy") as f:
        meta = f.metadata()
        arrays = {k: f.get_tensor(k) for k in f.keys() if k != GPTQ_LAYER + ".zeros"}
    save_file(arrays, str(path / "model.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=rf"{GPTQ_LAYER}\.weight.*'zeros'"):
        lb.load_model(path)


def test_unknown_format_version(qsaved: Path, tmp_path: Path) -> None:
    path = tmp_path / "v"
    shutil.copytree(qsaved, path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["quantization_config"]["format_version"] = 99
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="format_version 99"):
        lb.load_model(path)


def test_save_errors(qmodel: LlamaModel, tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError, match=r"'gptq'.*'lowbit', 'gguf', 'awq'"):
        qmodel.save(tmp_path / "x", format="gptq")
    with pytest.raises(NotImplementedError, match="GGUF cannot store"):  # int4 (RTN) is no ggml type
        qmodel.save(tmp_path / "x.gguf", format="gguf")
    with pytest.raises(ValueError, match="reserved"):
        qmodel.save(tmp_path / "x", quantization={"quant_method": "gptq"})
    with pytest.raises(TypeError, match=r"quantization\['bad'\]\[0\]: object"):
        qmodel.save(tmp_path / "x", quantization={"bad": [object()]})
    with pytest.raises(FileNotFoundError, match="parent folder"):
        qmodel.save(tmp_path / "no" / "x")
    with pytest.raises(ValueError, match="max_shard_bytes"):
        qmodel.save(tmp_path / "x", max_shard_bytes=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="not a lowbit folder"):
        lf.read_lowbit_folder(_hf_like(tmp_path))


def _hf_like(tmp_path: Path) -> Path:
    p = tmp_path / "hf"
    p.mkdir()
    (p / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return p


def test_dense_folder_and_tokenizer_load_in_transformers(tmp_path: Path) -> None:
    """A dense lowbit save (no rope_interleaved) is a Hugging Face folder transformers reads."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer.from_tokenizers(_tiny_tokenizers_backend(), bos_id=1, eos_id=0)
    model = _random_model(tok.vocab_size, np.float32, tok)
    path = model.save(tmp_path / "hf")
    auto_tok = transformers.AutoTokenizer.from_pretrained(path)
    assert auto_tok(PROMPTS[0]).input_ids == tok.encode(PROMPTS[0])
    assert (auto_tok.bos_token, auto_tok.eos_token) == ("<|im_start|>", "<|endoftext|>")
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        ref = hf(torch.tensor([[1, 5, 9, 42]])).logits[0].numpy()
    np.testing.assert_allclose(model.forward([1, 5, 9, 42]), ref, rtol=0, atol=1e-4)
