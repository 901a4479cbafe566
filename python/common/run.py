"""A training run of a recipe in its folder (``--out``): configuration, log, checkpoints
that resume exactly, final metrics; and the run's seeding and learning-rate schedule.

Run folder::

    config.json      the arguments of the run (and the dataset it resolved to)
    log.jsonl        one JSON object per logged training step: {"step", "loss", "lr", ...}
    checkpoint.pt    model, optimizer, LR schedule, recipe state (prototype memory,
                     k-means centroids ...), step counter, every RNG state
    metrics.json     the final evaluation

``--resume`` reloads checkpoint.pt and continues at the next step; on the CPU the result
is bit-identical to a run that was never interrupted (tests/recipes/test_recipes_real.py
checks it). ``--stop-after K`` simulates an interruption: checkpoint after step K and exit.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Callable, Dict, Sequence

import numpy as np
import torch

from common.args import fail

CHECKPOINT_FORMAT = 1


def seed_everything(seed: int) -> None:
    """Seeds the global generators whose state a checkpoint saves (Python, NumPy, torch)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


class GeneratorState:
    """state_dict / load_state_dict for a torch.Generator."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self):
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["state"])


def _rng_state() -> dict:
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(value):
    """JSON-friendly: NaN -> None, numpy/torch scalars and arrays -> Python."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


