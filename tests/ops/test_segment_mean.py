import pytest
import torch

import segsort_ext
from segsort_ext.ops import reference
from segsort_ext.testing import needs_cuda, random_clusters, random_labels

pool = torch.ops.segsort_ext.segment_mean
pool_backward = torch.ops.segsort_ext._segment_mean_backward


def _inputs(device, generator, B=2, D=5, H=6, W=7, K=4, dtype=torch.float64, ignore_fraction=0.1):
    x = torch.randn(B, D, H, W, generator=generator, dtype=dtype).to(device)
    clusters = random_clusters(B, H, W, K, blob=2, ignore_fraction=ignore_fraction, generator=generator)
    s = segsort_ext.segment_partition(clusters.to(device))
    return x, s.ids, s.num_segments


LAYOUTS = {
    "bdhw": lambda x, ids: (x, ids),
    "channels_last": lambda x, ids: (x.contiguous(memory_format=torch.channels_last), ids),
    "nd": lambda x, ids: (x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).contiguous(), ids.reshape(-1)),
    "nd_transposed": lambda x, ids: (x.permute(1, 0, 2, 3).reshape(x.shape[1], -1).t(), ids.reshape(-1)),
    "bdhw_sliced": lambda x, ids: (x[..., 1:], ids[..., 1:]),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_reference(device, generator, layout, normalize):
    x, ids, S = _inputs(device, generator)
    x, ids = LAYOUTS[layout](x, ids)
    expected = reference.segment_mean(x.contiguous(), ids, S, normalize=normalize)
    actual = segsort_ext.segment_mean(x, ids, S, normalize=normalize)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck(device, generator, layout, normalize):
    x, ids, S = _inputs(device, generator, B=2, D=3, H=4, W=5)
    x, ids = LAYOUTS[layout](x, ids)
    x = x.detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: segsort_ext.segment_mean(x, ids, S, normalize=normalize), (x,))


@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck_op(device, generator, normalize):
    # The op itself is differentiable (torch.library.register_autograd).
    x, ids, S = _inputs(device, generator, B=2, D=3, H=4, W=5)
    x = x.detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: pool(x, ids, S, normalize)[0], (x,))
    out, denom = pool(x, ids, S, normalize)
    assert out.requires_grad and not denom.requires_grad  # denom is for the backward only


