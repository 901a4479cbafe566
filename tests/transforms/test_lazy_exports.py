"""The segsort_ext.transforms package: lazy, and exporting every public name of its modules."""
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import segsort_ext.transforms as transforms

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_of_every_module_is_exported():
    for info in pkgutil.iter_modules(transforms.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{transforms.__name__}.{info.name}")
        for name in module.__all__:
            assert name in transforms.__all__, f"{info.name}.{name}"
            # A module named like one of its functions would shadow it once imported.
            assert getattr(transforms, name) is getattr(module, name), f"{info.name}.{name}"


def test_import_is_lazy():
    code = ("import sys, segsort_ext.transforms; "
            "print(sorted(m for m in sys.modules if m.startswith('segsort_ext.transforms.') "
            "or m.split('.')[0] in ('scipy', 'skimage', 'PIL')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
