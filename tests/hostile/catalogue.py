"""A hostile-input catalogue over the public API: each case is a call and what a correct
library does with it, a refusal naming the argument (TypeError/ValueError, or the error
type the case names) or a result equal to an independent computation.

``python -m tests.hostile.catalogue`` runs every case in child processes (a batch per
process, faulthandler on; a batch that dies is rerun one case per process to find the
crasher) and prints the outcome of each: refused / correct are good; crash, wrong, vague
(an error that does not name the argument, or of another type), accepted (a result where
a refusal was due), memory (a peak beyond the case's bound), hang (over CASE_SECONDS) are bad."""
from __future__ import annotations

import dataclasses
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
CASE_SECONDS = 30  # a case still running after this long is a hang


@dataclasses.dataclass
class Case:
    name: str
    call: Callable[[], Any]
    arg: Optional[str] = None  # a regular expression the refusal's message must match
    ref: Optional[Callable[[], Any]] = None  # the correct result, computed independently
    check: Optional[Callable[[Any], bool]] = None  # or a property the result must have
    error: tuple = (TypeError, ValueError)
    max_bytes: Optional[int] = None  # peak Python-heap (numpy) bytes allowed, when measured


def same(a, b) -> bool:
    """Equal values (NaN equal to NaN), recursively over tuples, lists, dicts, dataclasses."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and same(dataclasses.astuple(a), dataclasses.astuple(b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point():  # within a few roundings of the dtype
            tol = max(1e-5, 4 * torch.finfo(a.dtype).eps)
            return bool(torch.allclose(a.double(), b.double(), rtol=tol, atol=tol / 10, equal_nan=True))
        return bool(torch.equal(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True))
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def run_case(case: Case) -> tuple[str, str]:
    """(outcome, detail) of one case, in this process."""
    if case.max_bytes is not None:
        tracemalloc.start()
    try:
        result = case.call()
    except Exception as e:  # noqa: BLE001 - classifying whatever the library raises
        message = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        if not isinstance(e, case.error):
            return "vague", message
        if case.arg is None or not re.search(_named(case.arg), str(e)):
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
        if same(result, expected):
            return "correct", ""
        return "wrong", f"got {_short(result)}, want {_short(expected)}"
    if case.check is not None:
        return ("correct", "") if case.check(result) else ("wrong", f"got {_short(result)}")
    return "accepted", f"returned {_short(result)}"


def _named(pattern: str) -> str:
    """``pattern`` with each bare name among its alternatives matched as a whole word."""
    return "|".join(rf"\b{alt}\b" if re.fullmatch(r"\w+", alt) else alt for alt in pattern.split("|"))


def _short(value) -> str:
    return repr(value).replace("\n", " ")[:200]


def all_cases() -> list[Case]:
    from tests.hostile import cases_data, cases_models, cases_ops

    cases = cases_ops.CASES + cases_data.CASES + cases_models.CASES
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases


def _child(names: Sequence[str]) -> None:
    """Runs the named cases here, one JSON line per case, flushed before the next starts."""
    import faulthandler

    faulthandler.enable()
    torch.set_num_threads(2)
    by_name = {c.name: c for c in all_cases()}
    for name in names:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        faulthandler.dump_traceback_later(CASE_SECONDS, exit=True)  # a hang ends the process
        outcome, detail = run_case(by_name[name])
        faulthandler.cancel_dump_traceback_later()
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        if outcome in GOOD and grown > 2**30:  # a peak resident set this case raised by a GiB
            outcome, detail = "memory", f"resident peak grew by {grown >> 20} MiB"
        print(json.dumps([name, outcome, detail]), flush=True)


def run_in_children(names: Sequence[str], batch: int = 200) -> dict:
    """{name: (outcome, detail)}: the cases run in child processes; a case during which its
    process died is a crash (its batch continues in a fresh process after it)."""
    results, pending = {}, list(names)
    while pending:
        chunk = pending[:batch]
        proc = subprocess.run([sys.executable, "-m", "tests.hostile.catalogue", "--child", *chunk],
                              capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            if line.startswith("["):
                name, outcome, detail = json.loads(line)
                results[name] = (outcome, detail)
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
    results = run_in_children([c.name for c in all_cases()])
    counts: dict = {}
    for name, (outcome, detail) in results.items():
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome not in GOOD or "-v" in argv:
            print(f"{outcome:9s} {name}: {detail}")
    print(json.dumps(counts, sort_keys=True))
    return 0 if set(counts) <= set(GOOD) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
