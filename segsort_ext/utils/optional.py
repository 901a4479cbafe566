"""Optional dependencies: the core needs torch and numpy only. A module that needs more
imports it through :func:`require`, whose ImportError names the pip command."""
from __future__ import annotations

import importlib
from types import ModuleType

#: The extra of pyproject.toml that brings each optional top-level module.
EXTRAS = {
    "scipy": "data",
    "skimage": "data",
    "PIL": "data",
    "faiss": "retrieval",
    "matplotlib": "recipes",
    "tqdm": "recipes",
    "sklearn": "recipes",
    "h5py": "data",
}
_PIP_NAMES = {"skimage": "scikit-image", "PIL": "pillow", "sklearn": "scikit-learn", "faiss": "faiss-gpu"}


def require(module: str, what: str) -> ModuleType:
    """Imports ``module`` (e.g. ``"scipy.ndimage"``) for ``what`` (a feature's name), or
    raises an ImportError that says which extra or package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        extra = EXTRAS.get(top)
        hint = (f"pip install 'segsort_ext[{extra}]' (or pip install {_PIP_NAMES.get(top, top)})" if extra
                else f"pip install {_PIP_NAMES.get(top, top)}")
        raise ImportError(f"{what} needs {top}, which is not installed: {hint}") from error
