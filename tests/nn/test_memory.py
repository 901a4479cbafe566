import io
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from segsort_ext.nn import PrototypeMemory
from segsort_ext.ops import reference
from segsort_ext.utils import distributed as dist_utils


class FifoModel:
    """The memory's contract in plain Python: a list of rows, oldest first."""

    def __init__(self, size, max_batches=None):
        self.size, self.max_batches = size, max_batches
        self.rows = []  # (prototype row, label, image id, segment id, push number)
        self.pushes = 0

    def push(self, prototypes, labels, image_ids, segment_ids):
        self.pushes += 1
        for i in range(prototypes.shape[0]):
            self.rows.append((prototypes[i], int(labels[i]), int(image_ids[i]), int(segment_ids[i]), self.pushes))
        self.rows = self.rows[-self.size:]
        if self.max_batches is not None:
            self.rows = [r for r in self.rows if r[4] > self.pushes - self.max_batches]


def _batch(generator, n, dim, dtype=torch.float64):
    prototypes = torch.randn(n, dim, generator=generator, dtype=dtype)
    labels = torch.randint(-1, 5, (n,), generator=generator)
    image_ids = torch.randint(0, 100, (n,), generator=generator)
    segment_ids = torch.randint(0, 1000, (n,), generator=generator)
    return prototypes, labels, image_ids, segment_ids


def _assert_matches(memory, model):
    if not model.rows:
        assert memory.tensors() is None and len(memory) == 0
        assert memory.provenance().image_ids.numel() == 0
        return
    prototypes, labels = memory.tensors()
    assert len(memory) == len(model.rows) == prototypes.shape[0]
    torch.testing.assert_close(prototypes, torch.stack([r[0] for r in model.rows]).to(prototypes.dtype), rtol=0, atol=0)
    assert labels.tolist() == [r[1] for r in model.rows]
    provenance = memory.provenance()
    assert provenance.image_ids.tolist() == [r[2] for r in model.rows]
    assert provenance.segment_ids.tolist() == [r[3] for r in model.rows]
    assert provenance.batches.tolist() == [r[4] for r in model.rows]
    assert provenance.ranks.tolist() == [0] * len(model.rows)


@pytest.mark.parametrize("max_batches", [None, 1, 2, 3])
def test_fifo_matches_model(generator, max_batches):
    memory = PrototypeMemory(7, 3, max_batches=max_batches, dtype=torch.float64)
    model = FifoModel(7, max_batches)
    _assert_matches(memory, model)
    for n in [2, 3, 0, 4, 9, 1, 7, 5, 2, 2, 0, 0, 6]:  # wrap-around, zero rows, more than size
        batch = _batch(generator, n, 3)
        memory.push(*batch)
        model.push(*batch)
        _assert_matches(memory, model)


def test_last_batches_holds_exactly_the_last_two_batches(generator):
    memory = PrototypeMemory.last_batches(4, num_batches=2, max_per_batch=10, dtype=torch.float64)
    assert memory.size == 20 and memory.max_batches == 2
    batches = [_batch(generator, n, 4) for n in (6, 3, 8, 1)]
    for i, batch in enumerate(batches):
        memory.push(*batch)
        prototypes, labels = memory.tensors()
        expected = torch.cat([b[0] for b in batches[max(0, i - 1):i + 1]])
        torch.testing.assert_close(prototypes, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="max_per_batch"):
        PrototypeMemory.last_batches(4, num_batches=2, max_per_batch=0)


def test_push_more_than_size_keeps_newest(generator):
    memory = PrototypeMemory(4, 2, dtype=torch.float64)
    memory.push(*_batch(generator, 3, 2))
    prototypes, labels, image_ids, segment_ids = _batch(generator, 10, 2)
    memory.push(prototypes, labels, image_ids, segment_ids)
    kept, kept_labels = memory.tensors()
    torch.testing.assert_close(kept, prototypes[-4:], rtol=0, atol=0)
    assert kept_labels.tolist() == labels[-4:].tolist()
    assert memory.provenance().segment_ids.tolist() == segment_ids[-4:].tolist()


