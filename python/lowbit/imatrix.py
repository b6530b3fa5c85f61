"""Importance matrices (llama.cpp's ``imatrix``): per input column of every linear layer, the
mean of ``x²`` over the calibration tokens.

llama.cpp's ``llama-imatrix`` tool hooks every matrix multiplication whose weight is a block
tensor (``blk.N.*``; ``output.weight`` only with ``--process-output``) and accumulates, per weight
and input column ``j``, ``in_sum2[j] = Σ x_j²`` and ``count = number of token rows``. The
quantizer uses ``in_sum2 / count``: the per-column mean of ``x²`` (the diagonal of ``XᵀX/n``),
which is lowbit's ``act_mean_sq`` statistic. Names are GGUF tensor names.

Files (both read and written here):

* **GGUF** (what current llama.cpp writes by default): ``general.type = "imatrix"``,
  ``imatrix.datasets`` (string[]), ``imatrix.chunk_count`` and ``imatrix.chunk_size`` (u32); per
  weight ``<name>.in_sum2`` F32 ``[nmat, n]`` (ggml ``ne = [n, nmat]``; ``nmat = 1`` for dense
  layers) and ``<name>.counts`` F32 ``[nmat, 1]``; newer files also hold ``<name>.in_sum`` (Σx).
  llama.cpp's quantize reads ``in_sum2[j] / counts`` in float32.
* **legacy .dat**: ``i32 n_entries``; per entry ``i32 len, name[len], i32 ncall, i32 nval,
  f32 values[nval]`` with ``values = (Σx² / count) · ncall``; then ``i32 last_chunk, i32 len,
  dataset[len]``. llama.cpp's quantize reads ``values / ncall``.

:func:`compute` gathers the matrix from a model and calibration windows with the model's
observer hook (every linear's input, as the statistics pass of ``quantize_model`` sees it).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_write

__all__ = ["ImportanceMatrix", "compute", "load_imatrix", "save_imatrix", "read_imatrix_gguf", "read_imatrix_dat",
           "write_imatrix_gguf", "write_imatrix_dat", "layer_statistics"]


@dataclass
class ImportanceMatrix:
    """Per-weight sums of squared inputs and their token counts (llama.cpp's collector state).

    Attributes:
        sums: ``{GGUF weight name: float64 [n_in]}``: Σ over tokens of ``x_j²``.
        counts: ``{name: int}``: tokens accumulated for that weight.
        datasets: calibration sources (file names) recorded in the file.
        chunk_size: tokens per chunk (llama.cpp's ``n_ctx``), used to express counts as chunks.
        chunk_count: chunks processed.
        activation_sums: ``{name: float64 [n_in]}``: Σ x_j (optional; newer GGUF files).
        means: ``{name: float32 [n_in]}`` read from a legacy file (``values / ncall`` exactly as
            llama.cpp's quantize computes it); None otherwise.
    """

    sums: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    chunk_size: int = 512
    chunk_count: int = 0
    activation_sums: dict[str, np.ndarray] = field(default_factory=dict)
    means: dict[str, np.ndarray] | None = None

    @property
    def values(self) -> dict[str, np.ndarray]:
        """``{name: float32 [n_in]}``: the per-column mean of x², computed as llama.cpp's
        quantize does for a GGUF imatrix (``float(sum) / float(count)`` in float32; for a legacy
        file ``values / ncall``)."""
        if self.means is not None:
            return {k: np.asarray(v, dtype=np.float32) for k, v in self.means.items()}
        out = {}
        for k, s in self.sums.items():
            c = np.float32(self.counts.get(k, 0))
            s32 = np.asarray(s, dtype=np.float32)
            out[k] = s32 / c if c > 0 else np.ones_like(s32)
        return out

    def for_layer(self, hf_linear: str) -> np.ndarray | None:
        """float32 ``[in]`` mean of x² for a linear named in Hugging Face style
        (``"model.layers.0.mlp.up_proj"``); None when the matrix has no entry for it."""
        name = _gguf_weight_name(hf_linear)
        if name not in self.sums:
            return None
        return self.values[name] if self.means is None else np.asarray(self.means[name], dtype=np.float32)

    def __len__(self) -> int:
        return len(self.sums)

    def __repr__(self) -> str:
        return (f"ImportanceMatrix({len(self)} weights, chunk_count={self.chunk_count}, chunk_size={self.chunk_size}, "
                f"datasets={self.datasets})")

    @classmethod
    def from_means(cls, means: Mapping[str, np.ndarray], count: int, *, datasets: Iterable[str] = (),
                   chunk_size: int = 512) -> "ImportanceMatrix":
        """From per-column means of x² (e.g. ``HessianAccumulator.act_mean_sq()``) over ``count`` tokens."""
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        sums = {k: np.asarray(v, dtype=np.float64) * count for k, v in means.items()}
        return cls(sums, {k: int(count) for k in sums}, list(datasets), int(chunk_size), int(count) // max(chunk_size, 1))


# ------------------------------------------------------------------------------ compute
def _gguf_weight_name(hf_linear: str) -> str:
    from .gguf_mixtures import gguf_tensor_name

    return gguf_tensor_name(hf_linear)


def compute(model: Any, calibration: Any, *, process_output: bool = False, progress: bool = False) -> ImportanceMatrix:
    """The importance matrix of ``model`` over ``calibration``'s token windows.

    Args:
        model: a :class:`~lowbit.models.llama.LlamaModel` (dense or quantized: the inputs are
            those the model as given produces, as llama-imatrix sees them).
        calibration: a :class:`~lowbit.data.Calibration` (``tokens`` int ``[n_samples, seq_len]``)
            or an int array of that shape.
        process_output: also record ``output.weight`` (llama-imatrix ``--process-output``). With
            tied embeddings the output matmul's weight is ``token_embd.weight``, which
            llama-imatrix never records (it keeps ``blk.*`` and ``output.weight`` only): no entry.

    Returns:
        sums of x² (float64) and token counts per GGUF weight name (``blk.N.attn_q.weight`` ...).
        q, k and v read the same input, as do gate and up: their entries are equal.
    """
    tokens = np.asarray(getattr(calibration, "tokens", calibration))
    if tokens.ndim != 2 or tokens.size == 0:
        raise ValueError(f"calibration tokens must be [n_samples, seq_len], got shape {tokens.shape}")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    names: dict[str, str] = {}

    tied = "lm_head.weight" not in model.weights

    def observe(name: str, x: np.ndarray, _y: np.ndarray) -> None:
        if name == "lm_head" and (not process_output or tied):
            return
        key = names.get(name)
        if key is None:
            key = names[name] = "output.weight" if name == "lm_head" else _gguf_weight_name(name)
        x2 = np.square(x.reshape(-1, x.shape[-1]), dtype=np.float64)
        if key in sums:
            sums[key] += x2.sum(axis=0)
        else:
            sums[key] = x2.sum(axis=0)
        counts[key] = counts.get(key, 0) + x2.shape[0]

    it: Iterable[np.ndarray] = tokens
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(tokens, desc="imatrix", unit="sample")
    for row in it:
        model.forward(row, observer=observe)
    datasets = []
    prov = getattr(calibration, "provenance", None)
    if isinstance(prov, Mapping):
        datasets = [str(t["file"]) for t in prov.get("texts") or [] if isinstance(t, Mapping) and "file" in t]
    return ImportanceMatrix(sums, counts, datasets, int(tokens.shape[1]), int(tokens.shape[0]))


# --------------------------------------------------------------------------------- files
def write_imatrix_gguf(im: ImportanceMatrix, path: str | os.PathLike[str]) -> Path:
    """Write llama.cpp's GGUF imatrix file (entries sorted by name, as llama-imatrix does)."""
    from gguf import GGUFWriter

    path = Path(path)

    def write(tmp: str) -> None:
        w = GGUFWriter(tmp, arch="")
        # GGUFWriter puts general.architecture first; llama-imatrix writes none, readers ignore it
        w.kv_data[0].pop("general.architecture", None)
        w.add_type("imatrix")
        w.add_array("imatrix.datasets", list(im.datasets) or [""])
        w.add_uint32("imatrix.chunk_count", int(im.chunk_count))
        w.add_uint32("imatrix.chunk_size", int(im.chunk_size))
        for name in sorted(im.sums):
            s = np.asarray(im.sums[name], dtype=np.float32).reshape(1, -1)
            w.add_tensor(f"{name}.in_sum2", s)
            w.add_tensor(f"{name}.counts", np.array([[float(im.counts[name])]], dtype=np.float32))
            if name in im.activation_sums:
                w.add_tensor(f"{name}.in_sum", np.asarray(im.activation_sums[name], dtype=np.float32).reshape(1, -1))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    atomic_write(path, write)
    return path


def read_imatrix_gguf(path: str | os.PathLike[str]) -> ImportanceMatrix:
    """Read a GGUF imatrix file; ValueError names the file and what is wrong."""
    from gguf import GGUFReader

    path = Path(path)
    try:
        r = GGUFReader(path, "r")
    except Exception as e:
        raise ValueError(f"{path}: not a GGUF imatrix file ({type(e).__name__}: {e})") from e
    fields = {k: f.contents() for k, f in r.fields.items()}
    if fields.get("general.type") not in (None, "imatrix"):
        raise ValueError(f"{path}: GGUF file of type {fields.get('general.type')!r}, not an imatrix")
    parts: dict[str, dict[str, np.ndarray]] = {}
    for t in r.tensors:
        for suffix in (".in_sum2", ".counts", ".in_sum"):
            if t.name.endswith(suffix):
                if t.tensor_type.name != "F32":
                    raise ValueError(f"{path}: {t.name} is {t.tensor_type.name}, expected F32")
                parts.setdefault(t.name[: -len(suffix)], {})[suffix] = np.array(t.data, dtype=np.float32).reshape(-1)
                break
    im = ImportanceMatrix(datasets=[str(d) for d in (fields.get("imatrix.datasets") or []) if d],
                          chunk_size=int(fields.get("imatrix.chunk_size") or 512),
                          chunk_count=int(fields.get("imatrix.chunk_count") or 0))
    for name, p in sorted(parts.items()):
        if ".in_sum2" not in p or ".counts" not in p:
            raise ValueError(f"{path}: entry {name!r} lacks {'in_sum2' if '.in_sum2' not in p else 'counts'}")
        if p[".counts"].size != 1:
            raise NotImplementedError(f"{path}: entry {name!r} has {p['.counts'].size} matrices (mixture of experts); "
                                      f"only dense models are supported")
        s = p[".in_sum2"]
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{path}: entry {name!r} holds non-finite values")
        im.sums[name] = s.astype(np.float64)
        im.counts[name] = int(round(float(p[".counts"][0])))
        if ".in_sum" in p:
            im.activation_sums[name] = p[".in_sum"].astype(np.float64)
    if not im.sums:
        raise ValueError(f"{path}: no imatrix entries")
    return im


def write_imatrix_dat(im: ImportanceMatrix, path: str | os.PathLike[str]) -> Path:
    """Write llama.cpp's legacy ``.dat`` imatrix file. ``ncall`` of an entry is its token count in
    chunks (ceiling), and the stored values are ``(Σx² / count) · ncall`` in float32."""
    path = Path(path)
    chunk = max(int(im.chunk_size), 1)
    out = bytearray(struct.pack("<i", len(im.sums)))
    for name in sorted(im.sums):
        raw = name.encode()
        count = int(im.counts[name])
        ncall = (count + chunk - 1) // chunk
        s = np.asarray(im.sums[name], dtype=np.float32)
        vals = (s / np.float32(count) if count > 0 else np.ones_like(s)) * np.float32(ncall)
        out += struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, s.size)
        out += vals.astype("<f4").tobytes()
    ds = (im.datasets[-1] if im.datasets else "").encode()
    out += struct.pack("<i", int(im.chunk_count)) + struct.pack("<i", len(ds)) + ds
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(bytes(out)))
    return path


def read_imatrix_dat(path: str | os.PathLike[str], *, chunk_size: int = 512) -> ImportanceMatrix:
    """Read a legacy ``.dat`` imatrix. The file stores means times ``ncall``; they come back as
    sums over ``ncall · chunk_size`` tokens (the chunk size is not in the file: llama.cpp
    assumes its ``n_ctx``), so :attr:`ImportanceMatrix.values` is ``values / ncall``."""
    path = Path(path)
    data = path.read_bytes()
    off = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal off
        n = struct.calcsize(fmt)
        if off + n > len(data):
            raise ValueError(f"{path}: truncated legacy imatrix file (at byte {off})")
        v = struct.unpack_from(fmt, data, off)
        off += n
        return v

    (n_entries,) = take("<i")
    if n_entries < 1:
        raise ValueError(f"{path}: no data (n_entries = {n_entries})")
    im = ImportanceMatrix(chunk_size=int(chunk_size), means={})
    for i in range(n_entries):
        (length,) = take("<i")
        if length < 0 or off + length > len(data):
            raise ValueError(f"{path}: entry {i} has a bad name length {length}")
        name = data[off:off + length].decode("utf-8", errors="replace")
        off += length
        ncall, nval = take("<ii")
        if nval < 1 or off + 4 * nval > len(data):
            raise ValueError(f"{path}: entry {name!r} has a bad value count {nval}")
        vals = np.frombuffer(data, "<f4", nval, off).astype(np.float32)
        off += 4 * nval
        if not np.all(np.isfinite(vals)):
            raise ValueError(f"{path}: entry {name!r} holds non-finite values")
        count = ncall * chunk_size
        # values / ncall is the mean; store sums so that sums / count gives it back
        mean = vals / np.float32(ncall) if ncall > 0 else vals
        im.means[name] = mean
        im.sums[name] = mean.astype(np.float64) * count if ncall > 0 else mean.astype(np.float64)
        im.counts[name] = count if ncall > 0 else 1
    if off + 4 <= len(data):
        (im.chunk_count,) = take("<i")
        if off + 4 <= len(data):
            (length,) = take("<i")
            if 0 <= length <= len(data) - off:
                ds = data[off:off + length].decode("utf-8", errors="replace")
                im.datasets = [ds] if ds else []
    return im


_LOADED: dict[tuple[str, float], ImportanceMatrix] = {}


def layer_statistics(config: Any, hf_linear: str) -> dict[str, np.ndarray]:
    """For the pipeline: ``{"act_mean_sq": vector}`` of layer ``hf_linear`` from the imatrix
    file a GGUFConfig names (llama-quantize ``--imatrix``), else ``{}``. Files are read once."""
    path = getattr(config, "imatrix", None)
    if not path or getattr(config, "quant_method", None) != "gguf":
        return {}
    p = Path(path)
    key = (str(p.resolve()), p.stat().st_mtime if p.exists() else 0.0)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_imatrix(p)
    v = _LOADED[key].for_layer(hf_linear)
    return {} if v is None else {"act_mean_sq": v.astype(np.float64)}


def load_imatrix(path: str | os.PathLike[str]) -> ImportanceMatrix:
    """Read either imatrix file format (GGUF by its magic, else legacy ``.dat``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such imatrix file: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    return read_imatrix_gguf(path) if magic == b"GGUF" else read_imatrix_dat(path)


def save_imatrix(im: ImportanceMatrix, path: str | os.PathLike[str], *, format: str | None = None) -> Path:
    """Write ``im``: ``format="gguf"`` or ``"dat"``; default by the suffix (``.dat`` -> legacy)."""
    fmt = format or ("dat" if Path(path).suffix == ".dat" else "gguf")
    if fmt == "gguf":
        return write_imatrix_gguf(im, path)
    if fmt == "dat":
        return write_imatrix_dat(im, path)
    raise ValueError(f"format must be 'gguf' or 'dat', got {format!r}")
