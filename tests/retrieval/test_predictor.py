"""SegSort inference: building a bank with add_training_segments, and SegSortPredictor's
vote maps over single, flipped and rescaled views (bad inputs: tests/hostile/cases_retrieval.py)."""
import torch
import torch.nn.functional as F

from segsort_ext.retrieval import SegmentIndex, SegSortPredictor, add_training_segments

C, D = 4, 16


def _images(B, H, W, seed, device="cpu"):
    """Embeddings whose direction encodes the class of vertical bands, plus noise."""
    g = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(C, D, generator=torch.Generator().manual_seed(99)), dim=1)
    band = torch.randint(0, C, (B, 1, W // 8), generator=g).repeat_interleave(8, 2)
    labels = band.expand(B, H, W).contiguous()
    embeddings = directions[labels].permute(0, 3, 1, 2) + 0.2 * torch.randn(B, D, H, W, generator=g)
    return embeddings.to(device), labels.to(device)


def test_bank_and_predict(device):
    index = SegmentIndex(D, backend="torch", device=device)
    for batch in range(3):
        embeddings, labels = _images(2, 24, 32, seed=batch, device=device)
        labels[:, :2] = 255  # void rows never count
        added = add_training_segments(index, embeddings, labels, num_classes=C,
                                      image_ids=torch.tensor([2 * batch, 2 * batch + 1], device=device), grid=(3, 4))
        assert added > 0
    assert set(index.labels.tolist()) <= set(range(C))
    assert set(index.image_ids.tolist()) == set(range(6))
    predictor = SegSortPredictor(index, C, k=5, grid=(4, 4))
    embeddings, labels = _images(2, 24, 32, seed=10, device=device)
    predicted = predictor.predict(embeddings)
    assert predicted.shape == labels.shape
    assert (predicted == labels).float().mean() > 0.9
    maps = predictor.vote_map(embeddings)
    torch.testing.assert_close(maps.sum(1), torch.ones_like(maps.sum(1)))


def test_flip_and_scale_views(device):
    index = SegmentIndex(D, backend="torch", device=device)
    for batch in range(3):
        embeddings, labels = _images(2, 24, 32, seed=batch, device=device)
        add_training_segments(index, embeddings, labels, num_classes=C, grid=(3, 4))
    assert set(index.labels.tolist()) == set(range(C))
    predictor = SegSortPredictor(index, C, k=3, grid=(4, 4))
    test, test_labels = _images(1, 24, 32, seed=5, device=device)
    # A flipped view whose embeddings are the flipped map votes like the original view.
    single = predictor.vote_map(test)
    flipped = predictor.vote_map(test.flip(-1), flip=True)
    assert (single.argmax(1) == test_labels).float().mean() > 0.9
    assert (flipped.argmax(1) == test_labels).float().mean() > 0.9
    small = F.interpolate(test, scale_factor=0.5, mode="bilinear", align_corners=False)
    combined = predictor.predict([(test, False), (test.flip(-1), True), (small, False)])
    assert combined.shape == test_labels.shape
    assert (combined == test_labels).float().mean() > 0.9
