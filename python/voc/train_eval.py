"""SegSort on PASCAL VOC 2012, against a softmax classifier and unsupervised SegSort with
the same network body and training budget (``make voc``).

    python python/voc/train_eval.py                                   # ../shared/data/voc2012_train
    python python/voc/train_eval.py --data /data/VOCdevkit/VOC2012 --seeds 0,1,2
    python python/voc/train_eval.py --resume                          # continue outputs/voc

Trains on ``ImageSets/Segmentation/train.txt`` and tests on ``val.txt`` when the root has
it, else on every 5th id of train.txt, held out. All methods train the same body (HED's
VGG16: conv1-3 frozen and cached, conv4-5 trained from HED's weights, a context head; see
model.py) for the same steps on the same crops, differing only in the last layer and loss:

- softmax: 21 class logits, cross-entropy;
- segsort: 32-dim unit embeddings, pixel sorting (K = --grid), segments aligned with the
  labels, vMF-NCA with a 2-batch prototype memory (concentration 10); labelled by 21-NN
  voting over the training segments (SegSort's protocol);
- unsupervised: the same embedding trained with the vMF loss over HED-owt-ucm pseudo
  segments of the training images (their labels are not used in training), labelled at
  test time by kNN voting over the labelled training segments (SegSort's Table 3).

Writes into --out: scores.json ({"rows": [{"method", "seed", "mean_iou", "pixel_accuracy",
"boundary_f", "train_seconds"}, ...]}), report.md, predictions.png (image | truth | softmax |
SegSort | unsupervised), retrieval.png (held-out segments beside the training segments that
voted for them), runs/<method>-<seed>/ (each run's config, log and checkpoint) and cache/
(the frozen trunk's features). --resume continues the runs from their checkpoints.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: common
sys.path.insert(0, str(Path(__file__).resolve().parent))  # this program's modules
import segsort_ext
from segsort_ext.datasets import IGNORE_INDEX, VOC_CLASSES
from segsort_ext.models import HED, hed_weights_path
from segsort_ext.retrieval import SegmentIndex, SegSortPredictor, add_training_segments

from common.args import ArgumentParser, check_concentration, fail, output_folder, parse_grid, resolve_device
from common.evaluate import semantic_scores
from common.run import GeneratorState, Run, poly_schedule, seed_everything, start_run
from voc_data import cached_features, choose_split, valid_labels
from voc_model import Body
from voc_pictures import draw_predictions, draw_retrieval, write_report

METHODS = ("softmax", "segsort", "unsupervised")
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "voc2012_train"
NUM_CLASSES = 21
# Arguments that define a training run: --resume refuses to continue with others.
FIXED = ("data", "side", "crop", "batch_size", "lr", "trunk_lr", "weight_decay", "seed", "method", "dim",
         "concentration", "grid", "memory_batches", "pseudo_segments", "hold_out_every", "train_images")


def _number_list(kind):
    def parse(text: str):
        try:
            values = [kind(part) for part in str(text).split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"a comma-separated list of {kind.__name__}s, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"an empty list: {text!r}")
        return values
    return parse


def _methods(text: str):
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    unknown = sorted(set(names) - set(METHODS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"methods are a comma-separated subset of {','.join(METHODS)}, got {text!r}")
    return [m for m in METHODS if m in names]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--data", default=str(DEFAULT_ROOT), help="VOC-layout root (JPEGImages/, SegmentationClass/, "
        "ImageSets/Segmentation/train.txt)")
    add("--out", default="outputs/voc", help="output folder")
    add("--seeds", type=_number_list(int), default=[0], help="comma-separated seeds, e.g. 0,1,2")
    add("--methods", type=_methods, default=list(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    add("--side", type=int, default=320, help="longer image side in pixels for training and testing")
    add("--crop", type=int, default=224, help="training crop side in pixels (a multiple of 8)")
    add("--steps", type=int, default=600, help="training steps of every method")
    add("--batch-size", type=int, default=8)
    add("--lr", type=float, default=0.02, help="SGD learning rate of the head (momentum 0.9, poly decay)")
    add("--trunk-lr", type=float, default=0.02, help="SGD learning rate of conv4-conv5")
    add("--weight-decay", type=float, default=1e-4, help="SGD weight decay")
    add("--dim", type=int, default=32, help="embedding channels (SegSort)")
    add("--concentration", type=float, default=10.0, help="vMF concentration (SegSort)")
    add("--grid", type=parse_grid, default=(5, 5), help="k-means grid of a training crop (SegSort)")
    add("--memory-batches", type=int, default=2, help="prototype memory: earlier batches kept (SegSort)")
    add("--pseudo-segments", type=int, default=32,
        help="HED-owt-ucm pseudo segments per training image: the hierarchy's level with this many (unsupervised)")
    add("--knn", type=int, default=21, help="neighbours voting for a held-out segment")
    add("--bank-grid", type=parse_grid, default=(5, 5), help="k-means grid of a training image in the bank")
    add("--test-grid", type=parse_grid, default=(5, 5), help="k-means grid of a held-out image")
    add("--hold-out-every", type=int, default=5, help="without val.txt: test on every N-th id of train.txt")
    add("--train-images", type=int, default=0, help="use only the first N training images (0: all)")
    add("--test-images", type=int, default=0, help="test only the first N held-out images (0: all)")
    add("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    add("--resume", action="store_true", help="continue the runs in --out from their checkpoints")
    add("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # tests: simulate an interruption
    return parser


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One line naming the option and exit status 2 for a bad value."""
    for name in ("side", "crop", "steps", "batch_size", "dim", "knn", "hold_out_every", "pseudo_segments"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("lr", "trunk_lr", "concentration"):
        value = getattr(args, name)
        if not (np.isfinite(value) and value > 0):
            parser.error(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")
    check_concentration(args.concentration)
    if not (np.isfinite(args.weight_decay) and args.weight_decay >= 0):
        parser.error(f"--weight-decay must be a finite number >= 0, got {args.weight_decay}")
    for name in ("memory_batches", "train_images", "test_images"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.crop % 8:
        parser.error(f"--crop must be a multiple of 8 (the trunk's stride), got {args.crop}")
    if args.hold_out_every < 2:
        parser.error(f"--hold-out-every must be >= 2, got {args.hold_out_every}")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0 or max(args.seeds) >= 2 ** 63:
        parser.error(f"--seeds must be distinct integers in [0, 2**63), got {args.seeds}")
    try:
        args.device = str(resolve_device(args.device))
    except ValueError as error:
        parser.error(str(error))
    root = Path(args.data)
    for needed in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation/train.txt"):
        if not (root / needed).exists():
            fail(f"--data {root}: no {needed} (a VOC-layout root is needed)")


class Clock:
    """Training seconds of a run, kept in its checkpoints (a resumed run adds to them)."""

    def __init__(self):
        self.seconds = 0.0

    def state_dict(self):
        return {"seconds": torch.tensor(self.seconds, dtype=torch.float64)}

    def load_state_dict(self, state):
        self.seconds = float(state["seconds"])


def sample_batch(cache: dict, picks, crop8: int, generator: torch.Generator, target: str):
    """A batch of crop8 x crop8 crops of cached pool3 features (random mirror image) and
    their targets on the same grid, padded with zero features and ignored targets."""
    features, targets = [], []
    fill = IGNORE_INDEX if target == "labels8" else -1
    for i in picks:
        flip = int(torch.randint(2, (1,), generator=generator))
        feature = cache["pool3"][i][flip].float()
        labels = valid_labels(cache["labels8"][i]) if target == "labels8" else cache["pseudo8"][i].long()
        if flip:
            labels = labels.flip(-1)
        h, w = labels.shape
        ch, cw = min(crop8, h), min(crop8, w)
        y = int(torch.randint(h - ch + 1, (1,), generator=generator))
        x = int(torch.randint(w - cw + 1, (1,), generator=generator))
        feature, labels = feature[:, y:y + ch, x:x + cw], labels[y:y + ch, x:x + cw]
        features.append(F.pad(feature, (0, crop8 - cw, 0, crop8 - ch)))
        targets.append(F.pad(labels, (0, crop8 - cw, 0, crop8 - ch), value=fill))
    return torch.stack(features), torch.stack(targets)


def train(method: str, seed: int, args, hed_path: Path, train_cache: dict, out: Path) -> tuple[Body, float, Run]:
    """Trains one method with one seed; returns (body, train seconds, run)."""
    run_args = argparse.Namespace(**{**vars(args), "seed": seed, "method": method, "seeds": None,
                                     "methods": None, "log_every": max(1, args.steps // 10),
                                     "checkpoint_every": max(1, args.steps // 4)})
    seed_everything(seed)
    hed = HED.from_pretrained(hed_path)
    body = Body(hed, NUM_CLASSES if method == "softmax" else args.dim)
    device = torch.device(args.device)
    body = body.to(device)
    criterion = None
    if method != "softmax":
        memory = None
        if args.memory_batches:
            memory = segsort_ext.PrototypeMemory.last_batches(
                args.dim, num_batches=args.memory_batches,
                max_per_batch=args.batch_size * args.grid[0] * args.grid[1] * 4)
        if method == "segsort":
            criterion = segsort_ext.SegSortLoss(concentration=args.concentration, grid=args.grid, memory=memory)
        else:
            criterion = segsort_ext.SegSortLoss(concentration=args.concentration, grid=args.grid, memory=memory,
                                                loss="vmf", ignore_index=-1)
        criterion = criterion.to(device)
    optimizer = torch.optim.SGD([{"params": body.trunk_parameters(), "lr": args.trunk_lr},
                                 {"params": body.head_parameters(), "lr": args.lr}],
                                momentum=0.9, weight_decay=args.weight_decay)
    scheduler = poly_schedule(optimizer, args.steps)
    generator = torch.Generator().manual_seed(seed)
    run = Run(run_args, f"voc_{method}", out / "runs" / f"{method}-{seed}", FIXED)
    clock = Clock()
    run.track(model=body, optimizer=optimizer, scheduler=scheduler, data_generator=GeneratorState(generator),
              clock=clock, **({"loss": criterion} if criterion is not None else {}))
    start = start_run(run)
    target = "pseudo8" if method == "unsupervised" else "labels8"
    size = len(train_cache["pool3"])
    bar = tqdm(total=args.steps, initial=start, desc=f"{method} seed {seed}", unit="step")

    def step_fn(step: int) -> dict:
        began = time.perf_counter()
        body.train()
        picks = torch.randint(size, (args.batch_size,), generator=generator).tolist()
        features, targets = sample_batch(train_cache, picks, args.crop // 8, generator, target)
        out = body(features.to(device))
        targets = targets.to(device)
        if method == "softmax":
            loss = F.cross_entropy(out, targets, ignore_index=IGNORE_INDEX)
        else:
            criterion.train()
            loss = criterion(out, targets, image_ids=torch.tensor(picks, device=device))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{method} seed {seed}: the loss became {float(loss)} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        clock.seconds += time.perf_counter() - began
        bar.update(1)
        return {"loss": float(loss.detach())}

    completed = run.train(step_fn, start, args.steps)
    bar.close()
    if not completed:
        raise SystemExit(0)
    body.eval()
    return body, clock.seconds, run


@torch.no_grad()
def embeddings(body: Body, pool3: torch.Tensor, size) -> torch.Tensor:
    """(2, D, H, W) unit embeddings of an image and its mirror image at ``size``."""
    out = F.normalize(body(pool3.float()), dim=1)
    return F.normalize(F.interpolate(out, size=size, mode="bilinear", align_corners=False), dim=1)


@torch.no_grad()
def predict(method: str, body: Body, args, train_cache: dict, test_cache: dict):
    """Label maps of every held-out image at its original size; for SegSort-style methods
    also the bank (SegmentIndex) for the retrieval figure."""
    device = torch.device(args.device)
    predictions = []
    if method == "softmax":
        for pool3, labels in zip(test_cache["pool3"], test_cache["labels"]):
            probs = body(pool3.float().to(device)).softmax(1)
            probs = (probs[0] + probs[1].flip(-1))[None]
            predictions.append(F.interpolate(probs, size=labels.shape, mode="bilinear",
                                             align_corners=False)[0].argmax(0).cpu())
        return predictions, None
    index = SegmentIndex(args.dim)
    for i, (pool3, labels8) in enumerate(zip(train_cache["pool3"], train_cache["labels8"])):
        embedding = F.normalize(body(pool3[:1].float().to(device)), dim=1).cpu()
        add_training_segments(index, embedding, valid_labels(labels8)[None], num_classes=NUM_CLASSES,
                              image_ids=torch.tensor([i]), grid=args.bank_grid)
    predictor = SegSortPredictor(index, NUM_CLASSES, k=min(args.knn, len(index)), grid=args.test_grid)
    for pool3, labels, size in zip(test_cache["pool3"], test_cache["labels"], test_cache["size"]):
        views = embeddings(body, pool3.to(device), tuple(size.tolist())).cpu()
        predicted = predictor.predict([(views[:1], False), (views[1:], True)], output_size=tuple(labels.shape))[0]
        predictions.append(predicted.clamp_min(0))
    return predictions, index


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check(parser, args)
    out = output_folder(args.out)
    root = Path(args.data)
    try:
        split = choose_split(root, args.hold_out_every)
        hed_path = hed_weights_path()
    except (OSError, ValueError) as error:
        fail(f"--data {root}: {error}")
    if args.train_images:
        split.train = split.train[:args.train_images]
    if args.test_images:
        split.test = split.test[:args.test_images]
    missing = [path for image_id in split.train + split.test
               for path in (root / "JPEGImages" / f"{image_id}.jpg", root / "SegmentationClass" / f"{image_id}.png")
               if not path.is_file()]
    if missing:
        fail(f"--data {root}: {len(missing)} listed image or label files are missing, e.g. {missing[0]}")
    if not split.train or not split.test:
        fail(f"--data {root}: {len(split.train)} training and {len(split.test)} test images; both are needed")
    print(f"VOC at {root}: {len(split.train)} training images, {len(split.test)} test images ({split.test_split}); "
          f"{args.side} px, methods {','.join(args.methods)}, seeds {','.join(map(str, args.seeds))}")
    hed = HED.from_pretrained(hed_path).eval()
    common = dict(side=args.side, cache_dir=out / "cache", hed=hed, hed_path=hed_path,
                  regions=args.pseudo_segments)
    began = time.perf_counter()
    try:
        train_cache = cached_features(root, split.train, pseudo="unsupervised" in args.methods, what="train",
                                      **common)
        test_cache = cached_features(root, split.test, pseudo=False, what="test", **common)
    except (OSError, ValueError) as error:  # a missing or damaged image or label file
        fail(f"--data {root}: {error}")
    cache_seconds = time.perf_counter() - began
    del hed

    rows, shown, retrieval = [], {}, None
    targets = [valid_labels(labels) for labels in test_cache["labels"]]
    for seed in args.seeds:
        for method in args.methods:
            body, seconds, run = train(method, seed, args, hed_path, train_cache, out)
            predictions, index = predict(method, body, args, train_cache, test_cache)
            scores = semantic_scores(predictions, targets, NUM_CLASSES, VOC_CLASSES)
            row = {"method": method, "seed": seed, "mean_iou": scores["mean_iou"],
                   "pixel_accuracy": scores["pixel_accuracy"], "boundary_f": scores["boundary_f"],
                   "train_seconds": round(seconds, 1), "class_iou": scores["class_iou"]}
            rows.append(row)
            run.finish(row)
            print(f"{method} seed {seed}: mIoU {row['mean_iou']:.3f}, pixel accuracy {row['pixel_accuracy']:.3f}, "
                  f"boundary F {row['boundary_f']:.3f}, trained in {seconds:.0f} s")
            if seed == args.seeds[0]:
                shown[method] = predictions[:4]
                if method == "segsort":
                    retrieval = (body, index)
            (out / "scores.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    draw_predictions(out / "predictions.png", root, split.test[:4], test_cache, shown)
    if retrieval is not None:
        draw_retrieval(out / "retrieval.png", root, split, train_cache, test_cache, *retrieval, args)
    write_report(out / "report.md", rows, split, args, cache_seconds, time.perf_counter() - began)
    print(f"wrote {out / 'scores.json'}, {out / 'report.md'}, {out / 'predictions.png'}"
          + (f", {out / 'retrieval.png'}" if retrieval is not None else ""))


if __name__ == "__main__":
    main()
