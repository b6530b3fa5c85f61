"""Regenerate gguf_mixtures_smollm2.json: the ggml type llama.cpp's quantizer gives every tensor
of SmolLM2-135M under each mixture, with and without an importance matrix.

    PYTHONPATH=build/python:tests/python .venv/bin/python tests/python/data/make_gguf_mixture_fixture.py

Runs llama_model_quantize (llama-cpp-python) on the registry's SmolLM2-135M GGUF with
allow_requantize (the types llama.cpp picks do not depend on the source types) and reads the
resulting tensor types with the gguf package.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGUFReader

from llama_cpp_peer import FTYPES, llama_cpp_version, quantize_gguf

SRC = Path.home() / ".cache/lowbit/models/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = Path(__file__).with_name("gguf_mixtures_smollm2.json")
MIXTURES = [m for m in FTYPES if m not in ("F32", "F16")]


def types_of(path):
    r = GGUFReader(path)
    return {t.name: t.tensor_type.name.lower().replace("_k", "_K") for t in r.tensors}


def main():
    r = GGUFReader(SRC)
    names = [t.name for t in r.tensors]
    shapes = {t.name: [int(d) for d in reversed(t.shape.tolist())] for t in r.tensors}
    imatrix = {n: np.ones(shapes[n][-1], np.float32) for n in names if n.startswith("blk.") and len(shapes[n]) == 2}
    names = sorted(names)
    out = {"source": SRC.name, "llama_cpp": llama_cpp_version(), "n_layers": 30, "names": names,
           "shapes": [shapes[n] for n in names], "types": {}, "types_with_imatrix": {}}
    with tempfile.TemporaryDirectory() as d:
        for m in MIXTURES:
            for key, im in (("types", None), ("types_with_imatrix", imatrix)):
                dst = Path(d) / f"{m}.gguf"
                quantize_gguf(SRC, dst, m, imatrix=im, nthread=2, allow_requantize=True)
                t = types_of(dst)
                out[key][m] = " ".join(t[n] for n in names)  # one type per name, in `names` order
                dst.unlink()
                print(m, key, file=sys.stderr)
    OUT.write_text(json.dumps(out, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
