"""The augmentation pipelines: TrainAugmentation / RandomCropFlip on (image, label) pairs
and PiCIE's two views."""
import pytest
import torch

from segsort_ext.transforms import RandomCropFlip, TrainAugmentation, apply_geometry, picie_views
from segsort_ext.utils.constants import IGNORE_INDEX

from .transforms_testing import assert_label_under_image, coded_sample, position_sample


def test_random_crop_flip_same_geometry_and_deterministic():
    image, label = coded_sample(10, 12)
    transform = RandomCropFlip((5, 7), flip_prob=0.5, seed=123)
    outputs = [transform(image, label) for _ in range(8)]
    flips = 0
    for out_image, out_label in outputs:
        assert out_image.shape == (3, 5, 7) and out_label.shape == (5, 7)
        # The label still sits under the image pixel it came from.
        torch.testing.assert_close(out_label, out_image[2].long() % 21)
        flips += int(out_image[1, 0, 0] > out_image[1, 0, -1])
    assert 0 < flips < len(outputs)  # both flipped and unflipped crops happen
    transform.reseed(123)
    for out_image, out_label in outputs:
        again_image, again_label = transform(image, label)
        torch.testing.assert_close(again_image, out_image)
        torch.testing.assert_close(again_label, out_label)


def test_train_augmentation_alignment_padding_and_reproducibility():
    image, label = position_sample(12, 16)
    transform = TrainAugmentation((11, 14), scale_range=(0.4, 1.6), flip_prob=0.5, seed=11)
    outputs = [transform(image, label) for _ in range(10)]
    flips = padded = 0
    for out_image, out_label in outputs:
        assert out_image.shape == (3, 11, 14) and out_label.shape == (11, 14)
        assert_label_under_image(out_image, out_label, 16)
        pad = out_label == IGNORE_INDEX
        assert (out_image[2][pad] == 0).all() and ((out_image[2][~pad] - 0.5).abs() < 1e-12).all()
        padded += int(pad.any())
        row = out_image[1, 0][~pad[0]]
        flips += int(row.numel() > 1 and row[0] > row[-1])
    assert 0 < flips < len(outputs) and 0 < padded < len(outputs)
    transform.reseed(11)
    for out_image, out_label in outputs:
        again_image, again_label = transform(image, label)
        assert torch.equal(again_image, out_image) and torch.equal(again_label, out_label)


def test_train_augmentation_with_jitter_is_seeded():
    image = torch.rand(3, 12, 14, generator=torch.Generator().manual_seed(0))
    label = torch.arange(12 * 14).reshape(12, 14)
    first = TrainAugmentation((10, 10), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, seed=2)
    second = TrainAugmentation((10, 10), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, seed=2)
    other = TrainAugmentation((10, 10), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, seed=3)
    a, b, c = first(image, label), second(image, label), other(image, label)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert 0.0 <= a[0].min() and a[0].max() <= 1.0


def test_train_augmentation_bad_arguments():
    for name, value in [("brightness", -0.1), ("contrast", float("inf")), ("saturation", -1), ("hue", 0.6)]:
        with pytest.raises(ValueError, match=name):
            TrainAugmentation((2, 2), **{name: value})
    with pytest.raises(ValueError, match="crop_size"):
        TrainAugmentation((0, 4))
    with pytest.raises(TypeError, match="crop_size"):
        TrainAugmentation("4x4")
    assert TrainAugmentation(4).crop_size == (4, 4)  # an int is a square, as everywhere in transforms
    with pytest.raises(ValueError, match="flip_prob"):
        TrainAugmentation((2, 2), flip_prob=1.5)
    with pytest.raises(ValueError, match="scale_range"):
        TrainAugmentation((2, 2), scale_range=(1.0, 0.5))
    with pytest.raises(ValueError, match="label"):
        TrainAugmentation((2, 2))(torch.rand(3, 4, 5), torch.zeros(4, 6, dtype=torch.int64))


def test_picie_views(generator):
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    view_1, view_2, geometry = picie_views(images, output_size=(8, 8), generator=generator,
                                           geometry_options={"align": 4})
    assert view_1.shape == (2, 3, 8, 8) and view_2.shape == (2, 3, 16, 16)
    assert float(view_1.min()) >= 0 and float(view_1.max()) <= 1
    again = picie_views(images, output_size=(8, 8), generator=torch.Generator().manual_seed(0),
                        geometry_options={"align": 4})
    assert torch.equal(again[0], view_1) and torch.equal(again[1], view_2)
    # Features of view 2 are brought to view 1's crop: a stride-2 map gives 4 x 4.
    assert apply_geometry(torch.rand(2, 5, 8, 8), geometry).shape == (2, 5, 4, 4)
