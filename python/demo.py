"""End-to-end example on the embedded VOC image: pixel embeddings -> pixel sorting
(spherical_kmeans) -> aligned segments (segment_partition with labels, then
8-connected components) -> prototypes (segment_mean) -> SegSort's vMF-NCA loss ->
majority-label prototypes -> picture and numbers.

    python python/demo.py [--image IMG --label PNG] [--out out/demo.png]

The embeddings here are hand-made (colour, smoothed colour and position, randomly
projected to D dimensions) as a stand-in for a trained network's output.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import segsort_ext
from segsort_ext import reference
from segsort_ext.metrics import mean_iou

ASSETS = Path(__file__).resolve().parent / "assets"


def voc_palette() -> np.ndarray:
    palette = np.zeros((256, 3), dtype=np.uint8)
    for k in range(256):
        c, r, g, b = k, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[k] = (r, g, b)
    palette[255] = (224, 224, 192)
    return palette


def pixel_embeddings(image: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    """(1, dim, H, W) unit embeddings from colour at two scales; a stand-in for a network."""
    smooth = F.avg_pool2d(image[None], 7, stride=1, padding=3, count_include_pad=False)
    features = torch.cat([image[None] - 0.5, smooth - 0.5], 1)
    projection = torch.randn(dim, features.shape[1], generator=torch.Generator().manual_seed(seed))
    return F.normalize(torch.einsum("dc,bchw->bdhw", projection, features), dim=1)


def colorize(ids: np.ndarray, seed: int = 1) -> np.ndarray:
    colors = np.random.default_rng(seed).integers(40, 255, size=(int(ids.max()) + 2, 3), dtype=np.uint8)
    out = colors[ids + 1]
    out[ids < 0] = 0
    return out


def boundaries(ids: np.ndarray) -> np.ndarray:
    edge = np.zeros(ids.shape, dtype=bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[1:, :] |= ids[1:, :] != ids[:-1, :]
    return edge


def timed(fn, repeats=5):
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=str(ASSETS / "voc_2007_000170.jpg"))
    parser.add_argument("--label", default=str(ASSETS / "voc_2007_000170.png"))
    parser.add_argument("--out", default="out/demo.png")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--grid", type=int, default=8)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--coord-weight", type=float, default=1.0)
    args = parser.parse_args(argv)

    rgb = np.array(Image.open(args.image).convert("RGB"))
    label_np = np.asarray(Image.open(args.label))  # palette indices are class ids; 255 = void
    image = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    labels = torch.from_numpy(label_np.astype(np.int64))[None]
    H, W = label_np.shape
    print(f"segsort_ext {segsort_ext.__version__}  extension={segsort_ext.HAS_EXTENSION}  "
          f"cuda kernels={segsort_ext.has_cuda_kernels()}  image {W}x{H}")

    x = pixel_embeddings(image, args.dim)
    clusters = segsort_ext.spherical_kmeans(x, (args.grid, args.grid), iters=args.iters,
                                            coord_weight=args.coord_weight).labels
    aligned = segsort_ext.segment_partition(clusters, labels)
    components = segsort_ext.segment_partition(clusters, labels, connectivity=8)
    print(f"pixel sorting: K={args.grid ** 2} clusters -> {aligned.num_segments} aligned segments "
          f"-> {components.num_segments} connected segments")

    # One SegSort training loss on these embeddings (Algorithm 1 without the network).
    embeddings = x.requires_grad_()
    pixels = embeddings.permute(0, 2, 3, 1).reshape(-1, args.dim)
    prototypes = segsort_ext.segment_mean(embeddings, aligned.ids, aligned.num_segments)
    loss = segsort_ext.vmf_nca_loss(pixels, aligned.ids.reshape(-1), prototypes, aligned.label, concentration=10.0)
    loss.backward()
    print(f"vMF-NCA loss {float(loss.detach()):.4f}, gradient norm {float(embeddings.grad.norm()):.4f}")
    x = x.detach()

    # Oracle labelling: every pixel of a label-agnostic cluster takes the cluster's majority
    # label. It bounds what a kNN vote over such segments can reach with these embeddings.
    plain = segsort_ext.segment_partition(clusters)
    prototypes, majority = segsort_ext.segment_majority_mean(x, plain.ids, labels, plain.num_segments, 21)
    predicted = torch.where(plain.ids >= 0, majority[plain.ids.clamp_min(0)], 255)
    scores = mean_iou(predicted[0].numpy(), label_np, num_classes=21)
    print(f"majority-label prototypes {tuple(prototypes.shape)}, unit norm: "
          f"{bool(torch.allclose(prototypes[majority >= 0].norm(dim=1), torch.ones(1)))}")
    print(f"oracle segment labelling: mIoU {scores['mean_iou']:.3f}, pixel accuracy {scores['pixel_accuracy']:.3f}")

    t_ops = timed(lambda: segsort_ext.segment_partition(clusters, labels))
    t_ref = timed(lambda: reference.segment_partition(clusters, labels))
    t_mean = timed(lambda: segsort_ext.segment_mean(x, aligned.ids, aligned.num_segments))
    t_mean_ref = timed(lambda: reference.segment_mean(x, aligned.ids, aligned.num_segments))
    t_km = timed(lambda: segsort_ext.spherical_kmeans(x, (args.grid, args.grid), iters=args.iters))
    t_km_ref = timed(lambda: reference.spherical_kmeans(x, (args.grid, args.grid), iters=args.iters))
    print(f"CPU: spherical_kmeans {t_km:.2f} ms (per-image loop {t_km_ref:.2f} ms), "
          f"segment_partition {t_ops:.2f} ms (torch.unique way {t_ref:.2f} ms), "
          f"segment_mean {t_mean:.2f} ms (index_add way {t_mean_ref:.2f} ms)")

    palette = voc_palette()
    panels = [
        ("image", rgb),
        ("ground truth", palette[label_np]),
        (f"pixel sorting (K={args.grid ** 2})", colorize(clusters[0].numpy())),
        (f"aligned segments ({aligned.num_segments})", colorize(aligned.ids[0].numpy(), seed=2)),
        (f"8-connected ({components.num_segments})", colorize(components.ids[0].numpy(), seed=3)),
        (f"majority label (mIoU {scores['mean_iou']:.2f})", palette[predicted[0].numpy()]),
    ]
    edges = boundaries(components.ids[0].numpy())
    panels[0] = ("image + segment boundaries", np.where(edges[..., None], np.array([255, 255, 0], np.uint8), rgb))
    pad, title = 6, 16
    canvas = Image.new("RGB", (3 * (W + pad) + pad, 2 * (H + pad + title) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (name, panel) in enumerate(panels):
        left, top = pad + (k % 3) * (W + pad), pad + (k // 3) * (H + pad + title)
        draw.text((left, top), name, fill="black")
        canvas.paste(Image.fromarray(np.ascontiguousarray(panel)), (left, top + title))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
