"""The design checklist every operator of ``torch.ops.segsort_ext`` passes, one registry
for all (kornia's ``BaseTester``, extension-cpp's ``sample_inputs()``): for each schema of
segsort_ext/ops/schemas.py an :class:`OpEntry` with small sample inputs of the raw op, the
public function and the plain-PyTorch reference, then, over ops x devices x dtypes:

(a) the public function agrees with ``segsort_ext.ops.reference`` (for a ``_*_backward``
    op: the gradients of the public forward agree with the reference's, which runs it);
(b) ``torch.library.opcheck`` passes on the raw op (with inputs that require grad too,
    for the differentiable ops: the autograd registration);
(c) float64 ``torch.autograd.gradcheck`` of the differentiable ops (those that register
    autograd; the registry's ``grad_inputs`` is checked against the dispatcher);
(d) ``torch.compile(fullgraph=True)`` of a function calling the public op runs and equals
    eager (for a ``_*_backward`` op: the compiled forward's backward), also when one
    compiled function is called again with other settings (a float becomes symbolic);
(e) the registry covers every schema, so a new op without sample inputs fails here;
(f) every op has a benchmark under benchmarks/ that names it.

This is the uniform floor; the per-op modules test each op in depth (shapes, layouts, NaN
policy, CUDA against CPU), and tests/hostile/cases_op_layer.py the refused inputs. Shapes are tiny.
"""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.ops import (
    blurring_mean_shift,
    group_max_scores,
    reference,
    segment_mean,
    segment_partition,
    spherical_kmeans,
    vmf_loss,
    vmf_nca_loss,
)
from segsort_ext.ops.nearest_centroid import nearest_centroid
from segsort_ext.ops.schemas import NAMESPACE, SCHEMAS
from segsort_ext.testing import random_clusters, random_labels

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
ops = torch.ops.segsort_ext
FLOATS = (torch.float32, torch.float64)
# (rtol, atol) of the public function against the reference, by dtype: the kernels sum in
# other orders (SIMD lanes, FMAs) than the reference.
TOLERANCES = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-9, 1e-11)}
# torch.compile's backend: "aot_eager" traces the whole graph through dynamo and AOTAutograd
# (the fake kernels, functionalisation, the backward graph) and runs it eagerly. Inductor
# would also generate and build C++ for the code around the ops (which it calls as extern
# kernels either way): minutes per test file on a small CPU.
COMPILE_BACKEND = "aot_eager"

Sample = tuple[tuple, dict]


@dataclasses.dataclass(frozen=True)
class OpEntry:
    """One operator of the checklist."""

    #: device, dtype -> [(args, kwargs)] of the raw op ``torch.ops.segsort_ext.<name>``.
    sample_inputs: Callable[[str, torch.dtype], list[Sample]]
    #: the raw op's args -> the public function's result (None: a ``_*_backward`` op).
    public: Optional[Callable] = None
    #: the raw op's args -> ``segsort_ext.ops.reference``'s result, comparable to ``public``'s.
    reference: Optional[Callable] = None
    #: positions of the raw op's differentiable args (empty: the op registers no autograd).
    grad_inputs: tuple[int, ...] = ()
    #: the input dtypes the op takes (the ``dtype`` of sample_inputs).
    dtypes: tuple[torch.dtype, ...] = FLOATS
    #: the forward op whose autograd calls this ``_*_backward`` op.
    backward_of: Optional[str] = None
    #: the name its benchmark uses (a benchmarks/bench_<name>.py or a test_<name>* function there).
    benchmark: Optional[str] = None


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unit(*shape, generator, dtype, device, dim=-1):
    return F.normalize(torch.randn(*shape, generator=generator, dtype=torch.float64), dim=dim).to(device, dtype)


def _on(device, *tensors):
    return tuple(None if t is None else t.to(device) for t in tensors)


# -- sample inputs of the raw ops ------------------------------------------------------------------

def _segment_partition_samples(device, dtype) -> list[Sample]:
    g = _generator()
    clusters, labels = _on(device, random_clusters(2, 6, 7, 3, blob=2, ignore_fraction=0.1, generator=g),
                           random_labels(2, 6, 7, 3, generator=g))
    return [((clusters, labels, 255, 0), {}), ((clusters, None, 255, 4), {}), ((clusters, labels, 255, 8), {})]


