"""The test suite's own hand-out to xdist workers: a file with module-scoped fixtures is one scope."""

from __future__ import annotations

import re
from pathlib import Path

from xdist_groups import GROUPED_FILES, order_key, scope_of


def test_a_grouped_file_is_one_scope_and_other_tests_are_their_own() -> None:
    a = "tests/test_cluster_on_slurm.py::test_a_sweep_is_one_job_array_and_wait_prints_the_table"
    b = "tests/test_cluster_on_slurm.py::test_an_interrupted_trial_resumes[time-limit-USR2]"
    assert scope_of(a) == scope_of(b) == "test_cluster_on_slurm"
    c, d = "tests/test_results_tables.py::test_x", "tests/test_results_tables.py::test_y[a@b]"
    assert scope_of(c) == c and scope_of(d) == d
    assert order_key(a) < order_key("tests/test_trust.py::test_z") < order_key(c) == order_key(d)


def test_every_file_with_module_or_session_fixtures_is_grouped() -> None:
    here = Path(__file__).parent
    costly = {p.stem for p in here.glob("test_*.py") if re.search(r"scope=\"(module|session)\"", p.read_text())}
    assert costly <= set(GROUPED_FILES), costly - set(GROUPED_FILES)
