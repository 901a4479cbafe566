"""Cityscapes: the train id table and the loader on a synthetic tree."""
import numpy as np
import pytest
import torch
from PIL import Image

from segsort_ext.datasets import CITYSCAPES_CLASSES, CITYSCAPES_LABEL_TO_TRAIN_ID, IGNORE_INDEX, CityscapesSegmentation

from .datasets_testing import write_image, write_index_png


def test_cityscapes_train_id_table():
    assert set(CITYSCAPES_LABEL_TO_TRAIN_ID) == set(range(34))
    train_ids = [t for t in CITYSCAPES_LABEL_TO_TRAIN_ID.values() if t != IGNORE_INDEX]
    assert sorted(train_ids) == list(range(19)) == list(range(len(CITYSCAPES_CLASSES)))
    # Spot checks against cityscapesScripts' labels.py (name: id -> trainId).
    for label_id, train_id in {7: 0, 8: 1, 9: 255, 11: 2, 17: 5, 18: 255, 23: 10, 24: 11, 26: 13,
                               29: 255, 30: 255, 31: 16, 33: 18, 0: 255, 6: 255}.items():
        assert CITYSCAPES_LABEL_TO_TRAIN_ID[label_id] == train_id


def test_cityscapes_layout(tmp_path):
    names = [("aachen", "aachen_000000_000019"), ("bochum", "bochum_000000_000313")]
    label_ids = (np.arange(48) % 34).reshape(6, 8)
    instance_ids = np.where(label_ids == 26, 26000 + np.arange(48).reshape(6, 8) % 3, label_ids).astype(np.uint16)
    for k, (city, name) in enumerate(reversed(names)):
        write_image(tmp_path / "leftImg8bit" / "val" / city / f"{name}_leftImg8bit.png", 6, 8, seed=k)
        gt = tmp_path / "gtFine" / "val" / city
        write_index_png(gt / f"{name}_gtFine_labelIds.png", label_ids, "L")
        Image.fromarray(instance_ids).save(gt / f"{name}_gtFine_instanceIds.png")
    dataset = CityscapesSegmentation(tmp_path, "val")
    assert dataset.ids == [n for _, n in names]
    image, label, image_id = dataset[0]
    assert image_id == names[0][1] and image.shape == (3, 6, 8)
    expected = np.vectorize(CITYSCAPES_LABEL_TO_TRAIN_ID.get)(label_ids)
    torch.testing.assert_close(label, torch.from_numpy(expected).long())
    _, both, _ = CityscapesSegmentation(tmp_path, "val", target="both")[1]
    assert both.shape == (2, 6, 8)
    torch.testing.assert_close(both[0], label)
    torch.testing.assert_close(both[1], torch.from_numpy(instance_ids.astype(np.int64)))
    with pytest.raises(FileNotFoundError):
        CityscapesSegmentation(tmp_path, "train")
    with pytest.raises(ValueError, match="annotation"):
        CityscapesSegmentation(tmp_path, "val", annotation="gtMedium")