def test_default_provenance_and_detach(generator):
    memory = PrototypeMemory(10, 3)
    prototypes = torch.randn(4, 3, generator=generator, requires_grad=True)
    memory.push(prototypes * 2, torch.arange(4))
    stored, labels = memory.tensors()
    assert not stored.requires_grad and stored.dtype == torch.float32
    torch.testing.assert_close(stored, (prototypes * 2).detach())
    provenance = memory.provenance()
    assert provenance.image_ids.tolist() == [-1] * 4
    assert provenance.segment_ids.tolist() == [0, 1, 2, 3]  # the row within its push
    assert provenance.batches.tolist() == [1] * 4


def test_tensors_is_a_copy_usable_after_later_pushes(generator):
    # A loss keeps the memory tensors for its backward; pushing in between must not
    # change them (nor trip autograd's in-place checks).
    memory = PrototypeMemory(3, 4, dtype=torch.float64)
    memory.push(*_batch(generator, 3, 4))
    bank, labels = memory.tensors()
    snapshot = bank.clone()
    embeddings = torch.nn.functional.normalize(torch.randn(5, 4, dtype=torch.float64, generator=generator), dim=1)
    embeddings.requires_grad_()
    prototypes = torch.nn.functional.normalize(torch.randn(2, 4, dtype=torch.float64, generator=generator), dim=1)
    loss = reference.vmf_loss(embeddings, torch.tensor([0, 1, 0, 1, -1]), prototypes, memory=(bank, labels))
    memory.push(*_batch(generator, 3, 4))
    loss.backward()
    assert torch.equal(bank, snapshot)
    assert not torch.equal(memory.tensors()[0], snapshot)


def test_empty_memory_is_accepted_by_the_vmf_losses(generator):
    memory = PrototypeMemory(5, 3, dtype=torch.float64)
    assert memory.tensors() is None
    embeddings = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64, generator=generator), dim=1)
    prototypes = torch.nn.functional.normalize(torch.randn(2, 3, dtype=torch.float64, generator=generator), dim=1)
    ids = torch.tensor([0, 1, 1, 0, -1, 0])
    from segsort_ext.ops import vmf_loss, vmf_nca_loss

    torch.testing.assert_close(vmf_loss(embeddings, ids, prototypes, memory=memory.tensors()),
                               reference.vmf_loss(embeddings, ids, prototypes))
    labels = torch.tensor([0, 0])
    torch.testing.assert_close(vmf_nca_loss(embeddings, ids, prototypes, labels, memory=memory.tensors()),
                               reference.vmf_nca_loss(embeddings, ids, prototypes, labels))
    memory.push(prototypes, labels)
    torch.testing.assert_close(vmf_nca_loss(embeddings, ids, prototypes, labels, memory=memory.tensors()),
                               reference.vmf_nca_loss(embeddings, ids, prototypes, labels, memory=(prototypes, labels)))


@pytest.mark.parametrize("max_batches", [None, 2])
def test_state_dict_round_trip_is_exact(generator, max_batches):
    memory = PrototypeMemory(6, 3, max_batches=max_batches, dtype=torch.float64)
    for n in (4, 3):  # partially filled window, write position mid-ring
        memory.push(*_batch(generator, n, 3))
    buffer = io.BytesIO()
    torch.save(memory.state_dict(), buffer)
    buffer.seek(0)
    restored = PrototypeMemory(6, 3, max_batches=max_batches, dtype=torch.float64)
    restored.load_state_dict(torch.load(buffer))
    for key, value in memory.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    assert int(restored.write_position) == int(memory.write_position) and len(restored) == len(memory)
    # Same future: identical pushes give identical memories (write position, window restored).
    for n in (2, 5, 0, 1):
        batch = _batch(generator, n, 3)
        memory.push(*batch)
        restored.push(*batch)
        assert len(memory) == len(restored)
        for a, b in zip(memory.tensors() or (), restored.tensors() or ()):
            assert torch.equal(a, b)
        for a, b in zip(memory.provenance(), restored.provenance()):
            assert torch.equal(a, b)


