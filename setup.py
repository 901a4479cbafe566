"""Builds segsort_ext._C: C++ CPU kernels always, CUDA kernels when torch has CUDA and
nvcc is found. Environment:
  CUDA_HOME              the CUDA toolkit (default /usr/local/cuda)
  TORCH_CUDA_ARCH_LIST   architectures to compile for (default DEFAULT_ARCH_LIST; torch's own
                         default queries a GPU and fails on machines without one)
  REQUIRE_CUDA=1         fail instead of building without CUDA kernels
  FORCE_CPU=1            build the CPU kernels only
  MAX_JOBS               parallel compile jobs (ninja)
"""
import glob
import hashlib
import os
import shutil

from setuptools import find_packages, setup

DEFAULT_ARCH_LIST = "7.5;8.0;9.0+PTX"  # sm_80 cubins also run on 8.6/8.9; PTX for newer GPUs


def _csrc_digest(root):
    # Same definition as segsort_ext.buildinfo.csrc_digest (not importable before the build).
    base = os.path.join(root, "csrc")
    digest = hashlib.sha256()
    for rel in sorted(os.path.relpath(os.path.join(d, f), base) for d, _, fs in os.walk(base) for f in fs):
        digest.update(rel.encode("utf-8") + b"\0")
        with open(os.path.join(base, rel), "rb") as fh:
            digest.update(fh.read() + b"\0")
    return digest.hexdigest()


def _find_nvcc(cuda_home):
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    return nvcc if os.path.exists(nvcc) else shutil.which("nvcc")


def _extensions():
    os.environ.setdefault("CUDA_HOME", "/usr/local/cuda")
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCH_LIST)
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    root = os.path.dirname(os.path.abspath(__file__))
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    nvcc = _find_nvcc(os.environ["CUDA_HOME"])
    with_cuda = torch.version.cuda is not None and nvcc is not None and os.environ.get("FORCE_CPU") != "1"
    if os.environ.get("REQUIRE_CUDA") == "1" and not with_cuda:
        raise RuntimeError(
            "REQUIRE_CUDA=1 but CUDA kernels cannot be built: "
            f"torch.version.cuda={torch.version.cuda!r}, nvcc={nvcc!r}, FORCE_CPU={os.environ.get('FORCE_CPU')!r}"
        )
    arch_list = os.environ["TORCH_CUDA_ARCH_LIST"] if with_cuda else ""
    define_macros = [("SEGSORT_ARCH_LIST", f'"{arch_list}"'), ("SEGSORT_CSRC_DIGEST", f'"{_csrc_digest(root)}"')]
    # -fopenmp: ATen's at::parallel_for is inline OpenMP; without it CPU kernels run serially.
    extra = {"cxx": ["-O3", "-std=c++17", "-fopenmp"]}
    include_dirs = [os.path.join(root, "csrc", "include")]
    if with_cuda:
        define_macros.append(("SEGSORT_WITH_CUDA", None))
        extra["nvcc"] = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"]
        print(f"segsort_ext: building CPU and CUDA kernels for TORCH_CUDA_ARCH_LIST={arch_list}")
        return [CUDAExtension("segsort_ext._C", sources + cuda_sources, include_dirs=include_dirs,
                              define_macros=define_macros, extra_compile_args=extra,
                              extra_link_args=["-fopenmp"])]
    print("segsort_ext: building CPU kernels only (no CUDA torch or no nvcc)")
    return [CppExtension("segsort_ext._C", sources, include_dirs=include_dirs,
                         define_macros=define_macros, extra_compile_args=extra, extra_link_args=["-fopenmp"])]


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(
    packages=find_packages(include=["segsort_ext", "segsort_ext.*"]),
    ext_modules=_extensions(),
    cmdclass=_cmdclass(),
)
