"""The bad-input catalogue of the whole public API, and its runner's machinery: each case
(``Case``) is a call and what a correct library does with it, a refusal naming the argument
(TypeError/ValueError, or the error types the case names) or a result equal to an
independent computation. tests/test_hostile_inputs.py runs every case in-process (ids
``area/case``), in child processes and with the compiled extension hidden.

The cases live in ``tests/hostile/cases_<area>.py``, each module a ``CASES`` list and its
``AREA``: cluster, datasets, metrics, nn, ops (the op layer: public and raw ops, the latter on
each backend), retrieval, transforms (the former ``tests/<area>/test_bad_inputs.py`` tables)
and hostile (cases_ops, cases_data, cases_models: the first hostile-input catalogue).

One semantics for all of them, the strictest of the catalogues they came from: the error's
type is one of ``error`` exactly (``exact=False`` accepts subclasses), a bare name in ``arg``
(letters, digits, underscores, spaces) matches as whole words and anything else as a regular
expression (``re.search``), and results compare within the tolerances of ``same``.

``python -m tests.hostile.catalogue`` runs every case in child processes (a batch per
process, faulthandler on; a batch that dies is rerun one case per process to find the
crasher) and prints the outcome of each: refused / correct are good (skipped: a skip mark
holds); crash, wrong, vague (an error that does not name the argument, or of another type),
accepted (a result where a refusal was due), memory (a peak beyond the case's bound), hang
(over CASE_SECONDS) are bad. ``--here`` runs them in this process instead."""
from __future__ import annotations

import dataclasses
import importlib
import json
import math
import re
import resource
import subprocess
import sys
import tracemalloc
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

GOOD = ("refused", "correct")
SKIPPED = "skipped"
FATAL = ("crash", "hang")  # bad even for a case marked xfail: its process died
CASE_SECONDS = 30  # a case still running after this long is a hang
#: The modules of cases, tests/hostile/cases_<name>.py, in the order they run.
MODULES = ("cases_ops", "cases_data", "cases_models", "cases_cluster", "cases_datasets", "cases_metrics",
           "cases_nn", "cases_op_layer", "cases_retrieval", "cases_transforms")
#: (rtol, atol) of ``same`` for a floating dtype: the stricter of torch.testing.assert_close's
#: defaults and four roundings of the dtype (rtol) and a tenth of that (atol).
TOLERANCES = {torch.float64: (1e-7, 1e-7), torch.float32: (1.3e-6, 1e-6), torch.float16: (1e-3, 1e-5),
              torch.bfloat16: (1.6e-2, 1e-5)}


@dataclasses.dataclass
class Case:
    name: str
    call: Callable[..., Any]  # with ``setup``: called with what setup() returned
    arg: Optional[str] = None  # the argument the refusal's message must name (see ``named``)
    ref: Optional[Callable[[], Any]] = None  # the correct result, computed independently
    check: Optional[Callable[[Any], bool]] = None  # or a property the result must have
    error: Any = (TypeError, ValueError)  # the refusal's types (one type or a tuple)
    max_bytes: Optional[int] = None  # peak Python-heap (numpy) bytes allowed, when measured
    setup: Optional[Callable[[], Any]] = None  # makes call's argument (a folder of files, a backend's ops)
    exact: bool = True  # the error's type is one of ``error`` itself; False: a subclass will do
    rtol: Optional[float] = None  # tolerances of the comparison with ``ref`` (None: ``same``'s)
    atol: Optional[float] = None
    marks: tuple = ()  # pytest marks: skipif/skip skip the case, xfail(strict=True) marks a finding
    area: str = ""  # set by all_cases from the module's AREA

    def __post_init__(self):
        if isinstance(self.error, type):
            self.error = (self.error,)
        if not isinstance(self.marks, (tuple, list)):
            self.marks = (self.marks,)
        self.marks = tuple(self.marks)

    @property
    def id(self) -> str:
        return f"{self.area}/{self.name}"


def skip_reason(case: Case) -> Optional[str]:
    """Why the case is skipped here (a skip mark, or a skipif mark whose condition holds)."""
    for decorator in case.marks:
        mark = decorator.mark
        if mark.name == "skip":
            return mark.kwargs.get("reason", mark.args[0] if mark.args else "skipped")
        if mark.name == "skipif" and _condition(mark):
            return mark.kwargs.get("reason", "skipped")
    return None


def expected_failure(case: Case) -> Optional[str]:
    """The reason of the case's xfail mark, where its condition holds here."""
    for decorator in case.marks:
        mark = decorator.mark
        if mark.name == "xfail" and _condition(mark):
            return mark.kwargs.get("reason", "xfail")
    return None


def _condition(mark) -> bool:
    conditions = mark.args[:1] if mark.args else [mark.kwargs.get("condition", True)]
    for condition in conditions:
        if isinstance(condition, str):
            raise TypeError(f"string conditions are not supported in the catalogue: {condition!r}")
    return all(bool(condition) for condition in conditions)