def _segment_mean_samples(device, dtype) -> list[Sample]:
    g = _generator()
    clusters = random_clusters(2, 5, 6, 3, blob=2, ignore_fraction=0.1, generator=g)
    ids = reference.segment_partition(clusters)[0]
    S = int(ids.max()) + 1
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64).to(device, dtype)
    ids = ids.to(device)
    pixels, flat_ids = x.permute(0, 2, 3, 1).reshape(-1, 3).contiguous(), ids.reshape(-1)
    return [((x, ids, S, True), {}), ((x, ids, S, False), {}), ((pixels, flat_ids, S, True), {})]


def _spherical_kmeans_samples(device, dtype) -> list[Sample]:
    g = _generator()
    x = torch.randn(2, 4, 6, 7, generator=g, dtype=torch.float64).to(device, dtype)
    mask, init = _on(device, torch.rand(2, 6, 7, generator=g) > 0.1, torch.randint(-1, 4, (2, 6, 7), generator=g))
    return [((x, None, None, 2, 2, 3, 1.0, -1.0), {}), ((x, mask, None, 2, 3, 2, 0.5, 0.0), {}),
            ((x, None, init, 2, 2, 3, 1.0, -1.0), {})]


def _vmf_loss_samples(device, dtype) -> list[Sample]:
    g = _generator()
    N, S, M, D = 30, 5, 6, 4
    e, p, memory = (_unit(n, D, generator=g, dtype=dtype, device=device) for n in (N, S, M))
    ids, labels, memory_labels = _on(device, torch.randint(-1, S, (N,), generator=g), torch.tensor([0, 1, 0, 2, -1]),
                                     torch.randint(0, 3, (M,), generator=g))
    # vmf_loss without and with a memory, vmf_nca_loss with and without (labels: an unmatched 2, a -1)
    return [((e, ids, p, None, None, None, 5.0, False), {}), ((e, ids, p, None, memory, None, 3.0, False), {}),
            ((e, ids, p, labels, memory, memory_labels, 4.0, True), {}),
            ((e, ids, p, labels, None, None, 4.0, True), {})]


def _blurring_mean_shift_step_samples(device, dtype) -> list[Sample]:
    x = _unit(2, 7, 3, generator=_generator(), dtype=dtype, device=device)
    return [((x, None, 3.0, 1.0), {}), ((x, torch.tensor([7, 4], device=device), 4.0, 0.8), {})]


def _group_max_scores_samples(device, dtype) -> list[Sample]:
    g = _generator()
    q, bank = (torch.randn(n, 4, generator=g, dtype=torch.float64).to(device, dtype) for n in (5, 150))
    return [((q, bank, 64), {}), ((q, bank[:10], 4), {}), ((q[:2], bank[:9], 1), {})]


def _nearest_centroid_samples(device, dtype) -> list[Sample]:
    g = _generator()
    points, centroids = (_unit(n, 4, generator=g, dtype=dtype, device=device) for n in (30, 6))
    return [((points, centroids, True), {}), ((points, centroids, False), {})]


def _backward_samples(forward: str, make_args: Callable) -> Callable[[str, torch.dtype], list[Sample]]:
    """The samples of a ``_*_backward`` op: the forward op on each of its samples, then
    ``make_args(forward args, forward outputs, generator)``."""

    def samples(device, dtype) -> list[Sample]:
        g = _generator(1)
        result = []
        for args, kwargs in OPS[forward].sample_inputs(device, dtype):
            outputs = getattr(ops, forward)(*args, **kwargs)
            result.append((make_args(args, outputs, g), {}))
        return result

    return samples


def _like(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.device, t.dtype)


def _memory(bank, labels):
    return None if bank is None else (bank, labels)


def _vmf_public(e, ids, p, labels, bank, bank_labels, concentration, nca):
    if nca:
        return vmf_nca_loss(e, ids, p, labels, concentration=concentration, memory=_memory(bank, bank_labels))
    return vmf_loss(e, ids, p, concentration=concentration, memory=_memory(bank, bank_labels))


