"""SegSort under DistributedDataParallel: every rank trains on its own shard of the data,
the SegSort loss contrasts each rank's pixels with the segment prototypes of the *global*
batch (all-gathered, with gradient) and with a prototype memory that is identical on
every rank; afterwards a sharded SegmentIndex labels held-out images by kNN voting and a
distributed SphericalKMeans clusters the pixel embeddings of all ranks.

    torchrun --nproc_per_node=2 python/segsort/train_ddp.py --steps 5          # 2 CPU processes (gloo)
    torchrun --nproc_per_node=8 python/segsort/train_ddp.py --backend nccl     # one GPU per process
    python python/segsort/train_ddp.py --steps 5                               # one process, no torch.distributed

The data set is synthetic by default (rectangles and discs of 4 classes on textured
backgrounds, generated per index, so every rank sees the same data set without files).
Loss convention: the loss printed is the global mean over the valid pixels of all ranks;
each rank's gradient is world_size x its share, so DDP's gradient averaging yields the
gradient of that global mean (see SegSortLoss).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

import segsort_ext

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: the shared code in common/
from common.args import ArgumentParser, fail

NUM_CLASSES = 4
# A colour per class; the network has to learn colour + texture -> class-consistent embeddings.
CLASS_COLOURS = torch.tensor([[0.45, 0.45, 0.45], [0.85, 0.25, 0.2], [0.2, 0.7, 0.3], [0.25, 0.3, 0.85]])


class SyntheticShapes(Dataset):
    """Images (3, S, S) in [0, 1] with 1-3 rectangles or discs of classes 1..3 on class-0
    background, colour noise and a 2-pixel ignored border (label 255). Item ``i`` is
    generated from seed + i, so it is the same on every rank and in every epoch."""

    def __init__(self, length: int, size: int = 48, seed: int = 0):
        self.length, self.size, self.seed = length, size, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + index)
        size = self.size
        label = torch.zeros(size, size, dtype=torch.int64)
        ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        for _ in range(int(torch.randint(1, 4, (1,), generator=generator))):
            cls = int(torch.randint(1, NUM_CLASSES, (1,), generator=generator))
            cy, cx = (torch.rand(2, generator=generator) * size).tolist()
            radius = float(size * (0.12 + 0.2 * torch.rand(1, generator=generator)))
            if bool(torch.rand(1, generator=generator) < 0.5):
                shape = ((ys - cy).abs() < radius) & ((xs - cx).abs() < radius * 0.7)
            else:
                shape = (ys - cy) ** 2 + (xs - cx) ** 2 < radius ** 2
            label[shape] = cls
        image = CLASS_COLOURS[label].permute(2, 0, 1) + 0.08 * torch.randn(3, size, size, generator=generator)
        label[:2], label[-2:], label[:, :2], label[:, -2:] = 255, 255, 255, 255
        return image.clamp(0, 1), label, index


class EmbeddingNet(nn.Module):
    """Dilated convolutions to (B, dim, H, W) unit embeddings. GroupNorm, not BatchNorm:
    batch statistics would differ per rank (SyncBatchNorm needs GPUs)."""

    def __init__(self, dim: int = 16, width: int = 32):
        super().__init__()
        layers, channels = [], 3
        for dilation in (1, 2, 4, 1):
            layers += [nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation), nn.GroupNorm(4, width),
                       nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.Conv2d(width, dim, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, image):
        return F.normalize(self.body(image - 0.5), dim=1)


def setup(backend: str):
    """(rank, world_size, device, distributed) from torchrun's environment; a single
    process without torch.distributed when RANK/WORLD_SIZE are not set."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu"), False
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=5))
    return dist.get_rank(), dist.get_world_size(), device, True


