"""COCO-Stuff 164k with PiCIE's 27 coarse classes (Cho et al., CVPR 2021): the fine -> coarse
table and the loader."""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from segsort_ext.datasets.io import (
    IdSource,
    LabelTable,
    PathLike,
    as_path,
    check_choice,
    check_same_size,
    check_transform,
    read_image,
    read_label,
    resolve_ids,
)
from segsort_ext.utils.constants import IGNORE_INDEX

__all__ = ["COCOSTUFF27_CLASSES", "COCOSTUFF_FINE_TO_COARSE", "COCOStuffSegmentation"]

#: PiCIE's 27 COCO-Stuff classes: the 12 COCO thing supercategories (0..11), then the 15
#: COCO-Stuff stuff supercategories (12..26), in the index order of PiCIE's
#: ``fine_to_coarse_dict.pickle`` (also used by STEGO's ``cocostuff27``).
COCOSTUFF27_CLASSES = (
    "electronic", "appliance", "food", "furniture", "indoor", "kitchen", "accessory", "animal",
    "outdoor", "person", "sports", "vehicle",
    "ceiling", "floor", "food-stuff", "furniture-stuff", "raw-material", "textile", "wall",
    "window", "building", "ground", "plant", "sky", "solid", "structural", "water",
)  # fmt: skip


def _fine_to_coarse() -> Tuple[int, ...]:
    # Fine ids are the COCO-Stuff category ids minus 1, as stored in the stuffthingmaps PNGs
    # (0..90 things, of which 11 ids are unused by COCO; 91..181 stuff).  Things follow the
    # COCO supercategories, whose ids are contiguous; stuff follows the COCO-Stuff label
    # hierarchy (github.com/nightrome/cocostuff).  Checked entry by entry against the table
    # PiCIE trains with (janghyuncho/PiCIE, fine_to_coarse_dict.pickle, as spelled out in
    # mhamilton723/STEGO src/data.py).
    thing_runs = (  # (first fine id, last fine id, coarse class)
        (0, 0, 9),     # person
        (1, 8, 11),    # bicycle .. boat: vehicle
        (9, 14, 8),    # traffic light .. bench: outdoor
        (15, 24, 7),   # bird .. giraffe: animal
        (25, 32, 6),   # hat .. suitcase: accessory
        (33, 42, 10),  # frisbee .. tennis racket: sports
        (43, 50, 5),   # bottle .. bowl: kitchen
        (51, 60, 2),   # banana .. cake: food
        (61, 70, 3),   # chair .. door: furniture
        (71, 76, 0),   # tv .. cell phone: electronic
        (77, 82, 1),   # microwave .. blender: appliance
        (83, 90, 4),   # book .. hair brush: indoor
    )  # fmt: skip
    stuff_groups = {
        12: (101, 102),                                          # ceiling-other, ceiling-tile
        13: (100, 113, 114, 115, 116, 117),                      # carpet, floor-*
        14: (120, 121, 152, 169),                                # food-other, fruit, salad, vegetable
        15: (97, 106, 107, 109, 111, 122, 129, 132, 155, 160, 164),  # cabinet, counter, ... table
        16: (99, 131, 138, 142),                                 # cardboard, metal, paper, plastic
        17: (91, 92, 103, 104, 108, 130, 136, 140, 151, 166, 167),   # banner, blanket, ... towel
        18: (170, 171, 172, 173, 174, 175, 176),                 # wall-*
        19: (179, 180),                                          # window-blind, window-other
        20: (94, 95, 127, 150, 157, 165),                        # bridge, building-other, ... tent
        21: (110, 124, 125, 135, 139, 143, 144, 146, 148, 153, 158),  # dirt, gravel, ... snow
        22: (93, 96, 118, 123, 128, 133, 141, 162, 168),         # branch, bush, ... tree
        23: (105, 156),                                          # clouds, sky-other
        24: (126, 134, 149, 159, 161, 181),                      # hill, mountain, ... wood
        25: (98, 112, 137, 145, 163),                            # cage, fence, net, railing, structural-other
        26: (119, 147, 154, 177, 178),                           # fog, river, sea, water-other, waterdrops
    }  # fmt: skip
    table = [-1] * 182
    for first, last, coarse in thing_runs:
        for fine in range(first, last + 1):
            table[fine] = coarse
    for coarse, fines in stuff_groups.items():
        for fine in fines:
            table[fine] = coarse
    assert -1 not in table and sum(len(f) for f in stuff_groups.values()) == 91
    return tuple(table)


