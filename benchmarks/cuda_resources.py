"""Static resource report of every CUDA kernel on sm_90 (no GPU needed).

Compiles the device code of each csrc/cuda/*.cu for sm_90 with `nvcc -cubin -Xptxas -v`,
with the flags, defines and include paths of setup.py's CUDA build, and reads ptxas's
report for each kernel instantiation: registers per thread, spill stores/loads, stack
frame (local memory), static shared memory. From those and the launch block size it
computes the theoretical occupancy on an H100/H200 (sm_90). Writes a Markdown table and,
next to it, the same rows as JSON:

    python benchmarks/cuda_resources.py --out cuda_resources.md

Every launch in csrc/cuda uses kThreads or kTileThreads, both 256 threads
(tests/ops/test_cuda_resources.py checks that this stays so). ptxas's output per source
file is cached under --cache-dir by a digest of the file, csrc/include and the flags.
"""
import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCH = "sm_90"
BLOCK_THREADS = 256  # kThreads and kTileThreads (csrc/include/segsort/cuda_utils.h, tiles.cuh)
# setup.py's nvcc flags and defines; -lineinfo is left out (it changes no resource).
SETUP_NVCC_FLAGS = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-DSEGSORT_WITH_CUDA"]

# sm_90 per-SM limits (CUDA C Programming Guide, compute capability 9.0).
REGISTERS_PER_SM = 65536
REGISTER_GRANULARITY = 256  # registers are allocated per warp in units of 256
SHARED_PER_SM = 228 * 1024
SHARED_RESERVED_PER_BLOCK = 1024  # the driver's per-block reservation
SHARED_GRANULARITY = 128
THREADS_PER_SM = 2048
BLOCKS_PER_SM = 32
WARPS_PER_SM = THREADS_PER_SM // 32


@dataclasses.dataclass
class KernelResources:
    source: str  # csrc/cuda file name
    kernel: str  # demangled name with template arguments, without namespaces and parameters
    registers: int
    spill_stores: int  # bytes
    spill_loads: int  # bytes
    stack_frame: int  # bytes of local memory per thread
    shared: int  # bytes of static shared memory per block
    block_threads: int = BLOCK_THREADS
    blocks_per_sm: int = 0
    occupancy: float = 0.0  # resident warps / 64
    limited_by: str = ""


