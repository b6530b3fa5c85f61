"""Typed, validated configuration objects, one per quantization method.

Each method has a frozen dataclass deriving from :class:`QuantConfig`: :class:`RTNConfig`,
:class:`GPTQConfig`, :class:`AWQConfig`, :class:`HQQConfig`, :class:`BnbConfig` (NF4/FP4/
LLM.int8), :class:`GGUFConfig` (a ggml type or a mixture such as ``Q4_K_M``), :class:`FP8Config`,
:class:`TorchAoConfig` (torchao int4 "tinygemm" / int8 weight-only), :class:`EetqConfig`.

* Field names follow Hugging Face transformers where they overlap; ``quant_method`` is a class
  constant named as transformers names it and is written into every dict and JSON text.
* Objects are keyword-only, frozen, compared by field and hashable (sequences become tuples);
  ``cfg.replace(**changes)`` returns a new, re-validated object.
* ``__post_init__`` validates: ``TypeError`` for a wrong type (``bool`` is never an int or a
  float here, nor an int a bool), ``ValueError`` for a bad value; messages name the class, the
  field, the value given and the allowed values. String choices are stored as plain ``str``
  (a ``(str, Enum)`` member is accepted and stored as its value).
* ``to_dict``/``from_dict`` and ``to_json``/``from_json`` round-trip exactly. ``from_dict``
  rejects unknown keys, or with ``strict=False`` returns ``(config, leftovers)``.
* Subclasses register by ``quant_method`` when defined; :func:`load_config` (or
  ``QuantConfig.from_dict``) dispatches on ``d["quant_method"]``; see :func:`registered_configs`.

    >>> cfg = GPTQConfig(bits=4, group_size=128, damp_percent=0.01)
    >>> load_config(cfg.to_json()) == cfg
    True
"""

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Literal, TypeVar, overload

__all__ = [
    "QuantConfig", "RTNConfig", "GPTQConfig", "AWQConfig", "HQQConfig", "BnbConfig",
    "GGUFConfig", "FP8Config", "TorchAoConfig", "EetqConfig", "load_config", "registered_configs",
]

_REGISTRY: "dict[str, type[QuantConfig]]" = {}
_C = TypeVar("_C", bound="QuantConfig")


# ----------------------------------------------------------------------------- validators
# Each returns the (normalized) value or raises TypeError / ValueError naming the field.

def _bad_type(cls_name: str, field: str, value: object, want: str, expect: str) -> TypeError:
    return TypeError(f"{cls_name}.{field} must be {want} ({expect}), "
                     f"got {value!r} of type {type(value).__name__}")


def _bad_value(cls_name: str, field: str, value: object, expect: str) -> ValueError:
    return ValueError(f"{cls_name}.{field} must be {expect}, got {value!r}")


def _plain(value: object) -> object:
    """An Enum member becomes its value; anything else is returned unchanged."""
    return value.value if isinstance(value, Enum) else value


def _check_choice(cls_name: str, field: str, value: object, allowed: tuple[Any, ...]) -> Any:
    """``value`` must be one of ``allowed`` (all ints or all strs; bool is no int here)."""
    value = _plain(value)
    expect = f"one of {allowed!r}"
    want = int if all(isinstance(a, int) for a in allowed) else str
    if not isinstance(value, want) or isinstance(value, bool):
        raise _bad_type(cls_name, field, value, want.__name__, expect)
    if value not in allowed:
        raise _bad_value(cls_name, field, value, expect)
    return value


def _check_int(cls_name: str, field: str, value: object, *, lo: int | None = None,
               hi: int | None = None, special: tuple[int, ...] = ()) -> int:
    """``value`` must be an int in ``[lo, hi]`` (open ends where None) or one of ``special``."""
    rng = (f"an int in [{lo}, {hi}]" if lo is not None and hi is not None
           else f"an int >= {lo}" if lo is not None
           else f"an int <= {hi}" if hi is not None else "an int")
    expect = f"{', '.join(map(str, special))} or {rng}" if special else rng
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad_type(cls_name, field, value, "int", expect)
    if value in special or ((lo is None or value >= lo) and (hi is None or value <= hi)):
        return value
    raise _bad_value(cls_name, field, value, expect)


