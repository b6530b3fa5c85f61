from __future__ import annotations

import os
import subprocess
import sys

import pytest

import lowbit as lb
from lowbit import _core


def test_cpu_info_reports_features_and_path():
    info = lb.cpu_info()
    assert info["isa"] in info["supported_isas"]
    assert info["supported_isas"][0] == "scalar"
    assert info["isa"] == info["supported_isas"][-1] or info["isa_override"]
    assert isinstance(info["features"]["avx2"], bool)
    if "avx2" in info["supported_isas"]:
        assert info["features"]["avx2"] and info["features"]["fma"]
    assert isinstance(info["features"]["neon"], bool) and isinstance(info["features"]["dotprod"], bool)
    # NEON kernels exist exactly in aarch64 builds (scripts/check_arm.sh tests them under qemu)
    assert ("neon" in info["supported_isas"]) == (info["machine"] in ("aarch64", "arm64"))
    assert info["num_threads"] >= 1


def test_threads_setting():
    lb.set_num_threads(1)
    assert lb.get_num_threads() == 1
    lb.set_num_threads(0)
    assert lb.get_num_threads() >= 1
    with pytest.raises(TypeError):
        lb.set_num_threads(1.5)


def _run(env_isa: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LOWBIT_ISA=env_isa)
    code = "import lowbit as lb, numpy as np; lb.quantize(np.ones((2, 4), np.float32), lb.RTNConfig()); print(lb.cpu_info()['isa'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_lowbit_isa_environment_override():
    r = _run("scalar")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "scalar"
    r = _run("sse9")
    assert r.returncode != 0 and "ISA must be one of" in r.stderr
    if "avx512" not in _core.supported_isas():
        r = _run("avx512")
        assert r.returncode != 0 and "not supported" in r.stderr
