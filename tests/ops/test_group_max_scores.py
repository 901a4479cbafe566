import importlib

import pytest
import torch

from segsort_ext.ops import reference
from segsort_ext.ops.group_max_scores import group_max_scores
from segsort_ext.testing import INF, NAN, needs_extension

pytestmark = needs_extension

# (Q, M, D, group): M a multiple of group or not, M < group, one query, query counts that
# split into register tiles of every width, odd D, D = 0, group 1.
SHAPES = [(1, 64, 64, 64), (5, 130, 7, 64), (17, 10, 3, 64), (33, 1000, 64, 64), (49, 257, 13, 8),
          (97, 515, 5, 16), (16, 300, 64, 64), (3, 100, 5, 1), (40, 77, 0, 16), (208, 1100, 32, 64)]


def _integers(shape, generator, dtype):
    """Small integers: every inner product is exact in any summation order."""
    return torch.randint(-4, 5, shape, generator=generator).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_equals_reference_on_exact_scores(generator, dtype, shape):
    Q, M, D, group = shape
    queries, bank = _integers((Q, D), generator, dtype), _integers((M, D), generator, dtype)
    out = group_max_scores(queries, bank, group)
    assert out.shape == (Q, -(-M // group)) and out.dtype == dtype
    assert torch.equal(out, reference.group_max_scores(queries, bank, group))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_within_the_rounding_bound(generator, dtype, shape):
    """Within gamma_D |q| max |x| of the exact maxima: the bound the retrieval scan's
    rescoring relies on."""
    Q, M, D, group = shape
    queries, bank = torch.randn(Q, D, generator=generator), torch.randn(M, D, generator=generator) * 3
    out = group_max_scores(queries.to(dtype), bank.to(dtype), group)
    exact = reference.group_max_scores(queries.double(), bank.double(), group)
    eps = torch.finfo(dtype).eps / 2
    bound = D * eps / (1 - D * eps) * queries.double().norm(dim=1, keepdim=True) * bank.double().norm(dim=1).max()
    assert bool(((out.double() - exact).abs() <= bound).all())


@pytest.mark.parametrize("Q, M", [(0, 100), (7, 0), (0, 0)])
def test_empty(Q, M):
    out = group_max_scores(torch.ones(Q, 4), torch.ones(M, 4), 64)
    assert out.shape == (Q, -(-M // 64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("row", [0, 5, 7, 8, 63, 64, 100, 128])  # first, in and last of a tile, in the short tail
def test_nan_wins_and_inf_follows_ieee(generator, dtype, row):
    queries, bank = _integers((20, 6), generator, dtype), _integers((130, 6), generator, dtype)
    bank[row, 0] = NAN
    bank[(row + 70) % 130, 2] = INF  # +inf for queries with q[2] > 0, -inf below, NaN at 0
    queries[3, 1] = NAN
    queries[4, 2] = 0
    out = group_max_scores(queries, bank, 64)
    torch.testing.assert_close(out, reference.group_max_scores(queries, bank, 64), rtol=0, atol=0, equal_nan=True)
    assert bool(out[:, row // 64].isnan().all()) and bool(out[3].isnan().all())
    assert bool(out[4, (row + 70) % 130 // 64].isnan())


def test_group_of_one_row_keeps_negative_infinity():
    bank = torch.tensor([[-INF, 0.0], [1.0, 1.0]])
    out = group_max_scores(torch.tensor([[1.0, 2.0]]), bank, 1)
    assert out.tolist() == [[-INF, 3.0]]


def test_plus_and_minus_infinity_in_one_group():
    """Their sum is NaN, as a NaN score's is: the group is checked again and reports +inf."""
    bank = torch.zeros(70, 3)
    bank[5, 0], bank[40, 0] = INF, -INF
    assert group_max_scores(torch.tensor([[1.0, 0.0, 0.0]]), bank, 64).tolist() == [[INF, 0.0]]


def test_independent_of_thread_count(generator):
    queries, bank = torch.randn(50, 64, generator=generator), torch.randn(20000, 64, generator=generator)
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(group_max_scores(queries, bank, 64))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], other) for other in results[1:])


def test_strided_inputs(generator):
    queries = torch.randn(64, 9, generator=generator).T[:, ::2]  # (9, 32), no unit stride
    bank = torch.randn(32, 300, generator=generator).T
    torch.testing.assert_close(group_max_scores(queries, bank, 64), reference.group_max_scores(queries, bank, 64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(generator, dtype):
    queries, bank = torch.randn(19, 5, generator=generator, dtype=dtype), torch.randn(150, 5, generator=generator,
                                                                                       dtype=dtype)
    torch.library.opcheck(torch.ops.segsort_ext.group_max_scores.default, (queries, bank, 64))


BAD = [
    ("queries half", lambda: (torch.ones(2, 3, dtype=torch.half), torch.ones(4, 3, dtype=torch.half), 2),
     TypeError, "queries"),
    ("queries int", lambda: (torch.ones(2, 3, dtype=torch.int64), torch.ones(4, 3, dtype=torch.int64), 2),
     TypeError, "queries"),
    ("bank dtype", lambda: (torch.ones(2, 3), torch.ones(4, 3, dtype=torch.float64), 2), TypeError, "bank"),
    ("bank D", lambda: (torch.ones(2, 3), torch.ones(4, 5), 2), ValueError, "bank"),
    ("bank 1-d", lambda: (torch.ones(2, 3), torch.ones(3), 2), ValueError, "bank"),
    ("queries 3-d", lambda: (torch.ones(1, 2, 3), torch.ones(4, 3), 2), ValueError, "queries"),
    ("group 0", lambda: (torch.ones(2, 3), torch.ones(4, 3), 0), ValueError, "group"),
    ("group -5", lambda: (torch.ones(2, 3), torch.ones(4, 3), -5), ValueError, "group"),
    ("meta bank", lambda: (torch.ones(2, 3), torch.ones(4, 3, device="meta"), 2), ValueError, "bank"),
]


@pytest.mark.parametrize("public", [True, False], ids=["public", "raw"])
@pytest.mark.parametrize("name, args, error, argument", BAD, ids=[case[0] for case in BAD])
def test_bad_inputs(public, name, args, error, argument):
    call = group_max_scores if public else torch.ops.segsort_ext.group_max_scores
    with pytest.raises(error, match=rf"\b{argument}\b"):
        call(*args())


@pytest.mark.parametrize("group", [2.5, "2", None])
def test_group_must_be_an_int(group):
    with pytest.raises(TypeError, match="group"):
        group_max_scores(torch.ones(2, 3), torch.ones(4, 3), group)


def test_meta_shapes():
    out = group_max_scores(torch.empty(7, 3, device="meta"), torch.empty(130, 3, device="meta"), 64)
    assert out.shape == (7, 3) and out.device.type == "meta"


def test_blocked_fallback_matches_one_block(monkeypatch, generator):
    """Off the fused kernel (the op's plain-PyTorch kernel: other devices, or no extension),
    banks larger than one block of scores run block by block."""
    module = importlib.import_module("segsort_ext.ops.group_max_scores")  # the function shadows the module
    queries = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    bank = torch.randn(70, 5, generator=generator, dtype=torch.float64)
    python_kernel = module._group_max_scores_python
    whole = python_kernel(queries, bank, 4)
    monkeypatch.setattr(module, "_BLOCK_SCORES", 3 * 8)  # two groups of 4 per block: 9 blocks
    assert torch.equal(python_kernel(queries, bank, 4), whole)
    assert torch.equal(whole, reference.group_max_scores(queries, bank, 4))
