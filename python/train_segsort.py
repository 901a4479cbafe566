"""SegSort recipe, end to end on a CPU in minutes: train a small embedding network with
SegSortLoss (pixel sorting -> aligned segments -> vMF-NCA with a 2-batch prototype
memory), build the training-set segment bank, label held-out images by kNN voting
(SegSortPredictor) and score them (mIoU). Writes a picture of the predictions.

    python python/train_segsort.py [--data ../shared/data/voc2012] [--steps 60]

With no --data (or a missing folder) it trains and tests on the embedded VOC image.
The network is deliberately tiny (a few dilated convolutions); the recipe, not the
network, is the point: swap in a real backbone for real numbers.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import segsort_ext
from segsort_ext.data import VOCSegmentation, random_crop, random_hflip
from segsort_ext.metrics import ConfusionMatrix

ASSETS = Path(__file__).resolve().parent / "assets"
NUM_CLASSES = 21


class EmbeddingNet(nn.Module):
    """Dilated convolutions to a (B, dim, H, W) unit embedding map at input resolution."""

    def __init__(self, dim: int = 32, width: int = 48):
        super().__init__()
        layers, channels = [], 3
        for dilation in (1, 2, 4, 8, 1):
            layers += [nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.Conv2d(width, dim, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, image):
        return F.normalize(self.body(image - 0.5), dim=1)


def load_images(data: str | None, scale: float):
    """(images, labels, ids) lists at the given scale; the embedded image without data."""
    if data and Path(data).is_dir():
        dataset = VOCSegmentation(data)
        items = [dataset[i] for i in range(len(dataset))]
    else:
        image = torch.from_numpy(np.array(Image.open(ASSETS / "voc_2007_000170.jpg").convert("RGB"))).permute(2, 0, 1)
        label = torch.from_numpy(np.array(Image.open(ASSETS / "voc_2007_000170.png")).astype(np.int64))
        items = [(image.float() / 255, label, "voc_2007_000170")]
        scale *= 2  # the embedded image is already half size
    images, labels, ids = [], [], []
    for image, label, name in items:
        size = (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[2] * scale)))
        images.append(F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0])
        labels.append(F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long())
        ids.append(name)
    return images, labels, ids


def sample_batch(images, labels, batch_size, crop, generator):
    picks = torch.randint(len(images), (batch_size,), generator=generator).tolist()
    crops = [random_hflip(*random_crop(images[i], labels[i], crop, generator=generator), generator=generator)
             for i in picks]
    return torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="a VOC 2012 folder (JPEGImages/, SegmentationClass/)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--scale", type=float, default=0.5, help="image downscaling before everything")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--test-images", type=int, default=6, help="held-out images (the last ones)")
    parser.add_argument("--out", default="out/train_segsort.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    images, labels, ids = load_images(args.data, args.scale)
    held_out = min(args.test_images, len(images) - 1) if len(images) > 1 else 0
    train_idx = list(range(len(images) - held_out)) or [0]
    test_idx = list(range(len(images) - held_out, len(images))) or [0]
    print(f"{len(images)} images ({'VOC sample' if len(images) > 1 else 'embedded image'}): "
          f"train {len(train_idx)}, test {len(test_idx)}; {args.steps} steps of {args.batch_size} x "
          f"{args.crop}x{args.crop} crops")

    net = EmbeddingNet(args.dim)
    grid = (4, 4)
    memory = segsort_ext.PrototypeMemory.last_batches(args.dim, num_batches=2,
                                                      max_per_batch=args.batch_size * grid[0] * grid[1] * 4)
    criterion = segsort_ext.SegSortLoss(concentration=10.0, grid=grid, kmeans_iters=10, memory=memory)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch_images, batch_labels = sample_batch([images[i] for i in train_idx], [labels[i] for i in train_idx],
                                                  args.batch_size, (args.crop, args.crop), generator)
        loss = criterion(net(batch_images), batch_labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 1 or step % max(1, args.steps // 6) == 0 or step == args.steps:
            print(f"step {step:4d}  loss {float(loss.detach()):.4f}  memory {len(memory)} prototypes  "
                  f"{time.perf_counter() - start:.1f} s")

    net.eval()
    index = segsort_ext.SegmentIndex(args.dim)
    with torch.no_grad():
        for i in train_idx:
            segsort_ext.add_training_segments(index, net(images[i][None]), labels[i][None], num_classes=NUM_CLASSES,
                                              image_ids=torch.tensor([i]), grid=(6, 6))
        predictor = segsort_ext.SegSortPredictor(index, NUM_CLASSES, k=min(21, len(index)), grid=(8, 8))
        confusion = ConfusionMatrix(NUM_CLASSES)
        predictions = []
        for i in test_idx:
            image = images[i][None]
            predicted = predictor.predict([(net(image), False), (net(image.flip(-1)), True)])[0]
            confusion.update(predicted.numpy(), labels[i].numpy())
            predictions.append(predicted)
    scores = confusion.compute()
    print(f"bank: {len(index)} training segments; held-out mIoU {scores['mean_iou']:.3f}, "
          f"pixel accuracy {scores['pixel_accuracy']:.3f}"
          + ("  (tested on the training image: no held-out data)" if held_out == 0 else ""))

    from demo import voc_palette  # the same colours as the demo

    palette = voc_palette()
    rows = [np.concatenate([(images[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8), palette[labels[i].numpy()],
                            palette[p.numpy()]], 1) for i, p in zip(test_idx[:4], predictions[:4])]
    width = max(r.shape[1] for r in rows)
    canvas = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(out)
    print(f"wrote {out} (rows: image | ground truth | prediction)")


if __name__ == "__main__":
    main()
