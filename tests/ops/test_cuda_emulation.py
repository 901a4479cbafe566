"""The CUDA code paths (csrc/cuda/*.cu: host code and kernels) run on the CPU through
tests/ops/cuda_emulation, compared with the CPU kernels on the same inputs. This checks the
kernels' logic (indexing, warp reductions, atomics, synchronisation) on machines without a
GPU; it does not replace running them on one (benchmarks/gpu_check.sh)."""
import pytest
import torch
import torch.nn.functional as F

from segsort_ext.testing import assert_segments_equal, random_clusters, random_labels

cpu = torch.ops.segsort_ext


# ---------------------------------------------------------------- the emulator itself

def test_emulator_runs_warp_and_block_reductions(emu):
    selftest = torch.ops.segsort_emulation_selftest
    x = torch.randn(1000)
    padded = torch.cat([x, x.new_zeros(24)])
    warp = selftest.run(x, 0)[:32]
    torch.testing.assert_close(warp, padded.view(-1, 32).sum(1), rtol=1e-5, atol=1e-5)
    block = selftest.run(x, 1)[:4]
    torch.testing.assert_close(block, padded.view(4, 256).sum(1), rtol=1e-5, atol=1e-5)
    values = torch.randint(0, 7, (3000,))
    assert torch.equal(selftest.histogram(values, 7).long(), torch.bincount(values, minlength=7))


@pytest.mark.parametrize("kernel, message", [(2, "has exited"), (3, "divergent warp"), (4, "divergent __syncthreads")])
def test_emulator_refuses_undefined_behaviour(emu, kernel, message):
    with pytest.raises(RuntimeError, match=message):
        torch.ops.segsort_emulation_selftest.run(torch.randn(1000), kernel)


# ---------------------------------------------------------------- segment_partition

@pytest.mark.parametrize("connectivity", [0, 4, 8])
@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("sparse_keys", [False, True])
def test_segment_partition(emu, connectivity, with_labels, sparse_keys):
    g = torch.Generator().manual_seed(connectivity + 10 * with_labels)
    clusters = random_clusters(2, 23, 29, 6, blob=3, ignore_fraction=0.05, generator=g)
    if sparse_keys:  # cluster ids too large for the dense key table: the sort path
        clusters = torch.where(clusters >= 0, clusters * 1_000_003, clusters)
    labels = random_labels(2, 23, 29, 4, generator=g) if with_labels else None
    expected = cpu.segment_partition(clusters, labels, 255, connectivity)
    assert_segments_equal(emu.segment_partition(clusters, labels, 255, connectivity), expected)


def test_segment_partition_no_valid_pixel(emu):
    clusters = torch.full((1, 5, 7), -1, dtype=torch.long)
    assert_segments_equal(emu.segment_partition(clusters, None, 255, 4), cpu.segment_partition(clusters, None, 255, 4))


# ---------------------------------------------------------------- segment_mean

