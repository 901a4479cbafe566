"""The real backbones by name (issue 23): each architecture trains a step from random
weights; pretrained weights come from a local file, the torch hub cache or a download, and
without a network they are refused at once with a message that says where to put the file.

No test here touches the network: the network check and torch.hub's downloader are replaced
by stubs that fail the test, and the torch hub cache is a temporary folder. The torchvision
backbones are skipped where torchvision is not installed."""
import importlib.util
import socket
import threading
import time

import numpy as np
import pytest
import torch

from .programs import common

backbones = common("backbones")
REAL_NETWORK_CHECK = backbones.network_reachable
TORCHVISION = sorted(backbones.TORCHVISION)
needs_torchvision = pytest.mark.skipif(importlib.util.find_spec("torchvision") is None,
                                       reason="torchvision not installed")
REAL = [pytest.param(name, marks=needs_torchvision) for name in TORCHVISION] + ["dinov2_vits14"]


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache, no $SEGSORT_BACKBONE_WEIGHTS, and no network access."""
    def touched(*args, **kwargs):
        raise AssertionError("the test reached for the network")

    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.delenv(backbones.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(backbones, "network_reachable", touched)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", touched)
    return hub


def _offline(monkeypatch):
    """The network check answers 'offline'; returns the URLs it was asked about."""
    asked = []

    def offline(url, timeout=None):
        asked.append(url)
        return False

    monkeypatch.setattr(backbones, "network_reachable", offline)
    return asked


# ---------------------------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny", *REAL])
def test_each_backbone_trains_one_step_from_random_weights(name):
    torch.manual_seed(0)
    net = backbones.build_backbone(name, 8, weights=None)
    images = torch.rand(2, 3, 64, 64)
    out = net(images)
    assert out.shape == (2, 8, 64, 64) and torch.isfinite(out).all()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    head = [p for p in net.parameters() if p.requires_grad][-1]
    before = head.detach().clone()
    out.square().mean().backward()
    unused = {"body.vit.mask_token"}  # DINOv2's masked-training token
    assert all(p.grad is not None for n, p in net.named_parameters() if p.requires_grad and n not in unused)
    optimizer.step()
    assert not torch.equal(before, head)


@pytest.mark.parametrize("name", [pytest.param("deeplabv3_resnet50", marks=needs_torchvision), "dinov2_vits14"])
def test_coordinate_channels_and_sizes_that_are_not_multiples_of_the_stride(name):
    torch.manual_seed(0)
    net = backbones.build_backbone(name, 5, coords=True, weights=None).eval()
    images = torch.rand(1, 3, 45, 31)
    with torch.no_grad():
        out = net(images)
    assert out.shape == (1, 5, 45, 31) and torch.isfinite(out).all()
    assert isinstance(net.body, backbones.WithCoordinates)


def test_the_vits14_parameter_names_are_those_of_the_released_dinov2_checkpoint():
    keys = set(backbones.ViTS14().state_dict())
    block = {f"blocks.{i}.{part}.{kind}" for i in range(12) for part in (
        "norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2") for kind in ("weight", "bias")}
    block |= {f"blocks.{i}.ls{j}.gamma" for i in range(12) for j in (1, 2)}
    assert keys == block | {"cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight",
                            "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    vit = backbones.ViTS14()
    assert vit.pos_embed.shape == (1, 37 * 37 + 1, 384)
    assert sum(p.numel() for p in vit.parameters()) == pytest.approx(22.06e6, rel=0.01)  # ViT-S/14: 22.1M
    tokens = vit.forward_features(torch.randn(1, 3, 28, 42))["x_norm_patchtokens"]
    assert tokens.shape == (1, 2 * 3, 384)


def test_dinov2_uses_the_hub_cache_code_when_it_is_there(offline_hub):
    repo = backbones.dinov2_hub_repo()
    repo.mkdir(parents=True)
    (repo / "hubconf.py").write_text(
        "dependencies = ['torch']\n\n\n"
        "def dinov2_vits14(pretrained=True):\n"
        "    assert not pretrained\n"
        "    from common.backbones import ViTS14\n"
        "    model = ViTS14()\n"
        "    model.from_hub_cache = True\n"
        "    return model\n")
    net = backbones.build_backbone("dinov2_vits14", 4, weights=None)
    assert getattr(net.body.vit, "from_hub_cache", False)


def test_torchvision_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torchvision", None)
    with pytest.raises(ValueError, match="backbone 'fcn_resnet50' needs torchvision"):
        backbones.build_backbone("fcn_resnet50", 4, weights=None)


def test_unknown_names_and_weights_are_refused():
    with pytest.raises(ValueError, match="unknown backbone 'resnet9000'"):
        backbones.build_backbone("resnet9000", 4)
    with pytest.raises(TypeError, match="weights must be"):
        backbones.build_backbone("dinov2_vits14", 4, weights=3)
    with pytest.raises(backbones.BackboneWeightsError, match="'dinov2_vits14' has no 'imagenet' weights"):
        backbones.build_backbone("dinov2_vits14", 4, weights="imagenet")


# ---------------------------------------------------------------------------------------------
# Offline
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", REAL)
def test_pretrained_weights_offline_are_refused_at_once_saying_where_to_put_the_file(name, offline_hub,
                                                                                     monkeypatch):
    asked = _offline(monkeypatch)
    # "At once": the downloader is a stub that fails the test, so the refusal cannot wait
    # on a download (no wall-clock bound: a loaded machine builds ResNet-101 slowly).
    with pytest.raises(backbones.BackboneWeightsError) as refused:
        backbones.build_backbone(name, 4)  # weights="default"
    message = str(refused.value)
    assert isinstance(refused.value, ValueError) and "\n" not in message
    assert f"backbone {name!r}" in message and "no network" in message
    assert asked and all(url.startswith("https://") for url in asked)
    file = backbones.hub_checkpoint(asked[0])
    assert str(file) in message and str(offline_hub / "checkpoints") in message  # where to put it
    assert f"{backbones.WEIGHTS_ENV}=PATH" in message and "weights=PATH" in message  # or give its path
    assert f"{backbones.WEIGHTS_ENV}=none" in message


@needs_torchvision
def test_imagenet_weights_offline_are_refused_naming_the_resnet_file(monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(backbones.BackboneWeightsError, match=r"'fcn_resnet50'.*resnet50-\w+\.pth"):
        backbones.build_backbone("fcn_resnet50", 4, weights="imagenet")


def test_the_network_check_gives_up_after_its_timeout(monkeypatch):
    """A connection (or a name lookup) that hangs counts as offline after ``timeout``."""
    release = threading.Event()

    def hangs(address, timeout=None):
        release.wait(30)
        raise OSError("gave up")

    monkeypatch.setattr(backbones.urllib.request, "getproxies", dict)
    monkeypatch.setattr(socket, "create_connection", hangs)
    try:
        start = time.perf_counter()
        assert REAL_NETWORK_CHECK("https://download.pytorch.org/models/x.pth", timeout=0.3) is False
        assert time.perf_counter() - start < 20  # well before the 30 s hang ends, even on a loaded machine
    finally:
        release.set()


def test_the_network_check_asks_the_host_or_the_proxy(monkeypatch):
    asked = []

    class Connection:
        def close(self):
            pass

    def connects(address, timeout=None):
        asked.append(address)
        if address[0] == "unreachable.example":
            raise OSError("no route")
        return Connection()

    monkeypatch.setattr(socket, "create_connection", connects)
    monkeypatch.setattr(backbones.urllib.request, "getproxies", dict)
    assert REAL_NETWORK_CHECK("https://dl.example/a.pth") is True
    assert REAL_NETWORK_CHECK("https://unreachable.example/a.pth") is False
    monkeypatch.setattr(backbones.urllib.request, "getproxies", lambda: {"https": "http://proxy.example:3128"})
    assert REAL_NETWORK_CHECK("https://unreachable.example/a.pth") is True
    assert asked == [("dl.example", 443), ("unreachable.example", 443), ("proxy.example", 3128)]


# ---------------------------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------------------------

def _assert_loaded(module, state, skip=()):
    own = module.state_dict()
    checked = [k for k in own if not k.startswith(tuple(skip)) and not k.endswith("num_batches_tracked")]
    assert checked
    for key in checked:
        assert torch.equal(own[key], state[key]), key


def _vits14_file(path, seed=1):
    torch.manual_seed(seed)
    state = backbones.ViTS14().state_dict()
    torch.save(state, path)
    return state


def test_a_local_dinov2_file_loads_by_path_and_through_the_environment(tmp_path, monkeypatch):
    state = _vits14_file(tmp_path / "dinov2_vits14_pretrain.pth")
    net = backbones.build_backbone("dinov2_vits14", 4, weights=tmp_path / "dinov2_vits14_pretrain.pth")
    _assert_loaded(net.body.vit, state)
    monkeypatch.setenv(backbones.WEIGHTS_ENV, str(tmp_path / "dinov2_vits14_pretrain.pth"))
    _assert_loaded(backbones.build_backbone("dinov2_vits14", 4).body.vit, state)  # the programs' way
    monkeypatch.setenv(backbones.WEIGHTS_ENV, "none")
    assert not torch.equal(backbones.build_backbone("dinov2_vits14", 4).body.vit.pos_embed, state["pos_embed"])
    tiny = backbones.build_backbone("tiny", 4)  # tiny ignores the variable
    torch.save(tiny.body.state_dict(), tmp_path / "tiny.pt")
    _assert_loaded(backbones.build_backbone("tiny", 4, weights=tmp_path / "tiny.pt").body, tiny.body.state_dict())


def test_released_weights_in_the_hub_cache_load_without_the_network(offline_hub):
    path = backbones.hub_checkpoint(backbones.DINOV2_URL)
    assert path == offline_hub / "checkpoints" / "dinov2_vits14_pretrain.pth"
    path.parent.mkdir(parents=True)
    state = _vits14_file(path)
    _assert_loaded(backbones.build_backbone("dinov2_vits14", 4).body.vit, state)


@needs_torchvision
@pytest.mark.parametrize("layout", ["segmentation", "imagenet resnet"])
def test_a_local_torchvision_file_loads_by_path(layout, tmp_path):
    from torchvision.models import resnet50, segmentation

    torch.manual_seed(1)
    if layout == "segmentation":  # as the released COCO file: 21 classes, an auxiliary head
        state = segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=True).state_dict()
    else:
        state = resnet50().state_dict()
    torch.save(state, tmp_path / "weights.pth")
    model = backbones.build_backbone("deeplabv3_resnet50", 4, weights=str(tmp_path / "weights.pth")).body.model
    if layout == "segmentation":
        _assert_loaded(model, state, skip=("classifier.4.",))
        assert model.classifier[4].out_channels == 4 and model.aux_classifier is None
    else:
        _assert_loaded(model.backbone, state)


DAMAGED = {
    "missing": lambda path: None,
    "random bytes": lambda path: path.write_bytes(np.random.default_rng(0).bytes(3000)),
    "truncated": lambda path: (_vits14_file(path), path.write_bytes(path.read_bytes()[:100000])),
    "empty": lambda path: path.write_bytes(b""),
    "a list": lambda path: torch.save([1, 2], path),
    "another network": lambda path: torch.save(backbones.TinyNet(4).state_dict(), path),
    "other shapes": lambda path: torch.save({**backbones.ViTS14().state_dict(),
                                             "pos_embed": torch.zeros(1, 257, 384)}, path),
}


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_or_unfitting_file_is_refused_naming_it(damage, tmp_path):
    path = tmp_path / "weights.pth"
    DAMAGED[damage](path)
    with pytest.raises(backbones.BackboneWeightsError) as refused:
        backbones.build_backbone("dinov2_vits14", 4, weights=path)
    message = str(refused.value)
    assert str(path) in message and "'dinov2_vits14'" in message and "\n" not in message
    if damage in ("another network", "other shapes"):
        assert "does not fit" in message


@needs_torchvision
def test_a_file_of_another_torchvision_network_is_refused_naming_it(tmp_path):
    from torchvision.models import resnet18

    torch.save(resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(backbones.BackboneWeightsError, match=r"resnet18\.pth does not fit"):
        backbones.build_backbone("fcn_resnet50", 4, weights=tmp_path / "resnet18.pth")


@pytest.mark.parametrize("name", ["dinov2_vits14", "no_such_backbone"])
def test_programs_refuse_a_backbone_they_cannot_build_in_one_line(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(backbones.WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(SystemExit) as exited:
        backbones.build_program_backbone(name, 4)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --backbone {name}: "), err
    assert "missing.pth" in err or "unknown backbone" in err
