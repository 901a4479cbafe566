"""python/voc/train_eval.py (``make voc``): a tiny end-to-end run of the three methods on
a VOC-layout root made of a few images of ../shared/data/voc2012 (skipped without it),
--resume, the val.txt split, and bad options refused in one line."""
import json
from pathlib import Path

import pytest

from tests.recipes.programs import load

SHARED_VOC = Path(__file__).resolve().parents[3] / "shared" / "data" / "voc2012"
needs_voc = pytest.mark.skipif(not (SHARED_VOC / "JPEGImages").is_dir(), reason="../shared/data/voc2012 absent")
TINY = ["--side", "64", "--crop", "32", "--steps", "2", "--batch-size", "2", "--bank-grid", "2", "--test-grid", "2",
        "--knn", "3", "--grid", "2"]


def voc_root(tmp_path: Path, train: int, val: int = 0) -> Path:
    """A VOC-layout root of the first train + val sample images (symbolic links)."""
    ids = sorted(p.stem for p in (SHARED_VOC / "SegmentationClass").glob("*.png"))[:train + val]
    root = tmp_path / "VOC"
    for folder, suffix in (("JPEGImages", ".jpg"), ("SegmentationClass", ".png")):
        (root / folder).mkdir(parents=True)
        for image_id in ids:
            (root / folder / f"{image_id}{suffix}").symlink_to(SHARED_VOC / folder / f"{image_id}{suffix}")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids[:train]) + "\n")
    if val:
        (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids[train:]) + "\n")
    return root


@needs_voc
def test_three_methods_end_to_end_and_resume(tmp_path, capsys):
    program = load("voc/train_eval.py")
    root, out = voc_root(tmp_path, 10), tmp_path / "out"
    program.main(["--data", str(root), "--out", str(out), *TINY])
    printed = capsys.readouterr().out
    assert "8 training images, 2 test images (every 5th id of train (held out))" in printed
    rows = json.loads((out / "scores.json").read_text())["rows"]
    assert [(r["method"], r["seed"]) for r in rows] == [("softmax", 0), ("segsort", 0), ("unsupervised", 0)]
    for row in rows:
        assert 0 <= row["mean_iou"] <= 1 and 0 <= row["pixel_accuracy"] <= 1 and 0 <= row["boundary_f"] <= 1
        assert row["train_seconds"] > 0
    for name in ("report.md", "predictions.png", "retrieval.png"):
        assert (out / name).stat().st_size > 0
    assert "| SegSort (kNN) |" in (out / "report.md").read_text()
    assert len(list((out / "cache").glob("*.pt"))) == 2
    # --resume: every run is at its last step, so nothing trains again and the scores repeat.
    program.main(["--data", str(root), "--out", str(out), "--resume", *TINY])
    assert "nothing to train" in capsys.readouterr().out
    again = json.loads((out / "scores.json").read_text())["rows"]
    assert [r["mean_iou"] for r in again] == [r["mean_iou"] for r in rows]
    assert [r["train_seconds"] for r in again] == [r["train_seconds"] for r in rows]


@needs_voc
def test_val_split_is_the_test_set_when_present(tmp_path, capsys):
    program = load("voc/train_eval.py")
    root = voc_root(tmp_path, 4, val=2)
    program.main(["--data", str(root), "--out", str(tmp_path / "out"), "--methods", "softmax", *TINY])
    assert "4 training images, 2 test images (val)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--trunk-lr", "inf"], "--trunk-lr must be a finite number > 0"),
    (["--concentration", "-1"], "--concentration must be a finite number > 0"),
    (["--pseudo-segments", "0"], "--pseudo-segments must be >= 1"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--crop", "30"], "--crop must be a multiple of 8"),
    (["--methods", ","], "--methods"),
    (["--methods", "softmax,crf"], "--methods"),
    (["--seeds", ""], "--seeds"),
    (["--seeds", "0,0"], "--seeds must be distinct"),
    (["--hold-out-every", "1"], "--hold-out-every must be >= 2"),
    (["--device", "cuda:7"], "--device"),
])
def test_bad_options_are_one_line(argv, message, tmp_path, capsys):
    program = load("voc/train_eval.py")
    with pytest.raises(SystemExit) as exit_info:
        program.main(["--out", str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["missing", "empty", "no_split"])
def test_bad_data_roots_are_one_line(layout, tmp_path, capsys):
    program = load("voc/train_eval.py")
    root = tmp_path / "root"
    if layout != "missing":
        root.mkdir()
    if layout == "no_split":
        (root / "JPEGImages").mkdir()
        (root / "SegmentationClass").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        program.main(["--data", str(root), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert f"--data {root}: no " in capsys.readouterr().err


@needs_voc
@pytest.mark.parametrize("damage", ["image", "label", "missing_label"])
def test_damaged_files_are_one_line(damage, tmp_path, capsys):
    program = load("voc/train_eval.py")
    root = voc_root(tmp_path, 10)
    image_id = (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[1]
    path = root / ("JPEGImages" if damage == "image" else "SegmentationClass") / \
        f"{image_id}{'.jpg' if damage == 'image' else '.png'}"
    path.unlink()
    if damage != "missing_label":
        path.write_bytes(b"not an image at all")
    with pytest.raises(SystemExit) as exit_info:
        program.main(["--data", str(root), "--out", str(tmp_path / "out"), *TINY])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar, if any
    assert last.startswith(f"error: --data {root}: ") and image_id in last and "Traceback" not in last
