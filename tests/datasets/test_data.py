"""Tests of segsort_ext.data: loaders on the real VOC 2012 / BSDS500 samples (skipped when
shared/data is absent), loaders of the formats without a sample (SBD, SegmentationClassAug,
Cityscapes, COCO-Stuff, image folders) on small synthetic trees written to tmp_path, and the
batching / joint augmentation helpers on synthetic tensors."""

import functools
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch.utils.data import DataLoader

from segsort_ext.datasets import (
    BSDS500,
    CITYSCAPES_CLASSES,
    CITYSCAPES_LABEL_TO_TRAIN_ID,
    COCOSTUFF27_CLASSES,
    COCOSTUFF_FINE_TO_COARSE,
    IGNORE_INDEX,
    COCOStuffSegmentation,
    CityscapesSegmentation,
    ImageFolderSegmentation,
    RandomCropFlip,
    SBDSegmentation,
    TrainAugmentation,
    VOCAugSegmentation,
    VOCSegmentation,
    collate,
    color_jitter,
    load_bsds_ground_truth,
    random_crop,
    random_hflip,
    random_scale,
    read_label,
    read_sbd_label,
)

DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"
VOC_ROOT = DATA_ROOT / "voc2012"
BSDS_ROOT = DATA_ROOT / "bsds500"

VALID_VOC_LABELS = set(range(21)) | {IGNORE_INDEX}


def _values(label):
    """The set of values of a non-negative label tensor (bincount: linear time, unlike a sort)."""
    return set(torch.bincount(label.reshape(-1)).nonzero().flatten().tolist())


@pytest.fixture(scope="module")
def voc():
    if not (VOC_ROOT / "JPEGImages").is_dir():
        pytest.skip(f"VOC 2012 sample not found at {VOC_ROOT}")
    return VOCSegmentation(VOC_ROOT)


@pytest.fixture(scope="module")
def bsds():
    if not (BSDS_ROOT / "images" / "val").is_dir():
        pytest.skip(f"BSDS500 sample not found at {BSDS_ROOT}")
    return BSDS500(BSDS_ROOT, split="val")


# ============================================================================================
# VOC
# ============================================================================================


def test_voc_sample_contents(voc):
    assert len(voc) == 66
    assert voc.ids == (VOC_ROOT / "ids.txt").read_text().split()
    seen = set()
    for index in range(len(voc)):
        image, label, image_id = voc[index]
        assert image_id == voc.ids[index]
        assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 3
        assert label.dtype == torch.int64 and label.shape == image.shape[1:]
        assert 0.0 <= image.min() and image.max() <= 1.0
        values = _values(label)
        assert values <= VALID_VOC_LABELS, (image_id, values)
        # Every VOC label has objects and the void border (palette ids, not colours).
        assert IGNORE_INDEX in values and values - {0, IGNORE_INDEX}
        seen |= values
    assert len(seen) > 10  # many classes over the sample


def test_voc_split_ids_variants(voc, tmp_path):
    ids = voc.ids[:3]
    by_list = VOCSegmentation(VOC_ROOT, split_ids=ids)
    assert by_list.ids == ids
    id_file = tmp_path / "subset.txt"
    id_file.write_text("\n".join(ids) + "\n")
    by_file = VOCSegmentation(VOC_ROOT, split_ids=id_file)
    assert by_file.ids == ids
    torch.testing.assert_close(by_file[1][1], voc[1][1])
    with pytest.raises(FileNotFoundError):
        VOCSegmentation(VOC_ROOT, split_ids="no_such_split")
    with pytest.raises(FileNotFoundError):
        VOCSegmentation(tmp_path)


def test_voc_dataloader_with_collate(voc):
    subset = VOCSegmentation(VOC_ROOT, split_ids=voc.ids[:4], transform=RandomCropFlip((200, 240), seed=1))
    loader = DataLoader(subset, batch_size=4, collate_fn=functools.partial(collate, size=(256, 256)))
    images, labels, ids = next(iter(loader))
    assert images.shape == (4, 3, 256, 256) and images.dtype == torch.float32
    assert labels.shape == (4, 256, 256) and labels.dtype == torch.int64
    assert ids == voc.ids[:4]
    # Padding beyond the 200x240 crops is ignore-labelled and black.
    assert (labels[:, 200:, :] == IGNORE_INDEX).all() and (labels[:, :, 240:] == IGNORE_INDEX).all()
    assert (images[:, :, 200:, :] == 0).all()
    assert _values(labels) <= VALID_VOC_LABELS


