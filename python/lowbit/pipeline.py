"""``quantize_model``: quantize every linear layer of a decoder, block by block.

For each decoder block, in order:

1. the block's inputs are the calibration activations that came out of the previous blocks
   *after* those were quantized (GPTQ's sequential recipe);
2. the statistics the methods need (Hessian, mean x², mean |x|) are accumulated from the
   inputs of the block's linears in one forward pass over all samples. Linears that read the
   same input (q/k/v; gate/up) share one accumulator, and when they also share a config their
   rows are quantized in one call, so GPTQ factorizes their Hessian once;
3. with ``true_sequential`` (GPTQ's default) the block is processed in four steps,
   [q, k, v] → [o] → [gate, up] → [down], each step's inputs captured with the earlier steps
   already quantized; each capture stops the forward pass as soon as it has what it needs;
4. the block's outputs (with quantized weights) become the next block's inputs.

Only one block's activations are held at a time: its inputs (``n_samples × seq_len × hidden``
values, float16 with ``activation_dtype="float16"``) and, while the block is processed, either
its outputs (another ``hidden``-wide copy) or, under ``true_sequential``, the MLP's inner
activations (``n_samples × seq_len × intermediate`` in the same dtype: the staged pass keeps
them for the down projection's statistics). The weights of the model itself are read where
they lie (memory-mapped for safetensors/llama2.c files). Peak memory is therefore about those
activations + one block's weights in float32 + the quantized model, which is what makes a
model bigger than RAM possible once its source is memory-mapped. SmolLM2-135M with 128 × 2048
calibration tokens in float32: 0.6 GB per hidden-wide copy, 1.6 GB of MLP activations.

Block-level methods (AWQ) register a *block transform* with :func:`register_block_transform`:
before a block's linears are quantized it receives the block's inputs, may change the block's
float weights (e.g. fold scales into norms), and returns the config each of its layers is then
quantized with (statistics are captured on the transformed block) plus per-layer figures.

Methods that need no statistics (RTN) skip the forward passes entirely.
With ``out=DIR`` finished blocks are checkpointed under ``DIR.partial/``; ``resume=True``
picks up after the last finished block; the model is written to ``DIR`` atomically at the end.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from .config import QuantConfig
from .data import Calibration
from .evaluate import peak_memory_mb
from .gguf_mixtures import expand_layer_config
from .imatrix import layer_statistics
from .models.llama import LlamaModel
from .quantize import method_statistics, quantize
from .statistics import HessianAccumulator
from .tensor import QuantizedTensor, _jsonable

__all__ = ["quantize_model", "resolve_layer_configs", "DEFAULT_SKIP", "BlockContext", "BlockTransformResult",
           "needs_calibration", "register_block_transform"]

DEFAULT_SKIP = ("lm_head", "embed")

# Steps of a block under true_sequential; each step's linears read inputs that depend only on
# the steps before it. The first linear listed is where its input is observed.
_STEPS = (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), ("self_attn.o_proj",),
          ("mlp.gate_proj", "mlp.up_proj"), ("mlp.down_proj",))


class _StopForward(Exception):
    """Raised by an observer once it has captured what a step needs."""


# ---- block transforms -------------------------------------------------------------------

@dataclass
class BlockContext:
    """What a block transform sees.

    Attributes:
        model: the model being quantized; blocks before ``block`` are already quantized. The
            transform changes float weights with ``model.set_weight(name, array)`` (never in
            place: the source arrays may be read-only memory maps).
        block: the block's index.
        inputs: hidden states entering the block, one float32/float16 ``[T, D]`` per sample.
        positions: int64 ``[T]`` positions of the samples' tokens.
        configs: the block's layer configs (layer names without ``.weight``).
    """
    model: LlamaModel
    block: int
    inputs: Sequence[np.ndarray]
    positions: np.ndarray
    configs: Mapping[str, QuantConfig]


@dataclass
class BlockTransformResult:
    """``configs``: for the layers the transform handled, the config they are then quantized
    with (the pipeline captures its statistics on the transformed block); layers not listed keep
    theirs. ``stats``: per-layer figures added to the QuantizedTensor's stats and layer table."""
    configs: dict[str, QuantConfig]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)


