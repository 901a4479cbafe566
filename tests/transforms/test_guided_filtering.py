"""The guided filter against He et al.'s formulas pixel by pixel, the box filter against
average pooling, per-image PCA against an SVD, and the per-channel rescale."""
import pytest
import torch
import torch.nn.functional as F

from segsort_ext.transforms import box_filter, guided_filter, pca_project, rescale_to_unit


def _direct_guided_filter(guide, p, r, eps):
    """He et al.'s formulas pixel by pixel: per window k the linear model (a_k, b_k),
    then q_i = mean over the windows containing i of a_k . I_i + b_k."""
    G, H, W = guide.shape
    a = torch.zeros(H, W, G, dtype=torch.float64)
    b = torch.zeros(H, W, dtype=torch.float64)
    for y in range(H):
        for x in range(W):
            ys, xs = slice(max(0, y - r), min(H, y + r + 1)), slice(max(0, x - r), min(W, x + r + 1))
            window_guide = guide[:, ys, xs].reshape(G, -1)
            window_p = p[ys, xs].reshape(-1)
            n = window_p.numel()
            mu = window_guide.mean(1)
            sigma = window_guide @ window_guide.t() / n - torch.outer(mu, mu)
            cov = window_guide @ window_p / n - mu * window_p.mean()
            a[y, x] = torch.linalg.solve(sigma + eps * torch.eye(G, dtype=torch.float64), cov)
            b[y, x] = window_p.mean() - a[y, x] @ mu
    out = torch.zeros(H, W, dtype=torch.float64)
    for y in range(H):
        for x in range(W):
            ys, xs = slice(max(0, y - r), min(H, y + r + 1)), slice(max(0, x - r), min(W, x + r + 1))
            out[y, x] = a[ys, xs].reshape(-1, G).mean(0) @ guide[:, y, x] + b[ys, xs].mean()
    return out


@pytest.mark.parametrize("guide_channels", [3, 1])
def test_guided_filter_matches_direct_formulas(device, generator, guide_channels):
    guide = torch.rand(2, guide_channels, 7, 8, dtype=torch.float64, generator=generator)
    features = torch.randn(2, 3, 7, 8, dtype=torch.float64, generator=generator)
    out = guided_filter(guide.to(device), features.to(device), 2, 0.05, channel_chunk=2).cpu()
    for bi in range(2):
        for c in range(3):
            torch.testing.assert_close(out[bi, c], _direct_guided_filter(guide[bi], features[bi, c], 2, 0.05),
                                       rtol=1e-9, atol=1e-11)


def test_box_filter_and_guided_filter_properties(generator):
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, generator=generator)
    for r in (0, 1, 3):
        expected = F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)
        torch.testing.assert_close(box_filter(x, r), expected, rtol=1e-12, atol=1e-13)
    guide = torch.rand(2, 3, 9, 11, dtype=torch.float64, generator=generator)
    # Constant features are preserved; features equal to a guide channel pass through
    # almost unchanged with a tiny eps (the model q = a I + b fits them exactly).
    constant = torch.full((2, 2, 9, 11), 0.7, dtype=torch.float64)
    torch.testing.assert_close(guided_filter(guide, constant, 2, 1e-2), constant)
    torch.testing.assert_close(guided_filter(guide, guide[:, :1], 2, 1e-9), guide[:, :1], rtol=0, atol=1e-5)
    small = x[:1, :2, :5, :6].clone().requires_grad_()
    small_guide = guide[:1, :, :5, :6].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda g, f: guided_filter(g, f, 1, 0.1), (small_guide, small))


def test_pca_matches_svd(device, generator):
    features = torch.randn(2, 6, 5, 7, dtype=torch.float64, generator=generator)
    features[:, 0] *= 4  # distinct variances -> well separated components
    features[:, 1] *= 2
    out = pca_project(features.to(device), dims=3).cpu()
    assert out.shape == (2, 3, 5, 7)
    for b in range(2):
        X = features[b].reshape(6, -1).t()
        X = X - X.mean(0)
        _, _, Vh = torch.linalg.svd(X, full_matrices=False)
        V = Vh[:3].t()
        # The library's sign convention: largest-magnitude loading positive.
        V = V * torch.sign(V.gather(0, V.abs().argmax(0, keepdim=True)))
        torch.testing.assert_close(out[b].reshape(3, -1).t(), X @ V, rtol=1e-9, atol=1e-10)
    variances = out.flatten(2).var(2)
    assert bool((variances[:, :-1] >= variances[:, 1:]).all())


