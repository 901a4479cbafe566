"""SegSortLoss against Algorithm 1 spelled out with the public ops and the dense
reference losses: values, gradients, the prototype memory, pixel sampling, bad inputs."""
import pytest
import torch
import torch.nn.functional as F

import segsort_ext
from segsort_ext.nn import PrototypeMemory, SegSortLoss
from segsort_ext.ops import reference
from segsort_ext.testing import random_labels
from segsort_ext.utils.constants import IGNORE_INDEX


def _segsort_by_hand(embeddings, labels, *, grid=(2, 3), iters=4, concentration=10.0, memory=None,
                     connectivity=None):
    """Algorithm 1 spelled out with the public ops and the dense reference losses."""
    B, D, H, W = embeddings.shape
    clusters = segsort_ext.spherical_kmeans(embeddings.detach(), grid, iters=iters).labels
    segments = segsort_ext.segment_partition(clusters, labels, connectivity=connectivity)
    unit = F.normalize(embeddings, dim=1)
    prototypes = reference.segment_mean(unit, segments.ids, segments.num_segments)
    pixels = unit.permute(0, 2, 3, 1).reshape(-1, D)
    ids = segments.ids.reshape(-1)
    if labels is None:
        return reference.vmf_loss(pixels, ids, prototypes, concentration=concentration, memory=memory), prototypes
    return reference.vmf_nca_loss(pixels, ids, prototypes, segments.label, concentration=concentration,
                                  memory=memory), prototypes


def _embeddings(generator, B=2, D=6, H=9, W=10):
    return torch.randn(B, D, H, W, dtype=torch.float64, generator=generator)


@pytest.mark.parametrize("supervised", [True, False])
@pytest.mark.parametrize("connectivity", [None, 4])
def test_segsort_loss_matches_algorithm_by_hand(device, generator, supervised, connectivity):
    x = _embeddings(generator)
    labels = random_labels(2, 9, 10, 3, generator=generator) if supervised else None
    module = SegSortLoss(grid=(2, 3), kmeans_iters=4, concentration=7.0, connectivity=connectivity)
    x_ours = x.clone().to(device).contiguous(memory_format=torch.channels_last).requires_grad_()
    x_ref = x.clone().requires_grad_()
    loss, diagnostics = module(x_ours, None if labels is None else labels.to(device), return_diagnostics=True)
    expected, _ = _segsort_by_hand(x_ref, labels, concentration=7.0, connectivity=connectivity)
    torch.testing.assert_close(loss.cpu(), expected, rtol=1e-10, atol=1e-12)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(x_ours.grad.cpu(), x_ref.grad, rtol=1e-9, atol=1e-12)
    assert diagnostics["loss_type"] == ("vmf_nca" if supervised else "vmf")
    valid = diagnostics["segments"].ids >= 0
    assert diagnostics["num_pixels"] == int(valid.sum())
    if supervised:
        # Ignored pixels are no loss term and give no gradient.
        ignored = (labels == IGNORE_INDEX).to(device)
        assert bool(ignored.any()) and bool((x_ours.grad.permute(0, 2, 3, 1)[ignored] == 0).all())


def test_segsort_memory_pushed_after_the_loss(generator):
    x1, x2 = _embeddings(generator), _embeddings(generator)
    l1, l2 = (random_labels(2, 9, 10, 3, generator=generator) for _ in range(2))
    memory = PrototypeMemory.last_batches(6, num_batches=2, max_per_batch=200, dtype=torch.float64)
    module = SegSortLoss(grid=(2, 3), kmeans_iters=4, memory=memory)
    first = module(x1, l1)
    expected_first, prototypes_1 = _segsort_by_hand(x1, l1)
    torch.testing.assert_close(first, expected_first)  # the batch is not its own memory
    segments_1 = segsort_ext.segment_partition(segsort_ext.spherical_kmeans(x1, (2, 3), iters=4).labels, l1)
    assert len(memory) == segments_1.num_segments
    assert memory.tensors()[1].tolist() == segments_1.label.tolist()
    assert memory.provenance().image_ids.tolist() == segments_1.batch.tolist()
    second, diagnostics = module(x2, l2, image_ids=torch.tensor([40, 41]), return_diagnostics=True)
    expected_second, _ = _segsort_by_hand(x2, l2, memory=(prototypes_1, segments_1.label))
    torch.testing.assert_close(second, expected_second)
    assert diagnostics["memory_rows"] == segments_1.num_segments
    assert set(memory.provenance().image_ids.tolist()) == {0, 1, 40, 41}
    # Evaluation mode reads the memory but does not push.
    module.eval()
    before = len(memory)
    module(x2, l2)
    assert len(memory) == before
    # The memory is a submodule: the loss's state_dict restores it exactly.
    restored = SegSortLoss(grid=(2, 3), kmeans_iters=4,
                           memory=PrototypeMemory.last_batches(6, num_batches=2, max_per_batch=200,
                                                               dtype=torch.float64))
    restored.load_state_dict(module.state_dict())
    assert torch.equal(restored.memory.tensors()[0], memory.tensors()[0]) and len(restored.memory) == before


