import pytest
import torch

from segsort_ext.ops import bandwidth_from_margin, blurring_mean_shift, reference
from segsort_ext.testing import needs_cuda

step = torch.ops.segsort_ext.blurring_mean_shift_step
step_backward = torch.ops.segsort_ext._blurring_mean_shift_step_backward


def _points(device, B=3, N=40, D=6, seed=0, dtype=torch.float64):
    return torch.randn(B, N, D, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


@pytest.mark.parametrize("eta", [1.0, 0.5, 0.1])
@pytest.mark.parametrize("lengths", [None, [40, 23, 1], [0, 40, 17]])
def test_every_iterate_and_gradient_matches_reference(device, eta, lengths):
    x = _points(device)
    lengths = None if lengths is None else torch.tensor(lengths, device=device)
    fused = blurring_mean_shift(x.requires_grad_(), bandwidth=6.0, iters=4, eta=eta, lengths=lengths, return_all=True)
    xr = x.detach().clone().requires_grad_()
    dense = reference.blurring_mean_shift(xr, bandwidth=6.0, iters=4, eta=eta, lengths=lengths, return_all=True)
    assert len(fused) == 5
    weights = [torch.randn_like(t) for t in dense]
    for a, b in zip(fused, dense):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    # a loss at every iteration, as the paper trains
    (ga,) = torch.autograd.grad(sum((a * w).sum() for a, w in zip(fused, weights)), x)
    (gb,) = torch.autograd.grad(sum((b * w).sum() for b, w in zip(dense, weights)), xr)
    torch.testing.assert_close(ga, gb, rtol=0, atol=1e-9)


def test_gradcheck(device):
    x = _points(device, B=2, N=10, D=4).requires_grad_()
    lengths = torch.tensor([10, 6], device=device)
    assert torch.autograd.gradcheck(
        lambda x: blurring_mean_shift(x, bandwidth=3.0, iters=2, eta=0.7, lengths=lengths), (x,))


@pytest.mark.parametrize("with_lengths", [False, True])
def test_gradcheck_op(device, with_lengths):
    # The op itself is differentiable (torch.library.register_autograd), on unit points.
    x = torch.nn.functional.normalize(_points(device, B=2, N=10, D=4), dim=2).requires_grad_()
    lengths = torch.tensor([10, 6], device=device) if with_lengths else None
    assert torch.autograd.gradcheck(lambda x: step(x, lengths, 3.0, 0.7)[0], (x,))
    out, norms = step(x, lengths, 3.0, 0.7)
    assert out.requires_grad and not norms.requires_grad  # norms are for the backward only


def test_padding_is_inert(device):
    x = _points(device, B=1, N=30)
    lengths = torch.tensor([20], device=device)
    out = blurring_mean_shift(x, bandwidth=5.0, iters=3, lengths=lengths)
    garbage = x.clone()
    garbage[:, 20:] = 1e3 * torch.randn_like(garbage[:, 20:])
    out2 = blurring_mean_shift(garbage, bandwidth=5.0, iters=3, lengths=lengths)
    torch.testing.assert_close(out[:, :20], out2[:, :20])  # padding never influences valid points
    torch.testing.assert_close(out[:, 20:], torch.nn.functional.normalize(x[:, 20:], dim=2))  # returned as given


def test_converges_to_modes(device):
    # Two tight groups on the sphere collapse onto two points, far apart.
    g = torch.Generator().manual_seed(1)
    centers = torch.nn.functional.normalize(torch.randn(2, 8, generator=g, dtype=torch.float64), dim=1)
    x = (centers.repeat_interleave(25, 0) + 0.05 * torch.randn(50, 8, generator=g, dtype=torch.float64))[None]
    out = blurring_mean_shift(x.to(device), bandwidth=bandwidth_from_margin(0.9), iters=10)[0].cpu()
    similarity = out @ out.t()
    assert similarity[:25, :25].min() > 0.9999 and similarity[25:, 25:].min() > 0.9999
    assert similarity[:25, 25:].max() < 0.6  # the groups' centres have cosine 0.53


def test_iters_zero_and_empty(device):
    x = _points(device)
    torch.testing.assert_close(blurring_mean_shift(x, bandwidth=1.0, iters=0),
                               torch.nn.functional.normalize(x, dim=2))
    empty = torch.zeros(0, 5, 3, device=device)
    assert blurring_mean_shift(empty, bandwidth=1.0).shape == (0, 5, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision(device, dtype):
    x = _points(device)
    expected = reference.blurring_mean_shift(x.to(dtype).double(), bandwidth=4.0, iters=3)
    actual = blurring_mean_shift(x.to(dtype), bandwidth=4.0, iters=3)
    assert actual.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(actual.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_largest_bandwidth_keeps_every_point(device, dtype):
    # The largest bandwidth allowed (half the compute type's largest number): each point's
    # kernel is one-hot on itself, so the points stay put, finite.
    x = _points(device, dtype=dtype)
    largest = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).max / 2
    out = blurring_mean_shift(x, bandwidth=largest, iters=3)
    torch.testing.assert_close(out, torch.nn.functional.normalize(x, dim=2))
    with pytest.raises(ValueError, match="bandwidth"):
        blurring_mean_shift(x, bandwidth=largest * 1.01, iters=3)
    with pytest.raises(ValueError, match="bandwidth"):
        step(x, None, largest * 1.01, 1.0)


def test_bandwidth_from_margin():
    assert bandwidth_from_margin(0.5) == 6.0


@pytest.mark.parametrize("with_lengths", [False, True])
def test_opcheck(device, with_lengths):
    x = torch.nn.functional.normalize(_points(device, dtype=torch.float32), dim=2)
    lengths = torch.tensor([40, 11, 0], device=device) if with_lengths else None
    torch.library.opcheck(step.default, (x, lengths, 4.0, 0.8))
    torch.library.opcheck(step.default, (x.clone().requires_grad_(), lengths, 4.0, 0.8))  # the autograd registration
    out, norms = step(x, lengths, 4.0, 0.8)
    torch.library.opcheck(step_backward.default, (torch.randn_like(out), x, out, norms, lengths, 4.0, 0.8))


def test_torch_compile_fullgraph():
    x = _points("cpu", N=12, D=4, dtype=torch.float32)
    lengths = torch.tensor([12, 5, 0])

    def loss(x):
        return blurring_mean_shift(x, bandwidth=4.0, iters=2, eta=0.8, lengths=lengths).square().sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager_loss, compiled_loss = loss(xe), compiled(xc)
    eager_loss.backward()
    compiled_loss.backward()
    torch.testing.assert_close(compiled_loss, eager_loss)
    torch.testing.assert_close(xc.grad, xe.grad)


def test_many_blocks(device):
    # N^2 above the CPU block budget (2^20 kernel values): several row groups, each of
    # several query blocks (3000 rows: 8 groups of 375 rows in blocks of <= 349), and a
    # ragged second image.
    x = _points(device, B=2, N=3000, D=3)
    lengths = torch.tensor([3000, 700], device=device)
    xr = x.clone().requires_grad_()
    xf = x.clone().requires_grad_()
    fused = blurring_mean_shift(xf, bandwidth=2.0, iters=1, lengths=lengths)
    dense = reference.blurring_mean_shift(xr, bandwidth=2.0, iters=1, lengths=lengths)
    torch.testing.assert_close(fused, dense, rtol=0, atol=1e-9)
    w = torch.randn_like(fused)
    (fused * w).sum().backward()
    (dense * w).sum().backward()
    torch.testing.assert_close(xf.grad, xr.grad, rtol=0, atol=1e-9)


@needs_cuda
def test_cuda_matches_cpu():
    x = _points("cpu", B=2, N=3000, D=64, dtype=torch.float32)
    lengths = torch.tensor([3000, 1234])
    results = []
    for device in ("cpu", "cuda"):
        xd = x.to(device).requires_grad_()
        out = blurring_mean_shift(xd, bandwidth=6.0, iters=3, lengths=lengths.to(device))
        out.square().sum().backward()
        results.append((out.detach().cpu(), xd.grad.cpu()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