def test_rescale_to_unit(generator):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=generator)
    x[1, 2] = 3.0  # a constant channel
    out = rescale_to_unit(x)
    assert torch.allclose(out.flatten(2).amin(2)[:, :2], torch.zeros(2, 2, dtype=torch.float64))
    assert torch.allclose(out.flatten(2).amax(2)[:, :2], torch.ones(2, 2, dtype=torch.float64))
    assert bool((out[1, 2] == 0).all())


def test_bad_inputs():
    image = torch.rand(1, 3, 6, 7, dtype=torch.float64)
    with pytest.raises(ValueError, match="features"):
        guided_filter(image, torch.rand(1, 4, 3, 7, dtype=torch.float64), 1, 0.1)
    with pytest.raises(TypeError, match="dtype"):
        guided_filter(image, torch.rand(1, 4, 6, 7), 1, 0.1)
    with pytest.raises(ValueError, match="eps"):
        guided_filter(image, image, 1, 0.0)
    with pytest.raises(ValueError, match="radius"):
        guided_filter(image, image, -1, 0.1)
    with pytest.raises(ValueError, match="dims"):
        pca_project(image, dims=4)
    with pytest.raises(ValueError, match="features"):
        pca_project(image[0])


@pytest.mark.parametrize("values", [(float("nan"),), (float("inf"),), (-float("inf"),), (float("inf"), -float("inf"))])
def test_box_filter_keeps_non_finite_values_in_their_windows(generator, values):
    # The cumulative sums would carry them to every later window; average pooling is the
    # reference with IEEE sums per window.
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, generator=generator)
    for value, (y, x_) in zip(values, ((4, 5), (5, 7))):
        x[0, 1, y, x_] = value
    for r in (0, 1, 3):
        expected = F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)
        torch.testing.assert_close(box_filter(x, r), expected, rtol=1e-12, atol=1e-13, equal_nan=True)


def test_guided_filter_keeps_non_finite_values_local(generator):
    guide = torch.rand(2, 3, 12, 13, dtype=torch.float64, generator=generator)
    features = torch.randn(2, 2, 12, 13, dtype=torch.float64, generator=generator)
    r = 1
    clean = guided_filter(guide, features, r, 1e-2)
    # Outputs within 2r of the pixel read it through a and b; all others are unchanged.
    near = torch.zeros(2, 2, 12, 13, dtype=torch.bool)
    near[0, :, 5 - 2 * r:5 + 2 * r + 1, 6 - 2 * r:6 + 2 * r + 1] = True
    for tensor, channels in ((guide, [0, 1]), (features, [0])):  # a guide pixel reaches every channel
        saved = tensor[0, 0, 5, 6].item()
        tensor[0, 0, 5, 6] = float("nan")
        out = guided_filter(guide, features, r, 1e-2)
        tensor[0, 0, 5, 6] = saved
        reached = near.clone()
        reached[:, [c for c in (0, 1) if c not in channels]] = False
        assert out[reached].isnan().all()
        torch.testing.assert_close(out[~reached], clean[~reached], rtol=1e-9, atol=1e-11)


def test_pca_project_leaves_a_non_finite_pixel_out_and_projects_it_to_nan(generator):
    features = torch.randn(2, 4, 5, 6, dtype=torch.float64, generator=generator)
    clean = pca_project(features, 2)
    for value in (float("nan"), float("inf")):
        bad = features.clone()
        bad[0, 1, 2, 3] = value
        out = pca_project(bad, 2)
        assert out[0, :, 2, 3].isnan().all()
        # The other pixels: projected as if the bad one were absent.
        others = torch.ones(5, 6, dtype=torch.bool)
        others[2, 3] = False
        alone = pca_project(features[0][:, others].reshape(1, 4, 1, -1), 2)
        torch.testing.assert_close(out[0][:, others], alone.reshape(2, -1), rtol=1e-12, atol=1e-12)
        assert torch.equal(out[1], clean[1])


def test_rescale_to_unit_keeps_nan_at_its_pixel_and_empty_maps(generator):
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64, generator=generator)
    x[0, 1, 2, 2] = x[0, 1, 0, 0]  # a copy: min and max do not depend on this pixel
    clean = rescale_to_unit(x)
    x[0, 1, 2, 2] = float("nan")
    out = rescale_to_unit(x)
    assert out[0, 1, 2, 2].isnan()
    keep = ~out.isnan()
    assert int((~keep).sum()) == 1
    assert torch.equal(out[keep], clean[keep])
    assert rescale_to_unit(torch.zeros(2, 3, 0, 5)).shape == (2, 3, 0, 5)
