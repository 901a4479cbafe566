import pytest
import torch
import torch.nn.functional as F

from segsort_ext.ops import reference, vmf_loss, vmf_nca_loss
from segsort_ext.testing import needs_cuda

loss_op = torch.ops.segsort_ext.vmf_loss
loss_backward = torch.ops.segsort_ext._vmf_loss_backward


def _problem(device, N=300, S=15, M=9, D=8, dtype=torch.float64, seed=0, ignore=True):
    g = torch.Generator().manual_seed(seed)
    e = F.normalize(torch.randn(N, D, generator=g, dtype=dtype), dim=1)
    ids = torch.randint(-1 if ignore else 0, S, (N,), generator=g)
    p = F.normalize(torch.randn(S, D, generator=g, dtype=dtype), dim=1)
    labels = torch.randint(0, 4, (S,), generator=g)
    labels[0] = 9  # a label no other prototype has: its pixels have no positive (Eq. 8 fallback)
    labels[1] = -1  # never a positive
    memory = (F.normalize(torch.randn(M, D, generator=g, dtype=dtype), dim=1), torch.randint(0, 5, (M,), generator=g))
    to = lambda t: t.to(device)  # noqa: E731
    return to(e), to(ids), to(p), to(labels), (to(memory[0]), to(memory[1]))


def _call(nca, fn_pair, e, ids, p, labels, memory, kappa):
    fused, dense = fn_pair
    args = (e, ids, p, labels) if nca else (e, ids, p)
    return fused(*args, concentration=kappa, memory=memory), dense(*args, concentration=kappa, memory=memory)


@pytest.mark.parametrize("nca", [False, True])
@pytest.mark.parametrize("with_memory", [False, True])
@pytest.mark.parametrize("kappa", [1.0, 10.0, 40.0])
def test_values_and_gradients_match_reference(device, nca, with_memory, kappa):
    e, ids, p, labels, memory = _problem(device)
    memory = memory if with_memory else None
    pair = (vmf_nca_loss, reference.vmf_nca_loss) if nca else (vmf_loss, reference.vmf_loss)
    e1, p1 = e.clone().requires_grad_(), p.clone().requires_grad_()
    e2, p2 = e.clone().requires_grad_(), p.clone().requires_grad_()
    fused, _ = _call(nca, pair, e1, ids, p1, labels, memory, kappa)
    _, dense = _call(nca, pair, e2, ids, p2, labels, memory, kappa)
    torch.testing.assert_close(fused, dense, rtol=1e-12, atol=1e-12)
    fused.backward()
    dense.backward()
    torch.testing.assert_close(e1.grad, e2.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("nca", [False, True])
def test_gradcheck(device, nca):
    e, ids, p, labels, memory = _problem(device, N=40, S=6, M=4, D=5)
    e.requires_grad_()
    p.requires_grad_()
    if nca:
        fn = lambda e, p: vmf_nca_loss(e, ids, p, labels, concentration=3.0, memory=memory)  # noqa: E731
    else:
        fn = lambda e, p: vmf_loss(e, ids, p, concentration=3.0, memory=memory)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (e, p))


@pytest.mark.parametrize("nca", [False, True])
def test_gradcheck_op(device, nca):
    # The op itself is differentiable (torch.library.register_autograd): per-pixel losses.
    e, ids, p, labels, memory = _problem(device, N=40, S=6, M=4, D=5)
    e.requires_grad_()
    p.requires_grad_()
    lab, mem_labels = (labels, memory[1]) if nca else (None, None)
    assert torch.autograd.gradcheck(lambda e, p: loss_op(e, ids, p, lab, memory[0], mem_labels, 3.0, nca)[0], (e, p))
    loss, lse_den, lse_num = loss_op(e, ids, p, lab, memory[0], mem_labels, 3.0, nca)
    assert loss.requires_grad and not lse_den.requires_grad and not lse_num.requires_grad
    with pytest.raises(NotImplementedError, match="memory gets no gradient"):
        loss_op(e, ids, p, lab, memory[0].requires_grad_(), mem_labels, 3.0, nca)[0].sum().backward()


