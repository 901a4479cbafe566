"""The hostile-input catalogue (tests/hostile): every case gives a refusal naming the
argument or a result equal to an independent computation, and none crashes the process,
with the compiled extension and on the pure-PyTorch fallback."""
import os
import subprocess
import sys

import pytest

from segsort_ext.ops import HAS_EXTENSION
from segsort_ext.testing import needs_extension
from tests.hostile.catalogue import GOOD, all_cases, run_case, run_in_children

CASES = all_cases()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_case(case):
    outcome, detail = run_case(case)
    assert outcome in GOOD, f"{outcome}: {detail}"


@needs_extension
def test_no_case_crashes_its_process():
    # The same cases in child processes (faulthandler on): a crash or a hang shows as such
    # there instead of taking pytest down with it.
    results = run_in_children([c.name for c in CASES])
    bad = {name: result for name, result in results.items() if result[0] not in GOOD}
    assert not bad, bad


@pytest.mark.skipif(not HAS_EXTENSION, reason="this run is the fallback already")
def test_catalogue_on_the_fallback():
    # The raw cases too: without the extension torch.ops.segsort_ext.* are defined from Python.
    program = ("import sys, warnings; sys.modules['segsort_ext._C'] = None; warnings.simplefilter('ignore'); "
               "from tests.hostile.catalogue import GOOD, all_cases, run_case; "
               "bad = [(c.name, *run_case(c)) for c in all_cases()]; "
               "bad = [b for b in bad if b[1] not in GOOD]; print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
