"""The embedded default data (segsort_ext.datasets.scenes) and the picture helpers (segsort_ext.utils.viz)."""
import numpy as np
import pytest
import torch

from segsort_ext.datasets.scenes import TEXTURE_CLASSES, DigitScenes, TextureMosaics, scene_batches, texture_sources
from segsort_ext.utils import viz


def test_texture_sources_split_disjoint_columns():
    train, test = texture_sources("train"), texture_sources("test")
    assert len(train) == len(test) == len(TEXTURE_CLASSES)
    for a, b in zip(train, test):
        assert a.shape[0] == b.shape[0] == 3 and a.shape[1] == b.shape[1]
        assert a.shape[2] > b.shape[2] >= 96  # 60% / 40% of the columns, both wide enough for a scene
        assert 0 <= float(a.min()) and float(a.max()) <= 1


def test_texture_mosaics_labels_follow_regions():
    data = TextureMosaics("train", 12, 48, seed=3)
    assert data.images.shape == (12, 3, 48, 48) and data.labels.shape == data.instances.shape == (12, 48, 48)
    assert data.labels.dtype == data.instances.dtype == torch.int64
    for _, label, instance in data:
        regions = instance.unique()
        assert 2 <= len(regions) <= 5
        classes = [int(label[instance == r].unique().item()) for r in regions]  # one class per region
        assert len(set(classes)) == len(classes)  # distinct classes within a scene
        assert all(0 <= c < len(TEXTURE_CLASSES) for c in classes)


def test_texture_mosaics_region_pixels_come_from_their_texture():
    # The four grey textures keep identical channels (the jitter is shared by the channels),
    # the stain is coloured and the Hubble field ('stars') is mostly dark.
    data = TextureMosaics("test", 30, 64, seed=1)
    grey = torch.tensor([TEXTURE_CLASSES.index(c) for c in ("brick", "grass", "gravel", "moon")])
    stars, stain = TEXTURE_CLASSES.index("stars"), TEXTURE_CLASSES.index("stain")
    seen = set()
    for image, label, _ in data:
        spread = image.max(0).values - image.min(0).values
        is_grey = torch.isin(label, grey)
        assert float(spread[is_grey].abs().sum()) == 0
        if bool((label == stain).any()):
            assert float(spread[label == stain].mean()) > 0.01
        if bool((label == stars).any()):
            assert float(image[:, label == stars].mean()) < 0.3
        seen.update(label.unique().tolist())
    assert seen == set(range(len(TEXTURE_CLASSES)))


def test_scenes_deterministic_and_split_dependent():
    a, b = TextureMosaics("train", 4, 32, seed=5), TextureMosaics("train", 4, 32, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = TextureMosaics("test", 4, 32, seed=5)
    assert not torch.equal(a.images, c.images)
    d1, d2 = DigitScenes("test", 5, 40, seed=2), DigitScenes("test", 5, 40, seed=2)
    assert torch.equal(d1.images, d2.images) and torch.equal(d1.instances, d2.instances)


def test_digit_scenes_instances_and_labels():
    data = DigitScenes("train", 20, 48, digits=(2, 4), seed=0)
    assert data.images.shape == (20, 3, 48, 48)
    for image, label, instance in data:
        count = int(instance.max())
        assert 2 <= count <= 4
        assert torch.equal(instance.unique(), torch.arange(count + 1))
        assert torch.equal(label == 0, instance == 0)  # background in both maps
        for k in range(1, count + 1):
            digit = label[instance == k].unique()
            assert len(digit) == 1 and 1 <= int(digit) <= 10  # one digit class per instance
        assert float(image[:, instance > 0].mean()) > float(image[:, instance == 0].mean()) + 0.2


def test_scene_batches():
    data = DigitScenes("train", 6, 32, digit_size=(8, 12), seed=0)
    images, labels, instances, picks = next(scene_batches(data, 4, torch.Generator().manual_seed(0)))
    assert images.shape == (4, 3, 32, 32) and picks.shape == (4,)
    assert torch.equal(labels, data.labels[picks]) and torch.equal(instances, data.instances[picks])


def test_scene_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        TextureMosaics("val", 2)
    with pytest.raises(ValueError, match="num_images"):
        TextureMosaics("train", 0)
    with pytest.raises(ValueError, match="size"):
        TextureMosaics("train", 2, 97)
    with pytest.raises(TypeError, match="size"):
        DigitScenes("train", 2, 40.0)
    with pytest.raises(ValueError, match="regions"):
        TextureMosaics("train", 2, regions=(3, 9))
    with pytest.raises(ValueError, match="digit_size"):
        DigitScenes("train", 2, 24, digit_size=(14, 30))
    with pytest.raises(ValueError, match="batch_size"):
        next(scene_batches(DigitScenes("train", 2, 32, digit_size=(8, 10)), 0))


def test_viz_colours_and_outline():
    labels = torch.tensor([[0, 1], [255, 2]])
    rgb = viz.colorize(labels, 3)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb[1, 0] == viz.IGNORE_COLOR).all() and len({tuple(rgb[0, 0]), tuple(rgb[0, 1]), tuple(rgb[1, 1])}) == 3
    ids = np.array([[0, 0, 1], [0, 0, 1]])
    drawn = viz.outline(np.zeros((2, 3, 3), np.uint8), ids)
    assert (drawn[:, 2] == 255).all() and (drawn[:, :2] == 0).all()
    instances = viz.instance_colors(np.array([[0, 1], [2, -1]]))
    assert (instances[0, 0] == 40).all() and (instances[1, 1] == 40).all()
    assert viz.voc_palette()[1].tolist() == [128, 0, 0] and viz.voc_palette()[255].tolist() == [224, 224, 192]


def test_viz_pca_rgb_shared_basis():
    x = torch.randn(2, 8, 5, 6, generator=torch.Generator().manual_seed(0))
    rgb, basis = viz.pca_rgb(x, return_basis=True)
    assert rgb.shape == (2, 5, 6, 3) and rgb.dtype == np.uint8
    again = viz.pca_rgb(x[1:], basis)  # same basis: the same colours for the same embeddings
    assert np.array_equal(again[0], rgb[1])
    flat = viz.pca_rgb(torch.randn(1, 2, 4, 4))  # D < 3: padded with a zero channel
    assert flat.shape == (1, 4, 4, 3) and (flat[..., 2] == 0).all()
