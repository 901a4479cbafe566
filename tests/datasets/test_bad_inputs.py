"""Legal edge cases of segsort_ext.datasets: good files read, huge label maps and collate's edge
cases give the correct result (the refused inputs are cases of tests/hostile/cases_datasets.py,
run by tests/test_hostile_inputs.py)."""
import re

import numpy as np
import pytest
import torch
from PIL import Image

import segsort_ext.datasets as D
from tests.hostile.cases_datasets import _sample, make_files

from .datasets_testing import write_image


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good and broken files of every kind the loaders read, by name."""
    return make_files(tmp_path_factory.mktemp("files"))


def test_good_files_read(files):
    image = D.read_image(files / "good.png")
    assert image.shape == (3, 16, 16) and 0 <= image.min() and image.max() <= 1
    with open(files / "good.png", "rb") as fh:  # binary file objects work too
        torch.testing.assert_close(D.read_image(fh), image)
    annotations = D.load_bsds_ground_truth(files / "gt.mat")
    assert len(annotations) == 2 and annotations[0]["segmentation"].tolist()[0] == [1] * 6
    assert annotations[1]["boundaries"].dtype == bool


def test_label_maps_with_huge_keys_allocate_nothing_big(tmp_path):
    # A value -> id table keyed by 2**40 used to be a dense array of 2**40 entries (8 TiB).
    write_image(tmp_path / "images" / "a.png", 2, 3)
    (tmp_path / "labels").mkdir()
    big = 2**31 - 1  # a 32-bit label TIFF holds it
    Image.fromarray(np.array([[0, 7, big], [7, 7, 0]], dtype=np.int32)).save(tmp_path / "labels" / "a.tif")
    label_map = {7: 1, big: 2, 2**40: 3, 2**63 - 1: 4}
    dataset = D.ImageFolderSegmentation(tmp_path / "images", tmp_path / "labels", label_map=label_map)
    assert dataset[0][1].tolist() == [[255, 1, 2], [1, 1, 255]]
    small = D.ImageFolderSegmentation(tmp_path / "images", tmp_path / "labels", label_map={7: 1, 0: 9})
    assert small[0][1].tolist() == [[9, 1, 255], [1, 1, 9]]  # the dense table


def test_collate_edge_cases():
    images, labels, ids = D.collate([_sample(), _sample(image_id="y")], size=(2, 7))
    assert images.shape == (2, 3, 2, 7) and labels.shape == (2, 2, 7) and ids == ["x", "y"]
    assert (labels[:, :, 5:] == 255).all()
    wide = torch.zeros((), dtype=torch.long).expand(4, 5)  # stride-0 label
    assert D.collate([_sample(label=wide)])[1].shape == (1, 4, 5)
    _, both, _ = D.collate([_sample(label=torch.zeros(2, 4, 5, dtype=torch.int32))])
    assert both.shape == (1, 2, 4, 5) and both.dtype == torch.int64
    with pytest.raises(FileNotFoundError, match=re.escape("nowhere")):
        D.ImageFolderSegmentation("nowhere")