def same(a, b, rtol: Optional[float] = None, atol: Optional[float] = None) -> bool:
    """Equal values (NaN equal to NaN), recursively over tuples, lists, dicts, dataclasses;
    floating tensors within TOLERANCES (or ``rtol``/``atol``), on the same device, of the
    same dtype and shape."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and same(dataclasses.astuple(a), dataclasses.astuple(b), rtol, atol)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k], rtol, atol) for k in a)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and \
            all(same(x, y, rtol, atol) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
            return False
        if a.is_floating_point():
            default = TOLERANCES.get(a.dtype)
            if default is None:  # another floating dtype: four roundings of it
                tol = max(1e-5, 4 * torch.finfo(a.dtype).eps)
                default = (tol, tol / 10)
            rtol, atol = default[0] if rtol is None else rtol, default[1] if atol is None else atol
            return bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True))
        return bool(torch.equal(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-5 if rtol is None else rtol,
                                                       atol=1e-6 if atol is None else atol, equal_nan=True))
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6 if rtol is None else rtol,
                                                                  abs_tol=1e-9 if atol is None else atol)
    return a == b


def run_case(case: Case) -> tuple[str, str]:
    """(outcome, detail) of one case, in this process."""
    reason = skip_reason(case)
    if reason is not None:
        return SKIPPED, reason
    argument = () if case.setup is None else (case.setup(),)
    if case.max_bytes is not None:
        tracemalloc.start()
    try:
        result = case.call(*argument)
    except Exception as e:  # noqa: BLE001 - classifying whatever the library raises
        message = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        if not (type(e) in case.error if case.exact else isinstance(e, case.error)):
            return "vague", message
        if case.arg is None or not re.search(named(case.arg), str(e)):
            return "vague", message
        return "refused", message
    finally:
        if case.max_bytes is not None:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    if case.max_bytes is not None and peak > case.max_bytes:
        return "memory", f"peak {peak} bytes > {case.max_bytes}"
    if case.ref is not None:
        expected = case.ref()
        if same(result, expected, case.rtol, case.atol):
            return "correct", ""
        return "wrong", f"got {_short(result)}, want {_short(expected)}"
    if case.check is not None:
        return ("correct", "") if case.check(result) else ("wrong", f"got {_short(result)}")
    return "accepted", f"returned {_short(result)}"


def named(pattern: str) -> str:
    """``pattern`` with each bare name among its alternatives (words and spaces, nothing a
    regular expression treats specially) matched as whole words; other alternatives stay
    regular expressions."""
    return "|".join(rf"\b{alt}\b" if re.fullmatch(r"\w+( \w+)*", alt) else alt for alt in pattern.split("|"))


def _short(value) -> str:
    return repr(value).replace("\n", " ")[:200]


def all_cases() -> list[Case]:
    """Every case of every module of MODULES, its ``area`` set from the module's AREA."""
    cases = []
    for name in MODULES:
        module = importlib.import_module(f"tests.hostile.{name}")
        for case in module.CASES:
            case.area = module.AREA
            cases.append(case)
    ids = [c.id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"duplicate case ids: {duplicates}"
    return cases


def problems(results: dict, cases: Sequence[Case]) -> dict:
    """{id: (outcome, detail)} of the cases whose outcome is bad: not good nor skipped, unless
    the case is marked xfail here (a crash or hang is bad all the same), or good although it
    is marked xfail (strict)."""
    bad = {}
    for case in cases:
        if case.id not in results:
            bad[case.id] = ("missing", "no outcome")
            continue
        outcome, detail = results[case.id]
        xfail = expected_failure(case)
        if outcome in FATAL or (outcome not in GOOD + (SKIPPED,) and xfail is None):
            bad[case.id] = (outcome, detail)
        elif outcome in GOOD and xfail is not None:
            bad[case.id] = ("xpass", f"marked xfail ({xfail}) but {outcome}")
    return bad


def run_here(cases: Sequence[Case]) -> dict:
    """{id: (outcome, detail)}: the cases run in this process."""
    return {case.id: run_case(case) for case in cases}


def _child(ids: Sequence[str]) -> None:
    """Runs the cases here, one JSON line per case, flushed before the next starts."""
    import faulthandler

    faulthandler.enable()
    torch.set_num_threads(2)
    by_id = {c.id: c for c in all_cases()}
    for case_id in ids:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        faulthandler.dump_traceback_later(CASE_SECONDS, exit=True)  # a hang ends the process
        outcome, detail = run_case(by_id[case_id])
        faulthandler.cancel_dump_traceback_later()
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        if outcome in GOOD and grown > 2**30:  # a peak resident set this case raised by a GiB
            outcome, detail = "memory", f"resident peak grew by {grown >> 20} MiB"
        print(json.dumps([case_id, outcome, detail]), flush=True)


def run_in_children(ids: Sequence[str], batch: int = 200) -> dict:
    """{id: (outcome, detail)}: the cases run in child processes; a case during which its
    process died is a crash (its batch continues in a fresh process after it)."""
    results, pending = {}, list(ids)
    while pending:
        chunk = pending[:batch]
        proc = subprocess.run([sys.executable, "-m", "tests.hostile.catalogue", "--child", *chunk],
                              capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            if line.startswith("["):
                case_id, outcome, detail = json.loads(line)
                results[case_id] = (outcome, detail)
        done = [n for n in chunk if n in results]
        if len(done) < len(chunk):
            crashed = chunk[len(done)]
            hang = "Timeout (" in proc.stderr
            results[crashed] = ("hang" if hang else "crash", f"exit {proc.returncode}: {proc.stderr.strip()[-300:]!r}")
            done.append(crashed)
        pending = [n for n in pending if n not in results]
    return results


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--child"]:
        _child(argv[1:])
        return 0
    cases = all_cases()
    if "--here" in argv:
        results = run_here(cases)
    else:
        results = run_in_children([c.id for c in cases])
    counts: dict = {}
    for case_id, (outcome, detail) in results.items():
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome not in GOOD or "-v" in argv:
            print(f"{outcome:9s} {case_id}: {detail}")
    bad = problems(results, cases)
    print(json.dumps(counts, sort_keys=True))
    print("problems: " + json.dumps(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