#: COCO-Stuff fine id (0..181, the stuffthingmaps PNG values) -> PiCIE's coarse class
#: (index into :data:`COCOSTUFF27_CLASSES`); the unlabeled value 255 maps to 255.
COCOSTUFF_FINE_TO_COARSE: Tuple[int, ...] = _fine_to_coarse()


class COCOStuffSegmentation(Dataset):
    """COCO-Stuff 164k with PiCIE's 27 coarse classes.

    Args:
        root: folder holding the images ``images/<split>2017/<id>.jpg`` (or ``<split>2017/``)
            and the ``stuffthingmaps`` label PNGs (fine ids 0..181, 255 unlabeled) as
            ``annotations/<split>2017/<id>.png`` (PiCIE's layout),
            ``stuffthingmaps_trainval2017/<split>2017/`` or ``stuffthingmaps/<split>2017/``.
        split: ``'train'`` / ``'val'`` (or the folder name, e.g. ``'val2017'``).
        image_list: ``None`` (every label PNG), a list name looked up in
            ``root/curated/<split>2017/`` (PiCIE's curated lists, e.g.
            ``'Coco164kFull_Stuff_Coarse_7'``, with or without ``.txt``), a list-file path, or a
            sequence of ids.
        classes: ``'all'`` (27 classes, :data:`COCOSTUFF27_CLASSES`), ``'stuff'`` (the 15
            stuff classes as 0..14, things ignored: PiCIE's / IIC's stuff-only benchmark) or
            ``'things'`` (the 12 thing classes, stuff ignored).
        transform: optional ``(image, label) -> (image, label)``.

    Items ``(image, label, id)``; unlabeled pixels (and excluded classes) are 255.
    """

    _LABEL_DIRS = ("annotations", "stuffthingmaps_trainval2017", "stuffthingmaps")

    def __init__(self, root: PathLike, split: str = "train", image_list: IdSource = None,
                 classes: str = "all", transform: Optional[Callable] = None):
        self.classes = check_choice(classes, ("all", "stuff", "things"), "classes")
        root = as_path(root, "root")
        if not isinstance(split, str):
            raise TypeError(f"split must be a str such as 'train' or 'val2017', got {type(split).__name__}")
        folder = split if split.endswith(("2014", "2017")) else f"{split}2017"
        self.root, self.split, self.transform = root, folder, check_transform(transform)
        self.image_folder = next((d for d in (root / "images" / folder, root / folder) if d.is_dir()), None)
        self.label_folder = next((root / d / folder for d in self._LABEL_DIRS if (root / d / folder).is_dir()), None)
        if self.image_folder is None or self.label_folder is None:
            raise FileNotFoundError(f"{root} has no images/{folder}/ and "
                                    f"{{{','.join(self._LABEL_DIRS)}}}/{folder}/ folders")
        if image_list is None:
            self.ids = sorted(p.stem for p in self.label_folder.glob("*.png"))
            if not self.ids:
                raise FileNotFoundError(f"no label PNG in {self.label_folder}")
        else:
            candidates = []
            if isinstance(image_list, str):
                name = image_list if image_list.endswith(".txt") else f"{image_list}.txt"
                candidates = [root / "curated" / folder / name]
            self.ids = resolve_ids(image_list, candidates, "image_list")
        table = np.array(COCOSTUFF_FINE_TO_COARSE, dtype=np.int64)
        if classes == "stuff":
            table = np.where(table >= 12, table - 12, IGNORE_INDEX)
        elif classes == "things":
            table = np.where(table < 12, table, IGNORE_INDEX)
        self._table = LabelTable(table, "COCOSTUFF_FINE_TO_COARSE")  # 255 (unlabeled) is outside: ignore

    @property
    def num_classes(self) -> int:
        return {"all": 27, "stuff": 15, "things": 12}[self.classes]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor, str]:
        image_id = self.ids[index]
        image = read_image(self.image_folder / f"{image_id}.jpg")
        label = self._table(read_label(self.label_folder / f"{image_id}.png"))
        check_same_size(image_id, image, label)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label, image_id