def test_state_dict_of_a_fresh_memory_and_clear(generator):
    memory = PrototypeMemory(4, 2)
    restored = PrototypeMemory(4, 2)
    memory.push(*_batch(generator, 3, 2, torch.float32))
    memory.clear()
    restored.push(*_batch(generator, 2, 2, torch.float32))
    restored.load_state_dict(memory.state_dict())
    assert len(restored) == 0 and restored.tensors() is None
    with pytest.raises(RuntimeError):  # a different size does not load
        PrototypeMemory(5, 2).load_state_dict(memory.state_dict())


def test_inconsistent_state_is_rejected():
    memory = PrototypeMemory(4, 2)
    state = memory.state_dict()
    state["num_filled"] = torch.tensor(9)
    with pytest.raises(ValueError, match="inconsistent"):
        memory.load_state_dict(state)


def test_to_device_and_dtype(device, generator):
    memory = PrototypeMemory(5, 3).to(device)
    assert memory.prototypes.device.type == device and memory.write_position.device.type == device
    prototypes, labels, image_ids, segment_ids = (t.to(device) for t in _batch(generator, 2, 3))
    memory.push(prototypes, labels, image_ids, segment_ids)
    bank, bank_labels = memory.tensors()
    assert bank.device.type == device and bank.dtype == torch.float32
    memory = memory.double()
    assert memory.tensors()[0].dtype == torch.float64 and memory.labels.dtype == torch.int64


