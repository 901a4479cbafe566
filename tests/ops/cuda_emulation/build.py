"""Builds csrc/cuda/*.cu as plain C++ on the CPU (cuda_emulation.h) into a torch extension
whose ops live in the namespace `segsort_emulated` under the CPU dispatch key: the CUDA host
code and kernels, unchanged but for two mechanical rewrites done here —
`kernel<<<grid, block, shared, stream>>>(args)` becomes an emulated launch, and the
`TORCH_LIBRARY_IMPL(segsort_ext, CUDA, m)` registrations target the emulated namespace."""
from __future__ import annotations

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
CSRC = os.path.join(ROOT, "csrc")

# name or name<template args>, then <<<config>>>; config may hold parentheses and commas,
# and inside a macro a line continuation may separate the name from <<<.
_LAUNCH = re.compile(r"([A-Za-z_]\w*(?:<[^<>;{}()]*>)?)(?:\s|\\\n)*<<<(.*?)>>>", re.S)


def rewrite_cuda_source(text: str, path: str) -> str:
    text = _LAUNCH.sub(lambda m: f"::segsort_emu::launch({m.group(2)}, &{m.group(1)})", text)
    text = text.replace("TORCH_LIBRARY_IMPL(segsort_ext, CUDA,", "TORCH_LIBRARY_IMPL(segsort_emulated, CPU,")
    return f'#line 1 "{os.path.relpath(path, ROOT)}"\n' + text


def _write_if_changed(path: str, text: str) -> None:
    if os.path.exists(path):
        with open(path) as fh:
            if fh.read() == text:
                return  # keep the timestamp: ninja rebuilds nothing
    with open(path, "w") as fh:
        fh.write(text)


def build(build_dir: str, verbose: bool = False):
    """Compiles (or reuses) the emulated extension; afterwards torch.ops.segsort_emulated.*
    run the CUDA code paths on CPU tensors."""
    import sys

    from torch.utils.cpp_extension import load

    # The ninja that `pip install ninja` put beside this interpreter (a venv not activated).
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    os.makedirs(build_dir, exist_ok=True)
    sources = []
    cuda_dir = os.path.join(CSRC, "cuda")
    paths = [os.path.join(cuda_dir, n) for n in sorted(os.listdir(cuda_dir)) if n.endswith(".cu")]
    for path in paths + [os.path.join(HERE, "emulation_selftest.cu")]:
        name = os.path.basename(path)
        with open(path) as fh:
            text = rewrite_cuda_source(fh.read(), path)
        out = os.path.join(build_dir, name[:-3] + "_emulated.cpp")
        _write_if_changed(out, text)
        sources.append(out)
    with open(os.path.join(CSRC, "ops.cpp")) as fh:
        ops = fh.read()
    assert "TORCH_LIBRARY(segsort_ext," in ops
    ops_out = os.path.join(build_dir, "ops_emulated.cpp")
    ops = ops.replace("TORCH_LIBRARY(segsort_ext,", "TORCH_LIBRARY(segsort_emulated,")
    _write_if_changed(ops_out, '#line 1 "csrc/ops.cpp"\n' + ops)
    sources.append(ops_out)
    return load(
        name="segsort_cuda_emulation",
        sources=sources,
        extra_include_paths=[os.path.join(CSRC, "include"), HERE],
        extra_cflags=["-O1", "-std=c++17", "-DSEGSORT_CUDA_EMULATION", "-Wno-unused-function"],
        build_directory=build_dir,
        verbose=verbose,
    )
