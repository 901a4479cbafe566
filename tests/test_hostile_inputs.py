"""The one runner of the bad-input catalogue (tests/hostile, ``Case`` in catalogue.py): every
case gives a refusal naming the argument or a result equal to an independent computation,
in-process (one test per case, id ``area/case``), in child processes (a crash or a hang shows
as such instead of taking pytest down) and with the compiled extension hidden (the ops defined
from Python, their plain-PyTorch kernels)."""
import os
import subprocess
import sys

import pytest

from segsort_ext.ops import HAS_EXTENSION
from segsort_ext.testing import needs_extension
from tests.hostile.catalogue import GOOD, all_cases, problems, run_case, run_in_children

CASES = all_cases()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_case(case):
    outcome, detail = run_case(case)
    assert outcome in GOOD, f"{outcome}: {detail}"


@needs_extension
def test_no_case_crashes_its_process():
    # Every case in child processes (faulthandler on). A case marked xfail may fail, but not
    # by a crash or a hang; one that passes although marked xfail (strict) is reported too.
    bad = problems(run_in_children([c.id for c in CASES]), CASES)
    assert not bad, bad


@pytest.mark.skipif(not HAS_EXTENSION, reason="this run is the fallback already")
def test_catalogue_on_the_fallback():
    # Every case again with segsort_ext._C hidden: the ops (raw ones included) are defined
    # from Python and must refuse and answer alike. The skip and xfail marks are evaluated
    # there (the emulated CUDA path skips: it needs the extension).
    program = ("import sys, warnings; sys.modules['segsort_ext._C'] = None; warnings.simplefilter('ignore'); "
               "from tests.hostile.catalogue import main; sys.exit(main(['--here']))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=600, cwd=ROOT)
    problems_line = [line for line in result.stdout.splitlines() if line.startswith("problems: ")]
    assert result.returncode == 0, (problems_line or [result.stdout[-4000:]])[0] + result.stderr[-2000:]
