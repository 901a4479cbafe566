"""One path per op (issue 23): the operator schemas of segsort_ext.ops.schemas are those of
csrc/ops.cpp, so that without the compiled extension the same ``torch.ops.segsort_ext.*``
exist, defined from Python and run by their plain-PyTorch kernels; and
``not_supported_reasons`` says why the compiled kernels do not run on a device."""
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import segsort_ext
from segsort_ext.ops import HAS_EXTENSION, has_cuda_kernels, not_supported_reasons
from segsort_ext.ops.schemas import CPU_ONLY, NAMESPACE, SCHEMAS
from segsort_ext.testing import needs_extension

ROOT = Path(__file__).resolve().parents[2]
OPS_CPP = ROOT / "csrc" / "ops.cpp"


def _canonical(schema: str) -> str:
    """A schema as torch prints it (spacing, defaults) from ``name(args) -> returns``."""
    return str(torch._C.parse_schema(f"{NAMESPACE}::{schema}"))


def _registered_ops() -> list[str]:
    """The names of every op of the namespace the dispatcher holds."""
    prefix = f"{NAMESPACE}::"
    return sorted(name[len(prefix):] for name in torch._C._dispatch_get_all_op_names() if name.startswith(prefix))


EXPECTED = {name: _canonical(name + schema) for name, schema in SCHEMAS.items()}


@needs_extension  # compares with the compiled extension's schemas
def test_schema_list_equals_the_compiled_schemas():
    # Every op the C++ library registers is in the list, and every entry of the list is
    # an op the C++ library registers, with the same schema, character for character.
    assert _registered_ops() == sorted(SCHEMAS)
    for name in SCHEMAS:
        assert str(getattr(torch.ops.segsort_ext, name).default._schema) == EXPECTED[name], name


@pytest.mark.skipif(not OPS_CPP.is_file(), reason="an installation without csrc/")
def test_schema_list_equals_csrc_ops_cpp():
    # The same comparison on the source, which holds without a build.
    text = OPS_CPP.read_text()
    start = text.index(f"TORCH_LIBRARY({NAMESPACE}, m) {{")
    block = text[start:text.index("\n}", start)]
    literals = re.findall(r'm\.def\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\)', block)
    defined = ["".join(re.findall(r'"((?:[^"\\]|\\.)*)"', literal)) for literal in literals]
    assert len(defined) == block.count("m.def("), "an m.def of csrc/ops.cpp that this test cannot read"
    assert {schema.split("(", 1)[0]: _canonical(schema) for schema in defined} == EXPECTED


def test_every_op_has_a_kernel_on_cpu_and_elsewhere():
    # The CPU-only ops run their plain-PyTorch kernel on other devices, with the extension
    # or without it; without it, so does every op.
    for name in SCHEMAS:
        for key in ("CPU", "CUDA", "MPS"):
            present = torch._C._dispatch_has_computed_kernel_for_dispatch_key(f"{NAMESPACE}::{name}", key)
            assert present == (key == "CPU" or name in CPU_ONLY or not HAS_EXTENSION or has_cuda_kernels()
                               and key == "CUDA"), (name, key)


OP_MODULES = sorted(p for p in (ROOT / "segsort_ext" / "ops").glob("*.py")
                    if p.name not in ("__init__.py", "_extension.py"))


@pytest.mark.parametrize("path", OP_MODULES + [ROOT / "segsort_ext" / "retrieval" / "torch_backend.py"],
                         ids=lambda p: p.name)
def test_no_code_path_depends_on_has_extension(path):
    # HAS_EXTENSION stays a public name, but the ops take one path: their own kernels
    # (compiled or plain-PyTorch) are the dispatcher's business.
    names = {node.id for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Attribute)}
    assert "HAS_EXTENSION" not in names


# ------------------------------------------------------------------------------ not_supported_reasons

def test_not_supported_reasons_cpu():
    reasons = not_supported_reasons("cpu")
    assert isinstance(reasons, list) and all(isinstance(r, str) and r for r in reasons)
    assert (reasons == []) == HAS_EXTENSION
    assert not_supported_reasons(torch.device("cpu")) == reasons


