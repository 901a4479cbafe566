"""The layout rules of docs/DESIGN.md, checked on the source: layer order, no private
names across subpackages, no use of the deprecated flat module paths, file length, an
``import segsort_ext`` that stays light, and the programs of python/ in task folders that
share code through python/common/ only."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "segsort_ext"
PROGRAMS = ROOT / "python"
SHARED = "common"  # python/common/: the one package the programs share

# Lower layers never import higher ones; equal ranks do not import each other.
LAYERS = {"utils": 0, "ops": 1, "transforms": 2, "retrieval": 2, "models": 2, "cluster": 3, "metrics": 3, "datasets": 3,
          "nn": 4}
TOP_LEVEL = float("inf")  # segsort_ext/__init__.py, _compat.py, testing.py, buildinfo.py
LONG_FILE_LINES = 500
LONG_FILE_MARKER = "# long-file:"  # within the first lines: why this file is longer
HEAVY = {"scipy", "skimage", "faiss", "matplotlib", "sklearn"}


def _python_files(*folders):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path):
    """(imported module, imported names) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = path.relative_to(ROOT).with_suffix("").parts[:-node.level]
                module = ".".join(base + ((module,) if module else ()))
            yield module, tuple(alias.name for alias in node.names)


def _subpackage(module: str):
    """'ops' for segsort_ext.ops.x, None for a top-level module of segsort_ext."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def _own_subpackage(path: Path):
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else None


def test_layers_import_only_lower_layers():
    bad = []
    for path in _python_files("segsort_ext"):
        own = _own_subpackage(path)
        rank = LAYERS.get(own, TOP_LEVEL)
        assert own is None or own in LAYERS, f"{path}: subpackage {own!r} has no layer in LAYERS"
        for module, _ in _imports(path):
            if not module.startswith("segsort_ext.") or module == "segsort_ext._C":
                continue
            target = _subpackage(module)
            if target is None:
                if own is not None:  # a subpackage importing a top-level module
                    bad.append(f"{path.relative_to(ROOT)} imports {module} (top level)")
            elif target != own and LAYERS[target] >= rank:
                bad.append(f"{path.relative_to(ROOT)} ({own}, layer {rank}) imports {module} (layer {LAYERS[target]})")
    assert not bad, "\n".join(bad)


def test_no_private_names_across_subpackages():
    bad = []
    for path in _python_files("segsort_ext", "python", "benchmarks", "tests"):
        if path == Path(__file__).resolve():
            continue  # reads the rules' own tables (segsort_ext._compat)
        own = _own_subpackage(path) if path.is_relative_to(PACKAGE) else None
        for module, names in _imports(path):
            if not module.startswith("segsort_ext"):
                continue
            if path.is_relative_to(PACKAGE) and _subpackage(module) == own:
                continue  # within one subpackage, or among the top-level modules
            private_module = [part for part in module.split(".")[1:] if part.startswith("_") and part != "_C"]
            private_names = [name for name in names if name.startswith("_") and name not in ("__all__", "_C")]
            if private_module or private_names:
                bad.append(f"{path.relative_to(ROOT)}: from {module} import {', '.join(names)}")
    assert not bad, "\n".join(bad)


def test_no_deprecated_module_paths_in_the_repository():
    from segsort_ext._compat import MOVED_MODULES

    old = {f"segsort_ext.{name}" for name in MOVED_MODULES}
    bad = []
    for path in _python_files("segsort_ext", "python", "benchmarks", "tests"):
        for module, names in _imports(path):
            if module in old or (module == "segsort_ext" and set(names) & set(MOVED_MODULES)):
                bad.append(f"{path.relative_to(ROOT)} imports {module} {names}")
    assert not bad, "\n".join(bad)


def test_long_files_say_why():
    bad = []
    for path in _python_files("segsort_ext", "python"):
        lines = path.read_text().splitlines()
        if len(lines) > LONG_FILE_LINES and not any(line.startswith(LONG_FILE_MARKER) for line in lines[:15]):
            bad.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
    assert not bad, f"files over {LONG_FILE_LINES} lines without a '{LONG_FILE_MARKER}' reason:\n" + "\n".join(bad)


def _is_program(path: Path) -> bool:
    """A program runs as a script: it has an ``if __name__ == "__main__":`` block."""
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) \
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__":
            return True
    return False


def test_programs_live_in_task_folders():
    loose = sorted(p.name for p in PROGRAMS.glob("*.py"))
    assert not loose, f"python/ holds no .py itself: a program goes in python/<task>/, shared code in " \
                      f"python/{SHARED}/ ({loose})"
    assert (PROGRAMS / SHARED / "__init__.py").is_file()
    shared_programs = [p.name for p in sorted((PROGRAMS / SHARED).rglob("*.py")) if _is_program(p)]
    assert not shared_programs, f"python/{SHARED}/ holds no program: {shared_programs}"


def test_programs_import_only_common_and_their_own_private_modules():
    """A file of python/<task>/ imports ``common.*``, the modules of its own folder that are
    not programs, ``segsort_ext`` and third-party packages; never a program (its own
    folder's included), another task's folder or module, nor anything by path at run time.
    python/common/ imports only ``common.*`` of python/."""
    modules = {}  # top-level name -> the files of python/ that an import of it could mean
    for path in PROGRAMS.rglob("*.py"):
        rel = path.relative_to(PROGRAMS)
        modules.setdefault(rel.parts[0] if len(rel.parts) > 1 else path.stem, set()).add(path.parent)
        if path.stem != "__init__":
            modules.setdefault(path.stem, set()).add(path.parent)
    dynamic = {"import_module", "__import__", "spec_from_file_location", "run_path", "run_module"}
    bad = []
    for path in sorted(PROGRAMS.rglob("*.py")):
        folder, rel = path.parent, path.relative_to(ROOT)
        private = set() if folder.name == SHARED else \
            {p.stem for p in folder.glob("*.py") if p != path and not _is_program(p)}
        for module, names in _imports(path):
            top = module.split(".")[0]
            if top == SHARED:
                targets = [module.split(".")[1:]] if module != SHARED else [[name] for name in names]
                for parts in targets:
                    target = PROGRAMS.joinpath(SHARED, *parts)
                    if not (target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()):
                        bad.append(f"{rel} imports {SHARED}.{'.'.join(parts)}, which python/{SHARED}/ lacks")
                continue
            if top == "python" or (top in modules and top not in private):
                bad.append(f"{rel} imports {module}: another program, task or folder of python/")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name in dynamic:
                    bad.append(f"{rel}:{node.lineno} imports by name or path at run time ({name})")
    assert not bad, "\n".join(bad)


def test_import_is_light():
    code = ("import sys, segsort_ext; "
            f"print(sorted({set(HEAVY)!r} & {{m.split('.')[0] for m in sys.modules}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"import segsort_ext imported {out.stdout.strip()}"


# Every name segsort_ext 0.1 exported (its __all__): they keep working.
NAMES_0_1 = """HAS_EXTENSION has_cuda_kernels Segments segment_partition segment_mean segment_label_histogram
segment_majority_mean KMeansResult spherical_kmeans SphericalKMeans SegmentIndex Neighbours finch
add_training_segments SegSortPredictor vmf_loss vmf_nca_loss blurring_mean_shift bandwidth_from_margin
cosine_threshold_from_margin extract_instances Instances instance_proposals Proposals pseudo_segments slic_segments
felzenszwalb_segments edge_strength contour_ucm image_ucm ucm_to_labels PrototypeMemory SegSortLoss
pairwise_margin_loss soft_segmentation_loss soft_segmentation_features picie_loss PiCIEClustering""".split()


def test_top_level_names_resolve():
    import segsort_ext

    assert set(NAMES_0_1) <= set(segsort_ext.__all__)
    for name in segsort_ext.__all__:
        assert getattr(segsort_ext, name) is not None, name
    assert callable(segsort_ext.metrics.region_benchmark)


@pytest.mark.parametrize("old, name", [("data", "VOCSegmentation"), ("meanshift", "extract_instances"),
                                       ("retrieval", "SegmentIndex"), ("kmeans", "SphericalKMeans"),
                                       ("scenes", "TextureMosaics"), ("vmf", "vmf_nca_loss")])
def test_old_module_paths_still_import(old, name):
    code = f"from segsort_ext.{old} import {name}; print({name}.__module__)"
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("segsort_ext.")
    if old != "retrieval":  # still a package of that name
        assert "DeprecationWarning" in out.stderr and "moved to" in out.stderr


def _module_level_names(path: Path) -> set:
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        else:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            for element in (target.elts if isinstance(target, ast.Tuple) else [target]):
                if isinstance(element, ast.Name):
                    names.add(element.id)
    return names


def test_tests_share_one_bad_input_catalogue_and_their_constants():
    # Bad inputs are Case rows in tests/hostile/cases_<area>.py run by one runner; NAN, INF
    # and the skip marks come from segsort_ext.testing, not from copies in each file.
    shared = {"NAN", "INF", "HAS_FAISS", "needs_cuda", "needs_extension", "needs_faiss", "Refused", "REFUSED"}
    bad = []
    for path in _python_files("tests"):
        if path.parent.name == "hostile" and path.name.startswith("cases_"):
            continue  # the catalogue itself: its REFUSED lists are the cases
        redefined = _module_level_names(path) & shared
        if redefined:
            bad.append(f"{path.relative_to(ROOT)}: {sorted(redefined)}")
    assert not bad, "define these once (segsort_ext.testing, tests/hostile/catalogue.py):\n" + "\n".join(bad)
