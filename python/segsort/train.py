"""Supervised SegSort recipe (Hwang et al., ICCV 2019): train an embedding network with
SegSortLoss (pixel sorting -> aligned segments -> vMF-NCA with a prototype memory of the
last batches), build the training-set segment bank, label held-out images by kNN voting
(SegSortPredictor, flip-averaged) and score them: mIoU, pixel accuracy and the semantic
boundary F-measure.

    python python/segsort/train.py                                   # VOC sample / embedded mosaics
    python python/segsort/train.py --data /data/VOCdevkit/VOC2012 --dataset voc-aug --steps 20000
    python python/segsort/train.py --data /data/cityscapes --dataset cityscapes --scale 0.25
    python python/segsort/train.py --out runs/a --steps 600 --resume  # continue runs/a

Without --data it uses the VOC sample in ../shared/data when present, else the embedded
texture mosaics. --out is the run folder (config.json, log.jsonl, checkpoint.pt,
metrics.json, predictions.png); a path ending in .png or .jpg (the original interface)
names the picture, and the run folder is that path without its suffix. The default
network is deliberately tiny: the recipe, not the network, is the point. --backbone
deeplabv3_resnet50, deeplabv3_resnet101, fcn_resnet50 or dinov2_vits14 picks a real one
(pretrained weights: SEGSORT_BACKBONE_WEIGHTS=PATH|imagenet|none; see common.backbones).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: the shared code in common/
import segsort_ext
from segsort_ext.utils import viz

from common.args import (
    ArgumentParser,
    add_common_arguments,
    add_segsort_arguments,
    check_arguments,
    parse_grid,
    total_steps,
)
from common.backbones import build_program_backbone
from common.data import SEMANTIC_DATASETS, open_data, sample_crops
from common.evaluate import class_colours, knn_scores, save_panels
from common.run import GeneratorState, Run, poly_schedule, seed_everything, start_run

# Arguments that define the training run: --resume refuses to continue with others.
FIXED = ("resolved_dataset", "data_root", "scale", "crop", "train_images", "test_images", "num_classes",
         "batch_size", "lr", "backbone", "seed", "dim", "concentration", "grid", "kmeans_iters", "memory_batches",
         "aug_scale")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, datasets=SEMANTIC_DATASETS, default_out="outputs/train_segsort.png",
                         default_steps=60, default_batch=4, default_test_images=6)
    add_segsort_arguments(parser, "SegSort")
    group = parser.add_argument_group("evaluation")
    group.add_argument("--knn", type=int, default=21, help="neighbours voting for each test segment")
    group.add_argument("--bank-grid", type=parse_grid, default=None,
                       help="k-means grid of a training image for the bank (default 6, 4 for mosaics)")
    group.add_argument("--test-grid", type=parse_grid, default=None,
                       help="k-means grid of a test image (default 8, 4 for mosaics)")
    group.add_argument("--bank-images", type=int, default=0, help="training images in the bank (0: all)")
    return parser


def run_paths(out: str):
    """(run folder, picture path) of --out (a .png/.jpg --out is the original interface)."""
    path = Path(out)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return path.with_suffix(""), path
    return path, path / "predictions.png"


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args, positive=("dim", "knn", "kmeans_iters", "concentration"),
                    nonnegative=("memory_batches", "bank_images"))
    out, picture = run_paths(args.out)
    seed_everything(args.seed)
    data = open_data(args, "semantic")
    crop = args.crop or data.default_crop
    steps = total_steps(args, len(data.train))
    run = Run(args, "train_segsort", out, FIXED)
    device = run.device
    print(f"{data.describe()}; {steps} steps of {args.batch_size} x {crop}x{crop} crops on {device}")

    net = build_program_backbone(args.backbone, args.dim).to(device)
    grid = tuple(args.grid)
    memory = None
    if args.memory_batches:
        # A k-means cluster may split into several aligned segments (one per label): 4 is ample.
        memory = segsort_ext.PrototypeMemory.last_batches(args.dim, num_batches=args.memory_batches,
                                                          max_per_batch=args.batch_size * grid[0] * grid[1] * 4)
    criterion = segsort_ext.SegSortLoss(concentration=args.concentration, grid=grid, kmeans_iters=args.kmeans_iters,
                                        memory=memory).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    scheduler = poly_schedule(optimizer, steps)
    generator = torch.Generator().manual_seed(args.seed)
    run.track(model=net, optimizer=optimizer, scheduler=scheduler, loss=criterion,
              data_generator=GeneratorState(generator))
    start = start_run(run)

    def step_fn(step: int) -> dict:
        net.train()
        criterion.train()
        picks = torch.randint(len(data.train), (args.batch_size,), generator=generator)
        images, labels, _ = sample_crops(data.train, picks.tolist(), crop, generator, tuple(args.aug_scale))
        loss = criterion(net(images.to(device)), labels.to(device), image_ids=picks.to(device))
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {"loss": float(loss.detach()), "lr": lr, "memory": 0 if memory is None else len(memory)}

    train_start = time.perf_counter()
    if not run.train(step_fn, start, steps) or args.skip_eval:
        return None
    train_seconds = time.perf_counter() - train_start

    eval_start = time.perf_counter()
    scores, bank_size, predictions = knn_scores(net, data, device, dim=args.dim, knn=args.knn,
                                                bank_grid=args.bank_grid, test_grid=args.test_grid,
                                                bank_images=args.bank_images)
    if scores is None:
        print(f"bank: {bank_size} training segments; no labelled held-out pixels: nothing to score")
    else:
        print(f"bank: {bank_size} training segments; held-out mIoU {scores['mean_iou']:.3f}, pixel accuracy "
              f"{scores['pixel_accuracy']:.3f}, boundary F {scores['boundary_f']:.3f}"
              + ("  (tested on the training image: no held-out data)" if len(data.train) == 1 else ""))
    rows = []
    for i, predicted in list(enumerate(predictions))[:4]:
        image, label = data.test[i]
        rows.append([viz.to_uint8(image), class_colours(label, data.num_classes, data.kind),
                     class_colours(predicted, data.num_classes, data.kind)])
    save_panels(picture, rows, ("image", "ground truth", "SegSort kNN prediction"))
    if rows:
        print(f"wrote {picture} (rows: image | ground truth | prediction)")
    return run.finish({"dataset": data.describe(), "steps": steps, "bank_size": bank_size,
                       "train_seconds": round(train_seconds, 2),
                       "eval_seconds": round(time.perf_counter() - eval_start, 2),
                       "final_loss": run.last_logged().get("loss"), "eval": scores})


if __name__ == "__main__":
    main()