# ============================================================================================
# BSDS500
# ============================================================================================


def test_bsds_val_sample_contents(bsds):
    assert len(bsds) == 50
    assert bsds.ids == sorted(bsds.ids)
    for index in range(0, len(bsds), 7):  # a spread of images keeps the test light
        image, segmentations, boundaries, image_id = bsds[index]
        assert image_id == bsds.ids[index]
        assert image.dtype == torch.float32 and tuple(image.shape) in {(3, 321, 481), (3, 481, 321)}
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert 4 <= len(segmentations) == len(boundaries) <= 8
        for seg, bdry in zip(segmentations, boundaries):
            assert seg.dtype == torch.int64 and seg.shape == image.shape[1:]
            assert seg.min() >= 1
            assert bdry.dtype == torch.bool and bdry.shape == image.shape[1:]
            assert 0 < bdry.sum() < bdry.numel() // 4


def test_bsds_ground_truth_reader(bsds):
    annotations = load_bsds_ground_truth(bsds.gt_folder / f"{bsds.ids[0]}.mat")
    assert 4 <= len(annotations) <= 8
    for ann in annotations:
        assert set(ann) == {"segmentation", "boundaries"}
        assert ann["segmentation"].dtype == np.uint16 and ann["boundaries"].dtype == bool
        labels = np.unique(ann["segmentation"])
        np.testing.assert_array_equal(labels, np.arange(1, labels.size + 1))  # ids 1..N
    with pytest.raises(FileNotFoundError):
        BSDS500(BSDS_ROOT, split="no_such_split")


# ============================================================================================
# Batching and augmentation (synthetic, no data needed)
# ============================================================================================


def _coded_sample(height, width):
    """Image whose channels encode the pixel position; label = a function of the position."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image = torch.stack([ys.float(), xs.float(), (ys * width + xs).float()])
    label = (ys * width + xs) % 21
    return image, label


def test_collate_pads_and_crops():
    small = _coded_sample(3, 4)
    large = _coded_sample(6, 2)
    images, labels, ids = collate([(*small, "a"), (*large, "b")])
    assert images.shape == (2, 3, 6, 4) and labels.shape == (2, 6, 4)
    assert ids == ["a", "b"]
    torch.testing.assert_close(images[0, :, :3, :4], small[0])
    assert (labels[0, 3:] == IGNORE_INDEX).all() and (labels[1, :, 2:] == IGNORE_INDEX).all()
    assert (images[0, :, 3:] == 0).all()
    # Fixed size smaller than the samples crops from the top-left corner.
    images, labels, _ = collate([(*large, "b")], size=(2, 1))
    torch.testing.assert_close(labels[0], large[1][:2, :1])


def test_random_crop_flip_same_geometry_and_deterministic():
    image, label = _coded_sample(10, 12)
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


def test_random_crop_pads_small_inputs_and_hflip():
    image, label = _coded_sample(3, 4)
    generator = torch.Generator().manual_seed(0)
    out_image, out_label = random_crop(image, label, (5, 6), generator)
    assert out_image.shape == (3, 5, 6)
    torch.testing.assert_close(out_label[:3, :4], label)
    assert (out_label[3:] == IGNORE_INDEX).all() and (out_label[:, 4:] == IGNORE_INDEX).all()
    flipped_image, flipped_label = random_hflip(image, label, p=1.0)
    torch.testing.assert_close(flipped_label, label.flip(-1))
    torch.testing.assert_close(flipped_image, image.flip(-1))
    same_image, same_label = random_hflip(image, label, p=0.0)
    assert same_image is image and same_label is label


# ============================================================================================
# Synthetic dataset trees
# ============================================================================================


def _write_image(path, height, width, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


def _write_index_png(path, label, mode="P"):
    """A label PNG whose stored values are ``label`` (palette indices for 'P', gray for 'L')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    label = np.ascontiguousarray(label, dtype=np.uint8)
    img = Image.frombytes(mode, (label.shape[1], label.shape[0]), label.tobytes())
    if mode == "P":
        img.putpalette(np.random.default_rng(1).integers(0, 256, 768, dtype=np.uint8).tolist())
    img.save(path)