def _check_bool(cls_name: str, field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _bad_type(cls_name, field, value, "bool", "True or False")
    return value


def _check_float_range(cls_name: str, field: str, value: object, lo: float,
                       hi: float | None = None, *, lo_incl: bool = False,
                       hi_incl: bool = False) -> float:
    """``value`` must be a finite real between ``lo`` and ``hi``; returned as ``float``."""
    if hi is None:
        expect = f"a finite number {'>=' if lo_incl else '>'} {lo:g}"
    else:
        expect = f"a number in {'[' if lo_incl else '('}{lo:g}, {hi:g}{']' if hi_incl else ')'}"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _bad_type(cls_name, field, value, "float", expect)
    v = float(value)
    ok = (math.isfinite(v) and (v >= lo if lo_incl else v > lo)
          and (hi is None or (v <= hi if hi_incl else v < hi)))
    if not ok:
        raise _bad_value(cls_name, field, value, expect)
    return v


def _check_str_tuple(cls_name: str, field: str, value: object) -> tuple[str, ...]:
    expect = "a tuple (or list) of str"
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
        raise _bad_type(cls_name, field, value, "tuple[str, ...]", expect)
    return tuple(value)


def _check_optional_path(cls_name: str, field: str, value: object) -> str | None:
    """None, or a non-empty path given as ``str`` or ``os.PathLike`` (stored as ``str``)."""
    path = os.fspath(value) if isinstance(value, os.PathLike) else value
    if path is not None and not isinstance(path, str):
        raise _bad_type(cls_name, field, value, "str | None", "None or a non-empty path")
    if path == "":
        raise _bad_value(cls_name, field, value, "None or a non-empty path")
    return path


def _is_tuple_type(tp: object) -> bool:
    """True for ``tuple``, ``tuple[...]`` and unions containing one (``tuple[int, int] | None``)."""
    if tp is tuple or typing.get_origin(tp) is tuple:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is_tuple_type(a) for a in typing.get_args(tp))
    return False


def _to_jsonable(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_to_jsonable(v) for v in value]
    return value


def _lookup(method: object) -> "type[QuantConfig]":
    method = _plain(method)
    if not isinstance(method, str) or method not in _REGISTRY:
        raise ValueError(f"unknown quant_method {method!r}; known methods: {tuple(_REGISTRY)}")
    return _REGISTRY[method]


# ----------------------------------------------------------------------------- base class

