"""Optional dependencies and the extension fallback: what a user without an extra, or
without a built extension, is told."""
import subprocess
import sys

import pytest

from segsort_ext.utils.optional import require


@pytest.mark.parametrize("module, extra, package", [("scipy.ndimage", "data", "scipy"),
                                                    ("skimage.segmentation", "data", "scikit-image"),
                                                    ("faiss", "retrieval", "faiss-gpu"),
                                                    ("matplotlib.pyplot", "recipes", "matplotlib")])
def test_missing_extra_names_the_pip_command(monkeypatch, module, extra, package):
    for name in (module, module.split(".")[0]):  # importing it now raises ImportError
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=rf"the feature needs .*pip install 'segsort_ext\[{extra}\]'.*{package}"):
        require(module, "the feature")


def test_present_module_is_returned():
    import numpy

    assert require("numpy", "x") is numpy


def test_without_the_extension_import_warns_once_and_falls_back():
    code = """
import sys, warnings
sys.modules["segsort_ext._C"] = None  # as if the extension was never built
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import segsort_ext
    import segsort_ext.ops
import torch
assert not segsort_ext.HAS_EXTENSION
messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
assert len(messages) == 1 and "segsort_ext._C" in messages[0] and "slower" in messages[0], messages
x = torch.randn(6, 3, dtype=torch.float64)
ids = torch.tensor([0, 0, 1, 1, -1, 2])
out = segsort_ext.segment_mean(x, ids, 3)
assert out.shape == (3, 3)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
