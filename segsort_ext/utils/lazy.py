"""Names of a package that load on first use (PEP 562), so that importing the package
does not import scipy, scikit-image, faiss or matplotlib behind them."""
from __future__ import annotations

import importlib
from typing import Callable, Iterable, Mapping


def lazy_exports(package: str, names: Mapping[str, str], submodules: Iterable[str] = ()
                 ) -> tuple[Callable[[str], object], Callable[[], list]]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps an exported name to the
    module that defines it; ``submodules`` are attributes that are modules of ``package``."""
    submodules = frozenset(submodules)

    def __getattr__(name: str):
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list:
        return sorted(set(names) | submodules | set(importlib.import_module(package).__dict__))

    return __getattr__, __dir__