def test_not_supported_reasons_cuda():
    reasons = not_supported_reasons("cuda")
    assert (reasons == []) == (has_cuda_kernels() and torch.cuda.is_available())
    assert not_supported_reasons("cuda:0") == reasons
    if HAS_EXTENSION and not has_cuda_kernels():
        assert any("without CUDA kernels" in r for r in reasons), reasons
    if not torch.cuda.is_available():
        assert any("CUDA" in r and "torch" in r for r in reasons), reasons


@pytest.mark.parametrize("device_type", ["mps", "xpu", "meta"])
def test_not_supported_reasons_other_devices(device_type):
    reasons = not_supported_reasons(device_type)
    assert any(f"cpu and cuda only, not {device_type}" in r for r in reasons), reasons


@pytest.mark.parametrize("device_type, error", [(3, TypeError), (None, TypeError), ("gpu", ValueError),
                                                ("", ValueError)])
def test_not_supported_reasons_bad_device_type(device_type, error):
    with pytest.raises(error, match="device_type"):
        not_supported_reasons(device_type)


def test_not_supported_reasons_is_exported():
    assert segsort_ext.not_supported_reasons is not_supported_reasons
    assert "not_supported_reasons" in segsort_ext.__all__ and "not_supported_reasons" in segsort_ext.ops.__all__


# ------------------------------------------------------------------------------ the extension hidden

