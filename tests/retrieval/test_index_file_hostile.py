"""SegmentIndex.load on crafted files: sizes are checked against the file itself before
anything is allocated from them (issue 25). A 2.6 KB file of stride-0 tensors claiming
3.2e9 rows made load allocate 24 GiB; an archive member that claims more bytes than the
file (a deflated zip bomb) is refused before torch.load reads it."""
import os
import time
import zipfile

import pytest
import torch

from segsort_ext.retrieval import SegmentIndex

D = 4
ROWS = 3_200_000_000


def _saved_state(tmp_path):
    index = SegmentIndex(D, metric="cosine", backend="torch")
    index.add(torch.nn.functional.normalize(torch.randn(6, D), dim=1), torch.arange(6) % 3)
    path = tmp_path / "index.pt"
    index.save(path)
    return torch.load(path, weights_only=True)


def test_stride_zero_rows_are_refused_before_anything_is_allocated(tmp_path):
    state = _saved_state(tmp_path)
    one = torch.zeros(1, dtype=torch.int64)
    for name in ("labels", "image_ids", "segment_ids"):
        state[name] = one.expand(ROWS)  # one stored element, 3.2e9 rows
    state["vectors"] = torch.ones(1, D).expand(ROWS, D)
    path = tmp_path / "crafted.pt"
    torch.save(state, path)
    assert os.path.getsize(path) < 10_000
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"corrupt SegmentIndex file '.*crafted\.pt': field labels is not a dense "
                                         r"tensor: shape \(3200000000,\)"):
        SegmentIndex.load(path)
    assert time.perf_counter() - start < 5  # refused from the header, not after scanning 3.2e9 rows


def test_a_stride_zero_vectors_field_is_refused(tmp_path):
    state = _saved_state(tmp_path)
    state["vectors"] = state["vectors"][:1].expand(6, D)
    torch.save(state, tmp_path / "crafted.pt")
    with pytest.raises(ValueError, match=r"crafted\.pt.*field vectors is not a dense tensor"):
        SegmentIndex.load(tmp_path / "crafted.pt")


def test_an_archive_member_larger_than_the_file_is_refused_before_loading(tmp_path):
    state = _saved_state(tmp_path)
    state["vectors"] = torch.zeros(2_000_000, D)  # 32 MB of zeros, deflated to a few KB below
    state["labels"] = state["image_ids"] = state["segment_ids"] = torch.zeros(2_000_000, dtype=torch.int64)
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member.filename, source.read(member.filename))
    assert os.path.getsize(bomb) < 1_000_000
    with pytest.raises(ValueError, match=r"corrupt SegmentIndex file '.*bomb\.pt': archive member .* claims "
                                         r"\d+ bytes, more than the file's"):
        SegmentIndex.load(bomb)


def test_an_honest_file_still_loads(tmp_path):
    index = SegmentIndex(D, backend="torch")
    index.add(torch.nn.functional.normalize(torch.randn(6, D), dim=1), torch.arange(6) % 3)
    index.save(tmp_path / "index.pt")
    assert torch.equal(SegmentIndex.load(tmp_path / "index.pt").labels, index.labels)
