"""VOC, VOC-aug and SBD loaders: the real VOC 2012 sample (skipped when shared/data is
absent) and small synthetic trees of each layout written to tmp_path."""
import numpy as np
import pytest
import scipy.io
import torch
from torch.utils.data import DataLoader

from segsort_ext.datasets import (
    IGNORE_INDEX,
    ImageFolderSegmentation,
    SBDSegmentation,
    VOCAugSegmentation,
    VOCSegmentation,
    collate,
    read_sbd_label,
)
from segsort_ext.transforms import TrainAugmentation

from .datasets_testing import VOC_ROOT, blocks, label_values, write_image, write_index_png

VALID_VOC_LABELS = set(range(21)) | {IGNORE_INDEX}


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
        values = label_values(label)
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


@pytest.fixture
def voc_tree(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    ids = ["2007_000001", "2007_000002"]
    for k, image_id in enumerate(ids):
        write_image(root / "JPEGImages" / f"{image_id}.jpg", 6, 8, seed=k)
        cls = blocks(6, 8, [0, 15, 255, 7 + k])
        obj = blocks(6, 8, [0, 1, 255, 2])  # object k+1 <-> class; void shared with the class map
        write_index_png(root / "SegmentationClass" / f"{image_id}.png", cls)
        write_index_png(root / "SegmentationObject" / f"{image_id}.png", obj)
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
        torch.testing.assert_close(label[0], torch.from_numpy(blocks(6, 8, [0, 15, 255, 7 + k])).long())
        torch.testing.assert_close(label[1], torch.from_numpy(blocks(6, 8, [0, 1, 255, 2])).long())
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
        write_image(root / "JPEGImages" / f"{image_id}.jpg", 5, 4, seed=k)
        write_index_png(root / "SegmentationClassAug" / f"{image_id}.png", blocks(5, 4, [k, 20, 255], 1), "L")
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
    torch.testing.assert_close(label, torch.from_numpy(blocks(5, 4, [2, 20, 255], 1)).long())
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
        write_image(dataset_dir / "img" / f"{image_id}.jpg", 7, 5, seed=k)
        _write_sbd_mat(dataset_dir / "cls" / f"{image_id}.mat", "GTcls", blocks(7, 5, [0, 1, 15 + k]))
        _write_sbd_mat(dataset_dir / "inst" / f"{image_id}.mat", "GTinst", blocks(7, 5, [0, 1, 2]))
    (dataset_dir / "train.txt").write_text(ids[0] + "\n")
    (dataset_dir / "val.txt").write_text(ids[1] + "\n")
    train = SBDSegmentation(tmp_path / "benchmark_RELEASE", "train")
    assert train.ids == ids[:1] and len(train) == 1
    image, label, image_id = train[0]
    assert image.shape == (3, 7, 5) and label.dtype == torch.int64
    torch.testing.assert_close(label, torch.from_numpy(blocks(7, 5, [0, 1, 15])).long())
    _, both, _ = SBDSegmentation(dataset_dir, "val", target="both")[0]
    assert both.shape == (2, 7, 5)
    torch.testing.assert_close(both[0], torch.from_numpy(blocks(7, 5, [0, 1, 16])).long())
    torch.testing.assert_close(both[1], torch.from_numpy(blocks(7, 5, [0, 1, 2])).long())
    torch.testing.assert_close(SBDSegmentation(dataset_dir, ids, target="object")[1][1], both[1])
    with pytest.raises(FileNotFoundError, match="split"):
        SBDSegmentation(dataset_dir, "test")
    with pytest.raises(ValueError, match="target"):
        SBDSegmentation(dataset_dir, target="class+object")
    scipy.io.savemat(tmp_path / "other.mat", {"labels": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="GTcls"):
        read_sbd_label(tmp_path / "other.mat")


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
    assert label_values(labels) <= VALID_VOC_LABELS
    assert (labels != IGNORE_INDEX).float().mean() > 0.3