def test_gradient_matches_reference(device, generator):
    x, ids, S = _inputs(device, generator)
    weights = torch.randn(S, x.shape[1], dtype=x.dtype, device=device)
    grads = []
    for fn in (segsort_ext.segment_mean, reference.segment_mean):
        xr = x.clone().requires_grad_()
        (fn(xr, ids, S) * weights).sum().backward()
        grads.append(xr.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    assert bool((grads[0].permute(0, 2, 3, 1)[ids < 0] == 0).all())  # ignored pixels get no gradient


def test_empty_segment_is_zero_not_nan(device, generator):
    x, ids, S = _inputs(device, generator)
    out = segsort_ext.segment_mean(x, ids, S + 3)  # three segments without members
    assert torch.isfinite(out).all() and bool((out[S:] == 0).all())
    x = x.requires_grad_()
    segsort_ext.segment_mean(x, ids, S + 3).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert bool((segsort_ext.segment_mean(x, ids, S + 3, normalize=False)[S:] == 0).all())


def test_zero_sum_segment_gradient(device):
    # A segment whose members cancel has a zero sum: F.normalize's clamp gives dy / eps.
    x = torch.tensor([[1.0, 2.0], [-1.0, -2.0], [3.0, 0.5]], dtype=torch.float64, device=device, requires_grad=True)
    ids = torch.tensor([0, 0, 1], device=device)
    xr = x.detach().clone().requires_grad_()
    segsort_ext.segment_mean(x, ids, 2).sum().backward()
    reference.segment_mean(xr, ids, 2).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision(device, generator, dtype):
    x, ids, S = _inputs(device, generator, D=16, H=16, W=16)
    expected = reference.segment_mean(x, ids, S)
    actual = segsort_ext.segment_mean(x.to(dtype), ids, S)
    assert actual.dtype == dtype
    tol = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(actual.double(), expected, rtol=tol, atol=tol)


def test_nan_stays_in_its_segment(device, generator):
    x, ids, S = _inputs(device, generator, dtype=torch.float32, ignore_fraction=0.0)
    x[0, 0, 0, 0] = float("nan")
    out = segsort_ext.segment_mean(x, ids, S)
    nan_rows = torch.isnan(out).any(1)
    assert nan_rows.tolist() == [s == int(ids[0, 0, 0]) for s in range(S)]


@pytest.mark.parametrize("shape", [((0, 3, 4, 4), (0, 4, 4)), ((0, 3), (0,)), ((2, 3, 0, 5), (2, 0, 5))])
def test_empty_input(device, shape):
    x_shape, ids_shape = shape
    x = torch.randn(x_shape, device=device, requires_grad=True)
    ids = torch.zeros(ids_shape, dtype=torch.int64, device=device)
    out = segsort_ext.segment_mean(x, ids, 2)
    assert out.shape == (2, 3) and bool((out == 0).all())
    out.sum().backward()
    assert x.grad.shape == x.shape
    assert segsort_ext.segment_mean(x, ids, 0).shape == (0, 3)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("layout", ["bdhw", "nd_transposed"])
def test_opcheck(device, generator, normalize, layout):
    x, ids, S = _inputs(device, generator, dtype=torch.float32)
    x, ids = LAYOUTS[layout](x, ids)
    torch.library.opcheck(pool.default, (x, ids, S, normalize))
    torch.library.opcheck(pool.default, (x.clone().requires_grad_(), ids, S, normalize))  # the autograd registration
    out, denom = pool(x, ids, S, normalize)
    grad = torch.randn_like(out)
    torch.library.opcheck(pool_backward.default, (grad, out, denom, ids, list(x.shape), normalize))


@pytest.mark.parametrize("normalize", [True, False])
def test_torch_compile_fullgraph(generator, normalize):
    x, ids, S = _inputs("cpu", generator, dtype=torch.float32)

    def loss(x, ids):
        return segsort_ext.segment_mean(x, ids, S, normalize=normalize).square().sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager_loss, compiled_loss = loss(xe, ids), compiled(xc, ids)
    eager_loss.backward()
    compiled_loss.backward()
    torch.testing.assert_close(compiled_loss, eager_loss)
    torch.testing.assert_close(xc.grad, xe.grad)


def test_label_histogram_and_majority_mean(device, generator):
    B, D, H, W = 2, 4, 8, 9
    x = torch.randn(B, D, H, W, dtype=torch.float64, generator=generator).to(device)
    clusters = random_clusters(B, H, W, 3, blob=3, generator=generator).to(device)
    labels = random_labels(B, H, W, 5, generator=generator, ignore_fraction=0.2).to(device)
    s = segsort_ext.segment_partition(clusters)  # label-agnostic: segments mix classes
    hist = segsort_ext.segment_label_histogram(s.ids, labels, s.num_segments, 5)
    torch.testing.assert_close(hist, reference.segment_label_histogram(s.ids, labels, s.num_segments, 5))
    protos, majority = segsort_ext.segment_majority_mean(x, s.ids, labels, s.num_segments, 5)
    for seg in range(s.num_segments):
        counts = hist[seg]
        expected_label = int(counts.argmax()) if counts.sum() > 0 else -1
        assert int(majority[seg]) == expected_label
        if expected_label < 0:
            assert bool((protos[seg] == 0).all())
            continue
        assert int(counts[expected_label]) == int(counts.max())  # ties: argmax picks the lowest
        members = ((s.ids == seg) & (labels == expected_label)).nonzero(as_tuple=True)
        mean = x.permute(0, 2, 3, 1)[members].sum(0)
        torch.testing.assert_close(protos[seg], mean / mean.norm())


@needs_cuda
@pytest.mark.parametrize("layout", ["bdhw", "nd"])
def test_cuda_matches_cpu_and_deterministic_mode(generator, layout):
    x = torch.randn(4, 32, 65, 65, generator=generator)
    clusters = random_clusters(4, 65, 65, 25, blob=7, ignore_fraction=0.05, generator=generator)
    s = segsort_ext.segment_partition(clusters)
    x, ids = LAYOUTS[layout](x, s.ids)
    cpu = segsort_ext.segment_mean(x, ids, s.num_segments)
    fast = segsort_ext.segment_mean(x.cuda(), ids.cuda(), s.num_segments)
    torch.testing.assert_close(fast.cpu(), cpu, rtol=1e-5, atol=1e-6)
    torch.use_deterministic_algorithms(True)
    try:
        runs = [segsort_ext.segment_mean(x.cuda(), ids.cuda(), s.num_segments, normalize=False) for _ in range(3)]
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    torch.testing.assert_close(runs[0].cpu(), segsort_ext.segment_mean(x, ids, s.num_segments, normalize=False),
                               rtol=1e-5, atol=1e-6)