@dataclass(frozen=True, kw_only=True)
class QuantConfig:
    """Base of all config classes; not instantiable itself.

    A subclass is a ``@dataclass(frozen=True, kw_only=True)`` that sets the class constant
    ``quant_method: ClassVar[str]`` (unique across subclasses) and validates its fields in
    ``__post_init__``. Defining it registers it for :func:`load_config`.
    """

    quant_method: ClassVar[str]
    # from_dict fills these keys when a dict lacks them (fields added after configs were saved)
    _absent_means: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        method = cls.__dict__.get("quant_method")
        if not isinstance(method, str) or not method:
            raise TypeError(f"{cls.__name__} must set a class constant "
                            f"'quant_method: ClassVar[str]' (a non-empty str)")
        if method in _REGISTRY:
            raise ValueError(f"quant_method {method!r} of {cls.__name__} is already registered "
                             f"by {_REGISTRY[method].__name__}")
        _REGISTRY[method] = cls

    def __new__(cls, *args: Any, **kwargs: Any) -> "QuantConfig":
        if cls is QuantConfig:
            raise TypeError("QuantConfig is abstract; use one of "
                            f"{tuple(c.__name__ for c in _REGISTRY.values())}")
        return super().__new__(cls)

    def _check(self, check: Callable[..., object], field: str, *args: Any, **kw: Any) -> None:
        """Run ``check(cls_name, field, value, *args, **kw)``; store the normalized result."""
        value = check(type(self).__name__, field, getattr(self, field), *args, **kw)
        object.__setattr__(self, field, value)

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)

    def to_dict(self) -> dict[str, Any]:
        """All fields plus ``"quant_method"`` as plain JSON types (tuples become lists)."""
        out: dict[str, Any] = {"quant_method": self.quant_method}
        for f in dataclasses.fields(self):
            out[f.name] = _to_jsonable(getattr(self, f.name))
        return out

    @overload
    @classmethod
    def from_dict(cls: type[_C], d: Mapping[str, Any], *, strict: Literal[True] = ...) -> _C: ...
    @overload
    @classmethod
    def from_dict(cls: type[_C], d: Mapping[str, Any], *,
                  strict: Literal[False]) -> tuple[_C, dict[str, Any]]: ...

    @classmethod
    def from_dict(cls: type[_C], d: Mapping[str, Any], *,
                  strict: bool = True) -> "_C | tuple[_C, dict[str, Any]]":
        """Build a config from ``d`` (as written by :meth:`to_dict`).

        A ``"quant_method"`` key is optional but must equal ``cls.quant_method``; called on
        ``QuantConfig`` itself, it is required and picks the class. Lists are turned back into
        tuples for tuple fields. Unknown keys raise ``ValueError`` when ``strict``; otherwise
        the result is ``(config, leftovers)`` with the unknown keys in ``leftovers``.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict expects a mapping, "
                            f"got {type(d).__name__}")
        data = dict(d)
        if cls is QuantConfig:
            if "quant_method" not in data:
                raise ValueError("config dict has no 'quant_method' key; known methods: "
                                 f"{tuple(_REGISTRY)}")
            return _lookup(data["quant_method"]).from_dict(data, strict=strict)
        method = _plain(data.pop("quant_method", cls.quant_method))
        if method != cls.quant_method:
            raise ValueError(f"{cls.__name__}.from_dict: quant_method {method!r} does not match "
                             f"{cls.__name__}.quant_method {cls.quant_method!r}")
        for k, v in cls._absent_means.items():  # a dict written before the field existed
            data.setdefault(k, v)
        names = cls._field_names()
        leftovers = {k: v for k, v in data.items() if k not in names}
        if strict and leftovers:
            raise ValueError(f"{cls.__name__}.from_dict: unknown key(s) "
                             f"{sorted(map(str, leftovers))}; allowed: {list(names)}")
        kwargs = {k: v for k, v in data.items() if k in names}
        for f in dataclasses.fields(cls):
            if f.name in kwargs and isinstance(kwargs[f.name], list) and _is_tuple_type(f.type):
                kwargs[f.name] = tuple(kwargs[f.name])
        cfg = cls(**kwargs)
        return cfg if strict else (cfg, leftovers)

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict` (``sort_keys=True``)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls: type[_C], s: str) -> _C:
        """Inverse of :meth:`to_json` (strict: unknown keys raise ``ValueError``)."""
        d = json.loads(s)
        if not isinstance(d, dict):
            raise TypeError(f"{cls.__name__}.from_json expects a JSON object, "
                            f"got {type(d).__name__}")
        return cls.from_dict(d)

    def replace(self: _C, **changes: Any) -> _C:
        """A copy with ``changes`` applied, validated again (``dataclasses.replace``)."""
        unknown = sorted(set(changes) - set(self._field_names()))
        if unknown:
            raise TypeError(f"{type(self).__name__}.replace: unknown field(s) {unknown}; "
                            f"allowed: {list(self._field_names())}")
        return dataclasses.replace(self, **changes)


def registered_configs() -> "dict[str, type[QuantConfig]]":
    """A copy of the registry: ``quant_method -> config class``, in definition order."""
    return dict(_REGISTRY)


def load_config(d: "dict[str, Any] | str") -> QuantConfig:
    """Build the config named by ``d["quant_method"]``; ``d`` may be a dict or JSON text.

    Raises ``ValueError`` for a missing or unknown ``quant_method`` (listing the known ones)
    or unknown keys, ``TypeError`` if ``d`` is neither a dict nor a JSON object.
    """
    if isinstance(d, str):
        d = json.loads(d)
    if not isinstance(d, Mapping):
        raise TypeError(f"load_config expects a dict or a JSON object string, "
                        f"got {type(d).__name__}")
    return QuantConfig.from_dict(d)


# ----------------------------------------------------------------------------- methods

@dataclass(frozen=True, kw_only=True)
class RTNConfig(QuantConfig):
    """Round-to-nearest uniform quantization (no calibration data).

    Args:
        bits (int, default 4): bits per weight, 2..8.
        group_size (int, default 128): input columns sharing one scale/zero. -1 = one group
            per output channel (row), 0 = one scale for the whole tensor (per-tensor), n > 0 =
            groups of n consecutive input columns (the last group may be partial).
        sym (bool, default True): symmetric grid around zero if True, asymmetric min/max grid
            with an integer zero point if False.
    """

    quant_method: ClassVar[str] = "rtn"
    bits: int = 4
    group_size: int = 128
    sym: bool = True

    def __post_init__(self) -> None:
        self._check(_check_int, "bits", lo=2, hi=8)
        self._check(_check_int, "group_size", lo=1, special=(-1, 0))
        self._check(_check_bool, "sym")


@dataclass(frozen=True, kw_only=True)
class GPTQConfig(QuantConfig):
    """GPTQ: column-by-column rounding with Hessian-based error compensation.

    Args:
        bits (int, default 4): bits per weight, one of 2, 3, 4, 8.
        group_size (int, default 128): input columns per scale/zero group; -1 = one group per
            output row (AutoGPTQ defaults to -1, transformers and GPTQModel to 128).
        damp_percent (float, default 0.01): dampening added to the Hessian diagonal, as a
            fraction of its mean; 0 < x < 1. The reference code and AutoGPTQ use 0.01,
            transformers 0.1, GPTQModel 0.05.
        desc_act (bool, default False): act-order, i.e. quantize columns by decreasing Hessian
            diagonal (AutoGPTQ defaults to True, transformers to False).
        sym (bool, default True): symmetric grid (zero point fixed at mid-range).
        true_sequential (bool, default True): quantize the sub-layers of a block one after
            another, each seeing the outputs of those already quantized.
        static_groups (bool, default False): with ``desc_act``, compute every group's scale
            before the sweep, so groups follow the original column order.
        act_group_aware (bool, default False): GPTQModel's group-aware reordering (GAR):
            quantize whole groups in order of their largest Hessian diagonal entry, and the
            columns inside each group by decreasing diagonal. Most of act-order's gain with
            groups that stay contiguous (no ``g_idx``, the same kernels and checkpoint layout).
            Ignored when ``desc_act`` is set or with one group per row.
        block_size (int, default 128): columns per lazy-batch update block, > 0.
        mse (bool, default False): pick each scale by an MSE grid search over shrunken ranges
            instead of plain min/max.
        damp_auto_increment (float, default 0.01): added to ``damp_percent`` before a retry
            when the damped Hessian is not positive definite; 0 <= x < 1 (0 = no retry).
        checkpoint_format (str, default "gptq"): "gptq" (v1, stored zeros are z - 1) or
            "gptq_v2" (zeros stored as is).
        hessian_dtype (str, default "float32"): Hessian accumulation dtype, "float32" or
            "float64".
        sink_weight (float, default 16.0): weight, in the Hessian that ``quantize_model``
            accumulates, of the first ``sink_tokens`` tokens of every calibration window, > 0
            (lowbit's extension; 1.0 = the paper's Hessian, as GPTQModel / llm-compressor).
            Those are the attention-sink tokens: every later token of the window reads their
            keys and values, so their reconstruction error counts far more than one token's
            share. Measured in ``lowbit.pipeline``'s notes (SmolLM2-135M, 4-bit: KL divergence
            0.45 -> 0.31). A Hessian passed to ``lowbit.quantize`` is used as given.
        sink_tokens (int, default 1): how many leading tokens of each window ``sink_weight``
            applies to, >= 0.
    """

    quant_method: ClassVar[str] = "gptq"
    # from_dict: a dict without sink_weight (a transformers/AutoGPTQ config, or one lowbit wrote
    # before the field existed) describes the paper's Hessian, not this default
    _absent_means: ClassVar[dict[str, Any]] = {"sink_weight": 1.0}
    bits: int = 4
    group_size: int = 128
    damp_percent: float = 0.01
    desc_act: bool = False
    sym: bool = True
    true_sequential: bool = True
    static_groups: bool = False
    act_group_aware: bool = False
    block_size: int = 128
    mse: bool = False
    damp_auto_increment: float = 0.01
    checkpoint_format: str = "gptq"
    hessian_dtype: str = "float32"
    sink_weight: float = 16.0
    sink_tokens: int = 1

    def __post_init__(self) -> None:
        self._check(_check_choice, "bits", (2, 3, 4, 8))
        self._check(_check_int, "group_size", lo=1, special=(-1,))
        self._check(_check_float_range, "damp_percent", 0, 1)
        for name in ("desc_act", "sym", "true_sequential", "static_groups", "mse", "act_group_aware"):
            self._check(_check_bool, name)
        self._check(_check_int, "block_size", lo=1)
        self._check(_check_float_range, "damp_auto_increment", 0, 1, lo_incl=True)
        self._check(_check_choice, "checkpoint_format", ("gptq", "gptq_v2"))
        self._check(_check_choice, "hessian_dtype", ("float32", "float64"))
        self._check(_check_float_range, "sink_weight", 0)
        self._check(_check_int, "sink_tokens", lo=0)


@dataclass(frozen=True, kw_only=True)
class AWQConfig(QuantConfig):
    """AWQ: activation-aware per-input-channel scaling (and clipping) before quantization.

    Field names follow transformers' ``AwqConfig`` (``bits``, ``group_size``, ``zero_point``,
    ``version``) and AutoAWQ's ``quantize()`` arguments (``duo_scaling``, ``apply_clip``,
    ``max_chunk_memory``, ``n_grid``; ``n_samples``/``seq_len`` are its ``max_calib_samples``/
    ``max_calib_seq_len``).

    Args:
        bits (int, default 4): bits per weight, 2..8. The "gemm" and "gemv" export layouts
            (AutoAWQ packers) exist for 4 bits only; other widths are for experiments.
        group_size (int, default 128): input columns per group; -1 = one group per row.
        zero_point (bool, default True): asymmetric grid with a zero point (AWQ's default).
        version (str, default "gemm"): packed layout on export, "gemm" or "gemv".
        duo_scaling (bool, default True): search ``s = x_mean^a / w_mean^(1-a)`` (AutoAWQ)
            instead of ``s = x_mean^a`` (llm-awq).
        n_grid (int, default 20): grid points of the exponent ``a = k/n_grid``, > 0.
        apply_clip (bool, default True): run the weight-clipping search after scaling.
        max_shrink (float, default 0.5): the clipping search tries clamp bounds
            ``max|w| * (1 - i/n_clip_grid)`` for ``i < max_shrink * n_clip_grid``; in [0, 1).
        n_clip_grid (int, default 20): grid of the clipping search, > 0.
        n_samples (int, default 128): calibration windows to use (AutoAWQ's
            ``max_calib_samples``); what ``lowbit quantize --method awq`` samples by default.
        seq_len (int, default 512): tokens per calibration window (``max_calib_seq_len``).
        quantizer (str, default "rtn"): how the scaled, clipped weights are finally quantized:
            "rtn" = AWQ's own min-max grid (AWQ as published), "gptq" = GPTQ on the scaled
            weights with the Hessians of the scaled inputs (AWQ+GPTQ; needs bits in 2, 3, 4, 8).
        damp_percent (float, default 0.01): GPTQ's dampening with ``quantizer="gptq"``.
        n_search_samples (int, default 0): score the scale candidates of the attention and MLP
            groups on this many calibration samples (evenly spaced) instead of all of them
            (0 = all, as AutoAWQ). The activation means, the searches of o_proj/down_proj and
            the clipping search always use every sample. A CPU budget knob: each candidate costs
            one sub-layer forward pass over the samples scored.
        max_chunk_memory (int, default 1 GiB): bytes per chunk when computing losses, > 0
            (kept for AutoAWQ compatibility; lowbit's search streams per sample).
    """

    quant_method: ClassVar[str] = "awq"
    bits: int = 4
    group_size: int = 128
    zero_point: bool = True
    version: str = "gemm"
    duo_scaling: bool = True
    n_grid: int = 20
    apply_clip: bool = True
    max_shrink: float = 0.5
    n_clip_grid: int = 20
    n_samples: int = 128
    seq_len: int = 512
    quantizer: str = "rtn"
    damp_percent: float = 0.01
    n_search_samples: int = 0
    max_chunk_memory: int = 1024 * 1024 * 1024

    def __post_init__(self) -> None:
        self._check(_check_int, "bits", lo=2, hi=8)
        self._check(_check_int, "group_size", lo=1, special=(-1,))
        self._check(_check_int, "n_search_samples", lo=0)
        for name in ("zero_point", "duo_scaling", "apply_clip"):
            self._check(_check_bool, name)
        self._check(_check_choice, "version", ("gemm", "gemv"))
        self._check(_check_int, "n_grid", lo=1)
        self._check(_check_float_range, "max_shrink", 0, 1, lo_incl=True)
        self._check(_check_int, "n_clip_grid", lo=1)
        self._check(_check_int, "n_samples", lo=1)
        self._check(_check_int, "seq_len", lo=2)
        self._check(_check_choice, "quantizer", ("rtn", "gptq"))
        self._check(_check_float_range, "damp_percent", 0, 1)
        self._check(_check_int, "max_chunk_memory", lo=1)
        if self.quantizer == "gptq" and self.bits not in (2, 3, 4, 8):
            raise ValueError(f"AWQConfig.bits must be one of (2, 3, 4, 8) with quantizer='gptq', got {self.bits}")


def _check_optional_bool(cls_name: str, field: str, value: object) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise _bad_type(cls_name, field, value, "bool | None", "True, False or None")
    return value


@dataclass(frozen=True, kw_only=True)
class HQQConfig(QuantConfig):
    """HQQ: calibration-free fit of a float zero point under a sparsity-promoting lp error.

    Mirrors hqq's ``BaseQuantizeConfig`` / transformers' ``HqqConfig`` plus the solver's
    ``opt_params``; lowbit runs hqq's default solver (``optimize_weights_proximal_legacy``)
    in float32, as hqq does on the CPU.

    Args:
        nbits (int, default 4): bits per weight, one of 1, 2, 3, 4, 5, 6, 8.
        group_size (int, default 64): weights per group, > 0; must divide the weight's size
            (hqq's own config also wants a multiple of 8) and be <= in_features.
        axis (int, default 1): 1 = groups of ``group_size`` consecutive elements of the
            row-major weight (input columns, as GPTQ/AWQ; transformers' and
            ``BaseQuantizeConfig``'s default); 0 = hqq's ``axis=0``: the flattened weight seen as
            ``[group_size, numel/group_size]``, each group a column (elements strided by
            ``numel/group_size``; the default of hqq's low-level ``Quantizer.quantize``).
        optimize (bool, default True): run the half-quadratic solver; False = min/max only.
        round_zero (bool | None, default None): round the initial zero point; None = hqq's
            rule (``BaseQuantizeConfig``): True for 4 bits, False otherwise.
        view_as_float (bool, default False): hqq stores the packed codes viewed as floats;
            kept for the config's round trip with hqq/transformers, no effect on lowbit's arrays.
        quant_zero (bool, default False): quantize the zero points to 8 bits (one scale for
            the tensor), as hqq's deprecated meta-data quantization.
        quant_scale (bool, default False): quantize the scales to 8 bits (groups of 128
            along hqq's axis 0 of the scale vector), idem.
        lp_norm (float, default 0.7): the p of the lp error, 0 < p <= 1.
        beta (float, default 10.0): penalty of the shrinkage step, > 0.
        kappa (float, default 1.01): penalty growth per iteration, > 1. Recorded only: hqq's
            default solver reads it but never applies it, and neither does lowbit.
        iters (int, default 20): maximum solver iterations, > 0.
        early_stop (bool, default True): stop after the first iteration whose error (mean
            |W - W_hat| over the tensor) does not improve, as hqq always does.
    """

    quant_method: ClassVar[str] = "hqq"
    nbits: int = 4
    group_size: int = 64
    axis: int = 1
    optimize: bool = True
    round_zero: bool | None = None
    view_as_float: bool = False
    quant_zero: bool = False
    quant_scale: bool = False
    lp_norm: float = 0.7
    beta: float = 10.0
    kappa: float = 1.01
    iters: int = 20
    early_stop: bool = True

    def __post_init__(self) -> None:
        self._check(_check_choice, "nbits", (1, 2, 3, 4, 5, 6, 8))
        self._check(_check_int, "group_size", lo=1)
        self._check(_check_choice, "axis", (0, 1))
        self._check(_check_optional_bool, "round_zero")
        for name in ("optimize", "view_as_float", "quant_zero", "quant_scale", "early_stop"):
            self._check(_check_bool, name)
        self._check(_check_float_range, "lp_norm", 0, 1, hi_incl=True)
        self._check(_check_float_range, "beta", 0)
        self._check(_check_float_range, "kappa", 1)
        self._check(_check_int, "iters", lo=1)

    @property
    def effective_round_zero(self) -> bool:
        """``round_zero`` with None resolved by hqq's rule (True for 4 bits)."""
        return self.nbits == 4 if self.round_zero is None else self.round_zero


@dataclass(frozen=True, kw_only=True)
class BnbConfig(QuantConfig):
    """bitsandbytes-style NF4/FP4 blockwise 4-bit or LLM.int8() 8-bit weights.

    Args:
        load_in_4bit (bool, default True): 4-bit blockwise NF4/FP4 weights.
        load_in_8bit (bool, default False): LLM.int8() row-wise int8 weights with outlier
            decomposition. Exactly one of ``load_in_4bit`` / ``load_in_8bit`` must be True.
        bnb_4bit_quant_type (str, default "nf4"): 4-bit code, "nf4" or "fp4" (bnb's own FP4,
            not E2M1; transformers defaults to "fp4").
        bnb_4bit_use_double_quant (bool, default False): quantize the per-block absmax again
            (8-bit, blocks of 256): ~4.127 instead of 4.5 bits per weight.
        bnb_4bit_blocksize (int, default 64): weights per absmax block, a power of two in
            32..4096.
        bnb_4bit_compute_dtype (str, default "float32"): dtype of dequantized weights in
            matmuls: "float32", "float16" or "bfloat16".
        bnb_4bit_quant_storage (str, default "uint8"): dtype the packed 4-bit bytes are stored
            as; lowbit writes and reads "uint8" only.
        llm_int8_threshold (float, default 6.0): activation magnitude from which an input
            feature is an outlier (|x| >= threshold); >= 0, 0 = no outlier decomposition
            (bitsandbytes' Linear8bitLt default).
        llm_int8_skip_modules (tuple[str, ...], default ()): module names left unquantized
            (a list is accepted and stored as a tuple).
        llm_int8_has_fp16_weight (bool, default False): keep float16 weights and re-quantize
            them every forward (bnb's training mode); lowbit stores int8 weights, so only
            False is implemented by the quantizer.
    """

    quant_method: ClassVar[str] = "bitsandbytes"
    load_in_4bit: bool = True
    load_in_8bit: bool = False
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = False
    bnb_4bit_blocksize: int = 64
    bnb_4bit_compute_dtype: str = "float32"
    bnb_4bit_quant_storage: str = "uint8"
    llm_int8_threshold: float = 6.0
    llm_int8_skip_modules: tuple[str, ...] = ()
    llm_int8_has_fp16_weight: bool = False

    def __post_init__(self) -> None:
        for name in ("load_in_4bit", "load_in_8bit", "bnb_4bit_use_double_quant", "llm_int8_has_fp16_weight"):
            self._check(_check_bool, name)
        if self.load_in_4bit == self.load_in_8bit:
            n = type(self).__name__
            raise ValueError(f"{n}.load_in_4bit and {n}.load_in_8bit: exactly one must be True, "
                             f"got load_in_4bit={self.load_in_4bit}, "
                             f"load_in_8bit={self.load_in_8bit}")
        self._check(_check_choice, "bnb_4bit_quant_type", ("nf4", "fp4"))
        self._check(_check_choice, "bnb_4bit_blocksize", (32, 64, 128, 256, 512, 1024, 2048, 4096))
        self._check(_check_choice, "bnb_4bit_compute_dtype", ("float32", "float16", "bfloat16"))
        self._check(_check_choice, "bnb_4bit_quant_storage", ("uint8",))
        self._check(_check_float_range, "llm_int8_threshold", 0, lo_incl=True)
        self._check(_check_str_tuple, "llm_int8_skip_modules")


_GGUF_PLAIN = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
               "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL")
_GGUF_MIXTURES = ("Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M")


def _check_gguf_type(cls_name: str, field: str, value: object) -> str:
    """A ggml type or mixture name, any case, returned in its canonical spelling."""
    allowed = _GGUF_PLAIN + _GGUF_MIXTURES
    value = _plain(value)
    if not isinstance(value, str):
        raise _bad_type(cls_name, field, value, "str", f"one of {allowed!r}")
    canonical = {t.upper(): t for t in allowed}.get(value.strip().upper())
    if canonical is None:
        raise _bad_value(cls_name, field, value, f"one of {allowed!r} (any case)")
    return canonical


@dataclass(frozen=True, kw_only=True)
class GGUFConfig(QuantConfig):
    """llama.cpp / GGUF quantization: one ggml type for all tensors, or a mixture recipe.

    Args:
        type (str, default "Q4_K_M"): a plain ggml type ("F32", "F16", "BF16", "Q4_0",
            "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL")
            or a llama.cpp mixture ("Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
            "Q5_K_S", "Q5_K_M") that picks a type per tensor (``llama_tensor_get_type``).
            Matched case-insensitively and stored as spelled here ("q4_k_m" -> "Q4_K_M").
        imatrix (str | None, default None): path of an importance-matrix file that weights
            the quantization error per input column; None = unweighted.
    """

    quant_method: ClassVar[str] = "gguf"
    type: str = "Q4_K_M"
    imatrix: str | None = None

    def __post_init__(self) -> None:
        self._check(_check_gguf_type, "type")
        self._check(_check_optional_path, "imatrix")

    @property
    def is_mixture(self) -> bool:
        """True for the per-tensor mixture recipes (names ending in _S, _M or _L)."""
        return self.type in _GGUF_MIXTURES


def _check_block_size(cls_name: str, field: str, value: object) -> tuple[int, int]:
    """A pair (tuple or list) of ints >= 1, returned as a tuple."""
    expect = "a pair of ints >= 1"
    if not isinstance(value, (tuple, list)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _bad_type(cls_name, field, value, "tuple[int, int]", expect)
    if len(value) != 2 or min(value) < 1:
        raise _bad_value(cls_name, field, value, expect)
    return (value[0], value[1])


@dataclass(frozen=True, kw_only=True)
class FP8Config(QuantConfig):
    """FP8 weights (OCP E4M3 "fn" or E5M2) with float32 scales (transformers'
    ``FineGrainedFP8Config``, quant_method ``"fp8"``; strategies as compressed-tensors names them).

    Weights are divided by their scale ``amax / max_value`` (448 for E4M3, 57344 for E5M2) and
    rounded to the nearest FP8 value (ties to even, saturating); ``W_hat = scale * fp8``.

    Args:
        fmt (str, default "e4m3"): "e4m3" (max 448, no inf, 3 mantissa bits) or "e5m2" (max
            57344, 2 mantissa bits).
        strategy (str, default "block"): scale granularity: "tensor" (one scale), "channel" (one
            per output row, compressed-tensors FP8_DYNAMIC / torchao / FBGEMM) or "block" (one per
            ``weight_block_size`` tile, DeepSeek-V3 / transformers' fine-grained FP8). Edge tiles
            may be partial when the shape is not a multiple of the block.
        weight_block_size (tuple[int, int], default (128, 128)): (rows, cols) of one scale tile;
            read only when ``strategy == "block"``.
        activation_scheme (str, default "dynamic"): how activations are scaled where FP8
            activations are used ("dynamic" per forward, or "static" calibrated); recorded for
            export: lowbit's CPU runtime keeps activations in float32.
    """

    quant_method: ClassVar[str] = "fp8"
    fmt: str = "e4m3"
    strategy: str = "block"
    weight_block_size: tuple[int, int] = (128, 128)
    activation_scheme: str = "dynamic"

    def __post_init__(self) -> None:
        self._check(_check_choice, "fmt", ("e4m3", "e5m2"))
        self._check(_check_choice, "strategy", ("tensor", "channel", "block"))
        self._check(_check_block_size, "weight_block_size")
        self._check(_check_choice, "activation_scheme", ("dynamic", "static"))


@dataclass(frozen=True, kw_only=True)
class TorchAoConfig(QuantConfig):
    """torchao weight-only int4 / int8 (transformers' ``TorchAoConfig``, quant_method ``"torchao"``).

    Args:
        quant_type (str, default "int4_weight_only"):
            "int4_weight_only": torchao's ``Int4WeightOnlyConfig`` ("tinygemm"): asymmetric 4-bit
            codes per group of ``group_size`` input columns with a bfloat16 scale and a *float*
            zero point, ``W = (q - 8) * scale + zero``; ``in_features`` must be a multiple of
            ``group_size``. "int8_weight_only": ``Int8WeightOnlyConfig``: symmetric int8 with
            one float32 scale per output channel, ``scale = amax / 127.5``.
        group_size (int, default 128): int4 group size, one of 32, 64, 128, 256 (torchao's
            choices); not used by int8 (per channel).
    """

    quant_method: ClassVar[str] = "torchao"
    quant_type: str = "int4_weight_only"
    group_size: int = 128

    def __post_init__(self) -> None:
        self._check(_check_choice, "quant_type", ("int4_weight_only", "int8_weight_only"))
        self._check(_check_choice, "group_size", (32, 64, 128, 256))


@dataclass(frozen=True, kw_only=True)
class EetqConfig(QuantConfig):
    """EETQ int8 weight-only (transformers' ``EetqConfig``, quant_method ``"eetq"``): symmetric
    int8 with one scale per output channel as TensorRT-LLM's ``symmetric_quantize`` computes it
    (``scale = amax / 128``, round half away from zero, clamp to [-128, 127]).

    Args:
        weights (str, default "int8"): the only choice, as in transformers.
    """

    quant_method: ClassVar[str] = "eetq"
    weights: str = "int8"

    def __post_init__(self) -> None:
        self._check(_check_choice, "weights", ("int8",))
