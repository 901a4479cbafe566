"""torch.distributed support: 2 gloo processes on the CPU compared with one process on the
concatenated data (the single-process reference runs inside each worker, on the full data,
so both see the same thread settings).

Spawning and importing torch costs seconds per process, so every distributed check runs in
one spawned job (module fixture); each test below asserts on what its check recorded. The
job has a deadline and the process group a timeout, so a desynchronised collective fails
the tests instead of hanging them.
"""
from __future__ import annotations

import datetime
import os
import socket
import time
import traceback

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.cluster import SphericalKMeans
from segsort_ext.nn import PrototypeMemory, SegSortLoss
from segsort_ext.retrieval import SegmentIndex, SegSortPredictor
from segsort_ext.testing import random_labels
from segsort_ext.utils import distributed as dist_utils

WORLD = 2
DEADLINE_S = 150  # the whole spawned job; it takes ~15 s on 2 busy cores


# --------------------------------------------------------------------------------------
# the checks (run on every rank, in this order; each returns nothing or raises)
# --------------------------------------------------------------------------------------
def _split(total: int, first: int, rank: int) -> slice:
    """Rank 0 gets rows [0, first), rank 1 the rest."""
    return slice(0, first) if rank == 0 else slice(first, total)


def check_all_gather_with_grad(rank, group):
    for sizes in ((3, 2), (0, 4)):  # also a rank without rows
        total = sum(sizes)
        full = torch.arange(total * 2, dtype=torch.float64).view(total, 2) + 0.5
        mine = full[_split(total, sizes[0], rank)].clone().requires_grad_()
        gathered, counts = dist_utils.all_gather_rows_with_grad(mine, group)
        assert torch.equal(gathered, full), gathered
        assert counts.tolist() == list(sizes)
        # Rank r's loss weighs every gathered row by (r + 1) * w: this rank's rows receive
        # the gradients of both ranks' losses, (1 + 2) * w.
        weights = torch.linspace(-1, 2, total * 2, dtype=torch.float64).view(total, 2)
        ((rank + 1) * weights * gathered).sum().backward()
        assert torch.allclose(mine.grad, 3 * weights[_split(total, sizes[0], rank)], rtol=0, atol=1e-15), mine.grad


def check_memory_gathers_like_one_process(rank, group):
    import torch.distributed as dist

    generator = torch.Generator().manual_seed(1)
    subgroup = dist.new_group(list(range(WORLD)))  # an explicit process_group
    memories = [PrototypeMemory(8, 3, max_batches=2, dtype=torch.float64),
                PrototypeMemory(8, 3, max_batches=2, dtype=torch.float64, process_group=subgroup)]
    local = PrototypeMemory(8, 3, dtype=torch.float64, gather_distributed=False)
    reference = PrototypeMemory(8, 3, max_batches=2, dtype=torch.float64)
    for sizes in ((3, 2), (0, 4), (2, 1)):
        total = sum(sizes)
        rows = torch.randn(total, 3, generator=generator, dtype=torch.float64)
        labels = torch.randint(0, 5, (total,), generator=generator)
        image_ids = torch.randint(0, 100, (total,), generator=generator)
        mine = _split(total, sizes[0], rank)
        for memory in memories:
            memory.push(rows[mine], labels[mine], image_ids[mine])
        local.push(rows[mine], labels[mine], image_ids[mine])
        # The single process sees the concatenation, each rank's segment ids as pushed.
        segment_ids = torch.cat([torch.arange(sizes[0]), torch.arange(sizes[1])])
        reference._write(rows, labels, image_ids, segment_ids, torch.zeros(total, dtype=torch.int64))
        expected_ranks = torch.cat([torch.zeros(sizes[0]), torch.ones(sizes[1])]).long()
        for memory in memories:
            assert torch.equal(memory.tensors()[0], reference.tensors()[0])
            assert torch.equal(memory.tensors()[1], reference.tensors()[1])
            got, want = memory.provenance(), reference.provenance()
            assert torch.equal(got.image_ids, want.image_ids) and torch.equal(got.segment_ids, want.segment_ids)
            assert torch.equal(got.batches, want.batches)
            assert torch.equal(got.ranks[-total:], expected_ranks)
    assert set(local.provenance().ranks.tolist()) == {rank}  # gather_distributed=False stays local
    dist.destroy_process_group(subgroup)


def _segsort_inputs(step: int, batch: int = 4, dim: int = 5, size: int = 6):
    generator = torch.Generator().manual_seed(100 + step)
    embeddings = torch.randn(batch, dim, size, size, generator=generator, dtype=torch.float64)
    labels = random_labels(batch, size, size, 3, ignore_fraction=0.2, generator=generator)
    return embeddings, labels


