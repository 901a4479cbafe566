"""The programs in python/ run end to end (tiny settings) and write their pictures."""
import sys
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1] / "python"
sys.path.insert(0, str(PYTHON_DIR))


def test_demo(tmp_path, capsys):
    import demo

    demo.main(["--out", str(tmp_path / "demo.png"), "--iters", "3"])
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert "aligned segments" in capsys.readouterr().out


@pytest.mark.parametrize("use_data", [False, True])
def test_train_segsort(tmp_path, capsys, use_data):
    import train_segsort

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "voc2012"
    if use_data and not data.is_dir():
        pytest.skip("../shared/data absent")
    train_segsort.main(["--steps", "2", "--batch-size", "2", "--crop", "48", "--test-images", "2",
                        "--out", str(tmp_path / "train.png")] + (["--data", str(data), "--scale", "0.25"] if use_data else []))
    out = capsys.readouterr().out
    assert "held-out mIoU" in out and (tmp_path / "train.png").exists()