def test_contract_by_hand(device):
    # One pixel e = (1, 0), prototypes at angles: own segment 0, same-label segment 1, another label 2.
    e = torch.tensor([[1.0, 0.0]], dtype=torch.float64, device=device)
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64, device=device)
    ids = torch.tensor([0], device=device)
    labels = torch.tensor([5, 5, 7], device=device)
    k = 2.0
    logits = torch.tensor([k, 0.0, -k], dtype=torch.float64)
    eq8 = torch.logsumexp(logits, 0) - logits[0]
    eq10 = torch.logsumexp(logits[1:], 0) - logits[1]  # positives {1}, denominator {1, 2}
    torch.testing.assert_close(vmf_loss(e, ids, p, concentration=k).cpu(), eq8)
    torch.testing.assert_close(vmf_nca_loss(e, ids, p, labels, concentration=k).cpu(), eq10)
    # A memory prototype with the own label is a positive (never "self").
    memory = (torch.tensor([[1.0, 0.0]], dtype=torch.float64, device=device), torch.tensor([5], device=device))
    all_logits = torch.cat([logits, torch.tensor([k], dtype=torch.float64)])
    expected = torch.logsumexp(all_logits[1:], 0) - torch.logsumexp(all_logits[[1, 3]], 0)
    torch.testing.assert_close(vmf_nca_loss(e, ids, p, labels, concentration=k, memory=memory).cpu(), expected)
    # No positive: falls back to Eq. 8.
    lonely = torch.tensor([5, 6, 7], device=device)
    torch.testing.assert_close(vmf_nca_loss(e, ids, p, lonely, concentration=k).cpu(), eq8)


def test_large_concentration_is_finite(device):
    # The dense fp16 way overflows exp(kappa) at kappa = 16; log-sum-exp never does.
    e, ids, p, labels, memory = _problem(device, dtype=torch.float32)
    for kappa in (16.0, 100.0, 1000.0):
        assert torch.isfinite(vmf_nca_loss(e, ids, p, labels, concentration=kappa, memory=memory))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision(device, dtype):
    e, ids, p, labels, memory = _problem(device)
    expected = reference.vmf_nca_loss(e, ids, p, labels, memory=memory)
    half_memory = (memory[0].to(dtype), memory[1])
    ep, pp = e.to(dtype).requires_grad_(), p.to(dtype).requires_grad_()
    actual = vmf_nca_loss(ep, ids, pp, labels, memory=half_memory)
    actual.backward()
    assert ep.grad.dtype == dtype and pp.grad.dtype == dtype
    tol = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(actual.double(), expected, rtol=tol, atol=tol)


def test_ignored_and_empty(device):
    e, ids, p, labels, _ = _problem(device)
    e = e.requires_grad_()
    loss = vmf_loss(e, torch.full_like(ids, -1), p)
    loss.backward()
    assert float(loss.detach()) == 0 and bool((e.grad == 0).all())
    assert float(vmf_nca_loss(e[:0], ids[:0], p, labels).detach()) == 0
    # ignored pixels get no gradient
    e.grad = None
    vmf_nca_loss(e, ids, p, labels).backward()
    assert bool((e.grad[ids < 0] == 0).all()) and bool((e.grad[ids >= 0] != 0).any())