class Run:
    """One training run in a folder: tracks the objects whose state makes up a
    checkpoint, logs steps, saves/loads checkpoints and writes metrics.json.

    Args:
        args: the parsed arguments (saved in config.json and the checkpoint).
        recipe: the script's name.
        out: the run folder.
        fixed: argument names that must not change on --resume (the rest, e.g.
            --steps, --device or evaluation settings, may).

    ``args`` needs ``resume``, ``checkpoint_every`` and ``log_every``; ``device`` (default
    CPU), ``stop_after`` (default none) and ``quiet`` (default off: print progress) are optional.
    """

    def __init__(self, args, recipe: str, out: Path, fixed: Sequence[str]):
        self.args, self.recipe, self.out = args, recipe, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(getattr(args, "device", "cpu"))
        self.say = (lambda *a, **k: None) if getattr(args, "quiet", False) else print
        self.fixed = tuple(fixed)
        self.log_path = self.out / "log.jsonl"
        self.checkpoint_path = self.out / "checkpoint.pt"
        self.tracked: Dict[str, object] = {}
        self.start_time = time.perf_counter()

    def track(self, **objects) -> None:
        """Objects with state_dict() / load_state_dict(state) saved in every checkpoint."""
        self.tracked.update(objects)

    def config(self) -> dict:
        return _plain(vars(self.args))

    def start(self) -> int:
        """Loads the checkpoint with --resume (returns its step), else starts afresh (0)."""
        # config.json holds the latest invocation (a resumed run may change e.g. --steps).
        (self.out / "config.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        if not self.args.resume:
            if self.checkpoint_path.exists():
                self.say(f"note: {self.checkpoint_path} exists and is overwritten (pass --resume to continue it)")
            self.log_path.write_text("")
            return 0
        if not self.checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {self.checkpoint_path}")
        checkpoint = load_checkpoint(self.checkpoint_path, self.device)
        if checkpoint.get("format") != CHECKPOINT_FORMAT or checkpoint.get("recipe") != self.recipe:
            raise ValueError(f"--resume: {self.checkpoint_path} is not a {self.recipe} checkpoint "
                             f"(recipe {checkpoint.get('recipe')!r}, format {checkpoint.get('format')!r})")
        saved, now = checkpoint.get("args"), self.config()
        if not isinstance(saved, dict) or not isinstance(checkpoint.get("state"), dict):
            raise ValueError(f"--resume: {self.checkpoint_path} is damaged (no arguments or state in it)")
        changed = [f"--{k.replace('_', '-')}: {saved.get(k)!r} -> {now.get(k)!r}" for k in self.fixed
                   if saved.get(k) != now.get(k)]
        if changed:
            raise ValueError(f"--resume: {self.checkpoint_path} was written with other settings: these arguments "
                             f"differ from the checkpoint's run: " + "; ".join(changed))
        missing = set(self.tracked) ^ set(checkpoint["state"])
        if missing:
            raise ValueError(f"--resume: {self.checkpoint_path}'s state does not match this recipe "
                             f"({sorted(missing)})")
        try:
            for name, obj in self.tracked.items():
                obj.load_state_dict(checkpoint["state"][name])
            # CPU-side RNGs last, after everything that might draw while loading.
            _set_rng_state(checkpoint["rng"])
            step = int(checkpoint["step"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as error:
            raise ValueError(f"--resume: {self.checkpoint_path} cannot be resumed: its state does not fit this "
                             f"run (other settings, or a damaged file): {_one_line(error)}") from None
        # Keep the log of the steps the checkpoint covers: the resumed run appends the rest.
        kept = []
        if self.log_path.is_file():
            for line in self.log_path.read_text().splitlines():
                try:
                    logged = json.loads(line) if line.strip() else None
                except ValueError:
                    logged = None  # a damaged log line (e.g. cut off by an interruption) is dropped
                if isinstance(logged, dict) and logged.get("step", 0) <= step:
                    kept.append(line)
        self.log_path.write_text("".join(line + "\n" for line in kept))
        self.say(f"resumed {self.checkpoint_path} at step {step}")
        return step

    def save(self, step: int) -> None:
        checkpoint = {"format": CHECKPOINT_FORMAT, "recipe": self.recipe, "step": step, "args": self.config(),
                      "state": {name: obj.state_dict() for name, obj in self.tracked.items()}, "rng": _rng_state()}
        temporary = self.checkpoint_path.with_suffix(".tmp")
        torch.save(checkpoint, temporary)
        os.replace(temporary, self.checkpoint_path)  # never a half-written checkpoint

    def log(self, step: int, total: int, values: dict) -> None:
        record = {"step": step, **_plain(values), "seconds": round(time.perf_counter() - self.start_time, 3)}
        with self.log_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        self.say(f"step {step:5d}/{total}  {shown}  {record['seconds']:.1f} s", flush=True)

    def logs_step(self, step: int, total: int) -> bool:
        """Whether :meth:`train` logs step ``step`` of ``total`` (the first, every
        ``--log-every`` -- about 20 per run when 0 -- and the last)."""
        every = self.args.log_every or max(1, total // 20)
        return step == 1 or step % every == 0 or step == total

    def train(self, step_fn: Callable[[int], dict], start: int, total: int) -> bool:
        """Runs step_fn(step) for step = start+1 .. total with logging and checkpoints.
        Returns False when --stop-after ended it early."""
        stop_after = getattr(self.args, "stop_after", None)
        for step in range(start + 1, total + 1):
            values = step_fn(step)
            if self.logs_step(step, total):
                self.log(step, total, values)
            # == (not >=): resuming with the same command line goes on past the stop.
            stop = step == stop_after and step < total
            if stop or step == total or (self.args.checkpoint_every and step % self.args.checkpoint_every == 0):
                self.save(step)
            if stop:
                self.say(f"stopped after step {step} (--stop-after); continue with --resume")
                return False
        if start >= total:
            self.say(f"the checkpoint is at step {start} >= {total} steps: nothing to train")
        return True

    def last_logged(self) -> dict:
        """The last record of log.jsonl ({} when empty)."""
        lines = [line for line in self.log_path.read_text().splitlines() if line.strip()] \
            if self.log_path.is_file() else []
        return json.loads(lines[-1]) if lines else {}

    def finish(self, metrics: dict) -> dict:
        metrics = {"recipe": self.recipe, **metrics, "device": str(self.device), "torch": torch.__version__,
                   "seconds": round(time.perf_counter() - self.start_time, 2), "args": self.config()}
        metrics = _plain(metrics)
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        self.say(f"wrote {self.out / 'metrics.json'}")
        return metrics


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def load_checkpoint(path: Path, device) -> dict:
    """``torch.load(path)`` (weights only) of a run's checkpoint; a file torch cannot read
    (random bytes, a truncated copy, another format) or one that is not a dict is a
    one-line ValueError naming the file."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # zip, unpickler, weights_only and EOF errors: whatever the bytes were
        raise ValueError(f"--resume: {path} is damaged or not a checkpoint (torch.load cannot read it: "
                         f"{_one_line(error)})") from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f"--resume: {path} is damaged or not a checkpoint (it holds a "
                         f"{type(checkpoint).__name__}, not a dict)")
    return checkpoint


def start_run(run: Run) -> int:
    """``run.start()`` for a script: a refused --resume exits with its message (status 2)."""
    try:
        return run.start()
    except (ValueError, OSError) as error:
        fail(str(error).splitlines()[0] if str(error).strip() else type(error).__name__)


def poly_schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """DeepLab / SegSort's poly learning-rate decay (1 - t / T) ** 0.9."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: max(0.0, 1.0 - t / max(steps, 1)) ** 0.9)
