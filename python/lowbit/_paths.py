"""Where lowbit finds the project's shared data (real models and text) when run from a checkout."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["shared_data_dir"]


def shared_data_dir() -> Path | None:
    """``$LOWBIT_SHARED_DATA``, else ``<checkout>/../shared/data`` if it exists, else None."""
    env = os.environ.get("LOWBIT_SHARED_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()  # resolves the build tree's symlink to the checkout
    for parent in here.parents:
        cand = parent.parent / "shared" / "data"
        if (parent / "pyproject.toml").is_file() and cand.is_dir():
            return cand
    return None