def check_segsort_loss_matches_one_process(rank, group):
    """Loss value, embedding gradients, memory and diagnostics over 4 steps, rank 0 with
    1 image and rank 1 with 3; step 2 without labels (vMF), step 3 where rank 1 has no
    valid pixel (its loss has no term but must still join the backward collective)."""
    kwargs = dict(grid=(2, 2), kmeans_iters=3, concentration=7.0)

    def make(distributed):
        # The reference's memory must not gather either: it stands for one process.
        memory = PrototypeMemory.last_batches(5, num_batches=2, max_per_batch=64, dtype=torch.float64,
                                              gather_distributed=distributed)
        return SegSortLoss(memory=memory, distributed=distributed, **kwargs)

    single, sharded = make(False), make(True)
    vmf_single = SegSortLoss(memory=single.memory, loss="vmf", **kwargs)
    vmf_sharded = SegSortLoss(memory=sharded.memory, loss="vmf", distributed=True, **kwargs)
    mine = _split(4, 1, rank)
    for step in range(4):
        embeddings, labels = _segsort_inputs(step)
        image_ids = None
        if step == 1:
            image_ids = torch.tensor([40, 41, 42, 43])
        if step == 3:
            labels[1:] = 255  # rank 1's images: nothing valid
        use_labels = None if step == 2 else labels
        reference, criterion = (vmf_single, vmf_sharded) if step == 2 else (single, sharded)
        full = embeddings.clone().requires_grad_()
        expected, expected_diag = reference(full, use_labels, image_ids=image_ids, return_diagnostics=True)
        (expected_grad,) = torch.autograd.grad(expected, full)
        local = embeddings[mine].clone().requires_grad_()
        loss, diag = criterion(local, None if use_labels is None else use_labels[mine],
                               image_ids=None if image_ids is None else image_ids[mine], return_diagnostics=True)
        loss.backward()
        assert abs(float(loss.detach()) - float(expected.detach())) <= 1e-12, (step, float(loss.detach()))
        # The convention: world_size x the single-process gradient of this rank's inputs.
        torch.testing.assert_close(local.grad, WORLD * expected_grad[mine], rtol=0, atol=1e-12)
        assert float(expected_grad[mine].abs().sum()) > 0 or step == 3
        assert diag["global_num_segments"] == expected_diag["num_segments"]
        assert diag["global_num_pixels"] == expected_diag["num_pixels"]
        assert diag["image_offset"] == (0 if rank == 0 else 1)
        assert diag["segment_offset"] == (0 if rank == 0 else
                                          int((expected_diag["segments"].batch < 1).sum()))
        assert diag["memory_rows"] == expected_diag["memory_rows"]
        got_bank, got_labels = sharded.memory.tensors()
        want_bank, want_labels = single.memory.tensors()
        torch.testing.assert_close(got_bank, want_bank, rtol=0, atol=1e-14)
        assert torch.equal(got_labels, want_labels)
        got, want = sharded.memory.provenance(), single.memory.provenance()
        assert torch.equal(got.image_ids, want.image_ids), (got.image_ids, want.image_ids)
        assert torch.equal(got.segment_ids, want.segment_ids)


def check_ddp_gradients_match_one_process(rank, group):
    """A tiny conv net under DDP: after DDP's averaging, parameter gradients equal the
    single-process gradients of the loss on the concatenated batch."""
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, 3, padding=1, dtype=torch.float64)
    reference = torch.nn.Conv2d(3, 4, 3, padding=1, dtype=torch.float64)
    reference.load_state_dict(net.state_dict())
    model = DistributedDataParallel(net)
    memory_kwargs = dict(num_batches=2, max_per_batch=64, dtype=torch.float64)
    criterion = SegSortLoss(grid=(2, 2), kmeans_iters=3, distributed=True,
                            memory=PrototypeMemory.last_batches(4, **memory_kwargs))
    single = SegSortLoss(grid=(2, 2), kmeans_iters=3,
                         memory=PrototypeMemory.last_batches(4, gather_distributed=False, **memory_kwargs))
    mine = _split(5, 3, rank)  # 3 images on rank 0, 2 on rank 1
    for step in range(2):
        generator = torch.Generator().manual_seed(7 + step)
        images = torch.rand(5, 3, 8, 8, generator=generator, dtype=torch.float64)
        labels = random_labels(5, 8, 8, 3, generator=generator)
        model.zero_grad()
        reference.zero_grad()
        loss = criterion(model(images[mine]), labels[mine])
        loss.backward()
        expected = single(reference(images), labels)
        expected.backward()
        assert abs(float(loss.detach()) - float(expected.detach())) <= 1e-12
        for (name, p), q in zip(net.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-12, msg=f"step {step} {name}")
            assert float(q.grad.abs().sum()) > 0