def occupancy(registers, shared, threads=BLOCK_THREADS):
    """(blocks per SM, occupancy, limiting resource) on sm_90 for a block of `threads`."""
    warps = (threads + 31) // 32
    registers_per_warp = -(-registers * 32 // REGISTER_GRANULARITY) * REGISTER_GRANULARITY
    shared_per_block = -(-(shared + SHARED_RESERVED_PER_BLOCK) // SHARED_GRANULARITY) * SHARED_GRANULARITY
    limits = {
        "threads": WARPS_PER_SM // warps,
        "blocks": BLOCKS_PER_SM,
        "registers": (REGISTERS_PER_SM // registers_per_warp) // warps if registers else BLOCKS_PER_SM,
        "shared": SHARED_PER_SM // shared_per_block,
    }
    blocks = min(limits.values())
    limited_by = min(limits, key=limits.get)
    return blocks, blocks * warps / WARPS_PER_SM, limited_by


def nvcc_command(source, cubin):
    os.environ.setdefault("CUDA_HOME", "/usr/local/cuda")
    import torch
    from torch.utils import cpp_extension

    includes = [str(ROOT / "csrc" / "include")] + cpp_extension.include_paths(device_type="cuda")
    return [
        find_nvcc(), "-cubin", f"-arch={ARCH}", "-o", str(cubin), *SETUP_NVCC_FLAGS,
        *cpp_extension.COMMON_NVCC_FLAGS, "-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_C",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        *(f"-I{path}" for path in includes), "-Xptxas", "-v", str(source),
    ]  # fmt: skip


def find_nvcc():
    nvcc = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc"
    return str(nvcc) if nvcc.exists() else shutil.which("nvcc")


def source_digest(source, command):
    digest = hashlib.sha256(" ".join(command[5:]).encode())  # the flags, not the output path
    for path in [source, *sorted((ROOT / "csrc" / "include").rglob("*"))]:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def ptxas_report(source, cache_dir):
    """ptxas's -v output for one .cu file, from the cache when the sources are unchanged."""
    with tempfile.TemporaryDirectory() as tmp:
        command = nvcc_command(source, Path(tmp) / "out.cubin")
        cached = Path(cache_dir) / f"{source.stem}-{source_digest(source, command)}.txt"
        if cached.exists():
            return cached.read_text()
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"nvcc failed on {source.name}:\n{result.stderr}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(result.stderr)
    return result.stderr


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '\w+'")
_PROPERTIES = re.compile(r"Function properties for (\w+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(text, source):
    """KernelResources per entry function of ptxas -v output."""
    kernels, entry, properties_of = [], None, None
    for line in text.splitlines():
        if match := _ENTRY.search(line):
            entry = {"mangled": match.group(1)}
        elif entry is None:
            continue
        elif match := _PROPERTIES.search(line):
            properties_of = match.group(1)  # the entry's, or a non-inlined callee's
        elif (match := _FRAME.search(line)) and properties_of == entry["mangled"]:
            entry["frame"] = [int(g) for g in match.groups()]
        elif match := _USED.search(line):
            smem = _SMEM.search(line)
            stack, stores, loads = entry.get("frame", (0, 0, 0))
            kernels.append(KernelResources(
                source=source, kernel=entry["mangled"], registers=int(match.group(1)), spill_stores=stores,
                spill_loads=loads, stack_frame=stack, shared=int(smem.group(1)) if smem else 0,
            ))  # fmt: skip
            entry = None
    for kernel, name in zip(kernels, demangle([k.kernel for k in kernels])):
        kernel.kernel = name
        kernel.blocks_per_sm, kernel.occupancy, kernel.limited_by = occupancy(kernel.registers, kernel.shared)
    return kernels


def demangle(names):
    """`segsort::(anonymous namespace)::f<float, 32>(float const*, ...)` -> `f<float, 32>`."""
    cxxfilt = shutil.which("c++filt")
    if cxxfilt is None or not names:
        return names
    out = subprocess.run([cxxfilt], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    short = []
    for full in out.splitlines():
        depth, end = 0, len(full)
        for i, ch in enumerate(full):  # the parameter list: the first '(' outside template arguments
            depth += (ch == "<") - (ch == ">")
            if ch == "(" and depth == 0 and not full.startswith("(anonymous", i):
                end = i
                break
        head, bracket, arguments = full[:end].partition("<")
        short.append(head.rsplit("::", 1)[-1] + bracket + arguments)
    return short


def collect(sources=None, cache_dir=None, jobs=2):
    """KernelResources of every kernel in `sources` (default: csrc/cuda/*.cu)."""
    if find_nvcc() is None:
        raise FileNotFoundError("nvcc not found (set CUDA_HOME)")
    sources = sorted(sources or (ROOT / "csrc" / "cuda").glob("*.cu"))
    cache_dir = cache_dir or Path(tempfile.gettempdir()) / "segsort_ext_cuda_resources"
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        reports = list(pool.map(lambda s: ptxas_report(s, cache_dir), sources))
    kernels = []
    for source, report in zip(sources, reports):
        kernels += sorted(parse_ptxas(report, source.name), key=lambda k: k.kernel)
    return kernels


def markdown(kernels):
    rows = [
        f"CUDA kernels on {ARCH} (ptxas -v; occupancy: theoretical, {BLOCK_THREADS}-thread blocks)",
        "",
        "| file | kernel | registers | spill stores / loads (B) | stack (B) | shared (B) | blocks/SM | occupancy"
        " | limited by |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for k in kernels:
        rows.append(
            f"| {k.source} | `{k.kernel}` | {k.registers} | {k.spill_stores} / {k.spill_loads} | {k.stack_frame}"
            f" | {k.shared} | {k.blocks_per_sm} | {k.occupancy:.0%} | {k.limited_by} |"
        )
    spilling = sum(k.spill_stores + k.spill_loads > 0 for k in kernels)
    rows += ["", f"{len(kernels)} kernel instantiations, {spilling} with register spills."]
    return "\n".join(rows) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Markdown table; JSON beside it (.json)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--jobs", type=int, default=2, help="parallel nvcc processes")
    args = parser.parse_args(argv)
    kernels = collect(cache_dir=args.cache_dir, jobs=args.jobs)
    args.out.write_text(markdown(kernels))
    args.out.with_suffix(".json").write_text(json.dumps([dataclasses.asdict(k) for k in kernels], indent=1) + "\n")
    print(markdown(kernels))


if __name__ == "__main__":
    main()
