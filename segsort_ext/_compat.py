"""The module paths of segsort_ext 0.1's flat layout (``segsort_ext.data``,
``segsort_ext.losses``, ...) keep importing, with a DeprecationWarning naming the new home.
Each old module is a view of the modules that now hold its names."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

MOVED_MODULES = {
    "segments": ("segsort_ext.ops.segment_partition", "segsort_ext.ops.segment_mean"),
    "kmeans": ("segsort_ext.ops.spherical_kmeans", "segsort_ext.cluster.kmeans"),
    "vmf": ("segsort_ext.ops.vmf_loss",),
    "meanshift": ("segsort_ext.ops.blurring_mean_shift", "segsort_ext.cluster.instances"),
    "reference": ("segsort_ext.ops.reference",),
    "memory": ("segsort_ext.nn.memory",),
    "losses": ("segsort_ext.nn", "segsort_ext.transforms.guided_filtering"),
    "inference": ("segsort_ext.retrieval.predictor",),
    "pseudo_segments": ("segsort_ext.transforms",),
    "views": ("segsort_ext.transforms",),
    "data": ("segsort_ext.datasets", "segsort_ext.transforms"),
    "scenes": ("segsort_ext.datasets",),
    "viz": ("segsort_ext.utils.viz",),
    "distributed": ("segsort_ext.utils.distributed",),
}


class _MovedModule(types.ModuleType):
    def __init__(self, name: str, targets: tuple[str, ...]):
        super().__init__(name, f"Deprecated alias of {', '.join(targets)}.")
        self._targets = targets

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        for target in self._targets:
            module = importlib.import_module(target)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} (now {', '.join(self._targets)}) has no attribute {attr!r}")


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.rpartition(".")
        if package == "segsort_ext" and old in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        old = spec.name.rpartition(".")[2]
        warnings.warn(f"{spec.name} moved to {' and '.join(MOVED_MODULES[old])}; the old path will be removed",
                      DeprecationWarning, stacklevel=3)
        return _MovedModule(spec.name, MOVED_MODULES[old])

    def exec_module(self, module):
        pass


def install() -> None:
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