def all_sum(values, device, distributed: bool) -> list[float]:
    """Sums of a few host numbers over the ranks (reporting only)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if distributed:
        dist.all_reduce(tensor)
    return tensor.tolist()


def main(argv=None) -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=2, help="images per rank and step")
    parser.add_argument("--size", type=int, default=48, help="image side")
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=64)
    parser.add_argument("--test-images", type=int, default=8, help="held-out images (split over the ranks)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--backend", default="auto", choices=("auto", "gloo", "nccl"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "size", "dim", "train_images"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.test_images < 0:
        fail(f"--test-images must be >= 0, got {args.test_images}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        fail(f"--lr must be a finite number > 0, got {args.lr}")
    rank, world, device, distributed = setup(args.backend)
    torch.manual_seed(args.seed)  # identical initial weights (DDP also broadcasts rank 0's)
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))

    def log(message: str) -> None:
        if rank == 0:
            print(message, flush=True)

    train_set = SyntheticShapes(args.train_images, args.size, seed=args.seed)
    sampler = (DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed,
                                  drop_last=True) if distributed
               else RandomSampler(train_set, generator=torch.Generator().manual_seed(args.seed)))
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, drop_last=True)

    net = EmbeddingNet(args.dim).to(device)
    model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) \
        if distributed else net
    grid = (3, 3)
    # Up to K clusters x NUM_CLASSES labels per image, for the images of every rank.
    memory = segsort_ext.PrototypeMemory.last_batches(
        args.dim, num_batches=2, max_per_batch=world * args.batch_size * grid[0] * grid[1] * NUM_CLASSES)
    criterion = segsort_ext.SegSortLoss(concentration=10.0, grid=grid, kmeans_iters=5, memory=memory,
                                        distributed=True).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    log(f"world size {world} ({dist.get_backend() if distributed else 'no torch.distributed'}, {device.type}); "
        f"{args.steps} steps of {world} x {args.batch_size} images {args.size}x{args.size}; "
        f"{len(train_set)} training images")

    step, epoch, start = 0, 0, time.perf_counter()
    model.train()
    while step < args.steps:
        if distributed:
            sampler.set_epoch(epoch)  # a new shuffle per epoch, the same on every rank
        for images, labels, image_ids in loader:
            images, labels, image_ids = images.to(device), labels.to(device), image_ids.to(device)
            loss, info = criterion(model(images), labels, image_ids=image_ids, return_diagnostics=True)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == 1 or step % max(1, args.steps // 8) == 0 or step == args.steps:
                segments = info.get("global_num_segments", info["num_segments"])
                log(f"step {step:4d}  loss {float(loss.detach()):.4f}  segments {segments:3d} (global batch)  "
                    f"memory {len(memory)} prototypes  {time.perf_counter() - start:.1f} s")
            if step == args.steps:
                break
        epoch += 1

    # Replicas must agree: DDP keeps the weights equal, the gathered memory is equal.
    checksum = torch.stack([sum(p.detach().double().sum() for p in net.parameters()),
                            memory.prototypes.double().sum()]).to(device)
    if distributed:
        low, high = checksum.clone(), checksum.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        log(f"replicas in sync: weights {bool(low[0] == high[0])}, memory {bool(low[1] == high[1])}")

    # Inference: each rank indexes the training segments of its shard of the images, and
    # labels its share of the held-out images by kNN voting over all shards.
    model.eval()
    index = segsort_ext.SegmentIndex(args.dim, device=device, distributed=True)
    shard = list(range(rank, len(train_set), world))
    tests = SyntheticShapes(args.test_images, args.size, seed=args.seed + 1)
    my_tests = list(range(rank, len(tests), world))
    correct = total = 0
    pixels = []
    with torch.no_grad():
        for i in shard:
            image, label, _ = train_set[i]
            segsort_ext.add_training_segments(index, net(image[None].to(device)), label[None].to(device),
                                              num_classes=NUM_CLASSES, image_ids=torch.tensor([i], device=device),
                                              grid=grid)
        predictor = segsort_ext.SegSortPredictor(index, NUM_CLASSES, k=5, grid=(4, 4))
        # vote is a collective: every rank makes the same number of calls (an empty batch
        # where a rank has run out of test images).
        for j in range(-(-len(tests) // world)):
            if j < len(my_tests):
                image, label, _ = tests[my_tests[j]]
                image, label = image[None].to(device), label[None].to(device)
            else:
                image = torch.zeros(0, 3, args.size, args.size, device=device)
                label = torch.zeros(0, args.size, args.size, dtype=torch.int64, device=device)
            embeddings = net(image)
            predicted = predictor.predict(embeddings)
            valid = label != 255
            correct += int((predicted[valid] == label[valid]).sum())
            total += int(valid.sum())
            pixels.append(embeddings.permute(0, 2, 3, 1).reshape(-1, args.dim)[valid.reshape(-1)])
    rows, correct_all, total_all = all_sum([len(index), correct, total], device, distributed)
    log(f"sharded bank: {int(rows)} training segments over {world} shard(s); held-out pixel accuracy "
        f"{correct_all / max(total_all, 1):.3f} (kNN vote, k=5)")

    # PiCIE-style dataset clustering of the held-out pixel embeddings of all ranks.
    kmeans = segsort_ext.SphericalKMeans(NUM_CLASSES, seed=args.seed, max_iter=10, distributed=True)
    kmeans.fit(torch.cat(pixels))
    log(f"distributed k-means over {int(kmeans.counts.sum())} pixels of all ranks: cluster sizes "
        f"{kmeans.counts.tolist()}, inertia {kmeans.inertia_:.2f}")
    if distributed:
        dist.barrier()
        gloo = "gloo" in str(dist.get_backend())
        dist.destroy_process_group()
        if gloo:
            # Work around a torch teardown race: once a DDP was built, gloo's worker threads
            # outlive destroy_process_group (here torch 2.11 keeps the group referenced), and
            # a thread that releases a finished collective's tensors after the interpreter
            # began to shut down aborts the process with "terminate called without an active
            # exception" (seen in ~1 of 4 runs on 2 busy cores; pytorch/pytorch#179291).
            # Everything is done and printed: leave without the interpreter's teardown.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


if __name__ == "__main__":
    main()