def _vmf_reference(e, ids, p, labels, bank, bank_labels, concentration, nca):
    if nca:
        return reference.vmf_nca_loss(e, ids, p, labels, concentration=concentration, memory=_memory(bank, bank_labels))
    return reference.vmf_loss(e, ids, p, concentration=concentration, memory=_memory(bank, bank_labels))


OPS: dict[str, OpEntry] = {
    "segment_partition": OpEntry(
        _segment_partition_samples,
        public=lambda c, labels, ignore, conn: tuple(segment_partition(c, labels, ignore_index=ignore,
                                                                       connectivity=conn or None)),
        reference=lambda c, labels, ignore, conn: reference.segment_partition(c, labels, ignore_index=ignore,
                                                                              connectivity=conn or None),
        dtypes=(torch.int64,)),  # integer maps only
    "segment_mean": OpEntry(
        _segment_mean_samples,
        public=lambda x, ids, S, normalize: segment_mean(x, ids, S, normalize=normalize),
        reference=lambda x, ids, S, normalize: reference.segment_mean(x, ids, S, normalize=normalize),
        grad_inputs=(0,)),
    "_segment_mean_backward": OpEntry(
        _backward_samples("segment_mean", lambda a, out, g: (_like(out[0], g), out[0], out[1], a[1], list(a[0].shape),
                                                             a[3])),
        backward_of="segment_mean"),
    "spherical_kmeans": OpEntry(
        _spherical_kmeans_samples,
        public=lambda x, mask, init, gh, gw, iters, cw, tol: tuple(spherical_kmeans(
            x, (gh, gw), iters=iters, coord_weight=cw, mask=mask, init=init, tol=None if tol < 0 else tol)),
        reference=lambda x, mask, init, gh, gw, iters, cw, tol: reference.spherical_kmeans(
            x, (gh, gw), iters=iters, coord_weight=cw, mask=mask, init=init, tol=None if tol < 0 else tol)),
    "vmf_loss": OpEntry(_vmf_loss_samples, public=_vmf_public, reference=_vmf_reference, grad_inputs=(0, 2)),
    "_vmf_loss_backward": OpEntry(
        _backward_samples("vmf_loss", lambda a, out, g: (_like(out[0], g), *a[:6], out[1], out[2], *a[6:])),
        backward_of="vmf_loss"),
    "blurring_mean_shift_step": OpEntry(
        _blurring_mean_shift_step_samples,
        # The public function normalises x, then iterates the step: one iteration on unit rows.
        public=lambda x, lengths, bandwidth, eta: blurring_mean_shift(x, bandwidth=bandwidth, iters=1, eta=eta,
                                                                      lengths=lengths),
        reference=lambda x, lengths, bandwidth, eta: reference.blurring_mean_shift(x, bandwidth=bandwidth, iters=1,
                                                                                   eta=eta, lengths=lengths),
        grad_inputs=(0,),
        benchmark="blurring_mean_shift"),  # benchmarked as the public iteration of the step
    "_blurring_mean_shift_step_backward": OpEntry(
        _backward_samples("blurring_mean_shift_step", lambda a, out, g: (_like(out[0], g), a[0], out[0], out[1],
                                                                         *a[1:])),
        backward_of="blurring_mean_shift_step"),
    "group_max_scores": OpEntry(_group_max_scores_samples, public=group_max_scores,
                                reference=reference.group_max_scores),
    "nearest_centroid": OpEntry(
        _nearest_centroid_samples,
        public=lambda points, centroids, with_sums: tuple(nearest_centroid(points, centroids, with_sums=with_sums)),
        reference=lambda points, centroids, with_sums: reference.nearest_centroid(points, centroids,
                                                                                  with_sums=with_sums)),
}


def _forward(name: str) -> str:
    """The op itself, or for a ``_*_backward`` op the forward op whose autograd calls it."""
    return OPS[name].backward_of or name


