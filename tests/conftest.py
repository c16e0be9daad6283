"""Suite-wide rules: a skipped test, a module skipped or broken at collection (e.g. a
module-level ``pytest.importorskip``), or a selected test that did not pass fails the run; so
does a run selecting fewer tests than ``$DIST_TRAIN_MIN_TESTS`` (scripts/test.sh passes each
leg's committed floor from tests/MIN_TESTS)."""
from __future__ import annotations

import os

import pytest

_outcomes = {"passed": 0, "passed_functions": set(), "skipped": [], "collection": []}


def _function_id(nodeid: str) -> str:
    """tests/x.py::test_y[a-b] -> tests/x.py::test_y (parametrisations may differ by version)."""
    return nodeid.split("[", 1)[0]


def _missing_expected() -> list[str]:
    """Test functions listed in $DIST_TRAIN_EXPECTED_TESTS (node ids, one a line, e.g. another
    interpreter's --collect-only output) that did not pass here at least once."""
    path = os.environ.get("DIST_TRAIN_EXPECTED_TESTS")
    if not path:
        return []
    with open(path, encoding="utf-8") as f:
        expected = {_function_id(line.strip()) for line in f if "::" in line}
    if not expected:
        return [f"{path} lists no tests (did collecting them fail?)"]
    return sorted(expected - _outcomes["passed_functions"])


def pytest_collectreport(report):
    """A module that skips or fails while being collected takes all its tests with it, before
    any per-test report exists: record it here."""
    if report.skipped or report.failed:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _outcomes["collection"].append(f"{report.nodeid} ({report.outcome}: "
                                       f"{str(reason).strip().splitlines()[-1][:200]})")


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        _outcomes["passed"] += 1
        _outcomes["passed_functions"].add(_function_id(report.nodeid))
    elif report.skipped:
        _outcomes["skipped"].append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if exitstatus != 0 or os.environ.get("DIST_TRAIN_ALLOW_SKIPS") == "1" \
            or session.config.option.collectonly:
        return
    selected = len(session.items)
    minimum = int(os.environ.get("DIST_TRAIN_MIN_TESTS", "1"))
    problems = []
    if _outcomes["collection"]:
        problems.append(f"{len(_outcomes['collection'])} module(s) not collected: "
                        f"{_outcomes['collection'][:5]}")
    if _outcomes["skipped"]:
        problems.append(f"{len(_outcomes['skipped'])} test(s) skipped: {_outcomes['skipped'][:5]}")
    if _outcomes["passed"] != selected:
        problems.append(f"{_outcomes['passed']} passed of {selected} selected")
    if selected < minimum:
        problems.append(f"only {selected} tests selected, expected at least {minimum}")
    missing = _missing_expected()
    if missing:
        problems.append(f"{len(missing)} expected test function(s) did not run: {missing[:5]}")
    if problems:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "conftest: suite rules violated: " + "; ".join(problems), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