BlockTransform = Callable[[BlockContext], BlockTransformResult]
_BLOCK_TRANSFORMS: dict[type[QuantConfig], BlockTransform] = {}


def register_block_transform(config_cls: type[QuantConfig]) -> Callable[[BlockTransform], BlockTransform]:
    """Decorator: ``fn(ctx: BlockContext) -> BlockTransformResult`` runs on every block that
    has a layer configured with ``config_cls``, before the block's layers are quantized."""
    def deco(fn: BlockTransform) -> BlockTransform:
        if config_cls in _BLOCK_TRANSFORMS:
            raise ValueError(f"{config_cls.__name__} already has a block transform")
        _BLOCK_TRANSFORMS[config_cls] = fn
        return fn
    return deco


def needs_calibration(config: QuantConfig) -> bool:
    """Whether quantize_model needs calibration data for ``config``: its method gathers
    statistics, or transforms whole blocks with their inputs (AWQ)."""
    return bool(method_statistics(config)) or type(config) in _BLOCK_TRANSFORMS


def _transform_block(model: LlamaModel, i: int, acts: Sequence[np.ndarray] | None, pos: np.ndarray | None,
                     cfgs: dict[str, QuantConfig]) -> tuple[dict[str, QuantConfig], dict[str, dict[str, Any]], list[str]]:
    """Run the registered transforms of block ``i``'s config types. Returns the configs to
    quantize with, per-layer figures, and the names of float weights the transforms replaced."""
    kinds = [k for k in dict.fromkeys(type(c) for c in cfgs.values()) if k in _BLOCK_TRANSFORMS]
    if not kinds:
        return cfgs, {}, []
    prefix = f"model.layers.{i}."
    before = {k: v for k, v in model.weights.items() if k.startswith(prefix)}
    out, stats = dict(cfgs), {}
    for kind in kinds:
        res = _BLOCK_TRANSFORMS[kind](BlockContext(model, i, acts or [], pos, dict(out)))
        for n, c in res.configs.items():
            if n not in out or not isinstance(c, QuantConfig):
                raise ValueError(f"the {kind.__name__} block transform returned a config for {n!r}, which is not a "
                                 f"layer of block {i} to quantize, or not a QuantConfig")
            out[n] = c
        for n, st in res.stats.items():
            stats.setdefault(n, {}).update(st)
    changed = [k for k, v in model.weights.items() if k.startswith(prefix) and before.get(k) is not v]
    return out, stats, changed


def resolve_layer_configs(model: LlamaModel, config: QuantConfig | None, *,
                          skip: Iterable[str] = DEFAULT_SKIP,
                          per_layer: Mapping[str, QuantConfig | None] | None = None) -> dict[str, QuantConfig]:
    """The config of every linear layer to quantize (name without ``.weight``).

    ``per_layer`` maps regular expressions (``re.search`` on the layer name) to a config, or to
    None to leave the layer unquantized; the first matching pattern wins, then ``config``.
    ``skip`` lists substrings of names to leave alone (default: the embedding and lm_head;
    lm_head is never quantized by the block walk, and the embedding is not a linear).
    A ``GGUFConfig`` naming a llama.cpp mixture (``type="Q4_K_M"``, or an ftype such as ``"Q4_0"``)
    becomes, per layer, the GGUFConfig of the ggml type llama.cpp's quantizer gives that tensor
    (``lowbit.gguf_mixtures``); a layer it leaves in F16 (row length no block divides) stays dense.
    """
    # a BnbConfig names more modules to leave alone (transformers' llm_int8_skip_modules)
    skip = tuple(skip) + tuple(getattr(config, "llm_int8_skip_modules", None) or ())
    rules = []
    for pat, cfg in (per_layer or {}).items():
        if cfg is not None and not isinstance(cfg, QuantConfig):
            raise TypeError(f"per_layer[{pat!r}] must be a QuantConfig or None, got {type(cfg).__name__}")
        try:
            rules.append((re.compile(pat), cfg))
        except re.error as e:
            raise ValueError(f"per_layer pattern {pat!r} is not a valid regular expression: {e}") from None
    if config is not None and not isinstance(config, QuantConfig):
        raise TypeError(f"config must be a QuantConfig (e.g. lowbit.GPTQConfig()), got {type(config).__name__}")
    out: dict[str, QuantConfig] = {}
    for name in model.linear_names()[:-1]:  # lm_head is not part of the block walk
        if any(s in name for s in skip):
            continue
        cfg = config
        for rx, c in rules:
            if rx.search(name):
                cfg = c
                break
        cfg = expand_layer_config(model, name, cfg)  # a llama.cpp mixture -> this layer's ggml type
        if cfg is not None:
            method_statistics(cfg)  # NotImplementedError now, not after an hour
            out[name] = cfg
    return out


