"""The VOC program's outputs for people: predictions.png, retrieval.png and report.md."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import segsort_ext
from segsort_ext.datasets import VOC_CLASSES, VOCSegmentation
from segsort_ext.utils import viz

from common.evaluate import save_panels
from voc_data import resize_image, valid_labels

TITLES = {"softmax": "softmax", "segsort": "SegSort (kNN)", "unsupervised": "unsupervised SegSort"}


def _palette(labels: torch.Tensor) -> np.ndarray:
    return viz.voc_palette()[labels.clamp(0, 255).numpy()]


def draw_predictions(path: Path, root: Path, ids: List[str], test_cache: dict, shown: Dict[str, list]) -> None:
    """Rows: image | truth | each method's prediction (first seed), at the label size."""
    images = VOCSegmentation(root, list(ids))
    rows = []
    for k in range(len(ids)):
        image, labels, _ = images[k]
        row = [viz.to_uint8(image), _palette(labels)]
        row += [_palette(shown[m][k]) for m in TITLES if m in shown and k < len(shown[m])]
        rows.append([panel[::2, ::2] for panel in row])  # half size: five panels fit a screen
    save_panels(path, rows, ("image", "truth", *[TITLES[m] for m in TITLES if m in shown]))


def _segments_of(embedding: torch.Tensor, grid) -> segsort_ext.Segments:
    clusters = segsort_ext.spherical_kmeans(embedding, grid).labels
    return segsort_ext.segment_partition(clusters)


def draw_retrieval(path: Path, root: Path, split, train_cache: dict, test_cache: dict, body, index, args,
                   queries: int = 4, k: int = 6) -> None:
    """Held-out segments (the pixel sorting of the predictor, on the pool3 grid) beside
    the training segments of the bank that are their nearest neighbours."""
    generator = torch.Generator().manual_seed(args.seeds[0])
    test_images, train_images = VOCSegmentation(root, split.test), VOCSegmentation(root, split.train)
    fig, axes = plt.subplots(queries, k + 1, figsize=(1.9 * (k + 1), 2.0 * queries + 0.6))
    picks, seen = [], set()
    # One query per true class (not background) until `queries` are found, from random
    # held-out images, the largest segment of that class: not chosen for being right.
    for i in torch.randperm(len(split.test), generator=generator).tolist():
        embedding = F.normalize(body(test_cache["pool3"][i][:1].float()), dim=1).detach()
        segments = _segments_of(embedding, args.test_grid)
        labels8 = valid_labels(_labels_on_grid(test_cache, i, embedding.shape[-2:]))
        for s in segments.size.argsort(descending=True).tolist():
            mask = segments.ids[0] == s
            votes = labels8[mask]
            votes = votes[votes < 21]
            if votes.numel() == 0:
                continue
            truth = int(votes.mode().values)
            if truth != 0 and truth not in seen:
                seen.add(truth)
                picks.append((i, embedding, segments, s, truth))
                break
        if len(picks) == queries:
            break
    for q, (i, embedding, segments, s, truth) in enumerate(picks):
        prototype = segsort_ext.segment_mean(embedding, segments.ids, segments.num_segments)[s:s + 1]
        neighbours = index.explain(prototype, k)
        _, votes = index.vote(prototype, min(args.knn, len(index)), num_classes=21)
        image = _working_image(test_images, i, test_cache["size"][i])
        axes[q, 0].imshow(viz.highlight(image, _upsample(segments.ids[0] == s, image.shape[:2])))
        axes[q, 0].set_title(f"query (truth: {VOC_CLASSES[truth]})\n{args.knn}-NN vote: "
                             f"{VOC_CLASSES[int(votes[0].argmax())]}", fontsize=8)
        for j in range(k):
            source = int(neighbours.image_ids[0, j])
            source_embedding = F.normalize(body(train_cache["pool3"][source][:1].float()), dim=1).detach()
            source_segments = _segments_of(source_embedding, args.bank_grid)
            picture = _working_image(train_images, source, train_cache["size"][source])
            mask = _upsample(source_segments.ids[0] == int(neighbours.segment_ids[0, j]), picture.shape[:2])
            label = int(neighbours.labels[0, j])
            axes[q, j + 1].imshow(viz.highlight(picture, mask))
            axes[q, j + 1].set_title(f"#{j + 1} {VOC_CLASSES[label]}\ncos {float(neighbours.scores[0, j]):.2f}",
                                     fontsize=8, color="green" if label == truth else "red")
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Why SegSort said so: held-out segments (left) and their {k} nearest training segments "
                 f"(of the {args.knn} that vote); green: the query's true class", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _labels_on_grid(test_cache: dict, i: int, size) -> torch.Tensor:
    """The held-out image's labels on the embedding's grid (nearest)."""
    labels = test_cache["labels"][i]
    return F.interpolate(labels[None, None].float(), size=tuple(size), mode="nearest")[0, 0].to(torch.uint8)


def _working_image(dataset, i: int, size) -> np.ndarray:
    image, _, _ = dataset[i]
    return viz.to_uint8(resize_image(image, tuple(size.tolist())))


def _upsample(mask: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(mask[None, None].float(), size=tuple(size), mode="nearest")[0, 0].bool()


def _mean_spread(values: List[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def write_report(path: Path, rows: List[dict], split, args, cache_seconds: float, total_seconds: float) -> None:
    methods = [m for m in TITLES if any(r["method"] == m for r in rows)]
    seeds = sorted({r["seed"] for r in rows})
    lines = ["# SegSort on PASCAL VOC 2012", "",
             f"{len(split.train)} training images, {len(split.test)} test images ({split.test_split}); "
             f"{args.side} px on the longer side, {args.steps} steps of {args.batch_size} crops of {args.crop} px "
             f"for every method; seeds {', '.join(map(str, seeds))} (mean ± standard deviation over seeds).", "",
             "| method | mIoU | pixel accuracy | boundary F | train seconds |", "|---|---|---|---|---|"]
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        lines.append(f"| {TITLES[m]} | " + " | ".join(_mean_spread([r[key] for r in mine]) for key in
                                                       ("mean_iou", "pixel_accuracy", "boundary_f"))
                     + f" | {statistics.mean(r['train_seconds'] for r in mine):.0f} |")
    by = {m: statistics.mean(r["mean_iou"] for r in rows if r["method"] == m) for m in methods}
    if "segsort" in by and "unsupervised" in by and by["segsort"] > 0:
        lines += ["", f"Unsupervised / supervised SegSort mIoU: {by['unsupervised'] / by['segsort']:.0%}."]
    lines += ["", f"Trunk features: {cache_seconds:.0f} s (cached in {args.out}/cache); whole run "
              f"{total_seconds / 60:.1f} min.", "", "![predictions](predictions.png)", "",
              "![retrieval](retrieval.png)", ""]
    path.write_text("\n".join(lines))
