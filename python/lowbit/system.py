"""The machine as lowbit sees it: CPU features, the kernel path in use, thread count."""

from __future__ import annotations

import os
import platform
from typing import Any

from . import _core

__all__ = ["cpu_info", "force_isa", "get_num_threads", "set_num_threads", "proc_status_field"]


def cpu_info() -> dict[str, Any]:
    """Report the CPU features found and the kernel ISA path in use.

    Returns a dict with ``features`` (name -> bool, from CPUID and the OS's XGETBV state on
    x86; ``neon`` and ``dotprod`` from AT_HWCAP on aarch64),
    ``supported_isas`` (paths this build can run here, worst to best), ``isa`` (the path in
    use: the best one, or what ``LOWBIT_ISA`` / :func:`force_isa` chose), ``isa_override``
    (the ``LOWBIT_ISA`` value, or None), ``num_threads``, ``machine`` and ``version``.
    """
    return {
        "isa": _core.active_isa(),
        "supported_isas": list(_core.supported_isas()),
        "isa_override": os.environ.get("LOWBIT_ISA") or None,
        "features": dict(_core.cpu_features()),
        "num_threads": _core.get_num_threads(),
        "machine": platform.machine(),
        "version": _core.__version__,
    }


def force_isa(isa: str) -> None:
    """Use the ``'scalar'``, ``'avx2'``, ``'avx512'`` or ``'neon'`` kernels from now on (tests, benchmarks).

    ``'neon'`` (aarch64) has its own quantized-matmul kernels; its other kernel families are
    the scalar ones.

    Raises ValueError for an unknown name and NotImplementedError when this CPU/build cannot
    run that path. Results are bit-identical across paths for every kernel lowbit has today.
    """
    if not isinstance(isa, str):
        raise TypeError(f"isa must be a str ('scalar', 'avx2', 'avx512' or 'neon'), got {type(isa).__name__}")
    _core.force_isa(isa)


def get_num_threads() -> int:
    """Threads lowbit's parallel regions use."""
    return int(_core.get_num_threads())


def set_num_threads(n: int) -> None:
    """Set the threads lowbit uses; ``n <= 0`` restores the default (OMP_NUM_THREADS or all cores).

    Results do not depend on the thread count (bit-identical output).
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def proc_status_field(name: str) -> str | None:
    """The value of field ``name`` in /proc/self/status ("VmHWM", "Umask", ...), or None where
    there is no such file or field (not Linux, an old kernel)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == name:
                    return value.strip()
    except OSError:
        pass
    return None
