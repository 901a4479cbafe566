"""Loading the programs of python/<task>/ in the tests. Several programs share a file name
(segsort/train.py, picie/train.py ...), so each is imported from its path under a name of
its own: python/segsort/train.py as ``segsort_train``. The programs put python/ on
sys.path themselves (for ``common``); it is put there here too, for the tests that use
``common`` directly."""
import importlib
import importlib.util
import sys
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"
if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))


def load(relative: str):
    """The module of ``python/<relative>`` (e.g. ``"bsds/train.py"``), imported once."""
    path = PYTHON_DIR / relative
    name = "_".join(Path(relative).with_suffix("").parts)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def common(name: str):
    """``common.<name>`` of python/common/ (e.g. ``common("data")``)."""
    return importlib.import_module(f"common.{name}")
