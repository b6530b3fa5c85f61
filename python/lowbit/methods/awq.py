"""AWQ: activation-aware weight quantization (Lin et al., 2023), as AutoAWQ runs it.

Per decoder block, with the block's captured inputs (REFERENCE.md §2):

1. one forward pass of the float block records the inputs of its linears and the outputs of
   its attention and MLP sub-layers;
2. for each scaling group, the grid search over ``a = k / n_grid`` of per-input-channel scales
   ``s = x_mean^a / w_mean^(1-a)`` (duo scaling; normalized by ``sqrt(max(s) min(s))``), each
   candidate scored by the mean squared error of the sub-module output with the group's
   linears pseudo-quantized as ``Q(W s) / s``:

   =========================  ===================  ==============================================
   previous op (takes 1/s)    scaled linears       loss measured on
   =========================  ===================  ==============================================
   input_layernorm            q_proj k_proj v_proj the attention sub-layer (incl. float o_proj)
   v_proj (output rows)       o_proj               o_proj's output; only when v_proj and o_proj
                                                   have the same shape (skipped under GQA)
   post_attention_layernorm   gate_proj up_proj    the MLP (incl. float down_proj)
   up_proj (output rows)      down_proj            down_proj's output
   =========================  ===================  ==============================================

   The best ``s`` is folded in: the previous op is divided by ``s`` and the linears' columns
   multiplied by it (the block computes the same function), and the cached inputs are
   divided by ``s``;
3. the clipping search (not for q_proj / k_proj) on the scaled weights and inputs;
4. the block's linears are then quantized by the pipeline: AWQ's own min-max grid on the
   scaled, clipped weights (:func:`quantize_awq`, ``quantizer="rtn"``), or GPTQ on them
   (``quantizer="gptq"``; the Hessians come from the transformed block).

The pseudo-quantization, the losses of linears scaled on their own (through the Gram matrix of
their inputs) and the clipping search run in C++ (``lowbit/awq.hpp``); the sub-layers of the
block run in lowbit's runtime (:meth:`LlamaModel.self_attention` / :meth:`LlamaModel.mlp`).

Deliberate differences from AutoAWQ: float32 throughout (AutoAWQ runs the block in float16 on
a GPU); the blocks' inputs come from the already quantized earlier blocks (lowbit's pipeline,
as GPTQ), where AutoAWQ feeds the float model's activations; a last partial group is allowed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from ..config import AWQConfig, GPTQConfig, QuantConfig
from ..formats import grouped_int_format
from ..pipeline import BlockContext, BlockTransformResult, register_block_transform
from ..quantize import register_method
from ..tensor import QuantizedTensor

__all__ = ["quantize_awq", "awq_linear", "awq_block_transform", "search_scales", "clip_search",
           "apply_clip", "CLIP_TOKENS"]

CLIP_TOKENS = 512  # AutoAWQ's n_sample_token: the clipping search sees every (n_tok // 512)-th token


@register_method(AWQConfig)
def quantize_awq(W: npt.ArrayLike, config: AWQConfig, **_stats: Any) -> QuantizedTensor:
    """AWQ's quantizer (asymmetric min-max grid per group, REFERENCE §2.6) on ``W`` as given.

    The scaling and clipping need the layer's inputs and an op to absorb ``1/s``:
    :func:`lowbit.quantize_model` applies them block by block before calling this, and
    :func:`awq_linear` does them for one matrix with its inputs.
    """
    if not isinstance(W, np.ndarray):
        W = np.asarray(W)
    qweight, scales, zeros, group_size = _core.awq_quantize(W, config.bits, config.group_size, config.zero_point)
    return QuantizedTensor(format=grouped_int_format(config.bits).name, shape=W.shape,
                           arrays={"qweight": qweight, "scales": scales, "zeros": zeros}, group_size=group_size,
                           per_tensor=False, sym=not config.zero_point, config=config)


# ---------------------------------------------------------------------------- search pieces

def _grid_args(cfg: AWQConfig) -> dict[str, Any]:
    return {"bits": cfg.bits, "group_size": cfg.group_size, "zero_point": cfg.zero_point}


def search_scales(X: np.ndarray | Sequence[np.ndarray], weights: Sequence[np.ndarray], forward: Any,
                  reference: np.ndarray | Sequence[np.ndarray], cfg: AWQConfig) -> tuple[int, np.ndarray, np.ndarray]:
    """The alpha search of one scaling group whose loss needs a sub-module forward pass.

    Args:
        X: the group's input, float32 ``[tokens, in]`` (or per-sample pieces of it).
        weights: the group's linears, float32 ``[out_i, in]``.
        forward: ``forward(ws) -> list of outputs`` (one per sample, float32) with the group's
            weights replaced by ``ws``.
        reference: the float outputs, matching ``forward``'s.
    Returns:
        ``(best k, scales float32 [in], losses float64 [n_grid])``; loss = mean squared error.
    """
    Xs = [X] if isinstance(X, np.ndarray) else list(X)
    refs = [reference] if isinstance(reference, np.ndarray) else list(reference)
    x_mean = _act_mean_abs(Xs)
    w_mean = _core.awq_weight_mean(list(weights), cfg.group_size) if cfg.duo_scaling else None
    numel = sum(r.size for r in refs)
    losses = np.full(cfg.n_grid, np.inf)
    best, best_s = -1, None
    for k in range(cfg.n_grid):
        s = _core.awq_scales(x_mean, w_mean, k / cfg.n_grid, cfg.duo_scaling)
        ws = [_core.awq_pseudo_quantize(w, s, **_grid_args(cfg)) for w in weights]
        outs = forward(ws)
        loss = sum(_core.awq_sum_sq_diff(o, r) for o, r in zip(outs, refs)) / numel
        losses[k] = loss
        if np.isfinite(loss) and (best < 0 or loss < losses[best]):  # the first minimum wins
            best, best_s = k, s
    if best < 0:
        raise ValueError("AWQ scale search: no candidate gave a finite loss (non-finite activations?)")
    return best, best_s, losses


def _act_mean_abs(Xs: Sequence[np.ndarray]) -> np.ndarray:
    """float32 [in]: mean |x| over all tokens of the pieces."""
    n = sum(x.shape[0] for x in Xs)
    total = sum(_core.awq_act_mean_abs(x) * x.shape[0] for x in Xs)
    return (total / n).astype(np.float32)


def _gram(Xs: Sequence[np.ndarray]) -> np.ndarray:
    G = _core.awq_gram(Xs[0])
    for x in Xs[1:]:
        G += _core.awq_gram(x)
    return G


def search_scales_linear(X: np.ndarray | Sequence[np.ndarray], W: np.ndarray,
                         cfg: AWQConfig) -> tuple[int, np.ndarray, np.ndarray]:
    """The alpha search of a linear scaled on its own (o_proj, down_proj): the loss is its
    own output error, computed from the Gram matrix of ``X`` in C++. Returns as
    :func:`search_scales`."""
    Xs = [X] if isinstance(X, np.ndarray) else list(X)
    x_mean = _act_mean_abs(Xs)
    w_mean = _core.awq_weight_mean([W], cfg.group_size) if cfg.duo_scaling else None
    n_tok = sum(x.shape[0] for x in Xs)
    best, s, losses = _core.awq_search_linear(W, _gram(Xs), n_tok, x_mean, w_mean, n_grid=cfg.n_grid,
                                              duo_scaling=cfg.duo_scaling, **_grid_args(cfg))
    return int(best), s, losses


def clip_inputs(Xs: Sequence[np.ndarray]) -> np.ndarray:
    """The tokens the clipping search sees: every ``max(1, n // 512)``-th of all tokens."""
    X = Xs[0] if len(Xs) == 1 else np.concatenate(Xs, axis=0)
    step = max(1, X.shape[0] // CLIP_TOKENS)
    return np.ascontiguousarray(X[::step], dtype=np.float32)


def clip_search(W: np.ndarray, X: np.ndarray, cfg: AWQConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(max_val float32 [out, G], err float64 [out, G])``: the clamp bound per group that
    minimises ``mean_t (x_g . (Q(clamp(w_g)) - w_g))^2`` over shrink factors
    ``1 - i / n_clip_grid`` for ``i < max_shrink * n_clip_grid``. ``X`` as given (subsample
    with :func:`clip_inputs` first)."""
    return _core.awq_clip_search(W, X, n_grid=cfg.n_clip_grid, max_shrink=cfg.max_shrink, **_grid_args(cfg))


def apply_clip(W: np.ndarray, max_val: np.ndarray, group_size: int) -> np.ndarray:
    """``W`` clamped to ``[-max_val, max_val]`` per (row, group); float32."""
    W = np.asarray(W, dtype=np.float32)
    cols = W.shape[1]
    gs = cols if group_size <= 0 else min(group_size, cols)
    bound = np.repeat(max_val, gs, axis=1)[:, :cols]
    return np.clip(W, -bound, bound)


def awq_linear(W: npt.ArrayLike, X: npt.ArrayLike, config: AWQConfig | None = None) -> tuple[QuantizedTensor, np.ndarray]:
    """AWQ for one linear layer on its own inputs (the layer's output is what the search scores).

    Args:
        W: float ``[out, in]``; X: its inputs, float ``[tokens, in]``.
    Returns:
        ``(q, s)``: ``q`` quantizes ``W * s`` (columns scaled, then clipped), ``s`` float32
        ``[in]``; the layer is ``y = (x / s) @ q``, so ``s`` must be folded into whatever
        produces ``x`` (quantize_model does that for whole models).
    """
    cfg = config or AWQConfig()
    W = np.ascontiguousarray(W, dtype=np.float32)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if W.ndim != 2 or X.ndim != 2 or X.shape[1] != W.shape[1]:
        raise ValueError(f"W must be [out, in] and X [tokens, in], got W {W.shape} and X {X.shape}")
    best, s, losses = search_scales_linear(X, W, cfg)
    Ws = W * s
    stats: dict[str, Any] = {"awq_alpha": best / cfg.n_grid, "awq_objective": float(losses[best])}
    if cfg.apply_clip:
        max_val, _ = clip_search(Ws, clip_inputs([X / s]), cfg)
        Ws = apply_clip(Ws, max_val, cfg.group_size)
    q = quantize_awq(Ws, cfg)
    q.stats.update(stats)
    return q, s


# ---------------------------------------------------------------------------- block transform

@dataclass
class _Group:
    prev: str                  # the op that absorbs 1/s: a norm weight or a linear (its output rows)
    linears: tuple[str, ...]   # the scaled linears (suffixes after "model.layers.{i}.")
    inp: str                   # key of the captured input
    module: str                # "attn", "mlp", or "self" (the linear's own output)


_GROUPS = (
    _Group("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "attn_in", "attn"),
    _Group("self_attn.v_proj", ("self_attn.o_proj",), "o_in", "self"),
    _Group("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"), "mlp_in", "mlp"),
    _Group("mlp.up_proj", ("mlp.down_proj",), "down_in", "self"),
)
_NO_CLIP = ("q_", "k_")  # as AutoAWQ: QK^T makes clipping unreliable

_CAPTURE = {"self_attn.q_proj": "attn_in", "self_attn.o_proj": "o_in", "mlp.gate_proj": "mlp_in",
            "mlp.down_proj": "down_in"}


class _StopCapture(Exception):
    pass


def _capture_block(model: Any, i: int, inputs: Sequence[np.ndarray], pos: np.ndarray
                   ) -> tuple[dict[str, list[np.ndarray]], dict[str, list[np.ndarray]]]:
    """One float forward pass of block ``i`` per sample: the inputs of the scaled linears and the
    outputs of the attention sub-layer (o_proj's) and the MLP (down_proj's)."""
    p = f"model.layers.{i}."
    feats: dict[str, list[np.ndarray]] = {k: [] for k in _CAPTURE.values()}
    outs: dict[str, list[np.ndarray]] = {"attn": [], "mlp": []}

    def observe(name: str, x: np.ndarray, y: np.ndarray) -> None:
        key = _CAPTURE.get(name[len(p):])
        if key is not None:
            feats[key].append(np.array(x, dtype=np.float32))
        if name == p + "self_attn.o_proj":
            outs["attn"].append(np.array(y, dtype=np.float32))
        elif name == p + "mlp.down_proj":
            outs["mlp"].append(np.array(y, dtype=np.float32))
            raise _StopCapture  # the block's output is not needed here

    for x in inputs:
        try:
            model.block(i, np.asarray(x, dtype=np.float32), pos, observer=observe)
        except _StopCapture:
            pass
    return feats, outs


@contextmanager
def _swapped(model: Any, new: Mapping[str, np.ndarray]) -> Iterator[None]:
    """Temporarily replace linear weights (the runtime reads ``model.weights`` on every call)."""
    old = {n: model.weights[n] for n in new}
    try:
        model.weights.update(new)
        yield
    finally:
        model.weights.update(old)


def _f32(w: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(w), dtype=np.float32)


@register_block_transform(AWQConfig)
def awq_block_transform(ctx: BlockContext) -> BlockTransformResult:
    """AWQ's scale search, folding and clipping search on block ``ctx.block`` (module docstring).

    Scaling groups whose linears are not all configured with an :class:`AWQConfig` are left
    alone. Returns each AWQ layer's config for the final quantization (the layer's own AWQConfig,
    or a GPTQConfig with ``quantizer="gptq"``) and its search figures.
    """
    model, i = ctx.model, ctx.block
    p = f"model.layers.{i}."
    cfgs = {n: c for n, c in ctx.configs.items() if isinstance(c, AWQConfig)}
    if not cfgs:
        return BlockTransformResult(configs={}, stats={})
    t0 = time.perf_counter()
    pos = ctx.positions
    feats, outs = _capture_block(model, i, ctx.inputs, pos)
    c = model.config
    stats: dict[str, dict[str, Any]] = {}

    for g in _GROUPS:
        names = [p + s for s in g.linears]
        if not all(n in cfgs for n in names):
            continue
        cfg = cfgs[names[0]]
        if any(cfgs[n] != cfg for n in names):
            continue  # one search needs one grid
        if g.prev == "self_attn.v_proj" and (c.kv_dim != c.hidden_size or c.q_dim != c.hidden_size):
            continue  # v_proj's rows do not line up with o_proj's columns (GQA), as AutoAWQ
        Ws = [_f32(model.weights[n + ".weight"]) for n in names]
        Xs = feats[g.inp]
        tg = time.perf_counter()
        if g.module == "self":
            best, s, losses = search_scales_linear(Xs, Ws[0], cfg)
            loss_rtn = None
        else:
            pick = _search_subset(len(Xs), cfg.n_search_samples)
            fwd = _forward_fn(model, i, g.module, names, [Xs[j] for j in pick], pos)
            refs = [outs[g.module][j] for j in pick]
            best, s, losses = search_scales(Xs, Ws, fwd, refs, cfg)
            rtn_ws = [_core.awq_pseudo_quantize(w, None, **_grid_args(cfg)) for w in Ws]
            loss_rtn = sum(_core.awq_sum_sq_diff(o, r) for o, r in zip(fwd(rtn_ws), refs)) / sum(r.size for r in refs)
        # Fold: previous op / s, the group's columns * s, the cached inputs / s.
        prev = p + g.prev + ".weight"
        if g.prev.endswith("norm"):
            model.set_weight(prev, (_f32(model.weights[prev]) / s).astype(np.float32))
        else:
            model.set_weight(prev, (_f32(model.weights[prev]) / s[:, None]).astype(np.float32))
            bias = p + g.prev + ".bias"
            if bias in model.weights:
                model.set_weight(bias, (_f32(model.weights[bias]) / s).astype(np.float32))
        for n, W in zip(names, Ws):
            model.set_weight(n + ".weight", (W * s).astype(np.float32))
        feats[g.inp] = [x / s for x in Xs]
        st = {"awq_alpha": best / cfg.n_grid, "awq_objective": float(losses[best]),
              "awq_losses": [float(v) for v in losses], "awq_search_seconds": time.perf_counter() - tg}
        if loss_rtn is not None:
            st["awq_objective_rtn"] = float(loss_rtn)  # the same loss with s = 1 (plain RTN)
        for n in names:
            stats[n] = dict(st)

    # Clipping search on the scaled weights with the scaled inputs.
    feat_of = {"self_attn.v_proj": "attn_in", "self_attn.o_proj": "o_in", "mlp.gate_proj": "mlp_in",
               "mlp.up_proj": "mlp_in", "mlp.down_proj": "down_in"}
    clip_x: dict[str, np.ndarray] = {}
    for suffix, key in feat_of.items():
        n = p + suffix
        cfg = cfgs.get(n)
        if cfg is None or not cfg.apply_clip or any(t in suffix for t in _NO_CLIP):
            continue
        if key not in clip_x:
            clip_x[key] = clip_inputs(feats[key])
        W = _f32(model.weights[n + ".weight"])
        tc = time.perf_counter()
        max_val, err = clip_search(W, clip_x[key], cfg)
        model.set_weight(n + ".weight", apply_clip(W, max_val, cfg.group_size))
        st = stats.setdefault(n, {})
        st["awq_clip_err"] = float(err.mean())
        gs = W.shape[1] if cfg.group_size <= 0 else min(cfg.group_size, W.shape[1])
        amax = np.maximum.reduceat(np.abs(W), np.arange(0, W.shape[1], gs), axis=1)
        st["awq_clipped_fraction"] = float(np.mean(max_val < amax))  # groups the search shrank
        st["awq_clip_seconds"] = time.perf_counter() - tc

    out_cfgs: dict[str, QuantConfig] = {}
    for n, cfg in cfgs.items():
        out_cfgs[n] = cfg if cfg.quantizer == "rtn" else GPTQConfig(
            bits=cfg.bits, group_size=cfg.group_size, sym=not cfg.zero_point, damp_percent=cfg.damp_percent,
            true_sequential=False)
        stats.setdefault(n, {})["awq_block_seconds"] = time.perf_counter() - t0
    return BlockTransformResult(configs=out_cfgs, stats=stats)


def _search_subset(n: int, k: int) -> list[int]:
    """Indices of the samples that score candidates: all, or ``k`` evenly spaced ones."""
    if k <= 0 or k >= n:
        return list(range(n))
    return sorted({int(round(j * (n - 1) / (k - 1))) for j in range(k)}) if k > 1 else [0]


def _forward_fn(model: Any, i: int, module: str, names: Sequence[str], Xs: Sequence[np.ndarray], pos: np.ndarray):
    """``forward(ws)``: the sub-layer's output per sample with ``names``' weights set to ``ws``."""
    def forward(ws: Sequence[np.ndarray]) -> list[np.ndarray]:
        with _swapped(model, {n + ".weight": w for n, w in zip(names, ws)}):
            if module == "attn":
                return [model.self_attention(i, x, pos[:x.shape[0]]) for x in Xs]
            return [model.mlp(i, x) for x in Xs]
    return forward