def _blobs(n=257, dim=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(3, dim, generator=generator, dtype=torch.float64), dim=1)
    which = torch.randint(0, 3, (n,), generator=generator)
    return centres[which] + 0.3 * torch.randn(n, dim, generator=generator, dtype=torch.float64)


def check_kmeans_matches_one_process(rank, group):
    data = _blobs()
    mine = _split(len(data), 100, rank)
    cpu = torch.device("cpu")
    for init in ("random", "k-means++"):
        kwargs = dict(init=init, seed=3, chunk_size=32, init_sample=150, max_iter=8, tol=-1.0)
        single = SphericalKMeans(4, **kwargs)
        sharded = SphericalKMeans(4, distributed=True, **kwargs)
        # The initialisation is bit-identical to the single process's on the union.
        assert torch.equal(sharded._initial_centroids(data[mine], cpu, sharded._group()),
                           single._initial_centroids(data, cpu)), init
        single.fit(data)
        sharded.fit(data[mine])
        torch.testing.assert_close(sharded.centroids, single.centroids, rtol=0, atol=1e-12)
        assert torch.equal(sharded.counts, single.counts) and sharded.n_iter_ == single.n_iter_ == 8
        assert abs(sharded.inertia_ - single.inertia_) < 1e-10
        assert torch.equal(sharded.predict(data[mine]), single.predict(data)[mine])
        assert abs(sharded.objective(data[mine]) - single.objective(data)) < 1e-10
        # The same centroids on both ranks: the sums of a difference over ranks is 0.
        spread = dist_utils.all_reduce_sum(sharded.centroids * (1 if rank == 0 else -1), group)
        assert float(spread.abs().max()) == 0.0
    # A user init is rank 0's (here the ranks pass different ones).
    inits = [F.normalize(torch.randn(4, 6, generator=torch.Generator().manual_seed(s), dtype=torch.float64), dim=1)
             for s in (11, 12)]
    single = SphericalKMeans(4, init=inits[0], max_iter=5, tol=-1.0).fit(data)
    sharded = SphericalKMeans(4, init=inits[rank], max_iter=5, tol=-1.0, distributed=True).fit(data[mine])
    torch.testing.assert_close(sharded.centroids, single.centroids, rtol=0, atol=1e-12)
    # partial_fit: two rounds of per-rank batches == the concatenated batches.
    single = SphericalKMeans(3, init="random", seed=1)
    sharded = SphericalKMeans(3, init="random", seed=1, distributed=True)
    for round_, (start, stop, first) in enumerate(((0, 120, 50), (120, 257, 137))):
        batch = data[start:stop]
        single.partial_fit(batch)
        sharded.partial_fit(batch[_split(len(batch), first - start, rank)])
        torch.testing.assert_close(sharded.centroids, single.centroids, rtol=0, atol=1e-12)
        assert torch.equal(sharded.counts, single.counts), round_
    assert int(sharded.counts.sum()) == len(data)
    # Too few points over all ranks: the same error on every rank.
    with pytest.raises(ValueError, match="fewer than num_clusters"):
        SphericalKMeans(9, distributed=True).fit(data[:4] if rank == 0 else data[:3])


def _bank(seed=5, rows=40, dim=8, duplicate=True):
    generator = torch.Generator().manual_seed(seed)
    vectors = F.normalize(torch.randn(rows, dim, generator=generator, dtype=torch.float64), dim=1)
    if duplicate:
        vectors[27] = vectors[3]  # an exact tie across the shards: the lower global id wins
    labels = torch.randint(0, 5, (rows,), generator=generator)
    image_ids = torch.arange(rows) // 4 + 1000
    segment_ids = torch.arange(rows) % 4
    queries = torch.randn(11, dim, generator=generator, dtype=torch.float64)
    queries[0] = vectors[3]
    return vectors, labels, image_ids, segment_ids, queries


