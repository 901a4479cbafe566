"""The hostile-input catalogue (tests/hostile): every case gives a refusal naming the
argument or a result equal to an independent computation, and none crashes the process."""
import pytest

from tests.hostile.catalogue import GOOD, all_cases, run_case, run_in_children

CASES = all_cases()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=pytest.mark.skip(reason=c.known) if c.known else ())
                                  for c in CASES])
def test_case(case):
    outcome, detail = run_case(case)
    assert outcome in GOOD, f"{outcome}: {detail}"


def test_no_case_crashes_its_process():
    # The same cases in child processes (faulthandler on): a crash or a hang shows as such
    # there instead of taking pytest down with it.
    results = run_in_children([c.name for c in CASES if not c.known])
    bad = {name: result for name, result in results.items() if result[0] not in GOOD}
    assert not bad, bad