def test_bad_inputs(generator):
    with pytest.raises(ValueError, match="size"):
        PrototypeMemory(0, 3)
    with pytest.raises(ValueError, match="dim"):
        PrototypeMemory(3, 0)
    with pytest.raises(TypeError, match="size"):
        PrototypeMemory(2.5, 3)
    with pytest.raises(ValueError, match="max_batches"):
        PrototypeMemory(3, 3, max_batches=0)
    with pytest.raises(TypeError, match="dtype"):
        PrototypeMemory(3, 3, dtype=torch.int64)
    memory = PrototypeMemory(4, 3)
    with pytest.raises(ValueError, match="prototypes"):
        memory.push(torch.randn(2, 4), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="prototypes"):
        memory.push(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="labels"):
        memory.push(torch.randn(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="labels"):
        memory.push(torch.randn(2, 3), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="image_ids"):
        memory.push(torch.randn(2, 3), torch.zeros(2, dtype=torch.int64), torch.zeros(1, dtype=torch.int64))
    with pytest.raises(ValueError, match="device"):
        memory.push(torch.randn(2, 3, device="meta"), torch.zeros(2, dtype=torch.int64))
    assert len(memory) == 0  # nothing was written by the failed pushes


def test_push_gathered_without_a_process_group_pushes_this_ranks_rows(generator):
    # Rows gathered from 2 ranks, seen from rank 1: without torch.distributed the memory
    # gathers nothing, so it holds what push of rank 1's own rows gives.
    prototypes, labels, image_ids, _ = _batch(generator, 5, 3)
    counts = torch.tensor([2, 3])
    memory = PrototypeMemory(8, 3, dtype=torch.float64)
    memory.push_gathered(prototypes, labels, image_ids, counts=counts, group=dist_utils.Group(None, 1, 2))
    expected = PrototypeMemory(8, 3, dtype=torch.float64)
    expected.push(prototypes[2:], labels[2:], image_ids[2:], torch.arange(2, 5))
    for a, b in zip(memory.tensors() + tuple(memory.provenance()), expected.tensors() + tuple(expected.provenance())):
        assert torch.equal(a, b)
    assert memory.provenance().segment_ids.tolist() == [2, 3, 4]  # rows of the gathered batch


def test_push_gathered_bad_inputs(generator):
    memory = PrototypeMemory(8, 3, dtype=torch.float64)
    prototypes, labels, _, _ = _batch(generator, 5, 3)
    group = dist_utils.Group(None, 0, 2)
    with pytest.raises(ValueError, match="counts"):
        memory.push_gathered(prototypes, labels, counts=torch.tensor([2, 2]), group=group)
    with pytest.raises(ValueError, match="counts"):
        memory.push_gathered(prototypes, labels, counts=torch.tensor([5]), group=group)
    with pytest.raises(TypeError, match="counts"):
        memory.push_gathered(prototypes, labels, counts=torch.tensor([2.0, 3.0]), group=group)
    with pytest.raises(TypeError, match="group"):
        memory.push_gathered(prototypes, labels, counts=torch.tensor([2, 3]), group=None)
    with pytest.raises(ValueError, match="labels"):
        memory.push_gathered(prototypes, labels[:4], counts=torch.tensor([2, 3]), group=group)
    assert len(memory) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_distributed_single_process_gloo_group():
    # In a subprocess so the process group cannot leak into other tests.
    script = textwrap.dedent(f"""
        import torch, torch.distributed as dist
        from segsort_ext.nn import PrototypeMemory
        from segsort_ext.utils import distributed as dist_utils
        dist.init_process_group("gloo", rank=0, world_size=1, init_method="tcp://127.0.0.1:{_free_port()}")
        try:
            memory = PrototypeMemory(5, 2, dtype=torch.float64)
            local = PrototypeMemory(5, 2, dtype=torch.float64, gather_distributed=False)
            first = torch.arange(6.0, dtype=torch.float64).view(3, 2)
            second = -torch.arange(8.0, dtype=torch.float64).view(4, 2)
            for m in (memory, local):
                m.push(first, torch.tensor([0, 1, 2]), torch.tensor([7, 7, 8]))
                m.push(second, torch.tensor([3, 4, 5, 6]))
            bank, labels = memory.tensors()
            assert torch.equal(bank, torch.cat([first, second])[-5:]), bank
            assert labels.tolist() == [2, 3, 4, 5, 6], labels
            assert memory.provenance().image_ids.tolist() == [8, -1, -1, -1, -1]
            assert memory.provenance().ranks.tolist() == [0] * 5
            assert torch.equal(local.tensors()[0], bank)
            memory.push(torch.zeros(0, 2, dtype=torch.float64), torch.zeros(0, dtype=torch.int64))
            assert len(memory) == 5
            # push_gathered: rows gathered over the memory's own group are written without
            # a second all-gather; a memory of another group gathers them over its own.
            gathers = []
            all_gather_rows = dist_utils.all_gather_rows
            dist_utils.all_gather_rows = lambda *args, **kwargs: gathers.append(1) or all_gather_rows(*args, **kwargs)
            group = dist_utils.resolve_group(True)
            other = PrototypeMemory(5, 2, dtype=torch.float64, process_group=dist.new_group([0]))
            rows, labels, image_ids = second[:3], torch.tensor([7, 8, 9]), torch.tensor([1, 2, 3])
            for m in (memory, local, other):
                m.clear()
                m.push_gathered(rows, labels, image_ids, counts=torch.tensor([3]), group=group)
                assert torch.equal(m.tensors()[0], rows) and m.tensors()[1].tolist() == [7, 8, 9]
                assert m.provenance().segment_ids.tolist() == [0, 1, 2]
                assert m.provenance().image_ids.tolist() == [1, 2, 3]
            assert len(gathers) == 1, gathers
            print("DISTRIBUTED-OK")
        finally:
            dist.destroy_process_group()
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0 and "DISTRIBUTED-OK" in result.stdout, result.stdout + result.stderr
