"""Tests of segsort_ext.models.embedding on random-weight trunks (no weights file needed)."""
import io
import warnings

import pytest
import torch
import torch.nn.functional as F

from segsort_ext.models import HED, HEDEmbedding, HypercolumnHead


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return HEDEmbedding(HED(), dim=8).eval()


@pytest.mark.parametrize("size", [(37, 50), (32, 48), (9, 13)])
def test_shape_is_half_resolution_rounded_up_and_unit_norm(model, size):
    images = torch.rand(2, 3, *size)
    out = model(images)
    assert out.shape == (2, 8, (size[0] + 1) // 2, (size[1] + 1) // 2)
    assert torch.allclose(out.norm(dim=1), torch.ones(()), atol=1e-5)


def test_hypercolumn_features_are_hed_stage_outputs(model):
    hed = HED()
    hed.stages = model.stages
    images = torch.rand(1, 3, 33, 41)
    ours = model.hypercolumn_features(images)
    theirs = hed.features(images)
    assert torch.allclose(ours[0], F.avg_pool2d(theirs[0], 2, 2, ceil_mode=True))
    for a, b in zip(ours[1:], theirs[1:]):
        assert torch.equal(a, b)


def test_head_on_cached_features_equals_forward(model):
    images = torch.rand(1, 3, 30, 40)
    with torch.no_grad():
        assert torch.equal(model.head(model.hypercolumn_features(images)), model(images))


def test_torchscript_round_trip(model):
    images = torch.rand(1, 3, 29, 43)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
    with torch.no_grad():
        expected = model(images)
        assert torch.allclose(loaded(images), expected, atol=1e-6)
        assert loaded(torch.rand(1, 3, 20, 21)).shape == (1, 8, 10, 11)


def test_frozen_trunk_gradients_reach_the_head_only():
    model = HEDEmbedding(HED(), dim=4)
    model(torch.rand(1, 3, 24, 24)).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in model.stages.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())


def test_trainable_trunk_gets_gradients():
    model = HEDEmbedding(HED(), dim=4, trainable_trunk=True)
    (model(torch.rand(1, 3, 24, 24)) * torch.randn(1, 4, 12, 12)).sum().backward()
    assert all(p.grad is not None for p in model.stages.parameters())


def test_head_state_dict_round_trip(model):
    other = HEDEmbedding(HED(), dim=8).eval()
    other.stages = model.stages
    images = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        assert not torch.allclose(other(images), model(images))
        other.load_head_state_dict(model.head_state_dict())
        assert torch.equal(other(images), model(images))
    assert set(model.head_state_dict()) == set(model.head.state_dict())
    assert not any(k.startswith("stages") for k in model.head_state_dict())


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="images"):
        model(torch.rand(1, 1, 8, 8))
    with pytest.raises(TypeError, match="images"):
        model(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="hed"):
        HEDEmbedding("hed")
    with pytest.raises(TypeError, match="trainable_trunk"):
        HEDEmbedding(trainable_trunk=1)
    with pytest.raises(ValueError, match="dim"):
        HypercolumnHead(0)


def test_dtype_policy_images_must_have_the_modules_dtype(model):
    images = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"images.*module's dtype torch\.float32.*torch\.float64"):
        model(images)
    double = HEDEmbedding(HED().double(), dim=8)  # the head follows the trunk's dtype
    out = double(images)
    assert out.dtype == torch.float64 and out.shape == (1, 8, 4, 4)
    assert HEDEmbedding(HED(), dim=8).double()(images).dtype == torch.float64
    with pytest.raises(TypeError, match="images"):
        double(images.float())


@pytest.mark.parametrize("shape", [(0, 3, 8, 8), (1, 3, 0, 8), (1, 3, 8, 0)])
def test_empty_images_are_refused(model, shape):
    with pytest.raises(ValueError, match="images must not be empty"):
        model(torch.rand(shape))
