"""PiCIE recipe (Cho et al., CVPR 2021): unsupervised semantic segmentation by clustering
with invariance (photometric) and equivariance (geometric).

Each epoch:

1. features of the whole (small) training set, for two views of one crop per image
   (view 1 = G(P1(x)) through the network; view 2 = G(net(P2(x))), segsort_ext.transforms),
   a random subset of pixels per image;
2. dataset-level SphericalKMeans of each view's features, with K clusters (K = number
   of classes) and an overclustering K2: four centroid sets, their cluster sizes giving
   balanced class weights (cluster_balance_weights);
3. training steps over the training set in a random order: pseudo-labels of each
   view's pixels = nearest centroid of that view; picie_loss (within- and cross-view
   cross-entropy over cosine logits) for both clusterings.

Evaluation: held-out pixels get the nearest view-1 K-centroid; clusters are matched to
classes by the Hungarian algorithm (segsort_ext.metrics.hungarian_match) over the whole
held-out set -> pixel accuracy and mIoU.

    python python/picie/train.py --epochs 10 --out runs/picie
    python python/picie/train.py --data /data/cocostuff --dataset cocostuff --overclusters 100

Data as in python/common/data.py; run folder, checkpoints and --resume as in
python/common/run.py, the k-means state of the current epoch being part of the checkpoint.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: the shared code in common/
import segsort_ext
from segsort_ext.nn import cluster_balance_weights
from segsort_ext.transforms import apply_geometry, picie_views
from segsort_ext.utils import viz

from common.args import ArgumentParser, add_common_arguments, check_arguments
from common.backbones import build_program_backbone
from common.data import SEMANTIC_DATASETS, open_data, sample_crops, sample_pixels
from common.evaluate import class_colours, hungarian_scores, save_panels
from common.run import GeneratorState, Run, poly_schedule, seed_everything, start_run

FIXED = ("resolved_dataset", "data_root", "scale", "crop", "train_images", "test_images", "num_classes",
         "batch_size", "lr", "backbone", "seed", "dim", "clusters", "overclusters", "cluster_pixels",
         "cluster_images", "kmeans_iters", "balance", "steps_per_epoch", "view_scale")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, datasets=SEMANTIC_DATASETS, default_out="outputs/train_picie",
                         default_steps=0, default_batch=8, default_test_images=6, default_lr=1e-3,
                         steps_help="training steps (default: 4 epochs of --steps-per-epoch)")
    group = parser.add_argument_group("PiCIE")
    group.add_argument("--dim", type=int, default=32, help="feature dimension")
    group.add_argument("--clusters", type=int, default=0, help="K (0: the number of classes)")
    group.add_argument("--overclusters", type=int, default=0, help="K2 of the overclustering (0: min(100, 4 K))")
    group.add_argument("--cluster-pixels", type=int, default=256, help="pixels per image and view for k-means")
    group.add_argument("--cluster-images", type=int, default=0, help="images clustered per epoch (0: all)")
    group.add_argument("--kmeans-iters", type=int, default=20)
    group.add_argument("--no-balance", dest="balance", action="store_false",
                       help="unweighted cross-entropy (default: inverse cluster-size weights)")
    group.add_argument("--steps-per-epoch", type=int, default=0,
                       help="training steps between two clusterings (0: one pass over the training images)")
    group.add_argument("--view-scale", type=float, nargs=2, default=(0.5, 1.0), metavar=("MIN", "MAX"),
                       help="area fraction of the geometric crop G")
    parser.set_defaults(default_epochs=4)
    return parser


def kmeans_state(kmeans: segsort_ext.SphericalKMeans) -> dict:
    return {"num_clusters": kmeans.num_clusters, "seed": kmeans.seed, "fitted": kmeans.state_dict()}


def kmeans_from_state(state: dict, device) -> segsort_ext.SphericalKMeans:
    kmeans = segsort_ext.SphericalKMeans(state["num_clusters"], seed=state["seed"], device=device)
    return kmeans.load_state_dict(state["fitted"])


class EpochState:
    """What a PiCIE epoch carries between steps: its number, the order of the training
    images and the four fitted SphericalKMeans (checkpointed, so a resumed run continues
    the epoch with the same pseudo-labels)."""

    def __init__(self, device):
        self.device = device
        self.epoch = -1
        self.order = torch.zeros(0, dtype=torch.int64)
        self.kmeans = {}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "order": self.order,
                "kmeans": {name: kmeans_state(k) for name, k in self.kmeans.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.order = int(state["epoch"]), state["order"].cpu()
        self.kmeans = {name: kmeans_from_state(s, self.device) for name, s in state["kmeans"].items()}


def two_views(net, images, valid, generator, view_scale, device):
    """PiCIE's views of a batch of crops: features z1 = net(G(P1(x))) and
    z2 = G(net(P2(x))) and the valid pixels of both (G of the crop's valid mask)."""
    view_1, view_2, geometry = picie_views(images, generator=generator,
                                           geometry_options={"scale": tuple(view_scale)})
    z1 = net(view_1.to(device))
    z2 = apply_geometry(net(view_2.to(device)), geometry)
    return z1, z2, apply_geometry(valid, geometry).to(device)


def assign(kmeans: segsort_ext.SphericalKMeans, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Nearest centroid of every pixel (B, h, w), -1 where not valid."""
    B, D, h, w = features.shape
    labels = kmeans.predict(features.detach().permute(0, 2, 3, 1).reshape(-1, D)).view(B, h, w)
    return torch.where(valid, labels, -1)


@torch.no_grad()
def recluster(net, data, args, epoch_state, epoch, generator, crop, K, K2, device):
    """Step 1 and 2 of an epoch: features of every training image's views, four k-means.

    The network stays in training mode: a network trained from scratch has no useful
    BatchNorm running statistics yet (PiCIE starts from a pretrained backbone), and in
    eval mode its first features would all point the same way."""
    net.train()
    count = min(args.cluster_images or len(data.train), len(data.train))
    rows = {1: [], 2: []}
    for start in range(0, count, args.batch_size):
        picks = list(range(start, min(start + args.batch_size, count)))
        images, _, valid = sample_crops(data.train, picks, crop, generator)
        z1, z2, valid_views = two_views(net, images, valid, generator, args.view_scale, device)
        rows[1].append(sample_pixels(z1, valid_views, args.cluster_pixels, generator))
        rows[2].append(sample_pixels(z2, valid_views, args.cluster_pixels, generator))
    fitted = {}
    for view in (1, 2):
        points = torch.cat(rows[view]).to(device)
        for name, k in (("K", K), ("K2", K2)):
            if points.shape[0] < k:
                raise ValueError(f"{points.shape[0]} sampled pixels for {k} clusters: raise --cluster-pixels")
            # The seed follows the epoch: each epoch draws new initial centroids, reproducibly.
            fitted[f"view{view}_{name}"] = segsort_ext.SphericalKMeans(
                k, max_iter=args.kmeans_iters, seed=args.seed * 1000 + epoch, device=device).fit(points)
    epoch_state.epoch = epoch
    epoch_state.order = torch.randperm(len(data.train), generator=generator)
    epoch_state.kmeans = fitted
    inertia = sum(k.inertia_ / max(1, int(k.counts.sum())) for k in fitted.values()) / len(fitted)
    print(f"epoch {epoch}: k-means of {int(fitted['view1_K'].counts.sum())} pixels per view, K={K}, K2={K2}, "
          f"mean 1 - cos {inertia:.4f}")


@torch.no_grad()
def evaluate(net, data, kmeans, K, device):
    net.eval()
    maps, targets = [], []
    for i in range(len(data.test)):
        image, label = data.test[i]
        features = net(image[None].to(device))
        maps.append(assign(kmeans, features, torch.ones_like(features[:, 0], dtype=torch.bool))[0].cpu())
        targets.append(label)
    return hungarian_scores(maps, targets, K, data.num_classes, data.class_names)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args, positive=("dim", "cluster_pixels", "kmeans_iters"),
                    nonnegative=("clusters", "overclusters", "cluster_images", "steps_per_epoch"))
    if not 0 < args.view_scale[0] <= args.view_scale[1] <= 1:
        parser.error(f"--view-scale must satisfy 0 < MIN <= MAX <= 1, got {args.view_scale}")
    seed_everything(args.seed)
    data = open_data(args, "semantic")
    crop = args.crop or data.default_crop
    K = args.clusters or data.num_classes
    K2 = args.overclusters or min(100, 4 * K)
    if K < 2 or K2 < 2:
        parser.error(f"--clusters and --overclusters must be >= 2, got K={K}, K2={K2}")
    per_epoch = args.steps_per_epoch or math.ceil(len(data.train) / args.batch_size)
    if args.steps is not None:
        steps = args.steps
    else:
        steps = max(1, math.ceil((args.epochs if args.epochs is not None else args.default_epochs) * per_epoch))
    run = Run(args, "train_picie", Path(args.out), FIXED)
    device = run.device
    print(f"{data.describe()}; {steps} steps ({steps / per_epoch:.3g} epochs of {per_epoch}) of {args.batch_size} x "
          f"{crop}x{crop} crops on {device}; K={K}, K2={K2} (training labels unused)")

    net = build_program_backbone(args.backbone, args.dim).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    scheduler = poly_schedule(optimizer, steps)
    generator = torch.Generator().manual_seed(args.seed)
    epoch_state = EpochState(device)
    run.track(model=net, optimizer=optimizer, scheduler=scheduler, epoch=epoch_state,
              data_generator=GeneratorState(generator))
    start = start_run(run)

    def weights(name):
        return cluster_balance_weights(epoch_state.kmeans[name].counts).float() if args.balance else None

    def step_fn(step: int) -> dict:
        epoch, position = divmod(step - 1, per_epoch)
        if epoch != epoch_state.epoch:
            recluster(net, data, args, epoch_state, epoch, generator, crop, K, K2, device)
        net.train()
        order = epoch_state.order
        # Walk the epoch's order, wrapping around when steps_per_epoch asks for more images.
        picks = [int(order[(position * args.batch_size + j) % len(order)]) for j in range(args.batch_size)]
        images, _, valid = sample_crops(data.train, picks, crop, generator)
        z1, z2, valid_views = two_views(net, images, valid, generator, args.view_scale, device)
        clusterings = []
        for name in ("K", "K2"):
            k1, k2 = epoch_state.kmeans[f"view1_{name}"], epoch_state.kmeans[f"view2_{name}"]
            clusterings.append(segsort_ext.PiCIEClustering(
                k1.centroids.to(z1.dtype), k2.centroids.to(z1.dtype), assign(k1, z1, valid_views),
                assign(k2, z2, valid_views), weights(f"view1_{name}"), weights(f"view2_{name}")))
        loss, terms = segsort_ext.picie_loss(z1, z2, clusterings, return_terms=True)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {"loss": float(loss.detach()), "lr": lr, "epoch": epoch,
                "within_K": float(terms["within"][0].detach()), "cross_K": float(terms["cross"][0].detach())}

    train_start = time.perf_counter()
    if not run.train(step_fn, start, steps) or args.skip_eval:
        return None
    train_seconds = time.perf_counter() - train_start

    eval_start = time.perf_counter()
    scores, maps = evaluate(net, data, epoch_state.kmeans["view1_K"], K, device)
    if scores is None:
        print("no labelled held-out pixels: nothing to score")
    else:
        print(f"Hungarian-matched K={K} clusters on {len(data.test)} held-out images: pixel accuracy "
              f"{scores['pixel_accuracy']:.3f}, mIoU {scores['mean_iou']:.3f}")
    rows = []
    for i in range(min(4, len(maps))):
        image, label = data.test[i]
        rows.append([viz.to_uint8(image), class_colours(label, data.num_classes, data.kind),
                     class_colours(maps[i], data.num_classes, data.kind)])
    save_panels(run.out / "predictions.png", rows, ("image", "ground truth", "clusters (Hungarian-matched)"))
    return run.finish({"dataset": data.describe(), "steps": steps, "steps_per_epoch": per_epoch,
                       "epochs": steps / per_epoch, "clusters": K, "overclusters": K2,
                       "train_seconds": round(train_seconds, 2),
                       "eval_seconds": round(time.perf_counter() - eval_start, 2),
                       "final_loss": run.last_logged().get("loss"), "eval": scores})


if __name__ == "__main__":
    main()
