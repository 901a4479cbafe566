"""ImageFolderSegmentation on a synthetic folder pair."""
import numpy as np
import pytest
import torch
from PIL import Image

from segsort_ext.datasets import IGNORE_INDEX, ImageFolderSegmentation

from .datasets_testing import blocks, write_image, write_index_png


def test_image_folder_dataset(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    write_image(images / "a.png", 4, 5, seed=0)
    write_image(images / "b.jpg", 4, 5, seed=1)
    write_image(images / "c.png", 4, 5, seed=2)  # no label: left out without a list
    label_a = blocks(4, 5, [0, 3, 7, 255], 1)
    write_index_png(labels / "a.png", label_a, "P")
    write_index_png(labels / "b.png", blocks(4, 5, [3, 7], 1), "L")
    dataset = ImageFolderSegmentation(images, labels)
    assert dataset.ids == ["a", "b"]
    image, label, image_id = dataset[0]
    assert image_id == "a" and image.shape == (3, 4, 5)
    with Image.open(images / "a.png") as img:
        torch.testing.assert_close(image, torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255)
    torch.testing.assert_close(label, torch.from_numpy(label_a).long())  # palette indices, not colours
    mapped = ImageFolderSegmentation(images, labels, label_map={0: 0, 3: 1})
    assert mapped[0][1].unique().tolist() == [0, 1, IGNORE_INDEX]  # 7 is unmapped
    (tmp_path / "list.txt").write_text("b\n")
    assert ImageFolderSegmentation(images, labels, tmp_path / "list.txt").ids == ["b"]
    unlabelled = ImageFolderSegmentation(images)
    assert unlabelled.ids == ["a", "b", "c"] and (unlabelled[2][1] == IGNORE_INDEX).all()
    (tmp_path / "bad_list.txt").write_text("c\n")
    with pytest.raises(FileNotFoundError, match="list_file"):
        ImageFolderSegmentation(images, labels, tmp_path / "bad_list.txt")
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(labels / "c.png")  # an RGB "label"
    with pytest.raises(ValueError, match="mode 'RGB'"):
        ImageFolderSegmentation(images, labels)[2]
    write_image(images / "a.jpg", 4, 5)
    with pytest.raises(ValueError, match="image_dir"):
        ImageFolderSegmentation(images, labels)
