"""COCO-Stuff: PiCIE's fine -> coarse table and the loader on synthetic trees of both layouts."""
import numpy as np
import pytest
import torch

from segsort_ext.datasets import COCOSTUFF27_CLASSES, COCOSTUFF_FINE_TO_COARSE, IGNORE_INDEX, COCOStuffSegmentation

from .datasets_testing import write_image, write_index_png


def test_cocostuff_fine_to_coarse_table():
    table = np.array(COCOSTUFF_FINE_TO_COARSE)
    assert table.shape == (182,) and len(COCOSTUFF27_CLASSES) == 27
    assert (table[:91] < 12).all() and (table[91:] >= 12).all()  # things first, then stuff
    # Fine ids per coarse class, as in PiCIE's table (COCO supercategories / COCO-Stuff hierarchy).
    sizes = {0: 6, 1: 6, 2: 10, 3: 10, 4: 8, 5: 8, 6: 8, 7: 10, 8: 6, 9: 1, 10: 10, 11: 8,
             12: 2, 13: 6, 14: 4, 15: 11, 16: 4, 17: 11, 18: 7, 19: 2, 20: 6, 21: 11, 22: 9, 23: 2,
             24: 6, 25: 5, 26: 5}  # fmt: skip
    assert np.bincount(table, minlength=27).tolist() == [sizes[c] for c in range(27)]
    named = {0: "person", 2: "vehicle", 17: "animal", 56: "food", 72: "electronic", 100: "floor",
             105: "sky", 119: "water", 129: "furniture-stuff", 148: "ground", 156: "sky", 168: "plant",
             170: "wall", 181: "solid"}  # fine id (COCO-Stuff id - 1): coarse name
    for fine, name in named.items():
        assert COCOSTUFF27_CLASSES[table[fine]] == name, fine


@pytest.mark.parametrize("layout", ["picie", "official"])
def test_cocostuff_layouts_and_lists(tmp_path, layout):
    ids = ["000000000139", "000000000285"]
    fine = np.concatenate([np.arange(182), np.full(14 * 14 - 182, 255)]).reshape(14, 14)
    label_root = "annotations" if layout == "picie" else "stuffthingmaps_trainval2017"
    image_root = tmp_path / "images" / "val2017" if layout == "picie" else tmp_path / "val2017"
    for k, image_id in enumerate(ids):
        write_image(image_root / f"{image_id}.jpg", 14, 14, seed=k)
        write_index_png(tmp_path / label_root / "val2017" / f"{image_id}.png", np.roll(fine, k), "L")
    curated = tmp_path / "curated" / "val2017"
    curated.mkdir(parents=True)
    (curated / "Coco164kFull_Stuff_Coarse_7.txt").write_text(ids[1] + "\n")

    everything = COCOStuffSegmentation(tmp_path, "val")
    assert everything.ids == ids and everything.num_classes == 27
    image, label, image_id = everything[0]
    assert image.shape == (3, 14, 14) and image_id == ids[0]
    flat = label.reshape(-1)
    torch.testing.assert_close(flat[:182], torch.tensor(COCOSTUFF_FINE_TO_COARSE))
    assert (flat[182:] == IGNORE_INDEX).all()

    curated_set = COCOStuffSegmentation(tmp_path, "val2017", image_list="Coco164kFull_Stuff_Coarse_7")
    assert curated_set.ids == ids[1:]
    torch.testing.assert_close(curated_set[0][1].reshape(-1)[1:183], flat[:182])  # rolled by one pixel

    stuff = COCOStuffSegmentation(tmp_path, "val", classes="stuff")[0][1].reshape(-1)
    things = COCOStuffSegmentation(tmp_path, "val", classes="things")[0][1].reshape(-1)
    assert (stuff[:91] == IGNORE_INDEX).all() and (stuff[91:182] == flat[91:182] - 12).all()
    assert (things[:91] == flat[:91]).all() and (things[91:] == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="classes"):
        COCOStuffSegmentation(tmp_path, "val", classes="stuff15")
    with pytest.raises(FileNotFoundError, match="image_list"):
        COCOStuffSegmentation(tmp_path, "val", image_list="Coco164kFew_Stuff_6")
