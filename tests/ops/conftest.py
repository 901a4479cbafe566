"""Fixtures of the op tests: ``emu``, the CUDA code paths (csrc/cuda/*.cu) built to run on
the CPU through tests/ops/cuda_emulation (ops in ``torch.ops.segsort_emulated``)."""
import importlib.util
import os
import shutil
import sys

import pytest
import torch

from segsort_ext.ops import HAS_EXTENSION

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATION_BUILD_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "cuda_emulation")
CAN_EMULATE = HAS_EXTENSION and shutil.which(os.environ.get("CXX", "c++")) is not None and sys.platform.startswith(
    "linux")


def load_emulation_build():
    # Loaded by path: a plain `import build` could find PyPA's `build` package instead.
    spec = importlib.util.spec_from_file_location("segsort_cuda_emulation_build",
                                                  os.path.join(HERE, "cuda_emulation", "build.py"))
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build


@pytest.fixture(scope="session")
def emu():
    if not CAN_EMULATE:
        pytest.skip("needs the compiled extension and a C++ compiler on Linux")
    load_emulation_build().build(EMULATION_BUILD_DIR)
    return torch.ops.segsort_emulated