def _cases(names):
    """pytest params (name, dtype) for each op of ``names`` and each dtype it takes."""
    return [pytest.param(name, dtype, id=f"{name}-{str(dtype).removeprefix('torch.')}")
            for name in names for dtype in OPS[name].dtypes]


DIFFERENTIABLE = [name for name, entry in OPS.items() if entry.grad_inputs]


def _assert_close(actual, expected, dtype, tolerances=TOLERANCES):
    rtol, atol = tolerances.get(dtype, (0, 0))
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            _assert_close(a, e, dtype, tolerances)
    elif expected is None:
        assert actual is None
    else:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def _with_grad(args: tuple, positions) -> tuple:
    return tuple(a.detach().clone().requires_grad_() if i in positions else a for i, a in enumerate(args))


def _public_gradients(fn, args, positions, weights_seed=2):
    """The gradients of ``sum(fn(*args) * w)`` (w fixed random weights) with respect to
    the args at ``positions``, by autograd (which runs the ``_*_backward`` op)."""
    leaves = _with_grad(args, positions)
    out = fn(*leaves)
    weights = _like(out, _generator(weights_seed))
    return torch.autograd.grad((out * weights).sum(), [leaves[i] for i in positions])


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# -- (e) and (f): the registry and the benchmarks ------------------------------------------------

def test_every_schema_has_sample_inputs():
    missing, unknown = sorted(set(SCHEMAS) - set(OPS)), sorted(set(OPS) - set(SCHEMAS))
    assert not missing, f"ops of segsort_ext/ops/schemas.py without an entry in OPS (sample inputs): {missing}"
    assert not unknown, f"entries of OPS that are no schema: {unknown}"
    for name, entry in OPS.items():
        assert (entry.public is None) == (entry.reference is None) == (entry.backward_of is not None), name
        if entry.backward_of:
            assert entry.backward_of in DIFFERENTIABLE, name


@pytest.mark.parametrize("name", list(OPS))
def test_differentiable_ops_are_those_with_autograd(name):
    """grad_inputs is declared where the op registers autograd (register_autograd: a
    kernel for the Autograd key), and nowhere else."""
    has_autograd = torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{name}", "Autograd")
    assert has_autograd == bool(OPS[name].grad_inputs)


def _benchmark_functions() -> dict[Path, tuple[str, list[str]]]:
    """benchmarks/bench_*.py -> (its text, the names of its functions)."""
    result = {}
    for path in sorted(BENCHMARKS.glob("bench_*.py")):
        text = path.read_text()
        names = [node.name for node in ast.walk(ast.parse(text, str(path))) if isinstance(node, ast.FunctionDef)]
        result[path] = (text, names)
    return result


@pytest.mark.skipif(not BENCHMARKS.is_dir(), reason="an installation without benchmarks/")
@pytest.mark.parametrize("name", list(OPS))
def test_every_op_has_a_benchmark(name):
    """A benchmarks/bench_<name>.py, or a test_<name>* function in one, for the op's
    benchmark name; a ``_*_backward`` op's forward benchmark runs a backward pass."""
    forward = _forward(name)
    bench = OPS[forward].benchmark or forward
    files = {path: text for path, (text, functions) in _benchmark_functions().items()
             if path.stem == f"bench_{bench}" or any(f.startswith(f"test_{bench}") for f in functions)}
    assert files, f"no benchmark names {bench!r} (for {NAMESPACE}::{name}) under benchmarks/"
    if OPS[name].backward_of:
        assert any(".backward(" in text for text in files.values()), \
            f"no benchmark of {bench!r} runs a backward pass (for {NAMESPACE}::{name}): {sorted(p.name for p in files)}"


# -- (a) the public function agrees with the reference --------------------------------------------

@pytest.mark.parametrize("name, dtype", _cases(OPS))
def test_public_agrees_with_reference(device, name, dtype):
    entry = OPS[name]
    if entry.backward_of:  # the gradients of the public forward (which runs this op) against the reference's
        forward = OPS[entry.backward_of]
        for args, kwargs in forward.sample_inputs(device, dtype):
            assert not kwargs
            actual = _public_gradients(forward.public, args, forward.grad_inputs)
            expected = _public_gradients(forward.reference, args, forward.grad_inputs)
            _assert_close(actual, expected, dtype)
        return
    for args, kwargs in entry.sample_inputs(device, dtype):
        assert not kwargs
        _assert_close(entry.public(*args), entry.reference(*args), dtype)


