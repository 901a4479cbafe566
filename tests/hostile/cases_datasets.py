"""Bad-input cases of segsort_ext.datasets: corrupt, truncated, empty and foreign files, missing
splits and empty folders, wrong argument types and values. A refused input raises exactly the
expected error type, with a message naming the file or the argument. Each case is called with the
folder of ``files()``. Formerly the table of tests/datasets/test_bad_inputs.py."""

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image

import segsort_ext.datasets as D
from segsort_ext.datasets.scenes import scene_batches
from tests.datasets.datasets_testing import write_image, write_index_png
from tests.hostile.catalogue import Case

AREA = "datasets"


def _bsds_mat(path, segmentations, boundaries=None):
    cells = np.empty((1, len(segmentations)), dtype=object)
    for k, seg in enumerate(segmentations):
        bdry = (np.diff(seg, axis=0, append=0) != 0) if boundaries is None else boundaries
        cells[0, k] = {"Segmentation": seg, "Boundaries": bdry.astype(np.uint8)}
    scipy.io.savemat(path, {"groundTruth": cells})


def make_files(root: Path) -> Path:
    """Good and broken files of every kind the loaders read, by name, in ``root``."""
    write_image(root / "good.png", 16, 16)
    write_image(root / "good.jpg", 16, 16)
    for name in ("good.png", "good.jpg"):
        data = (root / name).read_bytes()
        (root / f"trunc{name[4:]}").write_bytes(data[: len(data) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("not an image\n")
    Image.fromarray(np.zeros((4, 4), np.float32)).save(root / "float.tif")  # mode 'F'
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "rgb.png")
    seg = np.repeat(np.arange(1, 5, dtype=np.uint16)[:, None], 6, axis=1)
    _bsds_mat(root / "gt.mat", [seg, seg[::-1].copy()])
    scipy.io.savemat(root / "nogt.mat", {"Segmentation": seg})
    data = (root / "gt.mat").read_bytes()
    (root / "trunc.mat").write_bytes(data[: len(data) // 2])
    (root / "empty.mat").write_bytes(b"")
    (root / "fake.mat").write_bytes((root / "good.png").read_bytes())
    scipy.io.savemat(root / "notcell.mat", {"groundTruth": np.zeros((1, 2))})
    _bsds_mat(root / "floatseg.mat", [seg.astype(np.float64)])
    _bsds_mat(root / "shapes.mat", [seg], boundaries=np.zeros((2, 2)))
    scipy.io.savemat(root / "sbd_float.mat", {"GTcls": {"Segmentation": seg * 0.5}})
    (root / "binary.txt").write_bytes(bytes(range(128, 256)))
    (root / "blank.txt").write_text("\n  \n")
    (root / "empty_dir").mkdir()
    write_image(root / "images" / "a.png", 4, 5)
    return root


@functools.lru_cache(maxsize=None)
def files() -> Path:
    """The folder of ``make_files``, made once per process (removed at exit): the cases' setup."""
    root = Path(tempfile.mkdtemp(prefix="segsort_bad_files_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return make_files(root)


def _voc_tree(root):
    for k, image_id in enumerate(["a", "b"]):
        write_image(root / "JPEGImages" / f"{image_id}.jpg", 6, 8, seed=k)
        write_index_png(root / "SegmentationClass" / f"{image_id}.png", np.zeros((6, 8), np.uint8))
    return root


def _sample(image=None, label=None, image_id="x"):
    return (
        torch.zeros(3, 4, 5) if image is None else image,
        torch.zeros(4, 5, dtype=torch.long) if label is None else label,
        image_id,
    )


REFUSED = [
    # --- files -----------------------------------------------------------------------------------
    Case("read_image missing", lambda f: D.read_image(f / "missing.png"), error=FileNotFoundError, arg="missing.png"),
    Case("read_image truncated png", lambda f: D.read_image(f / "trunc.png"), error=ValueError, arg="trunc.png"),
    Case("read_image truncated jpg", lambda f: D.read_image(f / "trunc.jpg"), error=ValueError, arg="trunc.jpg"),
    Case("read_image empty file", lambda f: D.read_image(f / "empty.png"), error=ValueError, arg="empty.png"),
    Case("read_image text file", lambda f: D.read_image(f / "text.png"), error=ValueError, arg="text.png"),
    Case("read_image a .mat", lambda f: D.read_image(f / "gt.mat"), error=ValueError, arg="gt.mat"),
    Case("read_image folder", lambda f: D.read_image(f / "empty_dir"), error=IsADirectoryError, arg="empty_dir"),
    Case("read_image path int", lambda f: D.read_image(3), error=TypeError, arg="path"),
    Case("read_label truncated", lambda f: D.read_label(f / "trunc.png"), error=ValueError, arg="trunc.png"),
    Case("read_label RGB", lambda f: D.read_label(f / "rgb.png"), error=ValueError, arg="rgb.png.*mode 'RGB'"),
    Case(
        "read_label float image", lambda f: D.read_label(f / "float.tif"), error=ValueError, arg="float.tif.*mode 'F'"
    ),
    Case(
        "load_bsds_ground_truth missing",
        lambda f: D.load_bsds_ground_truth(f / "missing.mat"),
        error=FileNotFoundError,
        arg="missing.mat",
    ),
    Case(
        "load_bsds_ground_truth no groundTruth",
        lambda f: D.load_bsds_ground_truth(f / "nogt.mat"),
        error=ValueError,
        arg="nogt.mat.*groundTruth",
    ),
    Case(
        "load_bsds_ground_truth truncated",
        lambda f: D.load_bsds_ground_truth(f / "trunc.mat"),
        error=ValueError,
        arg="trunc.mat",
    ),
    Case(
        "load_bsds_ground_truth empty file",
        lambda f: D.load_bsds_ground_truth(f / "empty.mat"),
        error=ValueError,
        arg="empty.mat",
    ),
    Case(
        "load_bsds_ground_truth a png",
        lambda f: D.load_bsds_ground_truth(f / "fake.mat"),
        error=ValueError,
        arg="fake.mat",
    ),
    Case(
        "load_bsds_ground_truth not a cell",
        lambda f: D.load_bsds_ground_truth(f / "notcell.mat"),
        error=ValueError,
        arg="notcell.mat.*groundTruth",
    ),
    Case(
        "load_bsds_ground_truth float segmentation",
        lambda f: D.load_bsds_ground_truth(f / "floatseg.mat"),
        error=ValueError,
        arg="floatseg.mat",
    ),
    Case(
        "load_bsds_ground_truth boundary shape",
        lambda f: D.load_bsds_ground_truth(f / "shapes.mat"),
        error=ValueError,
        arg="shapes.mat",
    ),
    Case("load_bsds_ground_truth path None", lambda f: D.load_bsds_ground_truth(None), error=TypeError, arg="path"),
    Case("read_sbd_label truncated", lambda f: D.read_sbd_label(f / "trunc.mat"), error=ValueError, arg="trunc.mat"),
    Case("read_sbd_label BSDS file", lambda f: D.read_sbd_label(f / "gt.mat"), error=ValueError, arg="gt.mat.*GTcls"),
    Case(
        "read_sbd_label float field",
        lambda f: D.read_sbd_label(f / "sbd_float.mat"),
        error=ValueError,
        arg="sbd_float.mat",
    ),
    # --- data sets: folders, splits, lists -------------------------------------------------------
    Case(
        "BSDS500 empty folders",
        lambda f: D.BSDS500(_bsds_tree(f / "bsds_empty", 0)),
        error=FileNotFoundError,
        arg="groundTruth",
    ),
    Case("BSDS500 root None", lambda f: D.BSDS500(None), error=TypeError, arg="root"),
    Case("BSDS500 split int", lambda f: D.BSDS500(f, split=1), error=TypeError, arg="split"),
    Case(
        "BSDS500 corrupt ground truth",
        lambda f: D.BSDS500(_bsds_tree(f / "bsds_bad", 1, "trunc.mat"))[0],
        error=ValueError,
        arg="0.mat",
    ),
    Case("VOCSegmentation root None", lambda f: D.VOCSegmentation(None), error=TypeError, arg="root"),
    Case(
        "VOCSegmentation no label",
        lambda f: D.VOCSegmentation(_empty_voc(f / "voc_empty")),
        error=FileNotFoundError,
        arg="SegmentationClass",
    ),
    Case(
        "VOCSegmentation empty list",
        lambda f: D.VOCSegmentation(_voc_tree(f / "voc1"), f / "blank.txt"),
        error=ValueError,
        arg="blank.txt",
    ),
    Case(
        "VOCSegmentation binary list",
        lambda f: D.VOCSegmentation(_voc_tree(f / "voc2"), f / "binary.txt"),
        error=ValueError,
        arg="binary.txt",
    ),
    Case(
        "VOCSegmentation missing split",
        lambda f: D.VOCSegmentation(_voc_tree(f / "voc3"), "trainval"),
        error=FileNotFoundError,
        arg="split_ids",
    ),
    Case(
        "VOCSegmentation empty ids",
        lambda f: D.VOCSegmentation(_voc_tree(f / "voc4"), []),
        error=ValueError,
        arg="split_ids",
    ),
    Case(
        "VOCSegmentation ids int",
        lambda f: D.VOCSegmentation(_voc_tree(f / "voc5"), 5),
        error=TypeError,
        arg="split_ids",
    ),
    Case(
        "VOCSegmentation transform",
        lambda f: D.VOCSegmentation(_voc_tree(f / "voc6"), transform=3),
        error=TypeError,
        arg="transform",
    ),
    Case(
        "VOCSegmentation truncated image",
        lambda f: D.VOCSegmentation(_truncated_voc(f, "voc7"))[0],
        error=ValueError,
        arg="a.jpg",
    ),
    Case(
        "VOCAugSegmentation no label folder",
        lambda f: D.VOCAugSegmentation(_voc_tree(f / "voc8")),
        error=FileNotFoundError,
        arg="SegmentationClassAug",
    ),
    Case(
        "SBDSegmentation empty ids",
        lambda f: D.SBDSegmentation(_sbd_tree(f / "sbd"), []),
        error=ValueError,
        arg="split",
    ),
    Case(
        "CityscapesSegmentation empty",
        lambda f: D.CityscapesSegmentation(_cityscapes_tree(f / "cs"), "val"),
        error=FileNotFoundError,
        arg="leftImg8bit",
    ),
    Case("CityscapesSegmentation split int", lambda f: D.CityscapesSegmentation(f, 0), error=TypeError, arg="split"),
    Case(
        "COCOStuffSegmentation no label",
        lambda f: D.COCOStuffSegmentation(_coco_tree(f / "coco"), "val"),
        error=FileNotFoundError,
        arg="val2017",
    ),
    Case(
        "COCOStuffSegmentation empty list",
        lambda f: D.COCOStuffSegmentation(_coco_tree(f / "coco2"), "val", []),
        error=ValueError,
        arg="image_list",
    ),
    Case("COCOStuffSegmentation split None", lambda f: D.COCOStuffSegmentation(f, None), error=TypeError, arg="split"),
    Case(
        "ImageFolderSegmentation empty folder",
        lambda f: D.ImageFolderSegmentation(f / "empty_dir"),
        error=FileNotFoundError,
        arg="empty_dir",
    ),
    Case(
        "ImageFolderSegmentation image_dir None",
        lambda f: D.ImageFolderSegmentation(None),
        error=TypeError,
        arg="image_dir",
    ),
    Case(
        "ImageFolderSegmentation empty list",
        lambda f: D.ImageFolderSegmentation(f / "images", list_file=f / "blank.txt"),
        error=ValueError,
        arg="blank.txt",
    ),
    *[
        Case(
            f"ImageFolderSegmentation label_map {m!r}",
            lambda f, m=m: D.ImageFolderSegmentation(f / "images", label_map=m),
            error=error,
            arg="label_map",
        )
        for m, error in (
            ({-1: 0}, ValueError),
            ({1: 2**63}, ValueError),
            ({1.5: 0}, TypeError),
            ({1: 2.5}, TypeError),
            ({True: 1}, TypeError),
            ({"1": 2}, TypeError),
        )
    ],
    Case(
        "ImageFolderSegmentation label_map floats",
        lambda f: D.ImageFolderSegmentation(f / "images", label_map=[0.5]),
        error=TypeError,
        arg="label_map",
    ),
    Case(
        "ImageFolderSegmentation transform",
        lambda f: D.ImageFolderSegmentation(f / "images", transform="flip"),
        error=TypeError,
        arg="transform",
    ),
    # --- collate -----------------------------------------------------------------------------------
    Case("collate empty", lambda f: D.collate([]), error=ValueError, arg="batch"),
    Case(
        "collate not a triple",
        lambda f: D.collate([(torch.zeros(3, 4, 5), torch.zeros(4, 5))]),
        error=ValueError,
        arg="batch",
    ),
    Case("collate float label", lambda f: D.collate([_sample(label=torch.zeros(4, 5))]), error=TypeError, arg="label"),
    Case(
        "collate numpy image", lambda f: D.collate([_sample(image=np.zeros((3, 4, 5)))]), error=TypeError, arg="image"
    ),
    Case(
        "collate label size",
        lambda f: D.collate([_sample(label=torch.zeros(5, 4, dtype=torch.long))]),
        error=ValueError,
        arg="batch",
    ),
    Case(
        "collate channels",
        lambda f: D.collate([_sample(), _sample(image=torch.zeros(1, 4, 5))]),
        error=ValueError,
        arg="channels",
    ),
    Case("collate size 0", lambda f: D.collate([_sample()], size=(0, 4)), error=ValueError, arg="size"),
    Case("collate size float", lambda f: D.collate([_sample()], size=2.5), error=TypeError, arg="size"),
    # Sizes beyond int64 bytes, and beyond any machine's memory (10**7 squared pixels).
    Case(
        "collate size 2**62",
        lambda f: D.collate([_sample()], size=(2**62, 4)),
        error=ValueError,
        arg="^size is too large",
    ),
    Case(
        "collate size 10**7", lambda f: D.collate([_sample()], size=10**7), error=ValueError, arg="^size is too large"
    ),
    Case(
        "collate ignore_index float",
        lambda f: D.collate([_sample()], ignore_index=255.0),
        error=TypeError,
        arg="ignore_index",
    ),
    Case(
        "collate image_fill NaN",
        lambda f: D.collate([_sample()], image_fill=float("nan")),
        error=ValueError,
        arg="image_fill",
    ),
    # --- embedded scenes -------------------------------------------------------------------------
    Case(
        "TextureMosaics seed -2**62-1",
        lambda f: D.TextureMosaics("train", 1, seed=-(2**62) - 1),
        error=ValueError,
        arg="seed",
    ),
    Case("TextureMosaics seed 2**63", lambda f: D.TextureMosaics("train", 1, seed=2**63), error=ValueError, arg="seed"),
    Case("TextureMosaics seed float", lambda f: D.TextureMosaics("train", 1, seed=0.5), error=TypeError, arg="seed"),
    Case(
        "TextureMosaics regions float",
        lambda f: D.TextureMosaics("train", 1, regions=(1.5, 2)),
        error=TypeError,
        arg="regions",
    ),
    Case(
        "TextureMosaics size 2**31",
        lambda f: D.TextureMosaics("train", 1, size=(2**31, 2)),
        error=ValueError,
        arg="size",
    ),
    Case(
        "TextureMosaics num_images float", lambda f: D.TextureMosaics("train", 2.0), error=TypeError, arg="num_images"
    ),
    Case(
        "DigitScenes digits beyond what fits",
        lambda f: D.DigitScenes("train", 1, 24, digits=(1, 10**9)),
        error=ValueError,
        arg="digits",
    ),
    Case(
        "DigitScenes digit_size",
        lambda f: D.DigitScenes("train", 1, 24, digit_size=(6, "8")),
        error=TypeError,
        arg="digit_size",
    ),
    Case(
        "DigitScenes two digits that cannot fit",
        lambda f: D.DigitScenes("train", 1, 24),
        error=ValueError,
        arg="digits",
    ),
    Case(
        "scene_batches generator",
        lambda f: next(scene_batches(D.DigitScenes("train", 1, 32, digit_size=(8, 10)), 1, generator=0)),
        error=TypeError,
        arg="generator",
    ),
]


def _bsds_tree(root, count, gt_file="gt.mat"):
    for split_dir in ("images/val", "groundTruth/val"):
        (root / split_dir).mkdir(parents=True, exist_ok=True)
    source = root.parent
    for k in range(count):
        write_image(root / "images" / "val" / f"{k}.jpg", 4, 6)
        (root / "groundTruth" / "val" / f"{k}.mat").write_bytes((source / gt_file).read_bytes())
    return root


def _empty_voc(root):
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClass").mkdir(exist_ok=True)
    return root


def _truncated_voc(files, name):
    root = _voc_tree(files / name)
    (root / "JPEGImages" / "a.jpg").write_bytes((files / "trunc.jpg").read_bytes())
    return root


def _sbd_tree(root):
    for folder in ("img", "cls"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return root


def _cityscapes_tree(root):
    for folder in ("leftImg8bit/val", "gtFine/val"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return root


def _coco_tree(root):
    for folder in ("images/val2017", "annotations/val2017"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return root


for _case in REFUSED:
    _case.setup = files
CASES = REFUSED
