"""The Llama-family decoder runtime: Llama, Mistral, Qwen2 (q/k/v biases), SmolLM.

Python runs the layer loop; each heavy op is one ``lowbit._core`` call (dense matmul, RMSNorm,
RoPE, causal grouped-query attention, SwiGLU). Every linear layer is a slot holding either a
dense array or a :class:`~lowbit.tensor.QuantizedTensor`, so quantized models run through the
same code. The forward pass is split into ``embed`` / ``block`` / ``head`` so that the
quantization pipeline can run and observe one block at a time.

``observer(name, x, y)`` hooks (see :meth:`LlamaModel.block`) see every linear's input and
output: the statistics pass of quantize_model and the per-layer error report use them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _core
from ..tensor import PackedKernel, QuantizedTensor
from .llama_config import LlamaConfig, rope_frequencies
from .tokenizer import Tokenizer

__all__ = ["KVCache", "LlamaModel", "GenerationResult", "Observer", "BLOCK_LINEARS"]

Observer = Callable[[str, np.ndarray, np.ndarray], None]

# The linear layers of one decoder block, in execution order (HF names after "model.layers.{i}.").
BLOCK_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


class KVCache:
    """Keys and values of every layer for one sequence: float32 ``[max_len, n_kv_heads, head_dim]``."""

    def __init__(self, cfg: LlamaConfig, max_len: int) -> None:
        if max_len <= 0:
            raise ValueError(f"max_len must be positive, got {max_len}")
        shape = (cfg.num_hidden_layers, max_len, cfg.num_key_value_heads, cfg.head_dim)
        self.k = np.zeros(shape, np.float32)
        self.v = np.zeros(shape, np.float32)
        self.max_len = max_len
        self.length = 0  # positions filled (all layers advance together)

    def reset(self) -> None:
        self.length = 0

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


@dataclass
class GenerationResult:
    tokens: list[int]              # the new tokens only
    text: str
    prompt_tokens: int
    prefill_seconds: float
    decode_seconds: float
    stop_reason: str               # "eos" | "length" | "stop"

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds > 0 else float("inf")

    @property
    def decode_tokens_per_s(self) -> float:
        n = max(len(self.tokens) - 1, 0)  # the first new token comes from the prefill
        return n / self.decode_seconds if self.decode_seconds > 0 else float("nan")


@dataclass
class LlamaModel:
    """A Llama-family decoder with its weights (HF names) and tokenizer.

    ``weights`` maps Hugging Face tensor names to arrays ``[out, in]`` (float32/float16/
    bfloat16, possibly memory-mapped) or QuantizedTensors (linear layers only).
    """

    config: LlamaConfig
    weights: dict[str, Any]
    tokenizer: Tokenizer | None = None
    source: dict[str, Any] = field(default_factory=dict)   # where it came from (path, format, metadata)
    # what quantize_model did (configs, calibration provenance, per-layer figures); None if dense
    quantization: dict[str, Any] | None = None
    # how quantized linears take their input (QuantizedTensor.matmul's act): "int8" (int8
    # activation blocks, the fast path) or "float32" (float32-accurate reference)
    matmul_act: str = "int8"
    # forward() without an observer runs the layer loop in C++ (_core.LlamaRuntime: no Python
    # call per op) when every linear has a C++ kernel; False: the Python loop, which defines it
    # (the two are bit-identical)
    native_loop: bool = True

    def __post_init__(self) -> None:
        cfg = self.config
        self.inv_freq, self.attention_scaling = rope_frequencies(cfg)
        factors = self.source.get("rope_freqs")
        if factors is not None:  # Llama 3.1 GGUF files store the llama3 scaling as per-frequency divisors
            factors = np.asarray(factors, dtype=np.float32).reshape(-1)
            if factors.shape != self.inv_freq.shape:
                raise ValueError(f"rope_freqs has {factors.size} entries, expected head_dim/2 = {self.inv_freq.size}")
            self.inv_freq = (self.inv_freq / factors).astype(np.float32)
        self._check_weights()
        self._norms = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.weights.items()
                       if k.endswith("norm.weight") or k.endswith(".bias")}

    # ---- structure -------------------------------------------------------------------------
    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        c = self.config
        D, F = c.hidden_size, c.intermediate_size
        out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (c.vocab_size, D), "model.norm.weight": (D,)}
        if not c.tie_word_embeddings:
            out["lm_head.weight"] = (c.vocab_size, D)
        for i in range(c.num_hidden_layers):
            p = f"model.layers.{i}."
            out |= {p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                    p + "self_attn.q_proj.weight": (c.q_dim, D), p + "self_attn.k_proj.weight": (c.kv_dim, D),
                    p + "self_attn.v_proj.weight": (c.kv_dim, D), p + "self_attn.o_proj.weight": (D, c.q_dim),
                    p + "mlp.gate_proj.weight": (F, D), p + "mlp.up_proj.weight": (F, D),
                    p + "mlp.down_proj.weight": (D, F)}
            if c.attention_bias:
                out |= {p + "self_attn.q_proj.bias": (c.q_dim,), p + "self_attn.k_proj.bias": (c.kv_dim,),
                        p + "self_attn.v_proj.bias": (c.kv_dim,)}
        return out

    def _check_weights(self) -> None:
        expected = self._expected_shapes()
        missing = [k for k in expected if k not in self.weights]
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise ValueError(f"model weights are missing {missing[:5]}{more}")
        for k, shape in expected.items():
            got = tuple(self.weights[k].shape)
            if got != shape:
                raise ValueError(f"weight {k} has shape {got}, expected {shape} from the config")

    def linear_names(self) -> list[str]:
        """Names (without ``.weight``) of every linear layer in execution order, lm_head last."""
        names = [f"model.layers.{i}.{n}" for i in range(self.config.num_hidden_layers) for n in BLOCK_LINEARS]
        return names + ["lm_head"]

    def new_cache(self, max_len: int | None = None) -> KVCache:
        return KVCache(self.config, max_len or self.config.max_position_embeddings)

    @property
    def nbytes(self) -> int:
        """Bytes of all weights as stored (packed for quantized layers)."""
        return int(sum(w.nbytes for w in self.weights.values()))

    def num_parameters(self) -> int:
        return int(sum(int(np.prod(w.shape)) for w in self.weights.values()))

    # ---- ops -------------------------------------------------------------------------------
    def linear(self, name: str, x: np.ndarray, observer: Observer | None = None) -> np.ndarray:
        """Apply linear layer ``name`` (e.g. ``"model.layers.0.mlp.up_proj"``) to float32 ``x [T, in]``."""
        w = self.weights[name + ".weight"]
        if isinstance(w, QuantizedTensor):
            y = w.matmul(x, act=self.matmul_act)
        else:
            y = _core.linear(x, w, None)
        b = self._norms.get(name + ".bias")
        if b is not None:
            y += b
        if observer is not None:
            observer(name, x, y)
        return y

    def embed(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        ids = np.asarray(tokens, dtype=np.int64).reshape(-1)
        V = self.config.vocab_size
        if ids.size and (ids.min() < 0 or ids.max() >= V):
            bad = int(ids[(ids < 0) | (ids >= V)][0])
            raise ValueError(f"token id {bad} is out of range for vocab_size {V}")
        e = self.weights["model.embed_tokens.weight"]
        if isinstance(e, QuantizedTensor):
            e = self._dense_cache("model.embed_tokens.weight", e)
        return np.ascontiguousarray(e[ids], dtype=np.float32)

    def _dense_cache(self, name: str, q: QuantizedTensor) -> np.ndarray:
        cache = self.__dict__.setdefault("_dequantized", {})
        if name not in cache:
            cache[name] = q.dequantize()
        return cache[name]

    def block(self, i: int, x: np.ndarray, positions: np.ndarray, cache: KVCache | None = None,
              observer: Observer | None = None) -> np.ndarray:
        """One decoder block on hidden states ``x`` float32 ``[T, D]`` at absolute ``positions``.

        With a cache, keys/values are written at ``positions`` and attention runs over the
        cache's first ``positions[-1] + 1`` entries (positions must be contiguous).
        """
        c = self.config
        p = f"model.layers.{i}."
        h = _core.rms_norm(x, self._norms[p + "input_layernorm.weight"], c.rms_norm_eps)
        x = x + self.self_attention(i, h, positions, cache, observer)
        h = _core.rms_norm(x, self._norms[p + "post_attention_layernorm.weight"], c.rms_norm_eps)
        return x + self.mlp(i, h, observer)

    def self_attention(self, i: int, h: np.ndarray, positions: np.ndarray, cache: KVCache | None = None,
                       observer: Observer | None = None) -> np.ndarray:
        """Block ``i``'s attention sub-layer on normed hidden states ``h`` float32 ``[T, D]``:
        q/k/v projections, RoPE, causal attention and o_proj; float32 ``[T, D]`` (before the
        residual add). Cache and positions as in :meth:`block`."""
        p = f"model.layers.{i}."
        return self.linear(p + "self_attn.o_proj", self.attention_heads(i, h, positions, cache, observer), observer)

    def attention_heads(self, i: int, h: np.ndarray, positions: np.ndarray, cache: KVCache | None = None,
                        observer: Observer | None = None) -> np.ndarray:
        """The attention sub-layer up to o_proj: q/k/v projections, RoPE and causal attention
        on normed ``h`` float32 ``[T, D]``; the heads' outputs float32 ``[T, heads * head_dim]``
        (o_proj's input)."""
        c = self.config
        p = f"model.layers.{i}."
        T = h.shape[0]
        q = self.linear(p + "self_attn.q_proj", h, observer).reshape(T, c.num_attention_heads, c.head_dim)
        k = self.linear(p + "self_attn.k_proj", h, observer).reshape(T, c.num_key_value_heads, c.head_dim)
        v = self.linear(p + "self_attn.v_proj", h, observer).reshape(T, c.num_key_value_heads, c.head_dim)
        _core.rope_(q, positions, self.inv_freq, c.rope_interleaved, self.attention_scaling)
        _core.rope_(k, positions, self.inv_freq, c.rope_interleaved, self.attention_scaling)
        start = int(positions[0]) if T else 0
        if cache is not None:
            end = start + T
            if end > cache.max_len:
                raise ValueError(f"sequence of {end} tokens exceeds the KV cache ({cache.max_len})")
            cache.k[i, start:end] = k
            cache.v[i, start:end] = v
            k_all, v_all = cache.k[i, :end], cache.v[i, :end]
        else:
            if start != 0:
                raise ValueError("positions must start at 0 without a KV cache")
            k_all, v_all = k, v
        o = _core.attention(q, k_all, v_all, start, 1.0 / np.sqrt(c.head_dim))
        return o.reshape(T, -1)

    def mlp(self, i: int, h: np.ndarray, observer: Observer | None = None) -> np.ndarray:
        """Block ``i``'s SwiGLU MLP on normed hidden states ``h`` float32 ``[T, D]``:
        ``down(silu(gate(h)) * up(h))``, float32 ``[T, D]`` (before the residual add)."""
        p = f"model.layers.{i}."
        g = self.linear(p + "mlp.gate_proj", h, observer)
        u = self.linear(p + "mlp.up_proj", h, observer)
        return self.linear(p + "mlp.down_proj", _core.silu_mul(g, u), observer)

    def set_weight(self, name: str, value: Any) -> None:
        """Replace the tensor ``name`` (e.g. ``"model.layers.0.input_layernorm.weight"``) by an
        array or QuantizedTensor of the same shape, keeping the float32 copies of norms and
        biases that the forward pass reads in step (methods such as AWQ rescale norms)."""
        if name not in self.weights:
            raise KeyError(f"no weight named {name!r}")
        if tuple(value.shape) != tuple(self.weights[name].shape):
            raise ValueError(f"{name}: new value has shape {tuple(value.shape)}, expected "
                             f"{tuple(self.weights[name].shape)}")
        self.weights[name] = value
        if name in self._norms:
            self._norms[name] = np.ascontiguousarray(value, dtype=np.float32)
        self.__dict__.get("_dequantized", {}).pop(name, None)

    def head(self, x: np.ndarray, observer: Observer | None = None) -> np.ndarray:
        """Final norm and the language-model head: logits float32 ``[T, vocab]``."""
        h = _core.rms_norm(x, self._norms["model.norm.weight"], self.config.rms_norm_eps)
        y = self.linear(self._head_name(), h, None)
        if observer is not None:
            observer("lm_head", h, y)
        return y

    def __getstate__(self) -> dict[str, Any]:
        # the C++ layer loop is a cache (rebuilt on demand) and not picklable
        return {k: v for k, v in self.__dict__.items() if k != "_native"}

    def _head_name(self) -> str:
        return "model.embed_tokens" if self.config.tie_word_embeddings and "lm_head.weight" not in self.weights \
            else "lm_head"

    def native_runtime(self) -> Any:
        """The C++ layer loop (``_core.LlamaRuntime``) over the current weights, or None when a
        linear has no C++ kernel (a format that dequantizes per call) or ``native_loop`` is off.

        Built on first use and rebuilt when a weight, norm or bias object or ``matmul_act``
        changes (set_weight, quantize_model); arrays changed in place are seen as they are.
        """
        if not self.native_loop:
            return None
        c = self.config
        names = self.__dict__.get("_native_names")
        if names is None:  # the tensor names the loop reads, built once (this runs every forward)
            lin = [f"model.layers.{i}.{n}" for i in range(c.num_hidden_layers) for n in BLOCK_LINEARS]
            lin.append(self._head_name())
            norm = [f"model.layers.{i}.{n}.weight" for i in range(c.num_hidden_layers)
                    for n in ("input_layernorm", "post_attention_layernorm")] + ["model.norm.weight"]
            names = self.__dict__["_native_names"] = ([n + ".weight" for n in lin], [n + ".bias" for n in lin], norm)
        w, nm = self.weights, self._norms
        weights = [w[n] for n in names[0]]
        biases = [nm.get(n) for n in names[1]]
        norms = [nm[n] for n in names[2]]
        key = (*weights, *biases, *norms)
        cached = self.__dict__.get("_native")
        if cached is not None and cached[0] == self.matmul_act and all(a is b for a, b in zip(cached[1], key)):
            return cached[2]
        args = []
        for w in weights:
            if isinstance(w, QuantizedTensor):
                kernel = w.prepare().__dict__.get("_kernel")
                if not isinstance(kernel, PackedKernel):
                    return None
                args.append(kernel.packed)
            else:
                args.append(w)
        lin = list(zip(args, biases))
        blocks = [(norms[2 * i], norms[2 * i + 1], lin[7 * i:7 * i + 7]) for i in range(c.num_hidden_layers)]
        try:
            rt = _core.LlamaRuntime(c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
                                    c.rms_norm_eps, np.asarray(self.inv_freq, np.float32), c.rope_interleaved,
                                    self.attention_scaling, blocks, norms[-1], lin[-1], self.matmul_act)
        except (ValueError, TypeError, NotImplementedError):
            return None  # e.g. an act the kernels refuse: the Python path raises it where it applies
        self.__dict__["_native"] = (self.matmul_act, key, rt)
        return rt

    def forward(self, tokens: Sequence[int] | np.ndarray, cache: KVCache | None = None, *,
                last_only: bool = False, observer: Observer | None = None) -> np.ndarray:
        """Logits float32 ``[T, vocab]`` for ``tokens`` (``[1, vocab]`` with ``last_only``).

        With a cache, the tokens continue the cached sequence (prefill when the cache is empty,
        decode with one token) and the cache advances. Without an observer the layer loop runs
        in C++ (:meth:`native_runtime`), bit-identical to the Python loop below.
        """
        x = self.embed(tokens)
        T = x.shape[0]
        if T == 0:
            raise ValueError("tokens must not be empty")
        start = cache.length if cache is not None else 0
        rt = self.native_runtime() if observer is None else None
        if rt is not None:
            logits = rt.forward(x, start, None if cache is None else cache.k, None if cache is None else cache.v,
                                last_only)
            if cache is not None:
                cache.length = start + T
            return logits
        positions = np.arange(start, start + T, dtype=np.int64)
        for i in range(self.config.num_hidden_layers):
            x = self.block(i, x, positions, cache, observer)
        if cache is not None:
            cache.length = start + T
        if last_only:
            x = x[-1:]
        return self.head(x, observer)

    __call__ = forward

    # ---- generation ------------------------------------------------------------------------
    def _encode_prompt(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("this model has no tokenizer: pass token ids")
            return self.tokenizer.encode(prompt)
        return [int(t) for t in prompt]

    def stream(self, prompt: str | Sequence[int], max_new_tokens: int = 64, *, temperature: float = 0.0,
               top_k: int = 0, top_p: float = 1.0, seed: int = 0, stop_at_eos: bool = True,
               stats: dict[str, Any] | None = None) -> Iterator[int]:
        """Yield new token ids one at a time: greedy when ``temperature == 0``, else sampling
        (seeded: the same seed gives the same tokens) with optional top-k / top-p."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
            raise ValueError(f"need temperature >= 0, 0 < top_p <= 1, top_k >= 0; got {temperature}, {top_p}, {top_k}")
        ids = self._encode_prompt(prompt)
        if not ids:
            ids = [self.config.bos_token_id if self.config.bos_token_id is not None else 0]
        rng = np.random.default_rng(seed)
        cache = self.new_cache(len(ids) + max_new_tokens)
        st = stats if stats is not None else {}
        st.update(prompt_tokens=len(ids), prefill_seconds=0.0, decode_seconds=0.0, stop_reason="length")
        eos = self.config.eos_token_id if self.tokenizer is None or self.tokenizer.eos_id is None \
            else self.tokenizer.eos_id
        t0 = time.perf_counter()
        logits = self.forward(ids, cache, last_only=True)[-1]
        st["prefill_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for n in range(max_new_tokens):
            nxt = _sample(logits, temperature, top_k, top_p, rng)
            if stop_at_eos and eos is not None and nxt == eos:
                st["stop_reason"] = "eos"
                break
            yield nxt
            if n + 1 == max_new_tokens:
                break
            logits = self.forward([nxt], cache, last_only=True)[-1]
            st["decode_seconds"] = time.perf_counter() - t0
        st["decode_seconds"] = time.perf_counter() - t0

    def generate(self, prompt: str | Sequence[int], max_new_tokens: int = 64, *, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, seed: int = 0, stop_at_eos: bool = True,
                 on_text: Callable[[str], None] | None = None) -> GenerationResult:
        """Generate a continuation. ``on_text`` receives the decoded text as it grows (streaming)."""
        st: dict[str, Any] = {}
        new: list[int] = []
        shown = ""
        for t in self.stream(prompt, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                             stop_at_eos=stop_at_eos, stats=st):
            new.append(t)
            if on_text is not None and self.tokenizer is not None:
                text = self.tokenizer.decode(new)
                if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                    on_text(text[len(shown):])
                    shown = text
        text = self.tokenizer.decode(new) if self.tokenizer is not None else ""
        if on_text is not None and len(text) > len(shown):
            on_text(text[len(shown):])
        return GenerationResult(new, text, st["prompt_tokens"], st["prefill_seconds"], st["decode_seconds"],
                                st["stop_reason"])

    def save(self, path: Any, format: str = "lowbit", **kw: Any) -> Any:
        """Write the model (dense or quantized) to ``path``; returns the path.

        ``format="lowbit"``: lowbit's own folder, read back by :func:`lowbit.load_model`;
        keyword arguments go to :func:`lowbit.models.lowbit_format.save_model`
        (``max_shard_bytes``, ``quantization``, ``overwrite``).
        ``format="gguf"``: one llama.cpp GGUF file; keyword arguments go to
        :func:`lowbit.export.gguf.save_gguf` (``type``, ``imatrix``, ``dtype``, ``name``).
        ``format="awq"``: an AutoAWQ GEMM checkpoint (4-bit grouped linears), see
        :func:`lowbit.export.awq.save_awq` for its keyword arguments.
        """
        if format == "gguf":  # one .gguf file for llama.cpp; kwargs: see lowbit.export.gguf.save_gguf
            from ..export.gguf import save_gguf
            return save_gguf(self, path, **kw)
        if format == "awq":
            from ..export.awq import save_awq
            return save_awq(self, path, **kw)
        if format != "lowbit":
            raise NotImplementedError(f"saving format {format!r} is not implemented; available: 'lowbit', 'gguf', "
                                      f"'awq' ('gptq' is planned)")
        from .lowbit_format import save_model
        if self.quantization is not None:
            kw.setdefault("quantization", {k: v for k, v in self.quantization.items()
                                           if k not in ("quant_method", "lowbit_version", "format_version")})
        return save_model(self, path, **kw)

    def __repr__(self) -> str:
        c = self.config
        nq = sum(isinstance(w, QuantizedTensor) for w in self.weights.values())
        return (f"LlamaModel({c.model_type}, layers={c.num_hidden_layers}, hidden={c.hidden_size}, "
                f"heads={c.num_attention_heads}/{c.num_key_value_heads}, vocab={c.vocab_size}, "
                f"params={self.num_parameters() / 1e6:.1f}M, quantized_linears={nq}, {self.nbytes / 1e6:.1f} MB)")


def _sample(logits: np.ndarray, temperature: float, top_k: int, top_p: float, rng: np.random.Generator) -> int:
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if top_k and top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, top_p) + 1)]
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return int(rng.choice(p.size, p=p))


def model_from_files(files: Any, config_overrides: Mapping[str, Any] | None = None) -> LlamaModel:
    """Build the runtime from a reader's :class:`~lowbit.models.model_files.ModelFiles`."""
    d = dict(files.config)
    if config_overrides:
        d.update(config_overrides)
    try:
        cfg = LlamaConfig.from_hf(d)
    except ValueError as e:
        raise ValueError(f"{files.path}: {e}") from None
    try:
        return LlamaModel(cfg, dict(files.tensors), files.tokenizer,
                          {"path": str(files.path), "format": files.format, **files.metadata},
                          quantization=files.metadata.get("quantization_config"))
    except ValueError as e:
        raise ValueError(f"{files.path}: {e}") from None
