"""Instance grouping recipe (Kong & Fowlkes, "Recurrent Pixel Embedding for Instance
Grouping", CVPR 2018): an embedding network trained through unrolled iterations of vMF
blurring mean shift, with the pairwise cosine margin loss at every iteration on a random
subset of each crop's pixels (the background is one more instance). At test time mean
shift runs over all pixels of an image, groups of converged embeddings
(extract_instances, cosine >= the margin) are the instances; the largest group of an
image is its background and the rest are the proposals, scored by size. Scores: average
recall over IoU 0.5:0.95 and AP at IoU 0.5 (segsort_ext.metrics.InstanceEvaluator).

    python python/grouping/train.py                                    # embedded digit scenes
    python python/grouping/train.py --data /data/VOCdevkit/VOC2012 --dataset voc-object --steps 5000

Data: the embedded DigitScenes by default (the VOC sample in ../shared/data has no
SegmentationObject/ folder); --dataset voc-object (VOC SegmentationObject, 255 void) or
sbd-object for real data, images at --scale 0.25 by default (mean shift over all pixels
of a test image costs O(pixels^2)). Run folder, checkpoints and --resume as in
python/common/run.py.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: the shared code in common/
import segsort_ext
from segsort_ext.cluster import cosine_threshold_from_margin, extract_instances
from segsort_ext.datasets import IGNORE_INDEX
from segsort_ext.metrics import InstanceEvaluator
from segsort_ext.utils import viz

from common.args import ArgumentParser, add_common_arguments, check_arguments, check_mean_shift_iters, total_steps
from common.backbones import build_program_backbone
from common.data import INSTANCE_DATASETS, open_data, sample_crops
from common.evaluate import embed, save_panels
from common.run import GeneratorState, Run, poly_schedule, seed_everything, start_run

FIXED = ("resolved_dataset", "data_root", "scale", "crop", "train_images", "test_images", "batch_size", "lr",
         "backbone", "seed", "dim", "alpha", "iters", "pixels", "aug_scale", "coords")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, datasets=INSTANCE_DATASETS, default_out="outputs/train_grouping",
                         default_steps=150, default_batch=4, default_test_images=24, real_scale=0.25)
    group = parser.add_argument_group("grouping")
    group.add_argument("--dim", type=int, default=8, help="embedding dimension")
    group.add_argument("--alpha", type=float, default=0.5, help="margin of the pairwise loss, in [0, 1)")
    group.add_argument("--iters", type=int, default=3, help="unrolled mean-shift iterations in training")
    group.add_argument("--pixels", type=int, default=768, help="pixels per crop in training mean shift")
    group.add_argument("--aug-scale", type=float, nargs=2, default=(1.0, 1.0), metavar=("MIN", "MAX"))
    group.add_argument("--no-coords", dest="coords", action="store_false",
                       help="no (y, x) input channels (they let the network tell identical objects apart)")
    group = parser.add_argument_group("evaluation")
    group.add_argument("--eval-iters", type=int, default=None, help="mean-shift iterations at test time "
                       "(default: --iters)")
    group.add_argument("--min-instance", type=int, default=10, help="smallest instance kept, in pixels")
    return parser


def training_points(embeddings: torch.Tensor, ids: torch.Tensor, count: int, generator: torch.Generator):
    """A random subset of ``count`` pixels per image, valid pixels first:
    embeddings (B, D, H, W), ids (B, H, W) (-1 invalid) -> points (B, count, D), their
    ids (B, count) and lengths (B,) (valid points per image; the rest is padding that
    mean shift leaves alone)."""
    B, D = embeddings.shape[:2]
    flat_ids = ids.flatten(1)
    keys = torch.rand(flat_ids.shape, generator=generator) + 2.0 * (flat_ids.cpu() < 0)
    order = keys.argsort(1)[:, :count].to(embeddings.device)
    points = embeddings.flatten(2).transpose(1, 2).gather(1, order.unsqueeze(2).expand(-1, -1, D))
    lengths = (flat_ids >= 0).sum(1).clamp(max=count)
    picked = flat_ids.gather(1, order)
    picked = torch.where(torch.arange(count, device=ids.device)[None, :] < lengths[:, None], picked, -1)
    return points, picked, lengths


@torch.no_grad()
def group_image(net, image, args, device):
    """Instances of one image: (proposal masks (P, H, W) bool, scores (P,), id map (H, W)
    with 0 = background and 1.. = proposals by decreasing size)."""
    e = embed(net, image, device)
    _, D, H, W = e.shape
    points = e.flatten(2).transpose(1, 2).to(device)
    shifted = segsort_ext.blurring_mean_shift(points, bandwidth=segsort_ext.bandwidth_from_margin(args.alpha),
                                              iters=args.eval_iters if args.eval_iters is not None else args.iters)
    found = extract_instances(shifted, cosine_threshold_from_margin(args.alpha), min_size=args.min_instance)
    ids = found.ids[0].cpu().view(H, W)
    sizes = found.size.cpu()
    order = sizes.argsort(descending=True, stable=True)[1:]  # the largest group is the background
    masks = torch.stack([ids == int(s) for s in order]) if len(order) else torch.zeros(0, H, W, dtype=torch.bool)
    id_map = torch.zeros(H, W, dtype=torch.int64)
    for rank, s in enumerate(order.tolist(), 1):
        id_map[ids == s] = rank
    return masks.numpy(), sizes[order].double().numpy(), id_map


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args, positive=("dim", "pixels", "min_instance"), nonnegative=("iters",))
    if not 0 <= args.alpha < 1:
        parser.error(f"--alpha must be in [0, 1), got {args.alpha}")
    if args.eval_iters is not None and args.eval_iters < 0:
        parser.error(f"--eval-iters must be >= 0, got {args.eval_iters}")
    for name in ("iters", "eval_iters"):
        if getattr(args, name):
            check_mean_shift_iters(getattr(args, name), f"--{name.replace('_', '-')}")
    seed_everything(args.seed)
    # Mean shift runs over every pixel of a test image: real images at a quarter size.
    data = open_data(args, "instance", real_scale=0.25)
    crop = args.crop or data.default_crop
    pixels = min(args.pixels, crop * crop)
    steps = total_steps(args, len(data.train))
    run = Run(args, "train_grouping", Path(args.out), FIXED)
    device = run.device
    bandwidth = segsort_ext.bandwidth_from_margin(args.alpha)
    print(f"{data.describe()}; {steps} steps of {args.batch_size} x {crop}x{crop} crops, {args.iters} unrolled "
          f"mean-shift iterations (bandwidth {bandwidth:.3g}) over {pixels} pixels per crop on {device}")

    net = build_program_backbone(args.backbone, args.dim, coords=args.coords).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    scheduler = poly_schedule(optimizer, steps)
    generator = torch.Generator().manual_seed(args.seed)
    run.track(model=net, optimizer=optimizer, scheduler=scheduler, data_generator=GeneratorState(generator))
    start = start_run(run)

    def step_fn(step: int) -> dict:
        net.train()
        picks = torch.randint(len(data.train), (args.batch_size,), generator=generator)
        images, instances, valid = sample_crops(data.train, picks.tolist(), crop, generator, tuple(args.aug_scale))
        ids = torch.where(valid & (instances != IGNORE_INDEX), instances, -1)
        embeddings = F.normalize(net(images.to(device)), dim=1)
        points, point_ids, lengths = training_points(embeddings, ids.to(device), pixels, generator)
        iterates = segsort_ext.blurring_mean_shift(points, bandwidth=bandwidth, iters=args.iters, lengths=lengths,
                                                   return_all=True)
        loss = segsort_ext.pairwise_margin_loss(iterates, point_ids, alpha=args.alpha)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        instances_per_crop = [int(torch.unique(i[i >= 0]).numel()) for i in point_ids.cpu()]
        return {"loss": float(loss.detach()), "lr": lr, "instances": float(np.mean(instances_per_crop))}

    train_start = time.perf_counter()
    if not run.train(step_fn, start, steps) or args.skip_eval:
        return None
    train_seconds = time.perf_counter() - train_start

    eval_start = time.perf_counter()
    net.eval()
    evaluator = InstanceEvaluator(ignore_index=IGNORE_INDEX, background=0)
    rows = []
    for i in range(len(data.test)):
        image, gt = data.test[i]
        masks, scores, id_map = group_image(net, image, args, device)
        evaluator.update(masks, gt.numpy(), scores)
        if i < 4:
            rows.append([viz.to_uint8(image), viz.instance_colors(torch.where(gt == IGNORE_INDEX, 0, gt)),
                         viz.instance_colors(id_map)])
    result = evaluator.compute()
    scores = {"average_recall": result["average_recall"], "recall_at_0.5": float(result["recall"][0]),
              "ap_at_0.5": result["ap"], "num_instances": result["num_instances"],
              "num_proposals": result["num_proposals"],
              "proposals_per_image": result["num_proposals"] / max(1, len(data.test))}
    print(f"{result['num_instances']} instances in {len(data.test)} held-out images, "
          f"{scores['proposals_per_image']:.1f} proposals per image: average recall {scores['average_recall']:.3f}, "
          f"recall@0.5 {scores['recall_at_0.5']:.3f}, AP@0.5 {scores['ap_at_0.5']:.3f}")
    save_panels(run.out / "grouping.png", rows, ("image", "true instances", "found instances"))
    return run.finish({"dataset": data.describe(), "steps": steps, "train_seconds": round(train_seconds, 2),
                       "eval_seconds": round(time.perf_counter() - eval_start, 2),
                       "final_loss": run.last_logged().get("loss"), "eval": scores})


if __name__ == "__main__":
    main()