def check_sharded_index_matches_one_index(rank, group):
    vectors, labels, image_ids, segment_ids, queries = _bank()
    mine = _split(len(vectors), 15, rank)
    my_queries = _split(len(queries), 7, rank)  # different queries on each rank
    for backend, metric in (("torch", "ip"), ("torch", "cosine"), ("faiss", "ip")):
        dtype = torch.float64 if backend == "torch" else torch.float32
        if backend == "faiss":
            # faiss keeps an arbitrary member of a tie group straddling the k-th place (see
            # retrieval's docstring), so its single index is compared on tie-free data.
            vectors = _bank(duplicate=False)[0]
        bank = vectors.to(dtype) * (1 + torch.arange(len(vectors), dtype=dtype)[:, None] / 50) \
            if metric == "cosine" else vectors.to(dtype)
        q = queries.to(dtype)
        single = SegmentIndex(8, backend=backend, metric=metric)
        single.add(bank, labels, image_ids, segment_ids)
        sharded = SegmentIndex(8, backend=backend, metric=metric, distributed=True)
        sharded.add(bank[mine], labels[mine], image_ids[mine], segment_ids[mine])
        assert len(sharded) == (15 if rank == 0 else 25)
        for k in (1, 5, 21):  # 21 > rank 0's 15 rows
            scores, ids = sharded.search(q[my_queries], k)
            want_scores, want_ids = single.search(q[my_queries], k)
            assert torch.equal(ids, want_ids), (backend, metric, k)
            assert scores.dtype == want_scores.dtype
            torch.testing.assert_close(scores, want_scores, rtol=0, atol=1e-12 if backend == "torch" else 1e-6)
        got, want = sharded.explain(q[my_queries], 6), single.explain(q[my_queries], 6)
        for name in ("ids", "labels", "image_ids", "segment_ids"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
        if rank == 0 and backend == "torch" and metric == "ip":
            assert got.ids[0, :2].tolist() == [3, 27]  # the tie, by ascending global id
        for weighting in ("uniform", "similarity"):
            got_labels, got_votes = sharded.vote(q[my_queries], 21, weighting=weighting)
            want_labels, want_votes = single.vote(q[my_queries], 21, weighting=weighting)
            assert torch.equal(got_labels, want_labels)
            torch.testing.assert_close(got_votes, want_votes, rtol=0, atol=1e-10 if backend == "torch" else 1e-5)
        # No queries on one rank; k larger than all shards fails on both ranks alike,
        # and the ranks stay in step afterwards.
        scores, ids = sharded.search(q[my_queries] if rank == 0 else q[:0], 4)
        assert ids.shape == ((7 if rank == 0 else 0), 4)
        with pytest.raises(ValueError, match="all shards"):
            sharded.search(q[my_queries], 41)
        assert torch.equal(sharded.search(q[my_queries], 2)[1], single.search(q[my_queries], 2)[1])
    # An empty shard (rank 1 adds nothing).
    single = SegmentIndex(8, backend="torch")
    single.add(vectors[:15], labels[:15])
    sharded = SegmentIndex(8, backend="torch", distributed=True)
    if rank == 0:
        sharded.add(vectors[:15], labels[:15])
    assert torch.equal(sharded.search(queries[my_queries], 3)[1], single.search(queries[my_queries], 3)[1])
    assert torch.equal(sharded.vote(queries[my_queries], 5)[0], single.vote(queries[my_queries], 5)[0])
    # A predictor over the sharded bank works on the rank whose shard is empty, too.
    assert sharded.is_sharded and not single.is_sharded
    embeddings = F.normalize(torch.randn(1, 8, 6, 6, generator=torch.Generator().manual_seed(rank),
                                         dtype=torch.float64), dim=1)
    got = SegSortPredictor(sharded, 5, k=3, grid=(2, 2)).predict(embeddings)
    want = SegSortPredictor(single, 5, k=3, grid=(2, 2)).predict(embeddings)
    assert torch.equal(got, want)


CHECKS = [
    check_all_gather_with_grad,
    check_memory_gathers_like_one_process,
    check_segsort_loss_matches_one_process,
    check_ddp_gradients_match_one_process,
    check_kmeans_matches_one_process,
    check_sharded_index_matches_one_index,
]


# --------------------------------------------------------------------------------------
# the spawned job
# --------------------------------------------------------------------------------------
def _worker(rank: int, init_method: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)  # 2 processes on 2 cores
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=40))
    results = {}
    failed = False
    try:
        group = dist_utils.resolve_group(True)
        for check in CHECKS:
            start = time.perf_counter()
            try:
                check(rank, group)
                results[check.__name__] = ("ok", f"{time.perf_counter() - start:.2f} s")
            except Exception:  # noqa: BLE001 - recorded for the test that asserts on it
                results[check.__name__] = ("failed", traceback.format_exc())
                failed = True
                break  # the other rank may be inside a collective: stop, don't desynchronise further
            finally:
                torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        if not failed:
            dist.barrier()
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's teardown: once a DDP was built, gloo's worker threads
    # outlive destroy_process_group (torch keeps the group referenced), and one releasing a
    # finished collective's tensors while the interpreter shuts down aborts the process
    # ("terminate called without an active exception", ~1 run in 20 here;
    # pytorch/pytorch#179291). The results are saved; a failure before this point still
    # shows in test_workers_exit_cleanly.
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    import torch.multiprocessing as mp

    out_dir = tmp_path_factory.mktemp("distributed")
    init_method = f"tcp://127.0.0.1:{_free_port()}"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    context = mp.start_processes(_worker, args=(init_method, str(out_dir)), nprocs=WORLD, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + DEADLINE_S
    error = None
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                error = f"the spawned job passed its {DEADLINE_S} s deadline"
                break
    except Exception as exc:  # noqa: BLE001 - a worker died: reported per check below
        error = f"a worker failed: {exc}"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    results = []
    for rank in range(WORLD):
        path = out_dir / f"rank{rank}.pt"
        results.append(torch.load(path, weights_only=True) if path.exists() else {})
    return results, error


@pytest.mark.parametrize("check", [c.__name__ for c in CHECKS])
def test_distributed_check(job, check):
    results, error = job
    # Every rank's record: the first failure may be on another rank than rank 0 (whose
    # collective then fails only because its peer stopped).
    reports = [(rank, *recorded.get(check, ("not run", error or "an earlier check failed")))
               for rank, recorded in enumerate(results)]
    failed = [f"rank {rank}: {check} {status}:\n{detail}" for rank, status, detail in reports if status != "ok"]
    assert not failed, "\n".join(failed)


def test_workers_exit_cleanly(job):
    # A worker that crashes at teardown (e.g. gloo threads outliving the process group)
    # would be a crash in users' training scripts too.
    results, error = job
    assert error is None, error


# --------------------------------------------------------------------------------------
# single process: distributed=True without a process group is the single-process code
# --------------------------------------------------------------------------------------
def test_without_process_group_everything_is_single_process():
    import torch.distributed as dist

    assert not dist.is_initialized()
    embeddings, labels = _segsort_inputs(0)
    plain = SegSortLoss(grid=(2, 2), kmeans_iters=3)(embeddings, labels, return_diagnostics=True)
    opted = SegSortLoss(grid=(2, 2), kmeans_iters=3, distributed=True)(embeddings, labels, return_diagnostics=True)
    assert torch.equal(plain[0], opted[0]) and "world_size" not in opted[1]
    data = _blobs()
    a = SphericalKMeans(4, seed=2).fit(data)
    b = SphericalKMeans(4, seed=2, distributed=True).fit(data)
    assert torch.equal(a.centroids, b.centroids)
    vectors, labels, *_ , queries = _bank()
    index = SegmentIndex(8, backend="torch", distributed=True)
    index.add(vectors, labels)
    plain_index = SegmentIndex(8, backend="torch")
    plain_index.add(vectors, labels)
    assert torch.equal(index.search(queries, 4)[1], plain_index.search(queries, 4)[1])
    with pytest.raises(ValueError, match="larger than"):
        index.search(queries, 41)


def test_user_init_is_exact_and_checked():
    data = _blobs()
    init = 3 * torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    km = SphericalKMeans(4, init=init, max_iter=0).fit(data)
    assert torch.equal(km.centroids, F.normalize(init, dim=1))  # max_iter=0: the given centroids, normalised
    init[0] = 0  # the estimator kept its own copy
    assert float(km.init[0].abs().sum()) > 0
    with pytest.raises(ValueError, match="init"):
        SphericalKMeans(3, init=init)
    with pytest.raises(ValueError, match="D = 6"):
        SphericalKMeans(4, init=torch.randn(4, 5, dtype=torch.float64)).fit(data)
    with pytest.raises(TypeError, match="init"):
        SphericalKMeans(4, init=torch.zeros(4, 6, dtype=torch.int64))


def test_bad_distributed_arguments():
    with pytest.raises(TypeError, match="distributed"):
        SegSortLoss(distributed=1)
    with pytest.raises(TypeError, match="process_group"):
        SegSortLoss(distributed=True, process_group="world")
    with pytest.raises(TypeError, match="process_group"):
        PrototypeMemory(4, 2, process_group=0)
    with pytest.raises(TypeError, match="distributed"):
        SphericalKMeans(3, distributed="yes")
    with pytest.raises(TypeError, match="process_group"):
        SphericalKMeans(3, distributed=True, process_group=object())
    with pytest.raises(TypeError, match="distributed"):
        SegmentIndex(4, distributed=None)
    with pytest.raises(TypeError, match="process_group"):
        SegmentIndex(4, distributed=True, process_group=[0, 1])