def _blocks(height, width, values, block=2):
    """Label map of block x block squares cycling through ``values``."""
    ys, xs = np.meshgrid(np.arange(height) // block, np.arange(width) // block, indexing="ij")
    return np.asarray(values)[(ys * ((width + block - 1) // block) + xs) % len(values)]


@pytest.fixture
def voc_tree(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    ids = ["2007_000001", "2007_000002"]
    for k, image_id in enumerate(ids):
        _write_image(root / "JPEGImages" / f"{image_id}.jpg", 6, 8, seed=k)
        cls = _blocks(6, 8, [0, 15, 255, 7 + k])
        obj = _blocks(6, 8, [0, 1, 255, 2])  # object k+1 <-> class; void shared with the class map
        _write_index_png(root / "SegmentationClass" / f"{image_id}.png", cls)
        _write_index_png(root / "SegmentationObject" / f"{image_id}.png", obj)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    return root, ids


def test_voc_object_and_both_targets(voc_tree):
    root, ids = voc_tree
    cls = VOCSegmentation(root.parent, "train")  # a VOCdevkit folder works too
    obj = VOCSegmentation(root, "train", target="object")
    both = VOCSegmentation(root, "train", target="both")
    assert cls.ids == obj.ids == both.ids == ids
    for k in range(2):
        image, label, image_id = both[k]
        assert image.shape == (3, 6, 8) and label.shape == (2, 6, 8) and label.dtype == torch.int64
        torch.testing.assert_close(label[0], torch.from_numpy(_blocks(6, 8, [0, 15, 255, 7 + k])).long())
        torch.testing.assert_close(label[1], torch.from_numpy(_blocks(6, 8, [0, 1, 255, 2])).long())
        torch.testing.assert_close(cls[k][1], label[0])
        torch.testing.assert_close(obj[k][1], label[1])
    with pytest.raises(ValueError, match="target"):
        VOCSegmentation(root, target="instances")


def test_voc_both_target_stays_aligned_under_augmentation(voc_tree):
    root, _ = voc_tree
    transform = TrainAugmentation((5, 7), scale_range=(0.7, 2.5), seed=4)
    dataset = VOCSegmentation(root, "train", target="both", transform=transform)
    for _ in range(4):
        for k in range(2):
            _, label, _ = dataset[k]
            assert label.shape == (2, 5, 7)
            # Void and padding coincide, and each object keeps its single class.
            assert torch.equal(label[0] == IGNORE_INDEX, label[1] == IGNORE_INDEX)
            for obj_id, cls_id in ((0, 0), (1, 15), (2, 7 + k)):
                assert (label[0][label[1] == obj_id] == cls_id).all()


def test_voc_aug_layout_with_deeplab_and_plain_lists(tmp_path):
    root = tmp_path / "VOC2012"
    ids = ["2008_000002", "2008_000003", "2008_000004"]
    for k, image_id in enumerate(ids):
        _write_image(root / "JPEGImages" / f"{image_id}.jpg", 5, 4, seed=k)
        _write_index_png(root / "SegmentationClassAug" / f"{image_id}.png", _blocks(5, 4, [k, 20, 255], 1), "L")
    (root / "ImageSets" / "SegmentationAug").mkdir(parents=True)
    deeplab = "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids[:2])
    (root / "ImageSets" / "SegmentationAug" / "train_aug.txt").write_text(deeplab)
    (tmp_path / "val.txt").write_text(ids[2] + "\n")  # a list next to the VOC folder
    train = VOCAugSegmentation(root)
    assert train.ids == ids[:2]
    val = VOCAugSegmentation(root, "val")
    assert val.ids == ids[2:]
    image, label, image_id = val[0]
    assert image_id == ids[2] and image.shape == (3, 5, 4)
    torch.testing.assert_close(label, torch.from_numpy(_blocks(5, 4, [2, 20, 255], 1)).long())
    assert VOCAugSegmentation(root, None).ids == ids
    with pytest.raises(FileNotFoundError, match="split_ids"):
        VOCAugSegmentation(root, "trainval_aug")


def _write_sbd_mat(path, key, segmentation):
    path.parent.mkdir(parents=True, exist_ok=True)
    boundaries = np.empty((20, 1), dtype=object)  # the release stores a cell of sparse maps
    for i in range(20):
        boundaries[i, 0] = np.zeros((2, 2), dtype=np.uint8)
    fields = {"Segmentation": segmentation.astype(np.uint8), "Boundaries": boundaries}
    fields["CategoriesPresent" if key == "GTcls" else "Categories"] = np.array([[1], [15]], dtype=np.uint8)
    scipy.io.savemat(path, {key: fields})


def test_sbd_release_layout(tmp_path):
    dataset_dir = tmp_path / "benchmark_RELEASE" / "dataset"
    ids = ["2008_000002", "2008_000003"]
    for k, image_id in enumerate(ids):
        _write_image(dataset_dir / "img" / f"{image_id}.jpg", 7, 5, seed=k)
        _write_sbd_mat(dataset_dir / "cls" / f"{image_id}.mat", "GTcls", _blocks(7, 5, [0, 1, 15 + k]))
        _write_sbd_mat(dataset_dir / "inst" / f"{image_id}.mat", "GTinst", _blocks(7, 5, [0, 1, 2]))
    (dataset_dir / "train.txt").write_text(ids[0] + "\n")
    (dataset_dir / "val.txt").write_text(ids[1] + "\n")
    train = SBDSegmentation(tmp_path / "benchmark_RELEASE", "train")
    assert train.ids == ids[:1] and len(train) == 1
    image, label, image_id = train[0]
    assert image.shape == (3, 7, 5) and label.dtype == torch.int64
    torch.testing.assert_close(label, torch.from_numpy(_blocks(7, 5, [0, 1, 15])).long())
    _, both, _ = SBDSegmentation(dataset_dir, "val", target="both")[0]
    assert both.shape == (2, 7, 5)
    torch.testing.assert_close(both[0], torch.from_numpy(_blocks(7, 5, [0, 1, 16])).long())
    torch.testing.assert_close(both[1], torch.from_numpy(_blocks(7, 5, [0, 1, 2])).long())
    torch.testing.assert_close(SBDSegmentation(dataset_dir, ids, target="object")[1][1], both[1])
    with pytest.raises(FileNotFoundError, match="split"):
        SBDSegmentation(dataset_dir, "test")
    with pytest.raises(ValueError, match="target"):
        SBDSegmentation(dataset_dir, target="class+object")
    scipy.io.savemat(tmp_path / "other.mat", {"labels": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="GTcls"):
        read_sbd_label(tmp_path / "other.mat")


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
        _write_image(tmp_path / "leftImg8bit" / "val" / city / f"{name}_leftImg8bit.png", 6, 8, seed=k)
        gt = tmp_path / "gtFine" / "val" / city
        _write_index_png(gt / f"{name}_gtFine_labelIds.png", label_ids, "L")
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
        _write_image(image_root / f"{image_id}.jpg", 14, 14, seed=k)
        _write_index_png(tmp_path / label_root / "val2017" / f"{image_id}.png", np.roll(fine, k), "L")
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


def test_image_folder_dataset(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    _write_image(images / "a.png", 4, 5, seed=0)
    _write_image(images / "b.jpg", 4, 5, seed=1)
    _write_image(images / "c.png", 4, 5, seed=2)  # no label: left out without a list
    label_a = _blocks(4, 5, [0, 3, 7, 255], 1)
    _write_index_png(labels / "a.png", label_a, "P")
    _write_index_png(labels / "b.png", _blocks(4, 5, [3, 7], 1), "L")
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
    _write_image(images / "a.jpg", 4, 5)
    with pytest.raises(ValueError, match="image_dir"):
        ImageFolderSegmentation(images, labels)


# ============================================================================================
# The real VOC sample through the other loaders
# ============================================================================================


def test_voc_sample_through_aug_and_folder_loaders(voc, tmp_path):
    ids = voc.ids[:3]
    deeplab = tmp_path / "train_aug.txt"
    deeplab.write_text("".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids))
    aug = VOCAugSegmentation(VOC_ROOT, deeplab, label_dir="SegmentationClass")
    folder = ImageFolderSegmentation(VOC_ROOT / "JPEGImages", VOC_ROOT / "SegmentationClass")
    assert aug.ids == ids and len(folder) == len(voc)
    for k, image_id in enumerate(ids):
        image, label, _ = voc[k]
        j = folder.ids.index(image_id)
        for other in (aug[k], folder[j]):
            torch.testing.assert_close(other[0], image)
            torch.testing.assert_close(other[1], label)
    with pytest.raises(FileNotFoundError, match="SegmentationObject"):
        VOCSegmentation(VOC_ROOT, target="object")  # the sample ships class labels only


def test_voc_sample_train_augmentation(voc):
    transform = TrainAugmentation((160, 192), scale_range=(0.5, 1.5), brightness=0.3, contrast=0.3,
                                  saturation=0.3, hue=0.05, seed=7)
    subset = VOCSegmentation(VOC_ROOT, split_ids=voc.ids[:4], transform=transform)
    images, labels, _ = next(iter(DataLoader(subset, batch_size=4, collate_fn=collate)))
    assert images.shape == (4, 3, 160, 192) and labels.shape == (4, 160, 192)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert _values(labels) <= VALID_VOC_LABELS
    assert (labels != IGNORE_INDEX).float().mean() > 0.3


# ============================================================================================
# Random scale, colour jitter, TrainAugmentation
# ============================================================================================


def _position_sample(height, width):
    """Image channels = source row, source column, 0.5; label = row * width + column (keep
    height * width <= 255 so that no label collides with the ignore index)."""
    assert height * width <= IGNORE_INDEX
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image = torch.stack([ys.double(), xs.double(), torch.full((height, width), 0.5, dtype=torch.float64)])
    return image, ys * width + xs


def _assert_label_under_image(image, label, width):
    """Each label pixel names the source pixel nearest to where its image value was sampled."""
    valid = label != IGNORE_INDEX
    assert valid.any()
    rows, cols = label[valid] // width, label[valid] % width
    assert (rows.double() - image[0][valid]).abs().max() <= 0.5 + 1e-6
    assert (cols.double() - image[1][valid]).abs().max() <= 0.5 + 1e-6


def test_random_scale_keeps_label_under_image():
    image, label = _position_sample(13, 17)
    generator = torch.Generator().manual_seed(5)
    sizes = set()
    for scale_range in [(0.3, 0.95)] * 6 + [(1.05, 3.0)] * 6:
        out_image, out_label = random_scale(image, torch.stack([label, label + 1]), scale_range, generator)
        sizes.add(tuple(out_image.shape[1:]))
        assert out_label.shape == (2, *out_image.shape[1:]) and out_label.dtype == torch.int64
        assert torch.equal(out_label[1], out_label[0] + 1)
        _assert_label_under_image(out_image, out_label[0], 17)
    assert len(sizes) > 6 and any(h > 13 for h, _ in sizes) and any(h < 13 for h, _ in sizes)
    # The check has teeth: 'nearest' resampling of the label misses it when downscaling.
    down = torch.nn.functional.interpolate(image[None], size=(5, 6), mode="bilinear", align_corners=False)[0]
    shifted = torch.nn.functional.interpolate(label[None, None].double(), size=(5, 6), mode="nearest")[0, 0].long()
    with pytest.raises(AssertionError):
        _assert_label_under_image(down, shifted, 17)


def test_random_scale_is_exact_on_blocks():
    label = torch.from_numpy(_blocks(16, 20, np.arange(1, 30), block=4)).long()
    image = label.double().expand(3, -1, -1)
    out_image, out_label = random_scale(image, label, (0.5, 0.5))
    assert out_label.shape == (8, 10)
    assert torch.equal(out_image[0], out_label.double())  # the image encoding the label survives exactly


def test_train_augmentation_alignment_padding_and_reproducibility():
    image, label = _position_sample(12, 16)
    transform = TrainAugmentation((11, 14), scale_range=(0.4, 1.6), flip_prob=0.5, seed=11)
    outputs = [transform(image, label) for _ in range(10)]
    flips = padded = 0
    for out_image, out_label in outputs:
        assert out_image.shape == (3, 11, 14) and out_label.shape == (11, 14)
        _assert_label_under_image(out_image, out_label, 16)
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


def test_color_jitter_operations():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 8, 9, generator=generator, dtype=torch.float64) * 0.5 + 0.25
    assert color_jitter(image) is image  # nothing enabled
    bright = color_jitter(image, brightness=0.5, generator=torch.Generator().manual_seed(1))
    ratio = bright / image
    assert not torch.allclose(ratio, torch.ones_like(ratio))
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio))  # one factor for every pixel
    gray = color_jitter(image, saturation=0.0001, generator=generator)  # factor ~1: nearly unchanged
    torch.testing.assert_close(gray, image, atol=1e-3, rtol=0)
    # Hue: every pixel's hue moves by the same amount; saturation and value stay.
    import colorsys

    shifted = color_jitter(image, hue=0.3, generator=torch.Generator().manual_seed(4))
    before = [colorsys.rgb_to_hsv(*image[:, 2, k].tolist()) for k in range(9)]
    after = [colorsys.rgb_to_hsv(*shifted[:, 2, k].tolist()) for k in range(9)]
    moves = [(a[0] - b[0]) % 1.0 for a, b in zip(after, before)]
    assert 0.01 < moves[0] < 0.99 and np.allclose(moves, moves[0], atol=1e-9)
    assert np.allclose([a[1:] for a in after], [b[1:] for b in before], atol=1e-9)
    again = color_jitter(image, 0.3, 0.3, 0.3, 0.1, torch.Generator().manual_seed(9))
    assert torch.equal(again, color_jitter(image, 0.3, 0.3, 0.3, 0.1, torch.Generator().manual_seed(9)))


def test_augmentation_bad_arguments():
    image, label = torch.rand(3, 4, 5), torch.zeros(4, 5, dtype=torch.int64)
    for bad in [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0), (1.0, float("nan"))]:
        with pytest.raises(ValueError, match="scale_range"):
            random_scale(image, label, bad)
    with pytest.raises(TypeError, match="scale_range"):
        random_scale(image, label, 1.5)
    with pytest.raises(ValueError, match="label"):
        random_scale(image, torch.zeros(4, 6, dtype=torch.int64))
    for name, value in [("brightness", -0.1), ("contrast", float("inf")), ("saturation", -1), ("hue", 0.6)]:
        with pytest.raises(ValueError, match=name):
            color_jitter(image, **{name: value})
        with pytest.raises(ValueError, match=name):
            TrainAugmentation((2, 2), **{name: value})
    with pytest.raises(ValueError, match="image"):
        color_jitter(torch.rand(1, 4, 5), saturation=0.2)
    with pytest.raises(ValueError, match="crop_size"):
        TrainAugmentation((0, 4))
    with pytest.raises(TypeError, match="crop_size"):
        TrainAugmentation(4)
    with pytest.raises(ValueError, match="flip_prob"):
        TrainAugmentation((2, 2), flip_prob=1.5)
    with pytest.raises(ValueError, match="scale_range"):
        TrainAugmentation((2, 2), scale_range=(1.0, 0.5))


def test_read_label_refuses_colour_images(tmp_path):
    Image.fromarray(np.zeros((3, 3, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="palette"):
        read_label(tmp_path / "rgb.png")
    Image.fromarray(np.array([[0, 40000]], dtype=np.uint16)).save(tmp_path / "deep.png")
    assert read_label(tmp_path / "deep.png").tolist() == [[0, 40000]]  # 16-bit ids survive
