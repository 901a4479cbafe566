"""Bad-input catalogue of segsort_ext.datasets: corrupt, truncated, empty and foreign files,
missing splits and empty folders, wrong argument types and values. A refused input raises
exactly the expected error type, with a message naming the file or the argument; a legal one
gives the correct result."""
import re

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

import segsort_ext.datasets as D
from segsort_ext.datasets.scenes import scene_batches

from .datasets_testing import write_image, write_index_png


def _bsds_mat(path, segmentations, boundaries=None):
    cells = np.empty((1, len(segmentations)), dtype=object)
    for k, seg in enumerate(segmentations):
        bdry = (np.diff(seg, axis=0, append=0) != 0) if boundaries is None else boundaries
        cells[0, k] = {"Segmentation": seg, "Boundaries": bdry.astype(np.uint8)}
    scipy.io.savemat(path, {"groundTruth": cells})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good and broken files of every kind the loaders read, by name."""
    root = tmp_path_factory.mktemp("files")
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


def _voc_tree(root):
    for k, image_id in enumerate(["a", "b"]):
        write_image(root / "JPEGImages" / f"{image_id}.jpg", 6, 8, seed=k)
        write_index_png(root / "SegmentationClass" / f"{image_id}.png", np.zeros((6, 8), np.uint8))
    return root


def _sample(image=None, label=None, image_id="x"):
    return (torch.zeros(3, 4, 5) if image is None else image,
            torch.zeros(4, 5, dtype=torch.long) if label is None else label, image_id)


REFUSED = [
    # --- files -----------------------------------------------------------------------------------
    ("read_image missing", lambda f: D.read_image(f / "missing.png"), FileNotFoundError, "missing.png"),
    ("read_image truncated png", lambda f: D.read_image(f / "trunc.png"), ValueError, "trunc.png"),
    ("read_image truncated jpg", lambda f: D.read_image(f / "trunc.jpg"), ValueError, "trunc.jpg"),
    ("read_image empty file", lambda f: D.read_image(f / "empty.png"), ValueError, "empty.png"),
    ("read_image text file", lambda f: D.read_image(f / "text.png"), ValueError, "text.png"),
    ("read_image a .mat", lambda f: D.read_image(f / "gt.mat"), ValueError, "gt.mat"),
    ("read_image folder", lambda f: D.read_image(f / "empty_dir"), IsADirectoryError, "empty_dir"),
    ("read_image path int", lambda f: D.read_image(3), TypeError, "path"),
    ("read_label truncated", lambda f: D.read_label(f / "trunc.png"), ValueError, "trunc.png"),
    ("read_label RGB", lambda f: D.read_label(f / "rgb.png"), ValueError, "rgb.png.*mode 'RGB'"),
    ("read_label float image", lambda f: D.read_label(f / "float.tif"), ValueError, "float.tif.*mode 'F'"),
    ("load_bsds_ground_truth missing", lambda f: D.load_bsds_ground_truth(f / "missing.mat"), FileNotFoundError,
     "missing.mat"),
    ("load_bsds_ground_truth no groundTruth", lambda f: D.load_bsds_ground_truth(f / "nogt.mat"), ValueError,
     "nogt.mat.*groundTruth"),
    ("load_bsds_ground_truth truncated", lambda f: D.load_bsds_ground_truth(f / "trunc.mat"), ValueError,
     "trunc.mat"),
    ("load_bsds_ground_truth empty file", lambda f: D.load_bsds_ground_truth(f / "empty.mat"), ValueError,
     "empty.mat"),
    ("load_bsds_ground_truth a png", lambda f: D.load_bsds_ground_truth(f / "fake.mat"), ValueError, "fake.mat"),
    ("load_bsds_ground_truth not a cell", lambda f: D.load_bsds_ground_truth(f / "notcell.mat"), ValueError,
     "notcell.mat.*groundTruth"),
    ("load_bsds_ground_truth float segmentation", lambda f: D.load_bsds_ground_truth(f / "floatseg.mat"),
     ValueError, "floatseg.mat"),
    ("load_bsds_ground_truth boundary shape", lambda f: D.load_bsds_ground_truth(f / "shapes.mat"), ValueError,
     "shapes.mat"),
    ("load_bsds_ground_truth path None", lambda f: D.load_bsds_ground_truth(None), TypeError, "path"),
    ("read_sbd_label truncated", lambda f: D.read_sbd_label(f / "trunc.mat"), ValueError, "trunc.mat"),
    ("read_sbd_label BSDS file", lambda f: D.read_sbd_label(f / "gt.mat"), ValueError, "gt.mat.*GTcls"),
    ("read_sbd_label float field", lambda f: D.read_sbd_label(f / "sbd_float.mat"), ValueError, "sbd_float.mat"),
    # --- data sets: folders, splits, lists -------------------------------------------------------
    ("BSDS500 empty folders", lambda f: D.BSDS500(_bsds_tree(f / "bsds_empty", 0)), FileNotFoundError,
     "groundTruth"),
    ("BSDS500 root None", lambda f: D.BSDS500(None), TypeError, "root"),
    ("BSDS500 split int", lambda f: D.BSDS500(f, split=1), TypeError, "split"),
    ("BSDS500 corrupt ground truth", lambda f: D.BSDS500(_bsds_tree(f / "bsds_bad", 1, "trunc.mat"))[0],
     ValueError, "0.mat"),
    ("VOCSegmentation root None", lambda f: D.VOCSegmentation(None), TypeError, "root"),
    ("VOCSegmentation no label", lambda f: D.VOCSegmentation(_empty_voc(f / "voc_empty")), FileNotFoundError,
     "SegmentationClass"),
    ("VOCSegmentation empty list", lambda f: D.VOCSegmentation(_voc_tree(f / "voc1"), f / "blank.txt"),
     ValueError, "blank.txt"),
    ("VOCSegmentation binary list", lambda f: D.VOCSegmentation(_voc_tree(f / "voc2"), f / "binary.txt"),
     ValueError, "binary.txt"),
    ("VOCSegmentation missing split", lambda f: D.VOCSegmentation(_voc_tree(f / "voc3"), "trainval"),
     FileNotFoundError, "split_ids"),
    ("VOCSegmentation empty ids", lambda f: D.VOCSegmentation(_voc_tree(f / "voc4"), []), ValueError, "split_ids"),
    ("VOCSegmentation ids int", lambda f: D.VOCSegmentation(_voc_tree(f / "voc5"), 5), TypeError, "split_ids"),
    ("VOCSegmentation transform", lambda f: D.VOCSegmentation(_voc_tree(f / "voc6"), transform=3), TypeError,
     "transform"),
    ("VOCSegmentation truncated image", lambda f: D.VOCSegmentation(_truncated_voc(f, "voc7"))[0], ValueError,
     "a.jpg"),
    ("VOCAugSegmentation no label folder", lambda f: D.VOCAugSegmentation(_voc_tree(f / "voc8")), FileNotFoundError,
     "SegmentationClassAug"),
    ("SBDSegmentation empty ids", lambda f: D.SBDSegmentation(_sbd_tree(f / "sbd"), []), ValueError, "split"),
    ("CityscapesSegmentation empty", lambda f: D.CityscapesSegmentation(_cityscapes_tree(f / "cs"), "val"),
     FileNotFoundError, "leftImg8bit"),
    ("CityscapesSegmentation split int", lambda f: D.CityscapesSegmentation(f, 0), TypeError, "split"),
    ("COCOStuffSegmentation no label", lambda f: D.COCOStuffSegmentation(_coco_tree(f / "coco"), "val"),
     FileNotFoundError, "val2017"),
    ("COCOStuffSegmentation empty list", lambda f: D.COCOStuffSegmentation(_coco_tree(f / "coco2"), "val", []),
     ValueError, "image_list"),
    ("COCOStuffSegmentation split None", lambda f: D.COCOStuffSegmentation(f, None), TypeError, "split"),
    ("ImageFolderSegmentation empty folder", lambda f: D.ImageFolderSegmentation(f / "empty_dir"),
     FileNotFoundError, "empty_dir"),
    ("ImageFolderSegmentation image_dir None", lambda f: D.ImageFolderSegmentation(None), TypeError, "image_dir"),
    ("ImageFolderSegmentation empty list", lambda f: D.ImageFolderSegmentation(f / "images", list_file=f / "blank.txt"),
     ValueError, "blank.txt"),
    *[(f"ImageFolderSegmentation label_map {m!r}", lambda f, m=m: D.ImageFolderSegmentation(f / "images", label_map=m),
       error, "label_map") for m, error in (({-1: 0}, ValueError), ({1: 2**63}, ValueError), ({1.5: 0}, TypeError),
                                            ({1: 2.5}, TypeError), ({True: 1}, TypeError), ({"1": 2}, TypeError))],
    ("ImageFolderSegmentation label_map floats", lambda f: D.ImageFolderSegmentation(f / "images", label_map=[0.5]),
     TypeError, "label_map"),
    ("ImageFolderSegmentation transform", lambda f: D.ImageFolderSegmentation(f / "images", transform="flip"),
     TypeError, "transform"),
    # --- collate -----------------------------------------------------------------------------------
    ("collate empty", lambda f: D.collate([]), ValueError, "batch"),
    ("collate not a triple", lambda f: D.collate([(torch.zeros(3, 4, 5), torch.zeros(4, 5))]), ValueError,
     "batch"),
    ("collate float label", lambda f: D.collate([_sample(label=torch.zeros(4, 5))]), TypeError, "label"),
    ("collate numpy image", lambda f: D.collate([_sample(image=np.zeros((3, 4, 5)))]), TypeError, "image"),
    ("collate label size", lambda f: D.collate([_sample(label=torch.zeros(5, 4, dtype=torch.long))]), ValueError,
     "batch"),
    ("collate channels", lambda f: D.collate([_sample(), _sample(image=torch.zeros(1, 4, 5))]), ValueError,
     "channels"),
    ("collate size 0", lambda f: D.collate([_sample()], size=(0, 4)), ValueError, "size"),
    ("collate size float", lambda f: D.collate([_sample()], size=2.5), TypeError, "size"),
    # Sizes beyond int64 bytes, and beyond any machine's memory (10**7 squared pixels).
    ("collate size 2**62", lambda f: D.collate([_sample()], size=(2**62, 4)), ValueError, "^size is too large"),
    ("collate size 10**7", lambda f: D.collate([_sample()], size=10**7), ValueError, "^size is too large"),
    ("collate ignore_index float", lambda f: D.collate([_sample()], ignore_index=255.0), TypeError, "ignore_index"),
    ("collate image_fill NaN", lambda f: D.collate([_sample()], image_fill=float("nan")), ValueError, "image_fill"),
    # --- embedded scenes -------------------------------------------------------------------------
    ("TextureMosaics seed -2**62-1", lambda f: D.TextureMosaics("train", 1, seed=-(2**62) - 1), ValueError, "seed"),
    ("TextureMosaics seed 2**63", lambda f: D.TextureMosaics("train", 1, seed=2**63), ValueError, "seed"),
    ("TextureMosaics seed float", lambda f: D.TextureMosaics("train", 1, seed=0.5), TypeError, "seed"),
    ("TextureMosaics regions float", lambda f: D.TextureMosaics("train", 1, regions=(1.5, 2)), TypeError,
     "regions"),
    ("TextureMosaics size 2**31", lambda f: D.TextureMosaics("train", 1, size=(2**31, 2)), ValueError, "size"),
    ("TextureMosaics num_images float", lambda f: D.TextureMosaics("train", 2.0), TypeError, "num_images"),
    ("DigitScenes digits beyond what fits", lambda f: D.DigitScenes("train", 1, 24, digits=(1, 10**9)),
     ValueError, "digits"),
    ("DigitScenes digit_size", lambda f: D.DigitScenes("train", 1, 24, digit_size=(6, "8")), TypeError,
     "digit_size"),
    ("DigitScenes two digits that cannot fit", lambda f: D.DigitScenes("train", 1, 24), ValueError, "digits"),
    ("scene_batches generator",
     lambda f: next(scene_batches(D.DigitScenes("train", 1, 32, digit_size=(8, 10)), 1, generator=0)), TypeError,
     "generator"),
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


@pytest.mark.parametrize("call, error, name", [pytest.param(*case[1:], id=case[0]) for case in REFUSED])
def test_refused_naming_the_file_or_argument(files, call, error, name):
    with pytest.raises(error, match=name) as info:
        call(files)
    assert type(info.value) is error


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