def _segment_ids(B, H, W, S, g):
    # Image 0: runs of 80 pixels in one segment (whole warps agree: the aggregated atomics);
    # image 1: mixed segments and ignored pixels (the per-thread atomics).
    ids = (torch.arange(B * H * W) // 80 % S).view(B, H, W)
    ids[1] = torch.randint(-1, S, (H, W), generator=g)
    return ids


@pytest.mark.parametrize("layout", ["bdhw", "channels_last", "pixels"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_segment_mean(emu, layout, normalize, deterministic, dtype):
    g = torch.Generator().manual_seed(3)
    B, D, H, W, S = 2, 5, 12, 37, 9
    x = torch.randn(B, D, H, W, generator=g).to(dtype)
    ids = _segment_ids(B, H, W, S, g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "pixels":
        x = x.permute(0, 2, 3, 1).reshape(-1, D)
        ids = ids.reshape(-1)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        out, denom = emu.segment_mean(x, ids, S, normalize)
        out_cpu, denom_cpu = cpu.segment_mean(x, ids, S, normalize)
    finally:
        torch.use_deterministic_algorithms(previous)
    torch.testing.assert_close(out, out_cpu, rtol=tol, atol=tol)
    torch.testing.assert_close(denom, denom_cpu, rtol=tol, atol=tol)
    grad = torch.randn(S, D, generator=g).to(dtype)
    shape = list(x.shape)
    gx = emu._segment_mean_backward(grad, out_cpu, denom_cpu, ids, shape, normalize)
    gx_cpu = cpu._segment_mean_backward(grad, out_cpu, denom_cpu, ids, shape, normalize)
    torch.testing.assert_close(gx, gx_cpu, rtol=tol, atol=tol)


# ---------------------------------------------------------------- spherical_kmeans

@pytest.mark.parametrize("D", [16, 3])  # F = 18: features in registers; F = 5: the generic kernel
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("tol", [-1.0, 0.0])
@pytest.mark.parametrize("deterministic", [False, True])
def test_spherical_kmeans(emu, D, masked, tol, deterministic):
    g = torch.Generator().manual_seed(D)
    B, H, W = 2, 21, 19  # 399 pixels per image: two blocks, a ragged last warp
    x = torch.randn(B, D, H, W, generator=g, dtype=torch.float64)
    # Image 0: top and bottom halves far apart, grid 2 x 1, so most warps (32 consecutive
    # pixels) lie in one cluster: the aggregated atomics. Image 1: noise, mixed warps.
    x[0, :, :10] = 0.1 * x[0, :, :10] + 1.0
    x[0, :, 10:] = 0.1 * x[0, :, 10:] - 1.0
    mask = torch.rand(B, H, W, generator=g) > 0.2 if masked else None
    if masked:
        mask[0] = True
    args = (x, mask, None, 2, 1, 6, 0.5, tol)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        labels, centroids = emu.spherical_kmeans(*args)
        labels_cpu, centroids_cpu = cpu.spherical_kmeans(*args)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(labels, labels_cpu)
    torch.testing.assert_close(centroids, centroids_cpu, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("D", [32, 64, 128])  # F = 34, 66, 130: the other register kernels
def test_spherical_kmeans_init_nonfinite_and_low_precision(emu, D):
    g = torch.Generator().manual_seed(1)
    B, H, W = 2, 9, 40
    x = torch.randn(B, D, H, W, generator=g)
    x[0, 3, 2, 5] = float("nan")
    x[1, 0, 4, 4] = float("inf")
    init = torch.randint(-1, 5, (B, H, W), generator=g)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        args = (x.to(dtype), None, init, 1, 5, 4, 1.0, -1.0)
        labels, centroids = emu.spherical_kmeans(*args)
        labels_cpu, centroids_cpu = cpu.spherical_kmeans(*args)
        # float32 sums in another order may flip a near-tie: allow a few pixels
        assert (labels != labels_cpu).float().mean() < 0.01
        assert torch.equal(labels < 0, labels_cpu < 0)
        torch.testing.assert_close(centroids.float(), centroids_cpu.float(), rtol=1e-2, atol=1e-2)


# ---------------------------------------------------------------- vmf losses

def _vmf_case(N, S, M, D, dtype, nca, seed=5):
    g = torch.Generator().manual_seed(seed)
    e = F.normalize(torch.randn(N, D, generator=g, dtype=torch.float64), dim=1).to(dtype)
    ids = torch.randint(-1, S, (N,), generator=g)  # -1: ignored pixels
    p = F.normalize(torch.randn(S, D, generator=g, dtype=torch.float64), dim=1).to(dtype)
    labels = torch.randint(-1, 4, (S,), generator=g)  # -1: never a positive
    labels[:1] = 9  # a label of one prototype: its pixels have no positive (Eq. 8 fallback)
    memory = F.normalize(torch.randn(M, D, generator=g, dtype=torch.float64), dim=1).to(dtype) if M else None
    memory_labels = torch.randint(0, 5, (M,), generator=g) if M else None
    grad = torch.rand(N, generator=g, dtype=torch.float64).to(dtype)
    return (e, ids, p, labels if nca else None, memory, memory_labels if nca else None, 12.0, nca), grad


def _check_vmf(emu, args, grad, tol):
    out = emu.vmf_loss(*args)
    out_cpu = cpu.vmf_loss(*args)
    for a, b in zip(out, out_cpu):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    bwd_args = (grad,) + args[:6] + (out_cpu[1], out_cpu[2], args[6], args[7])
    for a, b in zip(emu._vmf_loss_backward(*bwd_args), cpu._vmf_loss_backward(*bwd_args)):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# D <= 128 runs the fused kernels (3, 13: zero-padded to 8, 16), D = 150 the blocked path.
@pytest.mark.parametrize("nca", [False, True])
@pytest.mark.parametrize("M", [0, 9])
@pytest.mark.parametrize("D", [3, 13, 64, 128, 150])
def test_vmf_loss_float64(emu, nca, M, D):
    _check_vmf(emu, *_vmf_case(300, 70, M, D, torch.float64, nca), tol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-5), (torch.float16, 2e-3), (torch.bfloat16, 2e-3)])
def test_vmf_loss_reduced_precision(emu, dtype, tol):
    _check_vmf(emu, *_vmf_case(200, 40, 20, 32, dtype, True), tol=tol)


def test_vmf_loss_prototype_gradient_over_pixel_ranges(emu):
    # Enough pixels that the columns pass gives each block a range of several pixel tiles.
    _check_vmf(emu, *_vmf_case(3000, 700, 0, 16, torch.float64, True), tol=1e-12)


def test_vmf_loss_non_finite_ignored_pixels(emu):
    args, grad = _vmf_case(300, 70, 9, 16, torch.float64, True)
    e, ids = args[0].clone(), args[1]
    e[ids < 0] = float("nan")
    args = (e,) + args[1:]
    out = emu.vmf_loss(*args)
    bwd_args = (grad,) + args[:6] + (out[1], out[2], args[6], args[7])
    grad_e, grad_p = emu._vmf_loss_backward(*bwd_args)
    assert torch.isfinite(grad_p).all() and torch.isfinite(grad_e[ids >= 0]).all()
    _check_vmf(emu, args, grad, tol=1e-12)  # the CPU kernels agree


def test_vmf_loss_memory_only(emu):
    # No batch prototypes (every pixel ignored): zero loss, zero gradients, nothing out of bounds.
    args, grad = _vmf_case(50, 0, 9, 16, torch.float64, True)
    _check_vmf(emu, args, grad, tol=0)


# ---------------------------------------------------------------- blurring mean shift

def _step_case(D, dtype, N=150, seed=7):
    g = torch.Generator().manual_seed(seed)
    # Blobs, so that the softmax rows are peaked as in real grouping, and the odd point off them.
    centres = F.normalize(torch.randn(4, D, generator=g, dtype=torch.float64), dim=-1)
    x = centres[torch.randint(0, 4, (3, N), generator=g)] + 0.3 * torch.randn(3, N, D, generator=g, dtype=torch.float64)
    x = F.normalize(x, dim=-1).to(dtype)
    lengths = torch.tensor([N, 41, 0])  # full, ragged (a partial tile), empty
    grad = torch.randn(3, N, D, generator=g, dtype=torch.float64).to(dtype)
    return x, lengths, grad


def _check_step(emu, x, lengths, grad, bandwidth, eta, tol):
    out, norms = emu.blurring_mean_shift_step(x, lengths, bandwidth, eta)
    out_cpu, norms_cpu = cpu.blurring_mean_shift_step(x, lengths, bandwidth, eta)
    torch.testing.assert_close(out, out_cpu, rtol=tol, atol=tol, equal_nan=True)
    torch.testing.assert_close(norms, norms_cpu, rtol=tol, atol=tol, equal_nan=True)
    args = (grad, x, out_cpu, norms_cpu, lengths, bandwidth, eta)
    torch.testing.assert_close(emu._blurring_mean_shift_step_backward(*args),
                               cpu._blurring_mean_shift_step_backward(*args), rtol=tol, atol=tol, equal_nan=True)


# D 8/16/32/64 (and 3, 13: zero-padded up to 8, 16) run the fused kernels in float64 too;
# float64 D = 100/128 and any D > 128 take the blocked path.
@pytest.mark.parametrize("D", [3, 8, 13, 16, 32, 64, 100, 128, 140])
@pytest.mark.parametrize("eta", [0.7, 1.0])
def test_blurring_mean_shift_step_float64(emu, D, eta):
    _check_step(emu, *_step_case(D, torch.float64), bandwidth=8.0, eta=eta, tol=1e-12)


@pytest.mark.parametrize("D", [16, 140])  # fused, blocked
def test_blurring_mean_shift_step_without_lengths(emu, D):
    x, _, grad = _step_case(D, torch.float64, N=70)
    _check_step(emu, x, None, grad, bandwidth=8.0, eta=0.7, tol=1e-12)


@pytest.mark.parametrize("D", [8, 32, 64, 100, 128])
def test_blurring_mean_shift_step_float32(emu, D):
    _check_step(emu, *_step_case(D, torch.float32), bandwidth=12.0, eta=0.5, tol=2e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_blurring_mean_shift_step_half(emu, dtype):
    _check_step(emu, *_step_case(32, dtype, N=90), bandwidth=6.0, eta=0.5, tol=1e-2)


def test_blurring_mean_shift_step_nan_spreads_within_its_image(emu):
    x, lengths, grad = _step_case(16, torch.float64, N=100)
    x[0, 57, 3] = float("nan")
    out, _ = emu.blurring_mean_shift_step(x, lengths, 8.0, 0.7)
    assert out[0].isnan().all() and not out[1].isnan().any()
    _check_step(emu, x, lengths, grad, bandwidth=8.0, eta=0.7, tol=1e-12)