def test_segsort_unsupervised_memory_is_negatives_only(generator):
    x1, x2 = _embeddings(generator), _embeddings(generator)
    memory = PrototypeMemory(500, 6, dtype=torch.float64)
    module = SegSortLoss(grid=(2, 3), kmeans_iters=4, memory=memory)
    module(x1)
    _, prototypes_1 = _segsort_by_hand(x1, None)
    assert memory.tensors()[1].tolist() == [-1] * prototypes_1.shape[0]
    expected, _ = _segsort_by_hand(x2, None, memory=memory.tensors())
    torch.testing.assert_close(module(x2), expected)


def test_segsort_pixel_sampling(generator):
    x = _embeddings(generator)
    labels = random_labels(2, 9, 10, 3, generator=generator, ignore_fraction=0.3)
    valid_per_image = (labels != IGNORE_INDEX).sum((1, 2))
    module = SegSortLoss(grid=(2, 3), kmeans_iters=4, max_pixels_per_image=20)
    loss, diagnostics = module(x, labels, generator=torch.Generator().manual_seed(3), return_diagnostics=True)
    assert diagnostics["num_pixels"] == int(valid_per_image.clamp(max=20).sum()) == 40
    again = module(x, labels, generator=torch.Generator().manual_seed(3))
    assert torch.equal(loss, again)
    other = module(x, labels, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(loss, other)
    # Sampling at least every valid pixel is no sampling.
    everything = SegSortLoss(grid=(2, 3), kmeans_iters=4, max_pixels_per_image=90)(x, labels, generator=generator)
    torch.testing.assert_close(everything, SegSortLoss(grid=(2, 3), kmeans_iters=4)(x, labels), rtol=1e-12, atol=0)


def test_segsort_float32_with_float64_memory(generator):
    x1, x2 = _embeddings(generator).float(), _embeddings(generator).float()
    labels = random_labels(2, 9, 10, 3, generator=generator)
    memory = PrototypeMemory(300, 6, dtype=torch.float64)
    module = SegSortLoss(grid=(2, 3), kmeans_iters=4, memory=memory)
    module(x1, labels)
    loss = module(x2, labels)
    assert loss.dtype == torch.float32 and memory.prototypes.dtype == torch.float64
    expected, _ = _segsort_by_hand(x2.double(), labels, memory=None)
    assert torch.isfinite(loss) and not torch.allclose(loss.double(), expected)  # the memory took part


def test_segsort_loss_gradcheck(generator):
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64, generator=generator).requires_grad_()
    labels = torch.randint(0, 2, (1, 4, 5), generator=generator)
    module = SegSortLoss(grid=(2, 2), kmeans_iters=3, concentration=3.0)
    assert torch.autograd.gradcheck(lambda e: module(e, labels), (x,))


def test_segsort_no_valid_pixel(generator):
    x = _embeddings(generator).requires_grad_()
    labels = torch.full((2, 9, 10), IGNORE_INDEX)
    loss = SegSortLoss(grid=(2, 2))(x, labels)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert bool((x.grad == 0).all())


def test_segsort_bad_inputs(generator):
    x = _embeddings(generator)
    module = SegSortLoss()
    with pytest.raises(ValueError, match="embeddings"):
        module(x[0])
    with pytest.raises(TypeError, match="embeddings"):
        module(x.long())
    with pytest.raises(ValueError, match="labels"):
        module(x, torch.zeros(2, 9, 9, dtype=torch.int64))
    with pytest.raises(TypeError, match="labels"):
        module(x, torch.zeros(2, 9, 10))
    with pytest.raises(ValueError, match="image_ids"):
        module(x, image_ids=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="labels are required"):
        SegSortLoss(loss="vmf_nca")(x)
    with pytest.raises(ValueError, match="loss"):
        SegSortLoss(loss="nca")
    with pytest.raises(TypeError, match="memory"):
        SegSortLoss(memory=torch.zeros(3))
    with pytest.raises(ValueError, match="max_pixels_per_image"):
        SegSortLoss(max_pixels_per_image=0)
    with pytest.raises(TypeError, match="generator"):
        module(x, generator=1)
    with pytest.raises(ValueError, match="memory"):
        SegSortLoss(memory=PrototypeMemory(10, 6, device="meta"))(x)


def test_non_finite_embedding_of_a_used_pixel_makes_the_loss_nan(generator):
    # spherical_kmeans gives a non-finite pixel no cluster; the loss must not quietly drop it.
    x = _embeddings(generator)
    labels = random_labels(2, 9, 10, 3, generator=generator)
    labelled = (labels != IGNORE_INDEX).nonzero()[0].tolist()
    ignored = (labels == IGNORE_INDEX).nonzero()[0].tolist()
    for value in (float("nan"), float("inf")):
        bad = x.clone()
        bad[labelled[0], :, labelled[1], labelled[2]] = value
        assert SegSortLoss()(bad, labels).isnan()
        assert SegSortLoss(loss="vmf")(bad).isnan()
        bad = x.clone()
        bad[ignored[0], :, ignored[1], ignored[2]] = value
        assert SegSortLoss()(bad, labels).isfinite()
