"""Evaluation of the recipes: scores (semantic mIoU and boundary F, SegSort's kNN
retrieval, PiCIE's Hungarian matching of clusters) and the pictures of predictions."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw

from segsort_ext.datasets import IGNORE_INDEX
from segsort_ext.metrics import ConfusionMatrix, hungarian_match, semantic_boundary_f
from segsort_ext.retrieval import SegmentIndex, SegSortPredictor, add_training_segments
from segsort_ext.utils import viz

from common.data import SegmentationData


@torch.no_grad()
def embed(net: nn.Module, image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(1, D, H, W) unit embeddings of one (3, H, W) image, on the CPU."""
    return F.normalize(net(image[None].to(device)), dim=1).cpu()


def semantic_scores(preds: List[torch.Tensor], targets: List[torch.Tensor], num_classes: int,
                    class_names: Sequence[str], *, boundary: bool = True) -> dict:
    """mIoU, pixel accuracy, per-class IoU and (optionally) semantic boundary F."""
    confusion = ConfusionMatrix(num_classes)
    for p, t in zip(preds, targets):
        confusion.update(p.numpy(), t.numpy())
    scores = confusion.compute()
    out = {"mean_iou": scores["mean_iou"], "pixel_accuracy": scores["pixel_accuracy"],
           "mean_accuracy": scores["mean_accuracy"],
           "class_iou": {name: float(v) for name, v in zip(class_names, scores["iou"])}}
    if boundary:
        b = semantic_boundary_f([p.numpy() for p in preds], [t.numpy() for t in targets], num_classes)
        out.update(boundary_f=b["f"], boundary_precision=b["precision"], boundary_recall=b["recall"])
    return out


@torch.no_grad()
def knn_scores(net: nn.Module, data: SegmentationData, device: torch.device, *, dim: int, knn: int,
               bank_grid=None, test_grid=None, bank_images: int = 0):
    """SegSort's inference and scores: the segments of the first ``bank_images`` (0: all)
    training images, prototypes over their majority label, in a SegmentIndex; every
    held-out image labelled by kNN votes of its segments (flip-averaged).

    Returns (scores or None without labelled pixels, bank size, predictions)."""
    net.eval()
    embedded = data.kind == "mosaics"
    bank_grid = tuple(bank_grid or ((4, 4) if embedded else (6, 6)))
    test_grid = tuple(test_grid or ((4, 4) if embedded else (8, 8)))
    index = SegmentIndex(dim)
    for i in range(min(bank_images or len(data.train), len(data.train))):
        image, label = data.train[i]
        add_training_segments(index, embed(net, image, device), label[None], num_classes=data.num_classes,
                              image_ids=torch.tensor([i]), grid=bank_grid)
    if len(index) == 0:
        return None, 0, []
    predictor = SegSortPredictor(index, data.num_classes, k=min(knn, len(index)), grid=test_grid)
    predictions, targets = [], []
    for i in range(len(data.test)):
        image, label = data.test[i]
        views = [(embed(net, image, device), False), (embed(net, image.flip(-1), device), True)]
        predictions.append(predictor.predict(views)[0])
        targets.append(label)
    if all(bool((t == IGNORE_INDEX).all()) for t in targets):
        return None, len(index), predictions
    return semantic_scores(predictions, targets, data.num_classes, data.class_names), len(index), predictions


def hungarian_scores(cluster_maps: List[torch.Tensor], targets: List[torch.Tensor], num_clusters: int,
                     num_classes: int, class_names: Sequence[str]):
    """PiCIE's unsupervised evaluation: clusters matched one-to-one to classes over all
    pixels of the data set (Hungarian), then accuracy and mIoU of the relabelled maps.
    Returns (scores or None without labelled pixels, relabelled maps)."""
    if all(bool((t == IGNORE_INDEX).all()) for t in targets):
        return None, cluster_maps
    pred = torch.cat([p.reshape(-1) for p in cluster_maps]).numpy()
    target = torch.cat([t.reshape(-1) for t in targets]).numpy()
    match = hungarian_match(pred, target, num_clusters, num_classes)
    mapping = torch.from_numpy(match["mapping"])
    # Unmatched clusters (more clusters than classes) show as void in the pictures.
    relabelled = [torch.where(mapping[p] >= 0, mapping[p], IGNORE_INDEX) for p in cluster_maps]
    scores = {"pixel_accuracy": match["pixel_accuracy"], "mean_iou": match["mean_iou"],
              "class_iou": {name: float(v) for name, v in zip(class_names, match["iou"])},
              "mapping": match["mapping"]}
    return scores, relabelled


def class_colours(labels: torch.Tensor, num_classes: int, kind: str) -> np.ndarray:
    """(H, W, 3) uint8 picture of a label map: the VOC palette for VOC/SBD data, else one colour per class."""
    if kind.startswith("voc") or kind.startswith("sbd"):
        return viz.voc_palette()[labels.clamp(0, 255).numpy()]
    return viz.colorize(labels, num_classes)


def save_panels(path: Path, rows: List[List[np.ndarray]], titles: Sequence[str] = ()) -> None:
    """Rows of (H, W, 3) uint8 panels side by side, rows stacked, white gaps; ``titles``
    name the columns in a header line above the first row."""
    if not rows:
        return
    # Small scenes (e.g. the 64 px mosaics) are enlarged, pixels kept sharp, so the panels
    # are big enough to see and to carry their titles.
    factor = max(1, -(-128 // min(p.shape[0] for row in rows for p in row)))
    rows = [[p.repeat(factor, 0).repeat(factor, 1) for p in row] for row in rows]
    lines = [np.concatenate([np.pad(p, ((0, 0), (0, 4), (0, 0)), constant_values=255) for p in row], 1)
             for row in rows]
    width = max(line.shape[1] for line in lines)
    canvas = np.concatenate([np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0)), constant_values=255)
                             for line in lines])
    picture = Image.fromarray(canvas)
    if titles:
        header = Image.new("RGB", (canvas.shape[1], 22), "white")
        draw = ImageDraw.Draw(header)
        left = 0
        for title, panel in zip(titles, rows[0]):
            draw.text((left + 4, 5), title, fill="black")
            left += panel.shape[1] + 4
        picture = Image.fromarray(np.concatenate([np.asarray(header), canvas]))
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)

