"""SEGSORT_SIMD: one machine runs the CPU kernels of every vector width it supports, so
that no test result depends on the machine CI happens to get (.ci/run runs the kernel
tests once per width)."""
import os
import subprocess
import sys

import pytest
import torch

from segsort_ext.ops import extension_info, group_max_scores
from segsort_ext.testing import needs_extension

pytestmark = needs_extension


def _python(code: str, simd: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEGSORT_SIMD": simd, **extra_env}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def _supported():
    widest = extension_info()["cpu_simd_bits"]
    return [name for name, bits in (("baseline", 128), ("avx2", 256), ("avx512", 512)) if bits <= widest]


def test_unset_picks_the_widest_width_of_this_cpu():
    if os.environ.get("SEGSORT_SIMD"):
        pytest.skip("SEGSORT_SIMD is set for this run")
    info = extension_info()
    assert info["simd_bits"] == info["cpu_simd_bits"] in (128, 256, 512)


def _group_max_reference(q: torch.Tensor, b: torch.Tensor, group: int) -> torch.Tensor:
    scores = q @ b.T
    pad = -scores.shape[1] % group
    return torch.cat([scores, scores.new_full((q.shape[0], pad), -float("inf"))], 1).view(q.shape[0], -1, group).amax(2)


@pytest.mark.parametrize("simd", ["baseline", "avx2", "avx512"])
def test_each_width_runs_the_kernels_and_agrees(simd):
    if simd not in _supported():
        pytest.skip(f"this CPU does not run {simd}")
    code = ("import torch, segsort_ext.ops as o\n"
            "g = torch.Generator().manual_seed(0)\n"
            "q, b = torch.randn(7, 24, generator=g), torch.randn(1000, 24, generator=g)\n"
            "s = torch.cat([q @ b.T, torch.full((7, 24), -float('inf'))], 1).view(7, -1, 64).amax(2)\n"
            "print(o.extension_info()['simd_bits'], (o.group_max_scores(q, b, 64) - s).abs().max().item())")
    result = _python(code, simd)
    assert result.returncode == 0, result.stderr
    bits, error = result.stdout.split()
    assert int(bits) == {"baseline": 128, "avx2": 256, "avx512": 512}[simd]
    assert float(error) < 1e-4


@pytest.mark.parametrize("value", ["avx", "AVX2", "sse", "512"])
def test_a_bad_value_is_refused_naming_the_variable(value):
    result = _python("import segsort_ext", value)
    assert result.returncode != 0
    assert "SEGSORT_SIMD must be one of ['avx2', 'avx512', 'baseline']" in result.stderr
    assert repr(value) in result.stderr


def test_a_width_this_cpu_lacks_is_refused():
    missing = [name for name in ("avx2", "avx512") if name not in _supported()]
    if not missing:
        pytest.skip("this CPU runs every width")
    result = _python("import segsort_ext", missing[-1])
    assert result.returncode != 0 and "but this CPU runs at most" in result.stderr


def test_the_kernels_use_the_width_in_this_process():
    # Whatever width this run uses (.ci/run sets each), the op agrees with the GEMM it fuses.
    g = torch.Generator().manual_seed(1)
    q, b = torch.randn(5, 40, generator=g), torch.randn(700, 40, generator=g)
    torch.testing.assert_close(group_max_scores(q, b, 64), _group_max_reference(q, b, 64), rtol=1e-5, atol=1e-4)


def test_nearest_centroid_is_bit_identical_at_the_fma_widths():
    # Each score is one FMA chain over d whatever the vector width (our own micro-kernel,
    # no BLAS), so AVX2 and AVX-512 agree bit for bit: k-means results do not depend on the
    # machine's vector width. (Baseline x86-64 has no FMA and rounds each product.) MKL is
    # held to the same width, as on a machine without AVX-512: no BLAS result enters.
    widths = [name for name in ("avx2", "avx512") if name in _supported()]
    if len(widths) < 2:
        pytest.skip("this CPU runs only one FMA width")
    code = ("import hashlib, torch\nfrom segsort_ext.ops.nearest_centroid import nearest_centroid\n"
            "g = torch.Generator().manual_seed(0)\n"
            "digest = hashlib.sha256()\n"
            "for dtype in (torch.float32, torch.float64):\n"
            "    for n, d, k in ((5000, 128, 100), (777, 33, 27), (50, 3, 1)):\n"
            "        x = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)\n"
            "        c = torch.randn(k, d, generator=g, dtype=torch.float64).to(dtype)\n"
            "        for t in nearest_centroid(x, c, with_sums=True):\n"
            "            digest.update(t.contiguous().numpy().tobytes())\n"
            "print(digest.hexdigest())")
    digests = []
    for simd in widths:
        result = _python(code, simd, MKL_ENABLE_INSTRUCTIONS=simd.upper())
        assert result.returncode == 0, result.stderr
        digests.append(result.stdout.strip())
    assert digests[0] == digests[1]