# -- (b) opcheck ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, dtype", _cases(OPS))
def test_opcheck(device, name, dtype):
    op = getattr(ops, name).default
    for args, kwargs in OPS[name].sample_inputs(device, dtype):
        torch.library.opcheck(op, args, kwargs)
        if OPS[name].grad_inputs:  # the autograd registration
            torch.library.opcheck(op, _with_grad(args, OPS[name].grad_inputs), kwargs)


# -- (c) gradcheck --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradcheck_float64(device, name):
    entry, op = OPS[name], getattr(ops, name)
    for args, kwargs in entry.sample_inputs(device, torch.float64):
        leaves = _with_grad(args, entry.grad_inputs)

        def first_output(*inputs, args=args, kwargs=kwargs):
            full = list(args)
            for position, value in zip(entry.grad_inputs, inputs):
                full[position] = value
            return op(*full, **kwargs)[0]

        # fast_mode: one random projection of the Jacobian instead of every column (the
        # per-op modules run the full check), to keep this floor quick.
        assert torch.autograd.gradcheck(first_output, tuple(leaves[i] for i in entry.grad_inputs), fast_mode=True)


# -- (d) torch.compile(fullgraph=True) ------------------------------------------------------------

def _tensor_function(fn, args):
    """(f, tensors): ``f(*tensors) == fn(*args)``, f taking the tensor args only and holding
    the others (ints, floats, bools, None) as constants, as a model holds its settings. (A
    Python float passed to the compiled function itself becomes a SymFloat, which the
    public functions' argument checks, math.isnan, cannot trace without a graph break.)"""
    positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]

    def f(*tensors):
        full = list(args)
        for position, tensor in zip(positions, tensors):
            full[position] = tensor
        return fn(*full)

    return f, tuple(args[i] for i in positions)


@pytest.mark.parametrize("name, dtype", _cases(OPS))
def test_torch_compile_fullgraph(device, name, dtype, fresh_dynamo):
    """Each sample compiled afresh: its float settings are constants of the graph (see
    test_torch_compile_recompiles_for_new_settings for one function over all samples)."""
    entry = OPS[name]
    if entry.backward_of:  # the compiled forward's backward graph holds this op
        forward = OPS[entry.backward_of]
        for args, _ in forward.sample_inputs(device, dtype):
            torch._dynamo.reset()
            f, tensors = _tensor_function(forward.public, args)
            compiled = torch.compile(f, fullgraph=True, backend=COMPILE_BACKEND)
            grads = [next(k for k, t in enumerate(tensors) if t is args[i]) for i in forward.grad_inputs]
            _assert_close(_public_gradients(compiled, tensors, grads), _public_gradients(f, tensors, grads), dtype)
        return
    for args, _ in entry.sample_inputs(device, dtype):
        torch._dynamo.reset()
        f, tensors = _tensor_function(entry.public, args)
        compiled = torch.compile(f, fullgraph=True, backend=COMPILE_BACKEND)
        _assert_close(compiled(*tensors), f(*tensors), dtype)


# A compiled function called again with another float setting recompiles with that float
# dynamic (a SymFloat): the public functions' argument checks must trace it (checks.number
# compares instead of calling math.isnan, which failed under fullgraph=True).
_RECOMPILE_CASES = [name for name in OPS if not OPS[name].backward_of]


@pytest.mark.parametrize("name", _RECOMPILE_CASES)
def test_torch_compile_recompiles_for_new_settings(device, name, fresh_dynamo):
    """One compiled function over all samples (other ints, floats, bools, None each time)."""
    entry = OPS[name]
    compiled = torch.compile(lambda args: entry.public(*args), fullgraph=True, backend=COMPILE_BACKEND)
    dtype = entry.dtypes[0]
    for args, _ in entry.sample_inputs(device, dtype):
        _assert_close(compiled(args), entry.public(*args), dtype)