def _as_float32(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.float32 else x.astype(np.float32)


@dataclass
class _Group:
    """Linears of one block that read the same input, with one statistics accumulator."""
    names: list[str]
    acc: HessianAccumulator | None = None


def _run_id(model: LlamaModel, layer_cfgs: Mapping[str, QuantConfig], calib: Calibration | None,
            **options: Any) -> str:
    """What a checkpoint must match to be resumed: the model (its source and config), every
    layer's config, the calibration tokens (values and shape), the pipeline's options and the
    lowbit version that wrote it."""
    from . import __version__
    h = hashlib.sha256()
    h.update(json.dumps({"layers": {k: v.to_dict() for k, v in sorted(layer_cfgs.items())},
                         "model": {"source": model.source, "config": repr(model.config)},
                         "options": options, "version": __version__,
                         "calibration": calib.tokens_id() if calib is not None else None},
                        sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def quantize_model(model: LlamaModel, config: QuantConfig | None, calibration: Calibration | None = None, *,
                   progress: bool = True, skip: Iterable[str] = DEFAULT_SKIP,
                   per_layer: Mapping[str, QuantConfig | None] | None = None, true_sequential: bool | None = None,
                   activation_dtype: str = "float32", out: str | Path | None = None,
                   resume: bool = False) -> LlamaModel:
    """Quantize ``model``'s linear layers; returns a new :class:`LlamaModel` whose linears are
    QuantizedTensors (the input model is not modified).

    Args:
        config: the method for every layer (``RTNConfig``, ``GPTQConfig``, ...).
        calibration: token windows from :func:`lowbit.data.calibration`; required when a
            method needs statistics (GPTQ). None for calibration-free methods.
        progress: a progress bar over layers with ETA and the last layer's figures.
        skip, per_layer: see :func:`resolve_layer_configs`.
        true_sequential: default: the config's own ``true_sequential`` (GPTQ) else False.
        activation_dtype: "float32" or "float16" storage of the block activations.
        out: also save the quantized model to this folder (lowbit format), atomically, with
            per-block checkpoints in ``<out>.partial/`` while running.
        resume: continue from the checkpoints in ``<out>.partial/`` of an interrupted run of
            the same model, configs, calibration tokens, options and lowbit version (else
            ``ValueError``); the resumed blocks' per-layer figures come back marked ``resumed``.

    The result's ``quantization`` attribute holds the configs, the calibration provenance,
    per-layer figures (seconds, objective, damping), total seconds and the process's peak
    resident memory (``peak_memory_mb``: since the process started, or since the caller's last
    :func:`lowbit.evaluate.reset_peak_memory`).
    """
    t_start = time.perf_counter()
    layer_cfgs = resolve_layer_configs(model, config, skip=skip, per_layer=per_layer)
    needs_stats = {n: method_statistics(c) for n, c in layer_cfgs.items()}
    has_transforms = any(type(c) in _BLOCK_TRANSFORMS for c in layer_cfgs.values())
    any_stats = any(needs_stats.values()) or has_transforms
    if any_stats and calibration is None:
        raise ValueError("this method needs calibration data: pass lowbit.data.calibration(model, files) "
                         "(or lowbit.data.calibration(model) for data-free samples from the model)")
    if activation_dtype not in ("float32", "float16"):
        raise ValueError(f"activation_dtype must be 'float32' or 'float16', got {activation_dtype!r}")
    if true_sequential is None:
        true_sequential = bool(config is not None and getattr(config, "true_sequential", False))
    if calibration is not None:
        shape = calibration.tokens.shape
        if len(shape) != 2 or min(shape) < 1 or shape[1] > model.config.max_position_embeddings:
            raise ValueError(f"calibration tokens must be [n_samples >= 1, 1 <= seq_len <= "
                             f"{model.config.max_position_embeddings}], got {shape}")
    if resume and out is None:
        raise ValueError("resume=True needs out= (the folder whose .partial checkpoints to resume from)")

    weights = dict(model.weights)
    qmodel = LlamaModel(model.config, weights, model.tokenizer, dict(model.source))
    # Calibration activations flow through the already-quantized layers in float32 (W_hat
    # tiles times a float GEMM), as GPTQ's reference propagates them through fake-quantized
    # weights: no int8 activation rounding in the statistics, and on AVX2 the float GEMM is
    # also the faster path at calibration lengths. The returned model runs as `model` does.
    qmodel.matmul_act = "float32"
    n_layers = model.config.num_hidden_layers
    # beside the output folder (Path drops a trailing "/", which would put it inside)
    partial = Path(out).with_name(Path(out).name + ".partial") if out is not None else None
    run_id = _run_id(model, layer_cfgs, calibration if any_stats else None, skip=sorted(skip),
                     true_sequential=true_sequential, activation_dtype=activation_dtype)
    layer_stats: list[dict[str, Any]] = []  # per-layer figures, those of resumed blocks first
    done_blocks = _load_checkpoints(partial, run_id, qmodel, n_layers, layer_stats) if (partial and resume) else 0
    if partial is not None:
        if partial.exists() and not resume:
            shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        (partial / "run.json").write_text(json.dumps({"run_id": run_id}))

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(layer_cfgs), desc="quantize", unit="layer", dynamic_ncols=True)
        bar.update(sum(1 for n in layer_cfgs if int(n.split(".")[2]) < done_blocks))

    # Activations entering the current block, one [T, D] array per sample.
    acts: list[np.ndarray] | None = None
    if any_stats:
        dt = np.float16 if activation_dtype == "float16" else np.float32
        acts = [model.embed(t).astype(dt) for t in calibration.tokens]
        pos = np.arange(calibration.seq_len, dtype=np.int64)
    try:
        for i in range(n_layers):
            block_names = [n for n in layer_cfgs if n.startswith(f"model.layers.{i}.")]
            changed: list[str] = []
            staged = False  # True once a _StagedBlock has computed the next block's inputs
            if i < done_blocks:
                pass  # weights restored from the checkpoint
            else:
                block_cfgs, extra, changed = _transform_block(qmodel, i, acts, pos if acts is not None else None,
                                                              {n: layer_cfgs[n] for n in block_names})
                block_needs = {n: method_statistics(c) for n, c in block_cfgs.items()}
                if not any(block_needs.values()):
                    for name in block_names:
                        _quantize_one(weights, name, block_cfgs[name], {}, layer_stats, bar, i, extra.get(name))
                elif true_sequential and _STAGED_TRUE_SEQUENTIAL:
                    # one forward pass over the block in total: each step's inputs come from the
                    # cached outputs of the step before, computed with its quantized weights
                    run = _StagedBlock(qmodel, i, acts, pos)
                    for k, step in enumerate(_STEPS):
                        todo = [n for n in (f"model.layers.{i}.{s}" for s in step) if n in block_cfgs]
                        g = _Group(todo)
                        for x in run.step_inputs(k):
                            if todo and any(block_needs[n] for n in todo):
                                if g.acc is None:
                                    g.acc = _new_accumulator(todo, block_cfgs, block_needs, x.shape[-1])
                                g.acc.add(_sink_weighted(x, todo, block_cfgs, block_needs))
                        if todo:
                            _quantize_group(weights, g, block_cfgs, block_needs, layer_stats, bar, i, extra)
                    if i + 1 < n_layers:
                        acts, staged = run.outputs(), True
                else:
                    steps = _STEPS if true_sequential else (tuple(n for s in _STEPS for n in s),)
                    for step in steps:
                        names = [f"model.layers.{i}.{s}" for s in step]
                        todo = [n for n in names if n in block_cfgs]
                        if not todo:
                            continue
                        groups = _capture(qmodel, i, acts, pos, todo, block_needs, block_cfgs)
                        for g in groups:
                            _quantize_group(weights, g, block_cfgs, block_needs, layer_stats, bar, i, extra)
            if partial is not None and i >= done_blocks:
                _save_checkpoint(partial, weights, block_names, i, [n for n in changed if n not in
                                                                    {b + ".weight" for b in block_names}],
                                 [r for r in layer_stats if r["block"] == i])
            if acts is not None and i + 1 < n_layers and not staged:
                dt = acts[0].dtype
                acts = [qmodel.block(i, _as_float32(x), pos).astype(dt) for x in acts]
    finally:
        if bar is not None:
            bar.close()

    seconds = time.perf_counter() - t_start
    qmodel.matmul_act = model.matmul_act
    qmodel.quantization = {
        "config": config.to_dict() if config is not None else None,
        "per_layer": {k: v.to_dict() for k, v in layer_cfgs.items() if config is None or v != config},
        "skip": list(skip), "true_sequential": true_sequential,
        "calibration": calibration.provenance if calibration is not None else None,
        "layers": layer_stats, "seconds": seconds, "resumed_blocks": done_blocks, "peak_memory_mb": peak_memory_mb(),
    }
    if out is not None:
        qmodel.save(out, overwrite=True)
        shutil.rmtree(partial, ignore_errors=True)
    return qmodel


# The staged pass below; the observer-based _capture (a partial forward pass per step) is the
# reference it is tested against.
_STAGED_TRUE_SEQUENTIAL = True


class _StagedBlock:
    """Block ``i``'s forward pass over every sample, run once, step by step (_STEPS): the
    inputs of step k are computed when asked for, from the cached outputs of step k-1, with
    the weights as they are then (the earlier steps already quantized). Per sample it keeps at
    most the residual stream and one intermediate (peak: D + intermediate_size floats a token,
    in the activation dtype)."""

    def __init__(self, model: LlamaModel, i: int, acts: list[np.ndarray], pos: np.ndarray) -> None:
        self.m, self.i, self.pos, self.dt = model, i, pos, acts[0].dtype
        self.p = f"model.layers.{i}."
        self.x = acts                 # residual stream entering the attention (then after it)
        self.mid: list[np.ndarray] = []   # o_proj's input, then down_proj's input

    def _norm(self, x: np.ndarray, which: str) -> np.ndarray:
        m = self.m
        return _core.rms_norm(_as_float32(x), m._norms[self.p + which], m.config.rms_norm_eps)

    def step_inputs(self, k: int) -> Iterator[np.ndarray]:
        m, p = self.m, self.p
        for j in range(len(self.x)):
            if k == 0:    # q/k/v read the normed block input
                y = self._norm(self.x[j], "input_layernorm.weight")
            elif k == 1:  # o_proj reads the attention heads (q/k/v now quantized)
                y = m.attention_heads(self.i, self._norm(self.x[j], "input_layernorm.weight"), self.pos)
                self.mid.append(y.astype(self.dt))
            elif k == 2:  # gate/up read the normed residual after the attention (o quantized)
                h = _as_float32(self.x[j]) + m.linear(p + "self_attn.o_proj", _as_float32(self.mid[j]))
                self.x[j], self.mid[j] = h.astype(self.dt), None
                y = self._norm(h, "post_attention_layernorm.weight")
            else:         # down reads silu(gate) * up (gate/up quantized)
                h = self._norm(self.x[j], "post_attention_layernorm.weight")
                y = _core.silu_mul(m.linear(p + "mlp.gate_proj", h), m.linear(p + "mlp.up_proj", h))
                self.mid[j] = y.astype(self.dt)
            yield y

    def outputs(self) -> list[np.ndarray]:
        """The block's outputs (the next block's inputs), down_proj now quantized."""
        out = []
        for j in range(len(self.x)):
            y = _as_float32(self.x[j]) + self.m.linear(self.p + "mlp.down_proj", _as_float32(self.mid[j]))
            self.x[j] = self.mid[j] = None
            out.append(y.astype(self.dt))
        return out


def _statistics_options(names: Sequence[str], cfgs: Mapping[str, QuantConfig],
                        needs: Mapping[str, tuple[str, ...]]) -> tuple[str, int, float]:
    """(accumulation dtype, sink tokens, sink weight) that the configs of linears sharing one
    input ask for (GPTQConfig's hessian_dtype / sink_tokens / sink_weight; defaults else).
    Members that need no statistics (RTN next to GPTQ) have no say."""
    opts = set()
    for n in (m for m in names if needs[m]):
        c = cfgs[n]
        w = float(getattr(c, "sink_weight", 1.0))
        opts.add((getattr(c, "hessian_dtype", "float32"), int(getattr(c, "sink_tokens", 0)) if w != 1.0 else 0, w))
    if len(opts) > 1:
        raise ValueError(f"{', '.join(names)} read one input, so they share one Hessian, but their configs ask for "
                         f"different statistics (hessian_dtype, sink_tokens, sink_weight) {sorted(opts)}: "
                         "give them the same values")
    return opts.pop() if opts else ("float32", 0, 1.0)


def _new_accumulator(names: Sequence[str], cfgs: Mapping[str, QuantConfig], needs: Mapping[str, tuple[str, ...]],
                     in_features: int) -> HessianAccumulator:
    return HessianAccumulator(in_features, _statistics_options(names, cfgs, needs)[0])


def _sink_weighted(x: np.ndarray, names: Sequence[str], cfgs: Mapping[str, QuantConfig],
                   needs: Mapping[str, tuple[str, ...]]) -> np.ndarray:
    """One sample's inputs [T, in] with its first ``sink_tokens`` rows scaled by
    sqrt(sink_weight), so that they count ``sink_weight`` times in X^T X (GPTQConfig).

    Why: a window's first tokens are attention sinks (massive activations; most heads put
    most of their weight on their keys/values), so an error in their hidden states reaches
    every later token, while the paper's Hessian weighs them as one token each. SmolLM2-135M,
    g128 sym, 16 x 2048 WikiText-2 valid calibration, KL divergence to the float model / ppl
    on the first 10 test windows of 2048 (reference ppl 19.92; RTN 4-bit 0.518 / 30.46):

    =====================  ===============  ===============
    sink_weight (1 token)  4-bit KLD / ppl  3-bit KLD / ppl
    =====================  ===============  ===============
    1 (the paper)          0.453 / 31.29    1.591 / 104.9
    4                      0.367 / 29.01
    16 (the default)       0.310 / 27.15    1.394 / 80.9
    64                     0.312 / 26.36
    256                    0.334 / 27.76
    0 (first 4 tokens)     0.972 / 55.99
    =====================  ===============  ===============

    Weighting the first 4 tokens by 4 gave 0.366 / 28.68: the first token carries the effect.
    With 32 x 512 calibration, sink_weight=16 gave 0.275 / 25.73 (the paper's Hessian: ppl 28.87).
    """
    _, k, w = _statistics_options(names, cfgs, needs)
    if k == 0:
        return x
    y = np.array(x, dtype=np.float32, copy=True)
    y[:k] *= np.float32(np.sqrt(w))
    return y


def _capture(model: LlamaModel, i: int, acts: list[np.ndarray], pos: np.ndarray, todo: list[str],
             needs: Mapping[str, tuple[str, ...]], cfgs: Mapping[str, QuantConfig]) -> list[_Group]:
    """Run block ``i`` over every sample just far enough to see the inputs of the linears in
    ``todo`` and fold them into one accumulator per distinct input (one per _STEPS entry)."""
    groups: dict[str, _Group] = {}
    for step in _STEPS:
        members = [f"model.layers.{i}.{s}" for s in step if f"model.layers.{i}.{s}" in todo]
        if members:
            key = f"model.layers.{i}.{step[0]}"
            groups[key] = _Group(members)
    stop_at = list(groups)[-1]  # the forward pass stops once the last needed input is seen

    def observe(name: str, x: np.ndarray, _y: np.ndarray) -> None:
        g = groups.get(name)
        if g is not None:
            if any(needs[n] for n in g.names):
                if g.acc is None:
                    g.acc = _new_accumulator(g.names, cfgs, needs, x.shape[-1])
                g.acc.add(_sink_weighted(x, g.names, cfgs, needs))
            if name == stop_at:
                raise _StopForward

    for x in acts:
        try:
            model.block(i, _as_float32(x), pos, observer=observe)
        except _StopForward:
            pass
    return list(groups.values())


def _stats_for(acc: HessianAccumulator | None, wanted: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in wanted:
        if acc is None:
            raise RuntimeError("statistics were requested but no inputs were captured")
        out[s] = acc if s == "hessian" else getattr(acc, s)()
    return out


def _quantize_group(weights: dict[str, Any], g: _Group, cfgs: Mapping[str, QuantConfig],
                    needs: Mapping[str, tuple[str, ...]], layer_stats: list[dict[str, Any]], bar: Any, block: int,
                    extra: Mapping[str, dict[str, Any]] | None = None) -> None:
    # Linears with the same config and a row-separable method are quantized as one matrix
    # (their rows stacked): one Hessian factorization instead of one per linear.
    by_cfg: dict[str, list[str]] = {}
    for n in g.names:
        by_cfg.setdefault(cfgs[n].to_json(None), []).append(n)
    for members in by_cfg.values():
        cfg = cfgs[members[0]]
        stats = _stats_for(g.acc, needs[members[0]])
        if len(members) > 1 and "hessian" in needs[members[0]]:
            Ws = [np.asarray(weights[n + ".weight"]) for n in members]
            t0 = time.perf_counter()
            q = quantize(np.concatenate(Ws, axis=0), cfg, **stats)
            secs = time.perf_counter() - t0
            start = 0
            for n, W in zip(members, Ws):
                part = _rows(q, start, start + W.shape[0])
                part.stats["shared_solve"] = members
                start += W.shape[0]
                _record(weights, n, part, layer_stats, bar, block, secs / len(members), (extra or {}).get(n))
        else:
            for n in members:
                _quantize_one(weights, n, cfg, stats, layer_stats, bar, block, (extra or {}).get(n))


def _quantize_one(weights: dict[str, Any], name: str, cfg: QuantConfig, stats: dict[str, Any],
                  layer_stats: list[dict[str, Any]], bar: Any, block: int, extra: dict[str, Any] | None = None) -> None:
    stats = {**stats, **layer_statistics(cfg, name)}  # a GGUFConfig's imatrix file wins over calibration
    t0 = time.perf_counter()
    q = quantize(np.asarray(weights[name + ".weight"]), cfg, **stats)
    _record(weights, name, q, layer_stats, bar, block, time.perf_counter() - t0, extra)


def _record(weights: dict[str, Any], name: str, q: QuantizedTensor, layer_stats: list[dict[str, Any]], bar: Any,
            block: int, seconds: float, extra: dict[str, Any] | None = None) -> None:
    if extra:  # a block transform's figures (e.g. AWQ's search objective) describe the layer
        q.stats.update(extra)
    weights[name + ".weight"] = q
    row = {"layer": name, "block": block, "method": q.config.quant_method if q.config else None, "format": q.format,
           "bits_per_weight": q.bits_per_weight, "seconds": seconds}
    for k in ("objective", "objective_rtn", "damp_percent_used", "damp_retries", "dead_columns"):
        if q.stats.get(k) is not None:
            row[k] = q.stats[k]
    for k, v in (extra or {}).items():
        if isinstance(v, (int, float)):
            row[k] = v
    layer_stats.append(row)
    if bar is not None:
        short = name.replace("model.layers.", "")
        post = {"layer": short}
        if "objective" in row and row.get("objective_rtn"):
            post["obj/rtn"] = f"{row['objective'] / row['objective_rtn']:.3f}"
        bar.set_postfix(post, refresh=False)
        bar.update(1)


def _rows(q: QuantizedTensor, r0: int, r1: int) -> QuantizedTensor:
    """Rows ``r0:r1`` of a (non per-tensor) grouped QuantizedTensor: rows are independent."""
    a = {k: (v if k == "g_idx" else np.ascontiguousarray(v[r0:r1])) for k, v in q.arrays.items()}
    return QuantizedTensor(format=q.format, shape=(r1 - r0, q.shape[1]), arrays=a, group_size=q.group_size,
                           per_tensor=q.per_tensor, sym=q.sym, config=q.config, stats=dict(q.stats))


# ---- checkpoints for resume -------------------------------------------------------------

_FLOAT_CHECKPOINT = "float-weights.safetensors"  # float tensors a block transform replaced (norms ...)
_STATS_CHECKPOINT = "layers.json"  # the block's per-layer figures


def _save_checkpoint(partial: Path, weights: Mapping[str, Any], names: list[str], block: int,
                     float_names: Sequence[str] = (), stats: Sequence[Mapping[str, Any]] = ()) -> None:
    d = partial / f"block-{block:04d}"
    tmp = partial / f".block-{block:04d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for n in names:
        q = weights[n + ".weight"]
        if isinstance(q, QuantizedTensor):
            q.save(tmp / f"{n}.safetensors")
    if float_names:
        from safetensors.numpy import save_file
        save_file({n: np.ascontiguousarray(weights[n]) for n in float_names}, str(tmp / _FLOAT_CHECKPOINT))
    # the block's per-layer figures, so a resumed run's result still describes every layer
    (tmp / _STATS_CHECKPOINT).write_text(json.dumps(_jsonable(list(stats))))
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)  # a block's checkpoint appears whole or not at all


def _load_checkpoints(partial: Path, run_id: str, model: LlamaModel, n_layers: int,
                      layer_stats: list[dict[str, Any]]) -> int:
    """Restore finished blocks into ``model`` and their per-layer figures into ``layer_stats``
    (marked ``"resumed": True``); returns how many consecutive blocks from 0 are done."""
    meta = partial / "run.json"
    if not meta.is_file():
        return 0
    if json.loads(meta.read_text()).get("run_id") != run_id:
        raise ValueError(f"{partial}: checkpoints of a different run (another model, configs, calibration tokens, "
                         f"options or lowbit version); delete it or run without resume=True")
    done = 0
    for i in range(n_layers):
        d = partial / f"block-{i:04d}"
        if not d.is_dir():
            break
        for f in sorted(d.glob("*.safetensors")):
            if f.name == _FLOAT_CHECKPOINT:
                from safetensors.numpy import load_file
                for k, v in load_file(str(f)).items():
                    model.set_weight(k, v)
                continue
            q = QuantizedTensor.load(f)
            model.weights[f.name[: -len(".safetensors")] + ".weight"] = q
        stats = d / _STATS_CHECKPOINT
        if stats.is_file():
            layer_stats.extend({**r, "resumed": True} for r in json.loads(stats.read_text()))
        done = i + 1
    return done
