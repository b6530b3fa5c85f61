"""The peer side of bench_quantize_model.py: GPTQ or AWQ with llm-compressor on PyTorch CPU.

Runs in its own virtual environment (llm-compressor pins transformers<=5.17, older than
lowbit's dev venv), so bench_quantize_model.py starts it as a subprocess:

    PEER_PY bench/peer_llmcompressor_gptq.py --model DIR --calib calib.npy --out weights.npz \
        --bits 4 --group-size 128 --threads 2

It quantizes every decoder linear (lm_head kept) of the Hugging Face folder DIR with
GPTQModifier (--method gptq), or AWQ's scale search followed by min-max quantization
(--method awq: asymmetric, duo scaling, as lowbit's AWQConfig), on exactly the calibration token ids in calib.npy (int64 [n_samples, seq_len]),
the settings matched to lowbit's GPTQConfig defaults (symmetric, damping 1% of the mean
diagonal, block size 128, no act-order, min-max grid), and writes the quantize-dequantized
weights of those linears and the norm weights (AWQ folds 1/s into them; float32, Hugging Face
names) plus the timings to weights.npz, so
the caller evaluates both tools' weights with the same runtime and windows.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="Hugging Face folder (config.json, safetensors)")
    ap.add_argument("--calib", required=True, help="int64 token ids [n_samples, seq_len] (.npy)")
    ap.add_argument("--out", required=True, help="output .npz of dequantized linear weights")
    ap.add_argument("--method", choices=("gptq", "awq"), default="gptq")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    t_import = time.perf_counter()
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
    from transformers import AutoModelForCausalLM

    ids = np.load(args.calib)
    n, L = ids.shape
    ds = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": np.ones_like(ids).tolist()})
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    scheme = QuantizationScheme(
        targets=["Linear"],
        weights=QuantizationArgs(num_bits=args.bits, type="int", symmetric=args.method == "gptq",
                                 strategy="group", group_size=args.group_size, observer="minmax"))
    if args.method == "gptq":
        recipe = GPTQModifier(config_groups={"group_0": scheme}, ignore=["lm_head"], dampening_frac=0.01,
                              block_size=128, actorder=None)
    else:
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform import AWQModifier
        from llmcompressor.pipelines.cache import IntermediatesCache

        if not torch.cuda.is_available():
            # llm-compressor 0.14's AWQ pins its cached activations unconditionally, which raises
            # without an accelerator; pinning only speeds up host-to-device copies
            IntermediatesCache.pin_memory = lambda self, *a, **k: None

        recipe = [AWQModifier(duo_scaling=True),
                  QuantizationModifier(config_groups={"group_0": scheme}, ignore=["lm_head"])]
    t0, c0 = time.perf_counter(), time.process_time()
    oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=L, num_calibration_samples=n)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    # the peak of the quantization itself, before the export below copies every linear to float32
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    # After oneshot the linears hold quantize-dequantized weights (fake quantization); apply
    # the stored scales once more in case a version keeps the float weight (idempotent).
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize

    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and hasattr(mod, "weight_scale"):
            w = mod.weight.detach()
            scale = mod.weight_scale.detach()
            zp = getattr(mod, "weight_zero_point", None)
            qa = mod.quantization_scheme.weights
            wq = fake_quantize(w, scale, zp.detach() if zp is not None else None, qa)
            out[f"{name}.weight"] = wq.float().numpy()
        elif "norm" in type(mod).__name__.lower() and getattr(mod, "weight", None) is not None:
            out[f"{name}.weight"] = mod.weight.detach().float().numpy()  # AWQ folds its scales into norms
    import llmcompressor

    meta = {"seconds": seconds, "cpu_seconds": cpu_seconds, "setup_seconds": t0 - t_import, "peak_rss_mb": rss,
            "tool": f"llm-compressor {llmcompressor.__version__}, torch {torch.__version__}",
            "threads": args.threads, "n_linears": len(out)}
    np.savez(args.out, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **out)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
