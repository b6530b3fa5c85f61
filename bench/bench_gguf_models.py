"""SmolLM2-135M written as GGUF by lowbit for each llama.cpp type/mixture, with and without an
importance matrix: file size, bits per weight, perplexity in lowbit and in llama.cpp on the same
file, and whether the tensor data equals what llama.cpp's own quantizer writes.

    PYTHONPATH=build/python:tests/python .venv/bin/python bench/bench_gguf_models.py \\
        [--types Q4_0,Q4_K_M,Q5_K_M,Q6_K,Q8_0] [--chunks 20] [--imatrix-samples 64] [--out-dir DIR] [--gguf-numpy]

Steps, all in this run:
  1. the model (the registry's SmolLM2-135M-Instruct; its Q4_1 weights dequantized to float32)
     is written once as an F32 GGUF: the common source of both quantizers;
  2. the importance matrix is computed by lowbit on WikiText-2 *valid* (--imatrix-samples windows
     of 512 tokens; llama-imatrix's definition, lowbit.imatrix.compute) and saved as imatrix.gguf;
  3. per type and imatrix setting: lowbit writes the GGUF (model.save(format="gguf", type=...,
     imatrix=...): the mixture's per-tensor types, lowbit's ggml quantizers) and llama.cpp's
     llama_model_quantize writes its own from the F32 file with the same imatrix values;
  4. both tools compute WikiText-2 *test* perplexity on lowbit's file with llama-perplexity's
     protocol (windows of 512, second half scored) over the first --chunks windows.
Columns: size MB (file), bits/w (8 x tensor bytes / parameters), ppl lowbit, ppl llama.cpp,
ratio (lowbit / llama.cpp; lowbit loads the file with keep_quantized=True, so both round the
activations of every quantized matmul to the weight type's 8-bit vec_dot_type, lowbit through
its GGUF kernels (lowbit/ggml_qmatmul.hpp)), == llama.cpp (tensor data
byte-identical to llama-quantize's file: "yes", or the number of differing tensors).
A type lowbit cannot quantize in this build prints "n/a". ``--gguf-numpy`` quantizes the legacy
types lowbit's table lacks with the ``gguf`` package's NumPy quantizers instead (byte-exact with
llama.cpp for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 without an imatrix): a check of the writer alone.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lowbit as lb
from lowbit.data import calibration, read_eval_text, wikitext2_test_path, wikitext2_valid_path
from lowbit.evaluate import perplexity, windows
from lowbit.export.gguf import save_gguf
from lowbit.imatrix import compute, save_imatrix

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ppl_vs_llama_cpp import llama_cpp_nll  # noqa: E402


def tensor_bytes(path: Path) -> tuple[int, int]:
    from gguf import GGUFReader

    r = GGUFReader(path)
    return sum(int(t.n_bytes) for t in r.tensors), sum(int(t.n_elements) for t in r.tensors)


def same_data(a: Path, b: Path) -> int:
    """Number of tensors whose type or bytes differ (-1 when the tensor lists differ)."""
    from gguf import GGUFReader

    ra, rb = GGUFReader(a), GGUFReader(b)
    if [t.name for t in ra.tensors] != [t.name for t in rb.tensors]:
        return -1
    return sum(ta.tensor_type != tb.tensor_type
               or not np.array_equal(np.asarray(ta.data).view(np.uint8), np.asarray(tb.data).view(np.uint8))
               for ta, tb in zip(ra.tensors, rb.tensors))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="Q4_0,Q4_K_M,Q5_K_M,Q6_K,Q8_0")
    ap.add_argument("--chunks", type=int, default=20, help="perplexity windows of 512 tokens")
    ap.add_argument("--imatrix-samples", type=int, default=64, help="WikiText-2 valid windows of 512 for the imatrix")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", help="keep the files here (default: a temporary folder)")
    ap.add_argument("--gguf-numpy", action="store_true",
                    help="quantize legacy types missing from lowbit's table with the gguf package (writer check)")
    args = ap.parse_args()
    if args.gguf_numpy:
        import lowbit.export.gguf as ge
        from test_gguf_writer import _numpy_quantize  # tests/python

        real = ge._quantize_ggml
        ge._quantize_ggml = lambda w, t, im: real(w, t, im) if t in lb.FORMATS else _numpy_quantize(w, t, im)
    import llama_cpp_peer as peer  # tests/python (needs llama-cpp-python)

    lb.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory() if args.out_dir is None else None
    out = Path(args.out_dir or tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    model = lb.load_model("smollm2-135m")
    src = save_gguf(model, out / "smollm2-f32.gguf", dtype="f32")
    t0 = time.perf_counter()
    calib = calibration(model, wikitext2_valid_path(), n_samples=args.imatrix_samples, seq_len=512, seed=0)
    im = compute(model, calib)
    save_imatrix(im, out / "imatrix.gguf")
    print(f"imatrix: {len(im)} weights, {args.imatrix_samples} x 512 tokens of WikiText-2 valid "
          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    imat = im.values
    text = read_eval_text(wikitext2_test_path(), "llama.cpp")
    toks = model.tokenizer.encode(text)
    wins = windows(toks, 512, "llama.cpp", None, args.chunks)
    rows = []
    for t in args.types.split(","):
        for use_im in (False, True):
            name = f"{t}{'-imat' if use_im else ''}"
            path, ref = out / f"smollm2-{name}.gguf", out / f"smollm2-{name}-llama.cpp.gguf"
            try:
                save_gguf(model, path, type=t, imatrix=imat if use_im else None)
            except NotImplementedError as e:
                rows.append((name, None, None, None, None, str(e)[:60]))
                continue
            peer.quantize_gguf(src, ref, t, imatrix=imat if use_im else None, nthread=args.threads)
            nbytes, n = tensor_bytes(path)
            ppl = perplexity(lb.load_model(path, keep_quantized=True), toks, protocol="llama.cpp", seq_len=512, max_windows=args.chunks).ppl
            nll, _, _ = llama_cpp_nll(str(path), wins, args.threads)
            diff = same_data(path, ref)
            rows.append((name, path.stat().st_size / 1e6, 8 * nbytes / n, ppl, math.exp(nll),
                         "yes" if diff == 0 else f"{diff} differ"))
            ref.unlink()
            print(f"  done {name}", file=sys.stderr)
    print(f"SmolLM2-135M-Instruct (dequantized Q4_1 source), WikiText-2 test, llama.cpp protocol, first "
          f"{len(wins)} windows of 512; {peer.llama_cpp_version()}")
    print(f"{'type':<14}{'size MB':>9}{'bits/w':>8}{'ppl lowbit':>12}{'ppl llama.cpp':>15}{'ratio':>8}  == llama.cpp")
    for name, size, bpw, p1, p2, same in rows:
        if size is None:
            print(f"{name:<14}{'n/a':>9}  {same}")
            continue
        print(f"{name:<14}{size:>9.1f}{bpw:>8.3f}{p1:>12.4f}{p2:>15.4f}{p1 / p2:>8.4f}  {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