@pytest.mark.parametrize("nca", [False, True])
def test_non_finite_ignored_pixels_change_nothing(device, nca):
    # What an ignored pixel holds (NaN from padding, say) reaches neither loss nor gradients.
    e, ids, p, labels, memory = _problem(device)
    bad = e.clone()
    bad[ids < 0] = float("nan")
    bad[torch.nonzero(ids < 0)[0, 0]] = float("inf")
    fn = (lambda e_, p_: vmf_nca_loss(e_, ids, p_, labels, memory=memory)) if nca else \
         (lambda e_, p_: vmf_loss(e_, ids, p_, memory=memory))
    results = []
    for x in (e, bad):
        x, q = x.clone().requires_grad_(), p.clone().requires_grad_()
        loss = fn(x, q)
        loss.backward()
        results.append((loss.detach(), x.grad[ids >= 0], q.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert bool(torch.isfinite(results[1][2]).all())


def test_memory_in_another_dtype():
    # A float64 memory with float32 embeddings (or float32 with bfloat16) is converted.
    e, ids, p, labels, memory = _problem("cpu", dtype=torch.float32)
    as_float32 = vmf_nca_loss(e, ids, p, labels, memory=memory)
    as_float64 = vmf_nca_loss(e, ids, p, labels, memory=(memory[0].double(), memory[1]))
    torch.testing.assert_close(as_float64, as_float32)


@pytest.mark.parametrize("nca", [False, True])
def test_opcheck(device, nca):
    e, ids, p, labels, memory = _problem(device, N=50, S=7, M=5, D=4, dtype=torch.float32)
    lab = labels if nca else None
    mem_labels = memory[1] if nca else None
    args = (e, ids, p, lab, memory[0], mem_labels, 5.0, nca)
    torch.library.opcheck(loss_op.default, args)
    # the autograd registration
    torch.library.opcheck(loss_op.default, (e.clone().requires_grad_(), ids, p.clone().requires_grad_()) + args[3:])
    loss, den, num = loss_op(*args)
    torch.library.opcheck(loss_backward.default,
                          (torch.rand_like(loss), e, ids, p, lab, memory[0], mem_labels, den, num, 5.0, nca))


@pytest.mark.parametrize("nca", [False, True])
def test_torch_compile_fullgraph(nca):
    e, ids, p, labels, memory = _problem("cpu", N=60, S=7, M=5, D=4, dtype=torch.float32)

    def loss(e, p):
        if nca:
            return vmf_nca_loss(e, ids, p, labels, concentration=5.0, memory=memory)
        return vmf_loss(e, ids, p, concentration=5.0, memory=memory)

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    ee, pe = e.clone().requires_grad_(), p.clone().requires_grad_()
    ec, pc = e.clone().requires_grad_(), p.clone().requires_grad_()
    eager_loss, compiled_loss = loss(ee, pe), compiled(ec, pc)
    eager_loss.backward()
    compiled_loss.backward()
    torch.testing.assert_close(compiled_loss, eager_loss)
    torch.testing.assert_close(ec.grad, ee.grad)
    torch.testing.assert_close(pc.grad, pe.grad)


def test_many_blocks_match_one(monkeypatch):
    # N * (S + M) above the CPU block budget (2^20 logits): several pixel blocks.
    e, ids, p, labels, memory = _problem("cpu", N=40000, S=40, M=20, D=4, dtype=torch.float64)
    assert e.shape[0] * 60 > (1 << 20)
    e1 = e.clone().requires_grad_()
    e2 = e.clone().requires_grad_()
    fused = vmf_nca_loss(e1, ids, p, labels, memory=memory)
    dense = reference.vmf_nca_loss(e2, ids, p, labels, memory=memory)
    torch.testing.assert_close(fused, dense, rtol=1e-12, atol=1e-12)
    fused.backward()
    dense.backward()
    torch.testing.assert_close(e1.grad, e2.grad, rtol=1e-9, atol=1e-14)


@needs_cuda
def test_cuda_matches_cpu():
    e, ids, p, labels, memory = _problem("cpu", N=5000, S=200, M=300, D=64, dtype=torch.float32)
    losses = []
    for device in ("cpu", "cuda"):
        ed = e.to(device).requires_grad_()
        pd = p.to(device).requires_grad_()
        loss = vmf_nca_loss(ed, ids.to(device), pd, labels.to(device),
                            memory=(memory[0].to(device), memory[1].to(device)))
        loss.backward()
        losses.append((loss.detach().cpu(), ed.grad.cpu(), pd.grad.cpu()))
    for a, b in zip(*losses):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("with_memory", [False, True])
def test_strided_inputs(device, with_memory):
    # Views with strides (every other row/label of a bigger tensor, a transposed matrix)
    # give the result of their contiguous copies.
    e, ids, p, labels, memory = _problem(device)
    memory = memory if with_memory else None
    wide_labels = torch.stack([labels, labels.flip(0)], 1)[:, 0]  # stride 2
    wide_ids = torch.stack([ids, ids.flip(0)], 1)[:, 0]
    e_t = e.t().contiguous().t()  # column-major (N, D)
    assert not wide_labels.is_contiguous() and not wide_ids.is_contiguous() and not e_t.is_contiguous()
    strided = vmf_nca_loss(e_t, wide_ids, p, wide_labels, concentration=10.0, memory=memory)
    plain = vmf_nca_loss(e, ids, p, labels, concentration=10.0, memory=memory)
    torch.testing.assert_close(strided, plain, rtol=1e-12, atol=1e-12)
