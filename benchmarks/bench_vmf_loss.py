"""vMF-NCA loss with a prototype memory, fused (segsort_ext.vmf_nca_loss) vs the dense way of the
official TF code and SPML (reference.py: the full (N, S + M) logits and masks), forward +
backward. Workload (issue 4): N = 4 x 128 x 128 pixels, S = 800, M = 1600, D = 64.
Peak memory goes into each benchmark's extra_info (CUDA: max_memory_allocated; CPU: the
peak RSS of a fresh process running one step, minus the same process before the step),
and so do the step's GFLOP/s and fraction of the GEMM peak measured in the run, counting
its three GEMMs: logits 2 N (S+M) D, their gradient to the pixels 2 N (S+M) D and to the
prototypes 2 N S D (the exponentials not counted).

    pytest benchmarks/bench_vmf_loss.py --benchmark-group-by=group
"""
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.ops import reference, vmf_nca_loss

from conftest import run

N, S, M, D = 4 * 128 * 128, 800, 1600, 64
IMPLS = {"segsort_ext": vmf_nca_loss, "dense": reference.vmf_nca_loss}


def problem(device, dtype=torch.float32, n=N, s=S, m=M):
    """(pixel embeddings, segment ids, prototypes, their labels, (memory, memory labels))."""
    g = torch.Generator().manual_seed(0)
    e = F.normalize(torch.randn(n, D, generator=g), dim=1).to(device, dtype).requires_grad_()
    ids = torch.randint(0, s, (n,), generator=g).to(device)
    p = F.normalize(torch.randn(s, D, generator=g), dim=1).to(device, dtype).requires_grad_()
    labels = torch.randint(0, 21, (s,), generator=g).to(device)
    memory = (F.normalize(torch.randn(m, D, generator=g), dim=1).to(device, dtype),
              torch.randint(0, 21, (m,), generator=g).to(device))
    return e, ids, p, labels, memory


def flop(n=N, s=S, m=M):
    """The step's GEMM work: logits, their gradient to the pixels and to the prototypes."""
    return 2 * n * D * (2 * (s + m) + s)


def step(impl, e, ids, p, labels, memory):
    """One forward + backward of `impl` ('segsort_ext' or 'dense')."""
    loss = IMPLS[impl](e, ids, p, labels, concentration=10.0, memory=memory)
    loss.backward()
    e.grad = p.grad = None
    return loss


_CPU_PEAK = """
import json, resource, sys
sys.path.insert(0, {bench!r})
import bench_vmf_loss as b
problem = b.problem("cpu")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
b.step({impl!r}, *problem)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps((after - before) / 1024))
"""


def _peak_mib(impl, device):
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        step(impl, *problem(device))
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 2**20
    script = _CPU_PEAK.format(bench=str(__import__("pathlib").Path(__file__).parent), impl=impl)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("impl", list(IMPLS))
def test_vmf_nca_forward_backward(benchmark, record_roofline, device, impl):
    benchmark.group = f"vmf-nca fwd+bwd {device} N={N} S={S} M={M} D={D}"
    workload = problem(device)
    benchmark.extra_info["peak_mib"] = _peak_mib(impl, device)
    run(benchmark, lambda: step(impl, *workload), device)
    record_roofline(device, flop=flop())


@pytest.mark.parametrize("impl", ["segsort_ext", "dense"])
def test_bfloat16_stability(benchmark, record_roofline, device, impl):
    """bfloat16 / float16 at kappa = 16: the fused path stays finite; the dense one is
    recorded as it is (finite or not) in extra_info."""
    benchmark.group = f"vmf-nca half precision {device}"
    if device == "cpu" and impl == "dense":
        pytest.skip("dense half precision on CPU: not what users run")
    e, ids, p, labels, memory = problem(device, torch.bfloat16 if device == "cpu" else torch.float16)
    loss = IMPLS[impl](e, ids, p, labels, concentration=16.0, memory=memory)
    benchmark.extra_info["finite"] = bool(torch.isfinite(loss))
    run(benchmark, lambda: step(impl, e, ids, p, labels, memory), device)
    record_roofline(device, flop=flop())  # against the float32 peak
