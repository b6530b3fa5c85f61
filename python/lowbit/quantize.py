"""``quantize(W, config, **stats)``: one weight matrix, any method, one entry point.

Each method registers a function for its config class with :func:`register_method`; a config
whose method is not implemented yet raises NotImplementedError naming it (never a silent
fallback to another method).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy.typing as npt

from . import _core
from .config import QuantConfig
from .tensor import QuantizedTensor

__all__ = ["available_methods", "method_statistics", "quantize", "register_method", "STAT_NAMES"]

# Statistics the calibration pass can provide; every method takes the ones it needs and
# ignores the rest, so one capture feeds every method.
STAT_NAMES = ("hessian", "act_mean_sq", "act_mean_abs")

_Quantizer = Callable[..., QuantizedTensor]
_METHODS: dict[type[QuantConfig], _Quantizer] = {}
_NEEDS: dict[type[QuantConfig], tuple[str, ...]] = {}


def register_method(config_cls: type[QuantConfig], needs: tuple[str, ...] = ()) -> Callable[[_Quantizer], _Quantizer]:
    """Decorator: ``fn(W, config, **stats) -> QuantizedTensor`` implements ``config_cls``.

    ``needs`` names the calibration statistics (from :data:`STAT_NAMES`) the method requires;
    quantize_model gathers only those, and runs no calibration pass when nothing needs one.
    """
    bad = set(needs) - set(STAT_NAMES)
    if bad:
        raise ValueError(f"unknown statistics {sorted(bad)}; expected any of {list(STAT_NAMES)}")

    def deco(fn: _Quantizer) -> _Quantizer:
        if config_cls in _METHODS:
            raise ValueError(f"{config_cls.__name__} already has a quantizer")
        _METHODS[config_cls] = fn
        _NEEDS[config_cls] = tuple(needs)
        return fn

    return deco


def method_statistics(config: QuantConfig) -> tuple[str, ...]:
    """The calibration statistics ``config``'s method needs (empty for calibration-free ones).
    NotImplementedError when the method is not implemented."""
    if type(config) not in _METHODS:
        raise NotImplementedError(
            f"quant_method '{config.quant_method}' ({type(config).__name__}) is not implemented in lowbit "
            f"{_core.__version__}; available: {', '.join(available_methods())}")
    return _NEEDS[type(config)]


def available_methods() -> list[str]:
    """quant_method names that :func:`quantize` implements in this version."""
    return [cls.quant_method for cls in _METHODS]


def quantize(W: npt.ArrayLike, config: QuantConfig, **stats: Any) -> QuantizedTensor:
    """Quantize one weight matrix.

    Args:
        W: float32 / float16 / bfloat16 (ml_dtypes) / float64 array of shape
            ``(out_features, in_features)``; any strides (read in place, not copied).
        config: a method's config, e.g. ``RTNConfig(bits=4, group_size=128)``.
        **stats: calibration statistics for methods that use them: ``hessian``
            (in x in), ``act_mean_sq`` (in,), ``act_mean_abs`` (in,). Unused ones are ignored.

    Returns:
        a :class:`QuantizedTensor`; ``q.stats["seconds"]`` is the time spent.

    Raises:
        TypeError: config is not a QuantConfig, W is not a float array, unknown statistic.
        ValueError: W is not 2-D, is empty, or holds NaN/inf (the message names the element).
        NotImplementedError: the method is not implemented in this version.
    """
    if not isinstance(config, QuantConfig):
        raise TypeError(f"config must be a QuantConfig (e.g. lowbit.RTNConfig()), got {type(config).__name__}")
    unknown = set(stats) - set(STAT_NAMES)
    if unknown:
        raise TypeError(f"unknown statistics {sorted(unknown)}; expected any of {list(STAT_NAMES)}")
    fn = _METHODS.get(type(config))
    if fn is None:
        raise NotImplementedError(
            f"quant_method '{config.quant_method}' ({type(config).__name__}) is not implemented in lowbit "
            f"{_core.__version__}; available: {', '.join(available_methods())}")
    t0 = time.perf_counter()
    q = fn(W, config, **stats)
    q.stats.setdefault("seconds", time.perf_counter() - t0)
    return q


# The built-in methods register themselves on import (after register_method exists).
from . import methods as _methods  # noqa: E402,F401
