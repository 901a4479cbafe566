"""Command-line arguments of the training recipes: the options they share, their checks
(a bad value exits with status 2 and a message naming the argument, like argparse),
the device and the training length."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch

from common.backbones import BACKBONES


def fail(message: str) -> None:
    """Exit with a one-line error (status 2, like argparse)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line, ``error: <message naming the option>``
    on stderr with exit status 2 (argparse's own prints the usage first)."""

    def error(self, message: str) -> None:
        fail(message)


def option(name: str) -> str:
    """The command-line spelling of an argument name: 'batch_size' -> '--batch-size'."""
    return "--" + name.replace("_", "-")


def check_finite(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """parser.error for any float argument (alone or in a list) that is NaN or infinite:
    range checks written as ``value <= 0`` let NaN through."""
    for name, value in vars(args).items():
        values = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            shown = value if isinstance(value, float) else list(value)
            parser.error(f"{option(name)} must be a finite number, got {shown}")


def output_folder(path, option: str = "--out") -> Path:
    """The folder ``path`` of an output option, created (with its parents): an empty path,
    an existing file or a folder that cannot be created exits with one line naming the
    option (status 2). Returns it as a Path."""
    if path is None or not str(path).strip():
        fail(f"{option} must name a folder, got {str(path)!r}")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        fail(f"{option} {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"{option} {folder}: cannot create the folder ({error.strerror or type(error).__name__})")
    return folder


def output_file(path, option: str = "--out") -> Path:
    """The file ``path`` of an output option, its folder created: refused (one line naming
    the option, status 2) when empty, when it is a folder, or when its folder cannot be
    created."""
    if path is None or not str(path).strip():
        fail(f"{option} must name a file, got {str(path)!r}")
    target = Path(path)
    if target.is_dir():
        fail(f"{option} {target}: is a folder, not a file")
    output_folder(target.parent if str(target.parent) else ".", option)
    return target


def check_seed(value: int, option: str = "--seed") -> int:
    """A seed torch.manual_seed takes: 0 <= seed < 2**63 (else one line, status 2)."""
    if not 0 <= value < 2 ** 63:
        fail(f"{option} must be in [0, 2**63), got {value}")
    return value


def check_concentration(value: float, option: str = "--concentration") -> float:
    """A vMF concentration whose logits stay finite in float32 (vmf_loss's own bound)."""
    largest = torch.finfo(torch.float32).max / 4
    if not 0 < value <= largest:
        fail(f"{option} must be in (0, {largest:g}], got {value}")
    return value


def check_mean_shift_iters(value: int, option: str) -> int:
    """Unrolled mean-shift iterations: 1..MAX_ITERS (blurring_mean_shift's own bound)."""
    from segsort_ext.ops.blurring_mean_shift import MAX_ITERS

    if not 1 <= value <= MAX_ITERS:
        fail(f"{option} must be in [1, {MAX_ITERS}], got {value}")
    return value


def parse_grid(text: str) -> Tuple[int, int]:
    """'6' -> (6, 6); '4x6' -> (4, 6): an argparse type."""
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a grid is N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"a grid is N or HxW with positive sides, got {text!r}")
    return parts[0], parts[1]


def add_common_arguments(parser: argparse.ArgumentParser, *, datasets: Sequence[str], default_out: str,
                         default_steps: int, default_batch: int, default_test_images: int,
                         default_lr: float = 3e-3, steps_help: Optional[str] = None,
                         real_scale: float = 0.5) -> None:
    """The arguments every recipe shares (data, run folder, schedule, checkpoints)."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", default=None, help="dataset root folder (default: ../shared/data's VOC sample "
                       "when present, else the embedded scenes)")
    group.add_argument("--dataset", default="auto", choices=list(datasets),
                       help="dataset layout of --data ('auto': detect it)")
    group.add_argument("--num-classes", type=int, default=None, help="classes of a 'folder' dataset")
    group.add_argument("--scale", type=float, default=None,
                       help=f"resize factor applied to every image first (default {real_scale} for real data, "
                            f"1 for the embedded scenes)")
    group.add_argument("--crop", type=int, default=None, help="training crop side in pixels (default: per dataset)")
    group.add_argument("--train-images", type=int, default=0, help="use only the first N training images (0: all)")
    group.add_argument("--test-images", type=int, default=default_test_images,
                       help="held-out images: evaluated images of a val split (0: all), or the last N images "
                            "held out where the data set has no val split")
    group = parser.add_argument_group("run")
    group.add_argument("--out", default=default_out, help="run folder (log.jsonl, checkpoint.pt, metrics.json)")
    group.add_argument("--steps", type=int, default=None,
                       help=steps_help or f"training steps (default {default_steps})")
    group.add_argument("--epochs", type=float, default=None, help="training length in passes over the training "
                       "images instead of --steps")
    group.add_argument("--batch-size", type=int, default=default_batch)
    group.add_argument("--lr", type=float, default=default_lr, help="Adam learning rate (poly decay, power 0.9)")
    group.add_argument("--backbone", default="tiny", help=f"network ({', '.join(sorted(BACKBONES))})")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1' ...")
    group.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    group.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (0: at the end "
                       "only)")
    group.add_argument("--log-every", type=int, default=0, help="steps between log lines (0: about 20 per run)")
    group.add_argument("--stop-after", type=int, default=None, help="checkpoint after this step and exit without "
                       "evaluating (simulates an interruption; continue with --resume)")
    group.add_argument("--skip-eval", action="store_true", help="train (and checkpoint) only")
    parser.set_defaults(default_steps=default_steps)


def add_segsort_arguments(parser: argparse.ArgumentParser, title: str):
    """The SegSortLoss options shared by the supervised and unsupervised recipes; returns
    their argument group, for the recipe's own options."""
    group = parser.add_argument_group(title)
    group.add_argument("--dim", type=int, default=32, help="embedding dimension")
    group.add_argument("--concentration", type=float, default=10.0, help="vMF kappa")
    group.add_argument("--grid", type=parse_grid, default=(4, 4), help="k-means grid of a training crop")
    group.add_argument("--kmeans-iters", type=int, default=10)
    group.add_argument("--memory-batches", type=int, default=2, help="batches in the prototype memory (0: none)")
    group.add_argument("--aug-scale", type=float, nargs=2, default=(0.75, 1.25), metavar=("MIN", "MAX"),
                       help="random rescaling of training images before cropping")
    return group


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    positive: Sequence[str] = (), nonnegative: Sequence[str] = ()) -> None:
    """parser.error (exit status 2, a message naming the argument) on bad values; resolves
    ``args.device``."""
    check_finite(parser, args)
    for name in ("batch_size", *positive):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    for name in ("train_images", "test_images", "checkpoint_every", "log_every", *nonnegative):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    for name in ("steps", "epochs", "crop", "scale", "lr", "num_classes"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if args.steps is not None and args.epochs is not None:
        parser.error("give --steps or --epochs, not both")
    aug_scale = getattr(args, "aug_scale", None)
    if aug_scale is not None and not 0 < aug_scale[0] <= aug_scale[1]:
        parser.error(f"--aug-scale must satisfy 0 < MIN <= MAX, got {aug_scale}")
    if args.stop_after is not None and args.stop_after < 1:
        parser.error(f"--stop-after must be >= 1, got {args.stop_after}")
    check_seed(args.seed)
    if getattr(args, "concentration", None) is not None:
        check_concentration(args.concentration)
    # --out is the run folder, or (segsort/train.py's original interface) a picture whose
    # name without the suffix is the run folder.
    if Path(str(args.out)).suffix.lower() in (".png", ".jpg", ".jpeg"):
        output_folder(Path(output_file(args.out)).with_suffix(""))
    else:
        output_folder(args.out)
    if args.backbone not in BACKBONES:
        parser.error(f"--backbone must be one of {sorted(BACKBONES)}, got {args.backbone!r}")
    try:
        args.device = str(resolve_device(args.device))
    except ValueError as error:
        parser.error(str(error))


def resolve_device(name: str) -> torch.device:
    """The device of ``--device`` ('auto': CUDA when available); ValueError when unusable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return device


def total_steps(args: argparse.Namespace, train_size: int) -> int:
    """Training steps of ``--steps``, or of ``--epochs`` over ``train_size`` images, else the recipe's default."""
    if args.steps is not None:
        return args.steps
    if args.epochs is not None:
        return max(1, math.ceil(args.epochs * train_size / args.batch_size))
    return args.default_steps