_HIDDEN = r'''
import json, sys, warnings
sys.modules["segsort_ext._C"] = None  # as if the extension was never built
warnings.simplefilter("ignore", RuntimeWarning)
import torch
import torch.nn.functional as F
import segsort_ext as se
from segsort_ext.ops import reference
from segsort_ext.ops.schemas import NAMESPACE, SCHEMAS
from segsort_ext.testing import random_clusters, random_labels

assert not se.HAS_EXTENSION
ops = torch.ops.segsort_ext
prefix = NAMESPACE + "::"
report = {
    "ops": sorted(n[len(prefix):] for n in torch._C._dispatch_get_all_op_names() if n.startswith(prefix)),
    "schemas": {name: str(getattr(ops, name).default._schema) for name in SCHEMAS},
    "cpu_reasons": se.not_supported_reasons("cpu"),
}
close = torch.testing.assert_close
def opcheck(op, args):  # schema, autograd registration, fake against real (not the slow aot_dispatch tests)
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
g = torch.Generator().manual_seed(23)
f64 = dict(dtype=torch.float64)

# segment_partition, with labels and connected components
clusters = random_clusters(2, 9, 8, 4, blob=3, ignore_fraction=0.1, generator=g)
labels = random_labels(2, 9, 8, 3, generator=g)
for actual, expected in zip(ops.segment_partition(clusters, labels, 255, 4),
                            reference.segment_partition(clusters, labels, connectivity=4)):
    assert torch.equal(actual, expected)
ids = se.segment_partition(clusters).ids
S = int(ids.max()) + 1

# segment_mean and its backward, both normalisations
x = torch.randn(2, 5, 9, 8, generator=g, **f64)
for normalize in (True, False):
    leaf = x.clone().requires_grad_()
    out, denom = ops.segment_mean(leaf, ids, S, normalize)
    ref_leaf = x.clone().requires_grad_()
    expected = reference.segment_mean(ref_leaf, ids, S, normalize=normalize)
    close(out, expected)
    weights = torch.randn(out.shape, generator=g, **f64)
    close(torch.autograd.grad((out * weights).sum(), leaf)[0],
          torch.autograd.grad((expected * weights).sum(), ref_leaf)[0])
    opcheck(ops.segment_mean.default, (x.clone().requires_grad_(), ids, S, normalize))

# spherical_kmeans
for tol in (-1.0, 0.0):
    labels_k, centroids = ops.spherical_kmeans(x, None, None, 2, 3, 5, 0.5, tol)
    ref_labels, ref_centroids = reference.spherical_kmeans(x, (2, 3), iters=5, coord_weight=0.5,
                                                           tol=None if tol < 0 else tol)
    assert torch.equal(labels_k, ref_labels)
    close(centroids, ref_centroids)

# vmf_loss and vmf_nca_loss with a memory, and their gradients
e = F.normalize(torch.randn(40, 6, generator=g, **f64), dim=1)
seg = torch.randint(-1, 5, (40,), generator=g)
protos = F.normalize(torch.randn(5, 6, generator=g, **f64), dim=1)
proto_labels = torch.tensor([0, 1, 0, 2, -1])
memory = (F.normalize(torch.randn(7, 6, generator=g, **f64), dim=1), torch.randint(0, 3, (7,), generator=g))
for nca in (False, True):
    leaves = e.clone().requires_grad_(), protos.clone().requires_grad_()
    refs = e.clone().requires_grad_(), protos.clone().requires_grad_()
    if nca:
        loss = se.vmf_nca_loss(*leaves[:1], seg, leaves[1], proto_labels, concentration=4.0, memory=memory)
        expected = reference.vmf_nca_loss(refs[0], seg, refs[1], proto_labels, concentration=4.0, memory=memory)
    else:
        loss = se.vmf_loss(leaves[0], seg, leaves[1], concentration=4.0, memory=memory)
        expected = reference.vmf_loss(refs[0], seg, refs[1], concentration=4.0, memory=memory)
    close(loss, expected)
    for actual, wanted in zip(torch.autograd.grad(loss, leaves), torch.autograd.grad(expected, refs)):
        close(actual, wanted)
    args = (e.clone().requires_grad_(), seg, protos.clone().requires_grad_(), proto_labels if nca else None,
            memory[0], memory[1] if nca else None, 4.0, nca)
    opcheck(ops.vmf_loss.default, args)

# blurring_mean_shift_step, and the public iteration with its gradient
points = torch.randn(2, 7, 3, generator=g, **f64)
lengths = torch.tensor([7, 4])
leaf, ref_leaf = points.clone().requires_grad_(), points.clone().requires_grad_()
result = se.blurring_mean_shift(leaf, bandwidth=3.0, iters=3, eta=0.8, lengths=lengths)
expected = reference.blurring_mean_shift(ref_leaf, bandwidth=3.0, iters=3, eta=0.8, lengths=lengths)
close(result, expected)
weights = torch.randn(result.shape, generator=g, **f64)
close(torch.autograd.grad((result * weights).sum(), leaf)[0],
      torch.autograd.grad((expected * weights).sum(), ref_leaf)[0])
unit = F.normalize(points, dim=2)
close(ops.blurring_mean_shift_step(unit, lengths, 3.0, 0.8)[0],
      reference.blurring_mean_shift(unit, bandwidth=3.0, iters=1, eta=0.8, lengths=lengths))
opcheck(ops.blurring_mean_shift_step.default, (unit.clone().requires_grad_(), lengths, 3.0, 0.8))
assert torch.autograd.gradcheck(lambda p: ops.blurring_mean_shift_step(p, lengths, 3.0, 0.8)[0],
                                (unit.clone().requires_grad_(),))

# the CPU-only ops
queries, bank = torch.randn(5, 4, generator=g, **f64), torch.randn(150, 4, generator=g, **f64)
close(ops.group_max_scores(queries, bank, 64), reference.group_max_scores(queries, bank, 64))
points, centroids = F.normalize(torch.randn(30, 4, generator=g, **f64), dim=1), F.normalize(bank[:6], dim=1)
for actual, wanted in zip(ops.nearest_centroid(points, centroids, True),
                          reference.nearest_centroid(points, centroids, with_sums=True)):
    close(actual, wanted)
assert ops.nearest_centroid(points, centroids, False)[2].shape == (0, 4)
for op, args in ((ops.group_max_scores, (queries, bank, 64)), (ops.nearest_centroid, (points, centroids, True)),
                 (ops.spherical_kmeans, (x, None, None, 2, 3, 5, 0.5, -1.0)),
                 (ops.segment_partition, (clusters, labels, 255, 8))):
    opcheck(op.default, args)
print(json.dumps(report))
'''


def test_with_the_extension_hidden_python_defines_the_same_ops():
    result = subprocess.run([sys.executable, "-c", _HIDDEN], capture_output=True, text=True, timeout=600, cwd=ROOT,
                            env={**os.environ, "PYTHONWARNINGS": "ignore::RuntimeWarning"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ops"] == sorted(SCHEMAS)
    assert report["schemas"] == EXPECTED
    reasons = report["cpu_reasons"]
    assert len(reasons) == 1 and reasons[0].startswith("the compiled extension segsort_ext._C failed to import: ")
