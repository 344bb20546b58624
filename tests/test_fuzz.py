"""The `make fuzz` targets, run briefly so the long fuzz run keeps working."""

import pytest
from hypothesis import settings

from tools import fuzz


@pytest.mark.parametrize("name", list(fuzz.TARGETS))
def test_fuzz_target_runs_clean(name):
    counter = fuzz.Counter()
    settings(max_examples=150, deadline=None, database=None)(fuzz.TARGETS[name](counter))()
    assert counter.executions >= 150
