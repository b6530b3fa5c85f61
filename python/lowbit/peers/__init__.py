"""Handles on peer libraries (llama.cpp's ggml, ...) used as oracles by tests and benchmarks.

Each module imports its peer lazily and raises a clear error when it is not installed; nothing
in lowbit's runtime depends on them.
"""
